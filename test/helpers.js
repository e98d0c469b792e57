// Shared test helpers: the fixtures (a static probe binary and a busybox rootfs, built once per
// checkout) and the leak counters every suite checks after it has run containers.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.join(__dirname, '..');
const fixturesDir = path.join(__dirname, '.fixtures');

/** Builds `out` with `make(tmp)` unless it exists; atomic, so parallel test files never see half. */
function once(out, make) {
  if (fs.existsSync(out)) return out;
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  make(tmp);
  try {
    fs.renameSync(tmp, out);
  } catch (e) {
    // Another test file won the race (rename onto a non-empty directory fails): use theirs.
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!fs.existsSync(out)) throw e;
  }
  return out;
}

/** The static probe (test/probe/probe.c) that reports from inside a container. */
function probeBinary() {
  const src = path.join(__dirname, 'probe', 'probe.c');
  const out = path.join(fixturesDir, 'probe');
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs < fs.statSync(src).mtimeMs) fs.rmSync(out);
  return once(out, (tmp) => {
    execFileSync(process.env.CC || 'cc', ['-O2', '-static', '-Wall', '-Wextra', '-o', tmp, src], { stdio: 'inherit' });
  });
}

function findBusybox() {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) {
    if (fs.existsSync(p)) {
      const out = execFileSync('file', ['-L', p]).toString();
      if (/statically linked|static-pie/.test(out)) return p;
    }
  }
  return null;
}

/**
 * A minimal busybox rootfs with the probe at /probe and empty /proc, /dev, /tmp, /sys mount points.
 * Returns null (with the reason) when no static busybox is installed.
 */
function busyboxRootfs() {
  const bb = findBusybox();
  if (!bb) return { rootfs: null, reason: 'no static busybox (Debian package busybox-static)' };
  const probe = probeBinary();
  const rootfs = once(path.join(fixturesDir, 'busybox-rootfs'), (tmp) => {
    // Mount points the tests use exist in the image: a rootless container's root (the caller's uid
    // on the host) cannot create them in a root-owned rootfs.
    const points = ['data', 'ro', 'out', 'scratch', 'big', 'small', 'x', 'mnt'];
    for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'proc', 'dev', 'tmp', 'sys', 'etc', 'root', 'var', 'run', ...points]) {
      fs.mkdirSync(path.join(tmp, d), { recursive: true });
    }
    fs.copyFileSync(bb, path.join(tmp, 'bin/busybox'));
    fs.chmodSync(path.join(tmp, 'bin/busybox'), 0o755);
    const applets = execFileSync(bb, ['--list-full']).toString().trim().split('\n');
    for (const a of applets) {
      const p = path.join(tmp, a);
      if (!fs.existsSync(p)) fs.symlinkSync('/bin/busybox', p);
    }
    fs.writeFileSync(path.join(tmp, 'mnt/file'), ''); // a file bind target
    fs.copyFileSync(probe, path.join(tmp, 'probe'));
    fs.chmodSync(path.join(tmp, 'probe'), 0o755);
    fs.writeFileSync(path.join(tmp, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
    fs.writeFileSync(path.join(tmp, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  });
  // The mount points of the generated /etc files (lib/etc.ts), as a distribution image has them:
  // nsbox never makes them in a caller's rootfs. (Also added to a fixture built before they were.)
  for (const f of ['hosts', 'hostname', 'resolv.conf']) {
    try {
      fs.writeFileSync(path.join(rootfs, 'etc', f), '', { flag: 'wx' });
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
  }
  // Keep the rootfs's probe in step with a rebuilt one (atomically: other files may be running it).
  const inRoot = path.join(rootfs, 'probe');
  if (fs.statSync(inRoot).mtimeMs < fs.statSync(probe).mtimeMs) {
    const tmp = `${inRoot}.tmp-${process.pid}`;
    fs.copyFileSync(probe, tmp);
    fs.chmodSync(tmp, 0o755);
    fs.renameSync(tmp, inRoot);
  }
  return { rootfs, reason: null };
}

/**
 * A root-owned copy of the busybox rootfs with links planted where a mount point's missing parent
 * would be: /evil -> /etc (inside the root), /out-of-root -> the host's /etc (an absolute link the
 * child must resolve inside the root). Made by root (test/rootless/run.sh makes it before the
 * rootless lane, which cannot); null with the reason where it is missing and this is not root.
 */
function plantedRootfs() {
  const { rootfs: bb, reason } = busyboxRootfs();
  if (!bb) return { rootfs: null, reason };
  const out = path.join(fixturesDir, 'busybox-planted');
  if (!fs.existsSync(out) && process.geteuid() !== 0) return { rootfs: null, reason: `${out} is made by root (test/rootless/run.sh)` };
  const rootfs = once(out, (tmp) => {
    fs.cpSync(bb, tmp, { recursive: true, verbatimSymlinks: true });
    fs.symlinkSync('/etc', path.join(tmp, 'evil'));
    fs.symlinkSync('../../../../../../../../etc', path.join(tmp, 'out-of-root'));
  });
  return { rootfs, reason: null };
}

function countCgroups() {
  const { detectCgroupHost } = require('../dist/cgroup');
  const host = detectCgroupHost();
  if (!host.base) return 0;
  try {
    return fs.readdirSync(host.base).filter((n) => n.startsWith(`${process.pid}.`)).length;
  } catch {
    return 0;
  }
}

/** Zombie children of this process (never reaped). */
function zombies() {
  let n = 0;
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
    } catch {
      continue;
    }
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z' && Number(rest[1]) === process.pid) n++;
  }
  return n;
}

/** Live (non-zombie) child processes of this process. */
function liveChildren() {
  let n = 0;
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (rest[0] !== 'Z' && Number(rest[1]) === process.pid) n++;
    } catch {
      /* gone */
    }
  }
  return n;
}

