// The parent's side out of a resource (issue #17), run by test/35-parent-resources.test.js in a
// Node process of its own. Prints one JSON line: every attempt and what was left after it.
//
//   node resources-runner.js emfile <stateDir>  lowers its own RLIMIT_NOFILE (prlimit), opens fds until EMFILE,
//       then for k = 0, 1, 2, ... free fds tries a start (run(); then Machine.start): each one that
//       fails must fail with EMFILE and leave no fd, child or cgroup; then a start must work.
//   node resources-runner.js enospc <stateDir>  (in a private mount namespace: unshare -m) mounts
//       small tmpfs over /run/nsbox/userns (the id range leases) and over stateDir, fills them, and
//       for k = 0, 1, 2, ... free pages tries a start that writes there (a userns run(); a
//       Machine.start): each failure must be ENOSPC naming a path there, and leave no file but the
//       filler and the locks, no child and no cgroup; with enough room the start works.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const lib = path.join(__dirname, '..', '..');
const { run, Machine } = require(lib);
const { busyboxRootfs } = require('../helpers');
const { detectCgroupHost } = require(path.join(lib, 'dist', 'cgroup'));
const { USERNS_LEASE_DIR } = require(path.join(lib, 'dist', 'userns'));

const bb = busyboxRootfs().rootfs;
const [mode, stateDir] = process.argv.slice(2);
const say = (x) => fs.writeSync(1, `${JSON.stringify(x)}\n`);
const errInfo = (e) => (e ? { name: e.name, code: e.code, step: e.step, syscall: e.syscall, path: e.path, message: String(e.message).slice(0, 300) } : null);

function children() {
  const out = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}
function cgroups() {
  const base = detectCgroupHost().base;
  try {
    return base ? fs.readdirSync(base).filter((n) => n.startsWith(`${process.pid}.`) || n.includes('-resfault')) : [];
  } catch {
    return [];
  }
}
const { native } = require(path.join(lib, 'dist', 'native'));
/**
 * The fds open, by fstat (listing /proc/self/fd would need one more), without those the addon holds
 * for the process (its namespace reserves and mount template; read while their maker is idle).
 */
function fdCount() {
  while (native().netnsReserveState().busy || native().ipcnsReserveState().busy) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
  const held = new Set([...native().netnsReserveState().fds, ...native().ipcnsReserveState().fds, native().mntTemplateState().fd]);
  let n = 0;
  for (let fd = 0; fd < 1024; fd++) {
    if (held.has(fd)) continue;
    try {
      fs.fstatSync(fd);
      n++;
    } catch {
      /* not open */
    }
  }
  return n;
}
const tree = (dir) => {
  const out = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      out.push(path.relative(dir, p));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
};
/** The start, its error (or null), and what it left (the fds are given a moment: sockets close on next tick). */
async function attempt(start, look) {
  const before = { fds: fdCount(), ...withSpare(look) };
  let err = null;
  try {
    const r = await start();
    if (r && typeof r.stop === 'function') {
      await r.stop({ timeout: 2000 }).catch(() => {});
      await r.destroy().catch(() => {});
    }
  } catch (e) {
    err = e;
  }
  await new Promise((r) => setTimeout(r, 50));
  const after = { fds: fdCount(), ...withSpare(look) };
  const left = withSpare(() => ({ children: children(), cgroups: cgroups() }));
  return { err: errInfo(err), before, after, ...left };
}
/** Listing /proc, the cgroups or a directory takes fds: those of the spare hogs, closed for it (emfile). */
function withSpare(fn) {
  const n = spare.length;
  for (const fd of spare.splice(0)) fs.closeSync(fd);
  try {
    return fn();
  } finally {
    while (spare.length < n) spare.push(fs.openSync('/dev/null', 'r'));
  }
}
/** In emfile: hogs kept aside to be closed while attempt() looks at what was left. */
const spare = [];
const SPARE = 4;

let seq = 0;
const machine = (extra = {}) => () => Machine.start({ name: `resfault${seq++}`, rootfs: bb, ephemeral: true, stateDir, ...extra });
const app = (extra = {}) => () => run({ command: ['/bin/true'], rootfs: bb, ...extra });

