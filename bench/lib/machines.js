// Machines for the benchmark: a fleet that remembers every machine it started so that all of them
// are stopped and destroyed at the end, also on an error or Ctrl-C.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

class Fleet {
  constructor(nsbox, rootfs) {
    this.nsbox = nsbox;
    this.rootfs = rootfs;
    this.stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-bench-state-'));
    this.live = new Set();
    this.seq = 0;
    this.prefix = `nsb${process.pid}`;
  }

  /** Starts one ephemeral builtin-init machine and tracks it. */
  async start() {
    const name = `${this.prefix}-${this.seq++}`;
    const m = await this.nsbox.Machine.start({ name, rootfs: this.rootfs, ephemeral: true, stateDir: this.stateDir });
    this.live.add(m);
    return m;
  }

  /** Starts `count` machines, `concurrency` at a time; returns them and the wall time in ms. */
  async startMany(count, concurrency = 8) {
    const out = [];
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: Math.min(concurrency, count) }, async () => {
        while (next < count) {
          next++;
          out.push(await this.start());
        }
      }),
    );
    return { machines: out, ms: performance.now() - t0 };
  }

  /** Stops and destroys one machine (halt, then SIGKILL after `timeout`). */
  async remove(m, timeout = 5000) {
    try {
      await m.stop({ timeout });
    } catch {
      try {
        m.kill('SIGKILL');
        await m.stop({ timeout: 2000 });
      } catch {
        /* reported by the leftover check */
      }
    }
    try {
      await m.destroy();
    } catch {
      /* reported by the leftover check */
    }
    this.live.delete(m);
  }

  async removeMany(ms, concurrency = 16) {
    const list = [...ms];
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(concurrency, list.length) }, async () => {
        while (next < list.length) await this.remove(list[next++]);
      }),
    );
  }

  /** Everything this fleet started, gone; the state directory removed. */
  async cleanup() {
    await this.removeMany(this.live);
    // (The state directory's lock file, .lock, is no machine's.)
    const left = fs.existsSync(this.stateDir) ? fs.readdirSync(this.stateDir).filter((n) => n !== '.lock') : [];
    if (left.length === 0) fs.rmSync(this.stateDir, { recursive: true, force: true });
    return left;
  }
}

function meminfo() {
  const out = {};
  for (const l of fs.readFileSync('/proc/meminfo', 'utf8').split('\n')) {
    const m = /^(\w+(?:\(\w+\))?):\s+(\d+)/.exec(l);
    if (m) out[m[1]] = Number(m[2]); // kB
  }
  return out;
}

/** Pss and Rss (kB) of one process from smaps_rollup, or null if it is gone. */
function pssOf(pid) {
  try {
    const t = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    return { pss: Number(/^Pss:\s+(\d+)/m.exec(t)[1]), rss: Number(/^Rss:\s+(\d+)/m.exec(t)[1]) };
  } catch {
    return null;
  }
}

/** The pids in a machine's cgroup (host view), or just its PID 1 where there is no cgroup. */
function machinePids(info) {
  if (info.cgroup) {
    const pids = [];
    const walk = (d) => {
      try {
        for (const p of fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n')) if (p) pids.push(Number(p));
        for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
      } catch {
        /* gone */
      }
    };
    walk(info.cgroup);
    if (pids.length) return pids;
  }
  return [info.pid];
}

module.exports = { Fleet, meminfo, pssOf, machinePids };