function threads() {
  return Number(/^Threads:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);
}

/** What a container could leave behind: a snapshot to compare before and after. */
/**
 * This process's per-container /etc directories (lib/etc.ts; `<pid>-<random>`, also the transient
 * `<pid>-tmp-<random>` a shared one is written in): one per live container that has its own
 * (bridged, CAP_SYS_ADMIN, past the shared limit). The shared ones (`s-<hash>`) are kept by design
 * and not counted.
 */
function etcDirs() {
  const { etcBase } = require('../dist/etc');
  try {
    return fs.readdirSync(etcBase()).filter((n) => n.startsWith(`${process.pid}-`)).length;
  } catch {
    return 0;
  }
}

function snapshot() {
  // The addon keeps a reserve of network and IPC namespaces (native/glue/reserve.cc), refilled by a thread
  // of its own: their fds are not leaks, and while one is being made its fd and its short-lived
  // child exist before the reserve lists them. Take the readings while the maker is idle, and only
  // if it stayed idle with the same fds throughout.
  const { native } = require('../dist/native');
  const same = (a, b) => a.busy === b.busy && a.failures === b.failures && a.fds.join() === b.fds.join();
  for (;;) {
    const st = native().netnsReserveState();
    if (st.busy) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      continue;
    }
    const ipc = native().ipcnsReserveState();
    const held = new Set([...st.fds, ...ipc.fds].map(String));
    // The mount namespace template (reserve.cc) is made on first use and held for the process.
    const tmpl = native().mntTemplateState().fd;
    if (tmpl >= 0) held.add(String(tmpl));
    const snap = {
      fds: fs.readdirSync('/proc/self/fd').filter((f) => !held.has(f)).length,
      zombies: zombies(),
      children: liveChildren(),
      mounts: fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').length,
      cgroups: countCgroups(),
      etcDirs: etcDirs(),
    };
    if (same(st, native().netnsReserveState()) && same(ipc, native().ipcnsReserveState())) return snap;
  }
}

/** Asserts nothing was left since `before` (fds are given a moment: sockets close on next tick). */
async function assertNoLeaks(t, before, what = 'after the containers') {
  await new Promise((r) => setTimeout(r, 50));
  const after = snapshot();
  t.same(after, before, `nothing left behind ${what} (fds, zombies, children, mounts, cgroups)`);
}