/** Makes what the process keeps for its life (libuv's reserve fd, the init memfd, the reserves). */
async function warmUp(starts) {
  for (const start of starts) {
    const r = await start();
    if (r && typeof r.stop === 'function') {
      await r.stop({ timeout: 2000 });
      await r.destroy();
    }
  }
  await new Promise((r) => setTimeout(r, 50));
}

async function emfile() {
  await warmUp([app(), machine()]);
  // The soft limit only: the containers' own RLIMIT_NOFILE (up to the hard one) is not in question.
  const hard = /^Max open files\s+\S+\s+(\S+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'))[1];
  execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=256:${hard === 'unlimited' ? 'unlimited' : hard}`]);
  for (let i = 0; i < SPARE; i++) spare.push(fs.openSync('/dev/null', 'r'));
  const hogs = [];
  for (;;) {
    try {
      hogs.push(fs.openSync('/dev/null', 'r'));
    } catch (e) {
      if (e.code !== 'EMFILE') throw e;
      break;
    }
  }
  const out = { hogs: hogs.length, app: [], machine: [] };
  const look = () => ({ files: tree(stateDir).filter((n) => n !== '.lock') });
  for (const [name, start] of [['app', app()], ['machine', machine()]]) {
    for (let k = 0; k <= 64; k++) {
      // k fds free from here on: close the (k)th hog (the first k stay closed).
      if (k > 0) fs.closeSync(hogs.pop());
      const a = await attempt(start, look);
      out[name].push({ k, ...a });
      if (!a.err) break;
    }
    // Refill for the next kind.
    for (;;) {
      try {
        hogs.push(fs.openSync('/dev/null', 'r'));
      } catch {
        break;
      }
    }
  }
  for (const fd of [...hogs, ...spare.splice(0)]) fs.closeSync(fd);
  out.after = await attempt(app(), () => ({}));
  for (const fd of spare.splice(0)) fs.closeSync(fd);
  say(out);
}

/** Fills the tmpfs at dir, then leaves k pages free. */
function fill(dir, k) {
  const f = path.join(dir, '.filler');
  const fd = fs.openSync(f, 'a');
  const page = Buffer.alloc(4096, 1);
  for (;;) {
    try {
      fs.writeSync(fd, page);
    } catch (e) {
      if (e.code !== 'ENOSPC') throw e;
      break;
    }
  }
  const size = fs.fstatSync(fd).size;
  fs.ftruncateSync(fd, Math.max(0, Math.floor(size / 4096) * 4096 - k * 4096));
  fs.closeSync(fd);
}

async function enospc() {
  const mi = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  if (!mi.includes(` ${USERNS_LEASE_DIR} `) || !mi.includes(` ${stateDir} `)) {
    console.error('runs only as 35-parent-resources.test.js starts it (a private mount namespace with the tmpfs mounted)');
    process.exit(2);
  }
  await warmUp([app({ userns: true }), machine()]);
  const out = { userns: [], machine: [] };
  const kinds = [
    ['userns', app({ userns: true }), USERNS_LEASE_DIR],
    ['machine', machine(), stateDir],
  ];
  for (const [name, start, dir] of kinds) {
    for (let k = 0; k <= 16; k++) {
      fill(dir, k);
      const a = await attempt(start, () => ({ files: tree(dir).filter((n) => !['.filler', 'lock', '.lock'].includes(n)) }));
      out[name].push({ k, ...a });
      if (!a.err) break;
    }
    fs.rmSync(path.join(dir, '.filler'), { force: true });
  }
  out.after = {
    userns: await attempt(app({ userns: true }), () => ({})),
    machine: await attempt(machine(), () => ({ files: tree(stateDir).filter((n) => n !== '.lock') })),
  };
  say(out);
}

(mode === 'emfile' ? emfile() : enospc()).catch((e) => {
  say({ fatal: String(e && e.stack) });
  process.exit(1);
});
