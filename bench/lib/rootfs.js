// The benchmark's fixtures: a static-busybox rootfs (bench/.rootfs), a copy of it with /m/0../m/N-1
// mount points for the bind-mount growth test (bench/.rootfs-mounts), and a bind source
// (bench/.mnt-src). Built once, atomically; all gitignored.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const benchDir = path.join(__dirname, '..');

function findStaticBusybox() {
  for (const p of ['/bin/busybox', '/usr/bin/busybox', '/usr/sbin/busybox', '/sbin/busybox']) {
    if (!fs.existsSync(p)) continue;
    try {
      const out = execFileSync('file', ['-L', p]).toString();
      if (/statically linked|static-pie/.test(out)) return p;
    } catch {
      // No `file`: an ELF without a PT_INTERP segment is static; check the program headers.
      if (isStaticElf(p)) return p;
    }
  }
  return null;
}

function isStaticElf(p) {
  try {
    const b = fs.readFileSync(p);
    if (b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2) return false; // ELF64 only
    const phoff = Number(b.readBigUInt64LE(0x20));
    const phentsize = b.readUInt16LE(0x36);
    const phnum = b.readUInt16LE(0x38);
    for (let i = 0; i < phnum; i++) if (b.readUInt32LE(phoff + i * phentsize) === 3) return false; // PT_INTERP
    return true;
  } catch {
    return false;
  }
}

/** Builds `out` with make(tmp) unless it exists (atomic rename). */
function once(out, make) {
  if (fs.existsSync(out)) return out;
  const tmp = `${out}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  make(tmp);
  fs.renameSync(tmp, out);
  return out;
}

/** { rootfs, reason }: the busybox rootfs, or null with the reason. */
function busyboxRootfs() {
  const bb = findStaticBusybox();
  if (!bb) return { rootfs: null, reason: 'no static busybox (apt-get install busybox-static, or run bench/setup.sh)' };
  const rootfs = once(path.join(benchDir, '.rootfs'), (tmp) => {
    for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'proc', 'dev', 'tmp', 'sys', 'etc', 'root', 'var', 'run']) {
      fs.mkdirSync(path.join(tmp, d), { recursive: true });
    }
    fs.chmodSync(path.join(tmp, 'tmp'), 0o1777);
    fs.copyFileSync(bb, path.join(tmp, 'bin/busybox'));
    fs.chmodSync(path.join(tmp, 'bin/busybox'), 0o755);
    for (const a of execFileSync(bb, ['--list-full']).toString().trim().split('\n')) {
      const p = path.join(tmp, a);
      if (!fs.existsSync(p)) fs.symlinkSync('/bin/busybox', p);
    }
    fs.writeFileSync(path.join(tmp, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
    fs.writeFileSync(path.join(tmp, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
    fs.writeFileSync(path.join(tmp, 'etc/hostname'), 'bench\n');
  });
  return { rootfs, reason: null };
}

/**
 * A copy of the busybox rootfs with the directories /m/0 .. /m/(count-1) made in advance, so that
 * bind mounts onto them never need a mount point created (which would write into the rootfs).
 */
function mountsRootfs(base, count) {
  const out = path.join(benchDir, '.rootfs-mounts');
  if (fs.existsSync(out) && !fs.existsSync(path.join(out, 'm', String(count - 1)))) fs.rmSync(out, { recursive: true, force: true });
  once(out, (tmp) => {
    execFileSync('cp', ['-a', base, tmp]);
    for (let i = 0; i < count; i++) fs.mkdirSync(path.join(tmp, 'm', String(i)), { recursive: true });
  });
  const src = once(path.join(benchDir, '.mnt-src'), (tmp) => {
    fs.mkdirSync(tmp);
    fs.writeFileSync(path.join(tmp, 'hello'), 'hello from the host\n');
  });
  return { rootfs: out, source: src };
}

/** A cheap signature of a rootfs tree (paths and types), to prove a benchmark did not write into it. */
function signature(dir) {
  const out = [];
  const walk = (d, rel) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = rel + '/' + e.name;
      out.push(r + (e.isDirectory() ? '/' : e.isSymbolicLink() ? '@' : ''));
      if (e.isDirectory()) walk(path.join(d, e.name), r);
    }
  };
  walk(dir, '');
  return out.join('\n');
}

module.exports = { benchDir, busyboxRootfs, mountsRootfs, signature };