/**
 * Lets Node and nsbox make the fds they keep for the life of the process (libuv's inotify fd and
 * its EMFILE reserve, the init's sealed memfd, ...) before a test takes its baseline snapshot.
 */
async function warmUp() {
  const { run, spawn } = require('..');
  await run({ command: ['/bin/true'], init: true });
  // spawn() hands out net.Socket streams (run() reads its output natively): the first pipe stream
  // makes libuv open its reserve fd (/dev/null, kept for EMFILE in accept), once per loop.
  await spawn({ command: ['/bin/true'] }).wait();
  fs.watch(__filename).close();
  await new Promise((r) => setTimeout(r, 50));
  return snapshot();
}

/** A private machine state directory, removed (with whatever a failed test left running) at the end. */
function machineStateDir(t, prefix) {
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), prefix));
  t.teardown(async () => {
    const { Machine } = require('..');
    for (const info of await Machine.list({ stateDir: dir })) {
      const m = await Machine.get(info.name, { stateDir: dir });
      await m.stop({ timeout: 5000 }).catch(() => {});
      await m.destroy().catch(() => {});
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** The first line a stream writes. */
function firstLine(stream) {
  return new Promise((resolve) => {
    let buf = '';
    stream.on('data', (d) => {
      buf += d;
      if (buf.includes('\n')) resolve(buf.split('\n')[0]);
    });
  });
}

/** Root in the initial user namespace (not root inside `unshare -r`): the privileged lane. */
function isRoot() {
  return require('../dist/runtime').privileged();
}

/**
 * Containers here can use more ids than root alone: root in the initial user namespace, or a
 * rootless caller with newuidmap and /etc/subuid ranges. False with the reason otherwise (inside
 * `unshare -r` the caller owns exactly one id).
 */
function manyIds() {
  const u = require('../dist/userns');
  if (require('../dist/runtime').privileged()) return false;
  const id = process.geteuid();
  if (u.idmapHelpers() && u.subordinateRanges('/etc/subuid', id).length && u.subordinateRanges('/etc/subgid', id).length) return false;
  return `uid ${id} has no subordinate id range (or no newuidmap): its containers map one id only`;
}

/** Tests that need a cgroup nsbox can write skip with this reason where there is none. */
function noCgroup() {
  const { detectCgroupHost } = require('../dist/cgroup');
  const h = detectCgroupHost();
  return h.base ? false : `no writable cgroup v2 here (${h.reason})`;
}

/**
 * A copy of the busybox rootfs at `dest`, every file's owner shifted into the id range `range`
 * ({ uid, gid }: the range's first ids), as a persistent userns machine's rootfs would be.
 */
function shiftedRootfs(dest, range) {
  const { rootfs } = busyboxRootfs();
  fs.cpSync(rootfs, dest, { recursive: true, verbatimSymlinks: true });
  const shift = (p) => {
    const st = fs.lstatSync(p);
    fs.lchownSync(p, range.uid + st.uid, range.gid + st.gid);
    if (st.isDirectory()) for (const n of fs.readdirSync(p)) shift(path.join(p, n));
  };
  shift(dest);
  return dest;
}

/** Whether a process runs (exists and is not a zombie): the CLI tests' check on pids they were shown. */
function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Asserts a CLI result's stderr is exactly one line starting with `nsbox: `, and returns it. */
function oneErrorLine(t, r) {
  const lines = r.stderr.split('\n').filter(Boolean);
  t.equal(lines.length, 1, `exactly one line on stderr: ${JSON.stringify(r.stderr)}`);
  t.match(lines[0] ?? '', /^nsbox: /, 'it starts with "nsbox: "');
  return lines[0] ?? '';
}

module.exports = {
  alive,
  oneErrorLine,
  shiftedRootfs,
  plantedRootfs,
  root,
  once,
  probeBinary,
  busyboxRootfs,
  snapshot,
  warmUp,
  machineStateDir,
  firstLine,
  assertNoLeaks,
  threads,
  zombies,
  isRoot,
  noCgroup,
  manyIds,
  countCgroups,
};
