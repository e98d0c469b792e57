// Runs as the process of an OCI bundle that test/pod/bundles.test.js makes (runc or crun), started
// through a shell, and prints JSON lines of what nsbox reports there:
//   {"phase":"hold", ...}  a container is running (`sleep <marker>`): the test looks at it from the
//                          host, then makes /mnt/go
//   {"phase":"done", ...}  everything else: the pod as this process sees it, probe(), a plain start,
//                          a start with a memory limit, an OOM under the limit, what is left over.
// Usage: bundle-runner.js ROOTFS MARKER [hold]
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const nsbox = require('../..');
const { detectCgroupHost } = require('../../dist/cgroup');

const [rootfs, marker, hold] = process.argv.slice(2);
const fields = (e) => ({ name: e.name, code: e.code, errno: e.errno, syscall: e.syscall, step: e.step, path: e.path, message: e.message });
const read = (p) => {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch (e) {
    return `(${e.code})`;
  }
};
const line = (o) => process.stdout.write(JSON.stringify(o) + '\n');

/** The cgroup v2 line of /proc/<pid>/cgroup (as this pod sees it). */
const v2Of = (pid) => /^0::(.*)$/m.exec(read(`/proc/${pid}/cgroup`))?.[1] ?? null;

/** The directories below `dir`, depth first, relative to it. */
function tree(dir, rel = '') {
  let out = [];
  let names = [];
  try {
    names = fs.readdirSync(path.join(dir, rel), { withFileTypes: true });
  } catch {
    return out;
  }
  for (const d of names) {
    if (!d.isDirectory()) continue;
    const r = path.join(rel, d.name);
    out.push(r);
    out = out.concat(tree(dir, r));
  }
  return out;
}

/** The pid (in this pod) of the process running `sleep <marker>`, if one does. */
function markerPid() {
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const argv = read(`/proc/${e}/cmdline`).split('\0');
    if (/sleep$/.test(argv[0]) && argv[1] === marker) return Number(e);
  }
  return null;
}

async function attempt(fn) {
  try {
    return await fn();
  } catch (e) {
    return { error: fields(e) };
  }
}

/** Until the test has looked from the host: it makes /mnt/go (a directory of its own, bound here). */
async function released() {
  while (!fs.existsSync('/mnt/go')) await new Promise((r) => setTimeout(r, 20));
}

(async () => {
  const status = read('/proc/self/status');
  const capEff = BigInt('0x' + (/^CapEff:\s+([0-9a-f]+)/m.exec(status)?.[1] ?? '0'));
  const host = detectCgroupHost();
  const out = {
    phase: 'done',
    seccomp: /^Seccomp:\s+(\d+)/m.exec(status)?.[1] ?? null,
    sysAdmin: (capEff & (1n << 21n)) !== 0n,
    uidMap: read('/proc/self/uid_map').trim().split(/\s+/).join(' '),
    self: v2Of('self'),
    ppidComm: read(`/proc/${process.ppid}/comm`).trim(),
    cgroup: { mode: host.mode, mountPoint: host.mountPoint, parent: host.parent, writable: host.writable, reason: host.reason },
  };
  const p = await nsbox.probe();
  out.probe = { root: p.root, rootless: p.userns.rootless, blockedBy: p.userns.blockedBy, cgroup: p.cgroup, trials: p.trials, procModes: p.procModes };

  if (hold) {
    // A container that stays while the test looks at it from the host: its pid (as this pod sees
    // it), its cgroup, and the memory limit in that cgroup.
    const opts = { rootfs, command: ['/bin/sleep', marker] };
    if (hold === 'limit') opts.limits = { memory: '48M' };
    const held = await attempt(async () => {
      const c = nsbox.spawn(opts);
      let gone = false;
      const exited = c.wait().finally(() => (gone = true));
      // Until `sleep <marker>` runs (its pid in this pod), or the container is gone.
      let pid = null;
      while (!gone && !(pid = markerPid())) await new Promise((r) => setTimeout(r, 20));
      const cg = v2Of(pid ?? c.pid);
      const info = { pid: c.pid, markerPid: pid, cgroup: cg, nodeCgroup: v2Of('self') };
      if (cg && host.mountPoint) info.memoryMax = read(path.join(host.mountPoint, cg, 'memory.max')).trim();
      line({ phase: 'hold', ...info });
      await released();
      c.kill('SIGKILL');
      const x = await exited;
      return { ...info, signal: x.signal };
    });
    if (held.error) line({ phase: 'hold', error: held.error });
    out.held = held;
  }

  out.start = await attempt(async () => {
    const r = await nsbox.run({ rootfs, command: ['/bin/true'] });
    return { exitCode: r.exitCode };
  });
  {
    // The opt-in a mount.proc EPERM names: no procfs, /proc an empty read-only directory (tried in
    // every shape: it runs whether or not the kernel refuses a fresh procfs there).
    out.startNoProc = await attempt(async () => {
      const look = 'echo "$(ls -A /proc | wc -l) entries, pid $$"; touch /proc/x 2>/dev/null && echo writable || echo read-only';
      const r = await nsbox.run({ rootfs, command: ['/bin/sh', '-c', look], proc: 'none' });
      return { exitCode: r.exitCode, stdout: r.stdout.toString() };
    });
  }
  if (out.start.error?.step === 'network.loopback') {
    // The remedy the message gives: no lo to bring up.
    out.startNoNetwork = await attempt(async () => {
      const r = await nsbox.run({ rootfs, command: ['/bin/true'], network: 'none' });
      return { exitCode: r.exitCode };
    });
  }
  out.limit = await attempt(async () => {
    const r = await nsbox.run({ rootfs, command: ['/bin/true'], limits: { memory: '64M' } });
    return { exitCode: r.exitCode };
  });
  if (!out.limit.error) {
    // The limit holds: a shell doubling a string in a 32M container is killed by the OOM killer.
    out.oom = await attempt(async () => {
      const r = await nsbox.run({ rootfs, command: ['/bin/sh', '-c', 'x=aaaaaaaa; while :; do x=$x$x; done'], limits: { memory: '32M' } });
      return { exitCode: r.exitCode, signal: r.signal, oomKilled: r.oomKilled, peak: r.stats.memoryPeakBytes };
    });
  }
  // What nsbox left in this process's cgroup (nothing, once every container is gone).
  out.left = host.parent ? tree(host.parent) : null;
  line(out);
})().catch((e) => {
  line({ phase: 'done', crashed: String(e && e.stack) });
  process.exitCode = 1;
});
