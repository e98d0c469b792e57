// The in-process halves of kill-review.test.js (the review of feat/killfaults, #17). Each prints
// one JSON line. Cgroups go under a cgroup parent of the test's own, never nsbox's shared base.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const lib = path.join(__dirname, '..', '..');
const { spawn, run, Machine } = require(lib);
const { busyboxRootfs } = require('../helpers');

const bb = busyboxRootfs().rootfs;
const hostRoot = (t) => Number(t.trim().split('\n')[0].trim().split(/\s+/)[1]);
async function firstLine(s) {
  let b = '';
  for await (const c of s) {
    b += c;
    if (b.includes('\n')) return b;
  }
  return b;
}
const out = (o) => console.log(JSON.stringify(o));

const scenarios = {
  /** In a private mount + pid namespace with tmpfs over /run/nsbox: a plain Machine.list() and the id leases. */
  async listLeases() {
    const mi = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    if (!mi.includes(' /run/nsbox ') || process.pid > 1000) throw new Error('needs the private /run/nsbox of kill-review.test.js');
    const cmd = ['/bin/sh', '-c', 'cat /proc/self/uid_map; exec sleep 60'];
    const c1 = spawn({ rootfs: bb, userns: true, command: cmd });
    const r = { r1: hostRoot(await firstLine(c1.stdout)) };
    // The lease directory's mtime is its last lease change: 10 s later a list() takes it for an abandoned start.
    await new Promise((res) => setTimeout(res, 10500));
    await Machine.list();
    r.after = fs.readdirSync('/run/nsbox');
    const c2 = spawn({ rootfs: bb, userns: true, command: cmd });
    r.r2 = hostRoot(await firstLine(c2.stdout));
    r.c1Map = hostRoot(fs.readFileSync(`/proc/${c1.pid}/uid_map`, 'utf8'));
    for (const c of [c1, c2]) {
      c.kill('SIGKILL');
      await c.wait().catch(() => {});
    }
    out(r);
  },
  /** A container held in the given cgroup parent; says when it is up and how it ended. */
  async holdContainer(parent) {
    const c = spawn({ rootfs: bb, cgroupParent: parent, command: ['/bin/sh', '-c', 'echo up; exec sleep 30'] });
    await firstLine(c.stdout);
    out({ ready: true, pid: process.pid });
    const r = await c.wait();
    out({ exit: { exitCode: r.exitCode, signal: r.signal } });
  },
  /** One short container in the given cgroup parent (its first create sweeps the parent). */
  async oneRun(parent) {
    const r = await run({ rootfs: bb, cgroupParent: parent, command: ['/bin/true'] });
    out({ exitCode: r.exitCode, nested: require(path.join(lib, 'dist', 'lease')).nestedPidns() });
  },
  /** A machine start in stateDir; how it ended. */
  async startMachine(stateDir) {
    try {
      const m = await Machine.start({ name: 'victim', rootfs: bb, ephemeral: true, stateDir });
      out({ started: true });
      await m.stop({ timeout: 2000 }).catch(() => {});
      await m.destroy().catch(() => {});
    } catch (e) {
      out({ startFailed: { code: e.code, step: e.step, message: e.message } });
    }
  },
  async list(stateDir) {
    out({ list: (await Machine.list({ stateDir })).map((m) => m.name) });
  },
};

scenarios[process.argv[2]](...process.argv.slice(3)).catch((e) => {
  out({ error: String(e && e.stack) });
  process.exit(1);
});
