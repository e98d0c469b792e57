'use strict';
// Section 5 of the benchmark (bench/sections/systemd.js): a Debian systemd boot to "ready" plus
// its stop, nsbox against systemd-nspawn -b on the same rootfs, the two taking turns.
//   nsbox:  Machine.start({ init: ['/sbin/init'], ephemeral: true, waitReady: true }) then m.stop()
//   nspawn: systemd-nspawn -D ROOTFS --volatile=overlay -b --register=no --keep-unit --private-network
//           then, from Node, `nsenter -t PID1 -a systemctl is-system-running --wait` (the same check
//           nsbox's waitReady makes), then SIGRTMIN+3 to its PID 1 (what m.stop() sends to a
//           systemd) and the exit of systemd-nspawn.
// Both: writes go to a throw-away overlay on tmpfs, the network namespace has lo only. "Ready" is
// `running` or `degraded` (systemd's boot finished); the state reached is reported.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const cp = require('node:child_process');

const { NspawnSlots, which } = require('./peers');

const SIGRTMIN_3 = 37; // glibc's SIGRTMIN is 34

function debianRootfs() {
  const dir = process.env.NSBOX_DEBIAN_ROOTFS || '/var/cache/nsbox-test/debian';
  if (!fs.existsSync(path.join(dir, 'lib/systemd/systemd'))) {
    return { rootfs: null, reason: `no Debian rootfs with systemd at ${dir} (bash test/fixtures/debian-rootfs.sh builds it, or set NSBOX_DEBIAN_ROOTFS)` };
  }
  return { rootfs: dir, reason: null };
}

function run(argv) {
  return new Promise((resolve, reject) => {
    const c = cp.spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', () => {});
    c.once('error', reject);
    c.once('close', (code, sig) => resolve({ code, sig, out: out.trim() }));
  });
}

/** The pid of nspawn's child whose comm is `systemd` (the container's PID 1), polled. */
async function pid1Of(nspawnPid, deadline) {
  for (;;) {
    let kids = [];
    try {
      kids = fs.readFileSync(`/proc/${nspawnPid}/task/${nspawnPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    } catch {
      throw new Error('systemd-nspawn exited before its container started');
    }
    for (const k of kids) {
      try {
        if (fs.readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'systemd') return Number(k);
      } catch {
        /* gone */
      }
    }
    if (Date.now() > deadline) throw new Error('no systemd below systemd-nspawn within the time allowed');
    await new Promise((r) => setTimeout(r, 2));
  }
}

class NspawnBoot {
  constructor(rootfs, tag) {
    this.rootfs = rootfs;
    this.exe = which('systemd-nspawn');
    this.nsenter = which('nsenter');
    this.slots = new NspawnSlots(`${tag}-boot`);
    this.seq = 0;
    this.live = new Set();
  }
  argv(name) {
    return [this.exe, '-D', this.rootfs, '--volatile=overlay', '-b', '--register=no', '--keep-unit', '--quiet', '--private-network', `--machine=${name}`];
  }
  /** One boot to ready and stop: { readyMs, stopMs, state }. */
  async once(now) {
    const name = `${this.slots.tag}-${this.seq++}`;
    const dirs = this.slots.ensure(0);
    const moves = dirs.map((d) => `echo 0 > ${d}/cgroup.procs`).join(' && ');
    const t0 = now();
    const c = cp.spawn('/bin/sh', ['-c', `${moves} && exec "$@"`, 'sh', ...this.argv(name)], { stdio: 'ignore' });
    this.live.add(c);
    const exited = new Promise((resolve) => c.once('exit', resolve));
    try {
      const deadline = Date.now() + 120000;
      const p1 = await pid1Of(c.pid, deadline);
      // As nsbox's waitReady does: until systemd has a bus to answer on, ask again (5 ms, doubling
      // up to 200 ms between tries).
      let r;
      for (let pause = 5; ; pause = Math.min(pause * 2, 200)) {
        r = await run([this.nsenter, '-t', String(p1), '-a', 'systemctl', 'is-system-running', '--wait']);
        if (r.out === 'running' || r.out === 'degraded' || Date.now() > deadline || c.exitCode !== null) break;
        await new Promise((res) => setTimeout(res, pause));
      }
      const t1 = now();
      if (r.out !== 'running' && r.out !== 'degraded') throw new Error(`systemd in systemd-nspawn ended up '${r.out}' (exit ${r.code ?? r.sig})`);
      process.kill(p1, SIGRTMIN_3);
      await exited;
      const t2 = now();
      return { readyMs: t1 - t0, stopMs: t2 - t1, state: r.out };
    } finally {
      if (c.exitCode === null && c.signalCode === null) {
        // Killing systemd-nspawn alone would leave its container running: kill the whole slot.
        this.killSlot();
        await exited;
      }
      this.live.delete(c);
    }
  }
  /** cgroup.kill on the slot's v2 cgroup: systemd-nspawn and its container, everything in it. */
  killSlot() {
    for (const d of this.slots.dirs(0)) {
      try {
        fs.writeFileSync(path.join(d, 'cgroup.kill'), '1');
      } catch {
        /* not the v2 hierarchy (or already gone) */
      }
    }
  }
  async cleanup() {
    if (this.live.size) {
      this.killSlot();
      await new Promise((r) => setTimeout(r, 200));
    }
    return this.slots.cleanup();
  }
  command() {
    return `systemd-nspawn ${this.argv('NAME').slice(1).join(' ')}; then nsenter -t PID1 -a systemctl is-system-running --wait; then kill -RTMIN+3 PID1 and wait for systemd-nspawn to exit`;
  }
}

class NsboxBoot {
  constructor(nsbox, rootfs) {
    this.nsbox = nsbox;
    this.rootfs = rootfs;
    this.stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-bench-boot-'));
    this.seq = 0;
  }
  async once(now) {
    const t0 = now();
    const m = await this.nsbox.Machine.start({ name: `boot${this.seq++}`, rootfs: this.rootfs, init: ['/sbin/init'], ephemeral: true, stateDir: this.stateDir, waitReady: true, readyTimeout: 120000 });
    const t1 = now();
    // Which of the two it reached (not timed).
    const state = (await m.run(['systemctl', 'is-system-running'])).stdout.toString().trim();
    const t1b = now();
    try {
      await m.stop({ timeout: 30000 });
    } finally {
      const t2 = now();
      await m.destroy().catch(() => {});
      this.last = { readyMs: t1 - t0, stopMs: t2 - t1b, state };
    }
    return this.last;
  }
  async cleanup() {
    const left = [];
    for (const info of await this.nsbox.Machine.list({ stateDir: this.stateDir })) {
      const m = await this.nsbox.Machine.get(info.name, { stateDir: this.stateDir });
      await m.stop({ timeout: 5000 }).catch(() => {});
      await m.destroy().catch((e) => left.push(`${info.name}: ${e.message}`));
    }
    if (left.length === 0) fs.rmSync(this.stateDir, { recursive: true, force: true });
    return left;
  }
  command() {
    return "Machine.start({ rootfs, init: ['/sbin/init'], ephemeral: true, waitReady: true }), then m.stop()";
  }
}

module.exports = { debianRootfs, NspawnBoot, NsboxBoot };
