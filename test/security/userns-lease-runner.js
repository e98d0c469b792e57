// The attacks on the id range leases (issue #16, 9c), each run by userns-leases.test.js in a pid
// namespace of its own (so a pid can be reused on purpose: ns_last_pid) with private tmpfs copies of
// the lease and reservation directories (so the host's leases are never touched). Prints one JSON
// line with what it saw.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const lib = path.join(__dirname, '..', '..');
const { spawn, run, Machine } = require(lib);
const userns = require(path.join(lib, 'dist', 'userns'));
const { busyboxRootfs, shiftedRootfs } = require('../helpers');

const bb = busyboxRootfs().rootfs;
const DIR = userns.USERNS_LEASE_DIR;
const RESERVE = userns.USERNS_RESERVE_DIR;

const mi = fs.readFileSync('/proc/self/mountinfo', 'utf8');
if (!mi.includes(` ${DIR} `) || !mi.includes(` ${RESERVE} `) || process.pid > 1000) {
  console.error('runs only as userns-leases.test.js starts it (private pid namespace and lease directories)');
  process.exit(2);
}

const leases = () => Object.fromEntries(fs.readdirSync(DIR).filter((n) => /^\d+$/.test(n)).map((n) => {
  try {
    return [n, JSON.parse(fs.readFileSync(path.join(DIR, n), 'utf8'))];
  } catch {
    return [n, null];
  }
}));
const hostRoot = (text) => Number(text.trim().split('\n')[0].trim().split(/\s+/)[1]);
async function firstLine(stream) {
  let buf = '';
  for await (const chunk of stream) {
    buf += chunk;
    if (buf.includes('\n')) return buf;
  }
  return buf;
}
const rangeOf = async (c) => hostRoot(await firstLine(c.stdout));
const running = (re) => execFileSync('ps', ['-eo', 'args']).toString().split('\n').filter((l) => re.test(l));
const errInfo = (e) => (e ? { name: e.name, code: e.code, step: e.step, path: e.path, message: e.message } : null);
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-leases-'));
// (Also for the scenarios that end without cleanup(): the directory is this runner's.)
process.on('exit', () => fs.rmSync(stateDir, { recursive: true, force: true }));

async function cleanup(kids) {
  for (const k of kids) {
    k.kill('SIGKILL');
    await k.wait().catch(() => {});
  }
  for (const info of await Machine.list({ stateDir })) {
    const m = await Machine.get(info.name, { stateDir });
    await m.stop({ timeout: 5000 }).catch(() => {});
    await m.destroy().catch(() => {});
  }
  fs.rmSync(stateDir, { recursive: true, force: true });
}

const scenarios = {
  /** A dead machine's stale state names a pid that a new container's PID 1 now has. */
  async pidReuse(how) {
    const kids = [];
    try {
      const victim = Number(execFileSync(process.execPath, ['-e', `
        const { Machine } = require(${JSON.stringify(lib)});
        Machine.start({ name: 'victim', rootfs: ${JSON.stringify(bb)}, ephemeral: true, userns: true, stateDir: ${JSON.stringify(stateDir)} })
          .then((m) => { process.stdout.write(String(m.pid)); process.exit(0); });
      `]).toString());
      process.kill(victim, 'SIGKILL');
      while (fs.existsSync(`/proc/${victim}`)) await new Promise((r) => setTimeout(r, 10));
      fs.writeFileSync('/proc/sys/kernel/ns_last_pid', String(victim - 1));
      const c = spawn({ rootfs: bb, userns: true, command: ['/bin/sh', '-c', 'cat /proc/self/uid_map; exec sleep 60'] });
      kids.push(c);
      const cRange = await rangeOf(c);
      if (how === 'restart') {
        const m2 = await Machine.start({ name: 'victim', rootfs: bb, ephemeral: true, userns: true, stateDir });
        const other = hostRoot((await m2.run(['/bin/cat', '/proc/self/uid_map'])).stdout.toString());
        return { reused: c.pid === victim, cRange, other, cLeaseKept: leases()[String(cRange)]?.pid === c.pid };
      }
      await Machine.get('victim', { stateDir });
      const cLeaseKept = leases()[String(cRange)]?.pid === c.pid;
      const d = spawn({ rootfs: bb, userns: true, command: ['/bin/sh', '-c', 'cat /proc/self/uid_map; exec sleep 60'] });
      kids.push(d);
      return { reused: c.pid === victim, cRange, other: await rangeOf(d), cLeaseKept };
    } finally {
      await cleanup(kids);
    }
  },

  /** A lease whose owner was recorded without a start time, its pid gone: reclaimed, never live. */
  async nullStart() {
    const first = userns.idRangePool().ranges[0];
    fs.writeFileSync(path.join(DIR, String(first.uid)), JSON.stringify({ pid: 999, start: null, ...first }));
    const r = await run({ rootfs: bb, userns: true, command: ['/bin/cat', '/proc/self/uid_map'] });
    // And the owner a container's lease records is never null, even for one that exits at once.
    const quick = spawn({ rootfs: bb, userns: true, stdio: 'ignore', command: ['/bin/true'] });
    const seen = [];
    for (let i = 0; i < 50 && seen.length === 0; i++) {
      for (const l of Object.values(leases())) if (l && l.pid === quick.pid) seen.push(l.start);
      if (!seen.length) await new Promise((res) => setTimeout(res, 1));
    }
    await quick.wait();
    return { range: hostRoot(r.stdout.toString()), first: first.uid, quickStarts: seen, left: leases() };
  },

  /**
   * The lease cannot be handed to PID 1 after the clone (a full /run, here the hand-over's temporary
   * file's name taken by a directory): the start fails and nothing runs on.
   */
  async handover(kind) {
    const first = userns.idRangePool().ranges[0];
    const blocker = path.join(DIR, `${first.uid}.tmp-${process.pid}`);
    fs.mkdirSync(blocker);
    let err = null;
    try {
      if (kind === 'machine') await Machine.start({ name: 'full', rootfs: bb, ephemeral: true, userns: true, stateDir });
      else spawn({ rootfs: bb, userns: true, stdio: 'ignore', command: ['/bin/sh', '-c', 'exec sleep 31'] });
    } catch (e) {
      err = e;
    }
    fs.rmdirSync(blocker);
    await new Promise((r) => setTimeout(r, 200));
    const machines = await Machine.list({ stateDir });
    await cleanup([]);
    return { err: errInfo(err), left: leases(), running: running(/sleep 31|nsbox-init/), machines: machines.length };
  },

  /** Entries in the lease directory that are not leases, or leases that do not say their range. */
  async malformed() {
    const [r0, r1] = userns.idRangePool().ranges;
    fs.mkdirSync(path.join(DIR, String(r0.uid)));  // a directory named like a lease
    const holder = spawn({ rootfs: bb, stdio: 'ignore', command: ['/bin/sh', '-c', 'exec sleep 60'] });
    const st = fs.readFileSync(`/proc/${holder.pid}/stat`, 'utf8');
    const start = st.slice(st.lastIndexOf(')') + 2).split(' ')[19];
    fs.writeFileSync(path.join(DIR, String(r1.uid)), JSON.stringify({ pid: holder.pid, start }));  // live, no uid/gid
    let out;
    try {
      const r = await run({ rootfs: bb, userns: true, command: ['/bin/cat', '/proc/self/uid_map'] });
      out = { range: hostRoot(r.stdout.toString()) };
    } catch (e) {
      out = { err: errInfo(e) };
    }
    fs.rmdirSync(path.join(DIR, String(r0.uid)));
    fs.rmSync(path.join(DIR, 'lock'));
    fs.mkdirSync(path.join(DIR, 'lock'));  // the lock itself unusable
    const bad = await run({ rootfs: bb, userns: true, command: ['/bin/true'] }).catch((e) => e);
    fs.rmdirSync(path.join(DIR, 'lock'));
    holder.kill('SIGKILL');
    await holder.wait();
    return { ...out, avoided: [r0.uid, r1.uid], lockErr: errInfo(bad instanceof Error ? bad : null) };
  },

  /** A stopped persistent machine keeps its range: containers started meanwhile get others. */
  async stoppedMachine() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-kept-'));
    fs.chmodSync(dir, 0o755);
    const rootfs = path.join(dir, 'rootfs');
    const own = userns.idRangePool().ranges[0];  // the range a container would take first
    shiftedRootfs(rootfs, own);
    const kids = [];
    try {
      const m = await Machine.start({ name: 'db', rootfs, userns: true, stateDir });
      await m.stop({ timeout: 5000 });
      const reserved = fs.readdirSync(RESERVE);
      const c = spawn({ rootfs: bb, userns: true, command: ['/bin/sh', '-c', 'cat /proc/self/uid_map; exec sleep 60'] });
      kids.push(c);
      const cRange = await rangeOf(c);
      await m.destroy();
      const again = await Machine.start({ name: 'db', rootfs, userns: true, stateDir });
      const mRange = hostRoot((await again.run(['/bin/cat', '/proc/self/uid_map'])).stdout.toString());
      await again.stop({ timeout: 5000 });
      await cleanup(kids.splice(0));
      fs.rmSync(dir, { recursive: true, force: true });
      // The rootfs is gone: its reservation is dropped by the next allocation.
      await run({ rootfs: bb, userns: true, command: ['/bin/true'] });
      return { own: own.uid, reserved, cRange, mRange, reservedAfter: fs.readdirSync(RESERVE) };
    } finally {
      await cleanup(kids);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
};

/** A reservation outlives a rootfs that cannot be seen for a while, and a chown of its "/". */
scenarios.reservationKept = async function reservationKept() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-kept2-'));
  fs.chmodSync(dir, 0o755);
  // The machine's "disk": a filesystem of its own at dir/disk, moved away and back (as a disk that
  // is not mounted yet after a reboot). This runs in a mount namespace of its own.
  const disk = path.join(dir, 'disk');
  const away = path.join(dir, 'away');
  fs.mkdirSync(disk, { mode: 0o755 });
  fs.mkdirSync(away, { mode: 0o755 });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0755', 'nsbox-disk', disk]);
  const rootfs = path.join(disk, 'rootfs');
  const own = userns.idRangePool().ranges[0];
  shiftedRootfs(rootfs, own);
  const kids = [];
  try {
    const m = await Machine.start({ name: 'db', rootfs, userns: true, stateDir });
    const chown = await m.run(['/bin/chown', '1:1', '/']);  // the machine's root changes its own "/"
    await m.stop({ timeout: 5000 });
    await m.destroy();
    execFileSync('mount', ['--move', disk, away]);
    const c = spawn({ rootfs: bb, userns: true, command: ['/bin/sh', '-c', 'cat /proc/self/uid_map; exec sleep 60'] });
    kids.push(c);
    const whileAway = await rangeOf(c);
    execFileSync('mount', ['--move', away, disk]);
    const again = await Machine.start({ name: 'db', rootfs, userns: true, stateDir });
    const back = hostRoot((await again.run(['/bin/cat', '/proc/self/uid_map'])).stdout.toString());
    await again.stop({ timeout: 5000 });
    return { own: own.uid, chownExit: chown.exitCode, whileAway, back, reserved: fs.readdirSync(RESERVE) };
  } finally {
    await cleanup(kids);
    try {
      execFileSync('umount', [disk]);
    } catch {
      /* not mounted there */
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
};

scenarios[process.argv[2]](process.argv[3]).then(
  (r) => console.log(JSON.stringify(r)),
  (e) => {
    console.log(JSON.stringify({ crashed: errInfo(e), stack: e.stack }));
    process.exitCode = 1;
  },
);
