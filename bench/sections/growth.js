'use strict';
// Section 4 of the benchmark: growth. The app round trip with idle machines running (and the host
// memory each idle machine takes), and with more and more read-only bind mounts.
const { setTimeout: sleep } = require('node:timers/promises');

const { summarize, f1, f2, fx, ratio, table } = require('../lib/stats');
const { mountsRootfs, signature } = require('../lib/rootfs');
const { spawnWait } = require('../lib/peers');
const { Fleet, meminfo, pssOf, machinePids } = require('../lib/machines');
const { interleaved } = require('../lib/measure');
const { cleanups } = require('../lib/cleanup');

async function run({ O, log, settle, nsbox, rootfs, R }) {
  const out = [];
  // --- idle machines
  const fleet = new Fleet(nsbox, rootfs);
  cleanups.push(() => fleet.cleanup().then((left) => left.map((n) => `machine state left in ${fleet.stateDir}: ${n}`)));
  const floor = { id: 'child_process', run: () => spawnWait(['/bin/true'], { stdio: 'pipe', event: 'close' }) };
  const nb = {
    id: 'nsbox',
    run: async () => {
      const r = await nsbox.run({ rootfs, command: ['/bin/true'] });
      if (r.exitCode !== 0) throw new Error(`exit ${r.exitCode ?? r.signal}`);
    },
  };
  R.growthIdle = [];
  R.memory = null;
  let running = [];
  const setLevel = async (level) => {
    if (running.length > level) {
      const drop = running.splice(level);
      await fleet.removeMany(drop);
      return null;
    }
    const { machines, ms } = await fleet.startMany(level - running.length);
    running.push(...machines);
    return ms;
  };
  const mem = O.memMachines;
  // Levels are visited up and back down (0, 100, 500, 100, 0): each level but the top is measured
  // twice, n/2 round trips per visit, and the samples are pooled, so a linear drift of the host over
  // the section cancels out instead of looking like growth.
  const levels = [...new Set(O.idle)].sort((x, y) => x - y);
  const visits = [...levels, ...levels.slice(0, -1).reverse()];
  const per = new Map(levels.map((l) => [l, { nsbox: [], child: [], visits: [], startMs: null, rss: 0 }]));
  for (const level of visits) {
    if (level > 0 && mem > 0 && !R.memory) {
      // The memory figure: host MemAvailable before and after starting `mem` idle machines, settled.
      log(`growth: host memory of ${mem} idle builtin-init machines`);
      await setLevel(0);
      await settle();
      const a = meminfo();
      const { machines, ms } = await fleet.startMany(mem);
      running.push(...machines);
      await sleep(1000);
      const b = meminfo();
      let pss = 0;
      let rss = 0;
      let procs = 0;
      let cgMem = 0;
      let cgMemKnown = 0;
      for (const m of running) {
        const info = await m.info();
        for (const pid of machinePids(info)) {
          const p = pssOf(pid);
          if (p) {
            pss += p.pss;
            rss += p.rss;
            procs++;
          }
        }
        const st = await m.stats();
        if (st.memoryCurrentBytes !== undefined) {
          cgMem += st.memoryCurrentBytes;
          cgMemKnown++;
        }
      }
      const d = (k) => (a[k] !== undefined && b[k] !== undefined ? b[k] - a[k] : NaN);
      R.memory = {
        machines: mem,
        startMs: ms,
        memAvailableDropKiB: -d('MemAvailable'),
        memFreeDropKiB: -d('MemFree'),
        slabKiB: d('Slab'),
        sUnreclaimKiB: d('SUnreclaim'),
        kernelStackKiB: d('KernelStack'),
        pageTablesKiB: d('PageTables'),
        shmemKiB: d('Shmem'),
        pssKiB: pss,
        rssKiB: rss,
        processes: procs,
        cgroupMemoryBytes: cgMemKnown ? cgMem : null,
        cgroupMemoryMachines: cgMemKnown,
      };
      R.memory.attributableKiB = pss + R.memory.slabKiB + R.memory.kernelStackKiB + R.memory.pageTablesKiB + R.memory.shmemKiB;
    }
    const startMs = await setLevel(level);
    await settle();
    const top = level === levels[levels.length - 1];
    const n = top ? O.growthN : Math.ceil(O.growthN / 2);
    log(`growth: app round trip with ${running.length} idle machines (n=${n})`);
    const res = await interleaved([nb, floor], n, Math.min(O.warmup, 10));
    const L = per.get(level);
    L.nsbox.push(...res.get(nb).samples);
    L.child.push(...res.get(floor).samples);
    L.visits.push(res.get(nb).p50);
    if (startMs !== null && L.startMs === null && level > 0) L.startMs = startMs;
    L.rss = Math.max(L.rss, process.memoryUsage().rss / 1048576);
    L.failures = (L.failures || 0) + res.get(nb).failures + res.get(floor).failures;
  }
  await setLevel(0);
  await fleet.cleanup();
  cleanups.pop();
  R.growthIdle = levels.map((l) => {
    const L = per.get(l);
    return { idle: l, nsbox: summarize(L.nsbox), childProcess: summarize(L.child), visitP50s: L.visits, startMs: L.startMs, nodeRssMiB: L.rss, failures: L.failures };
  });
  const g0 = R.growthIdle[0];
  R.growthIdleBaseline = { nsboxP50: g0.nsbox.p50, childProcessP50: g0.childProcess.p50 };
  out.push(
    `**App round trip with idle builtin-init machines running** (nsbox \`run()\` on the busybox rootfs, child_process interleaved with it as a control for host-wide noise; levels visited ${visits.join(' → ')}, samples pooled per level)\n`,
    table(
      ['idle machines', 'n', 'nsbox p50 ms', 'p90 ms', 'p99 ms', 'p50 ÷ with 0', 'child_process p50 ms', 'child_process ÷ with 0', 'nsbox p50 per visit ms', 'starting them took s', 'Node RSS MiB'],
      R.growthIdle.map((g) => [
        g.idle,
        g.nsbox.n,
        f2(g.nsbox.p50),
        f2(g.nsbox.p90),
        f2(g.nsbox.p99),
        fx(ratio(g.nsbox.p50, g0.nsbox.p50)),
        f2(g.childProcess.p50),
        fx(ratio(g.childProcess.p50, g0.childProcess.p50)),
        g.visitP50s.map(f2).join(', '),
        g.startMs === null ? '—' : f2(g.startMs / 1000),
        f1(g.nodeRssMiB),
      ]),
    ),
  );

  if (R.memory) {
    const M = R.memory;
    const per = (kib) => `${f1(kib / M.machines)} KiB (${f2(kib / M.machines / 1024)} MiB)`;
    out.push(
      `\n**Host memory per idle builtin-init machine** (${M.machines} ephemeral machines, started in ${f2(M.startMs / 1000)} s; /proc/meminfo read 1 s after the last start and before the first, nothing else started in between)\n`,
      table(
        ['method', `total for ${M.machines}`, 'per machine'],
        [
          ['MemAvailable drop (host-wide: user + kernel memory, incl. namespaces, mounts, overlay, tmpfs)', `${(M.memAvailableDropKiB / 1024).toFixed(1)} MiB`, per(M.memAvailableDropKiB)],
          ['  Slab delta (of which SUnreclaim)', `${(M.slabKiB / 1024).toFixed(1)} MiB (${(M.sUnreclaimKiB / 1024).toFixed(1)} MiB)`, per(M.slabKiB)],
          ['  KernelStack + PageTables delta', `${((M.kernelStackKiB + M.pageTablesKiB) / 1024).toFixed(1)} MiB`, per(M.kernelStackKiB + M.pageTablesKiB)],
          ['  Shmem delta (tmpfs)', `${(M.shmemKiB / 1024).toFixed(1)} MiB`, per(M.shmemKiB)],
          [`Sum of PSS of the machines' processes (${M.processes}, /proc/PID/smaps_rollup)`, `${(M.pssKiB / 1024).toFixed(1)} MiB`, per(M.pssKiB)],
          ['Attributable sum: PSS + Slab + KernelStack + PageTables + Shmem deltas', `${(M.attributableKiB / 1024).toFixed(1)} MiB`, per(M.attributableKiB)],
          [
            'cgroup memory.current of the machines',
            M.cgroupMemoryBytes === null ? 'not available (no memory controller in the v2 hierarchy on this host)' : `${(M.cgroupMemoryBytes / 1048576).toFixed(1)} MiB`,
            M.cgroupMemoryBytes === null ? 'n/a' : per(M.cgroupMemoryBytes / 1024),
          ],
        ],
      ),
    );
  }

  // --- bind mounts
  const maxMounts = Math.max(0, ...O.mounts);
  if (O.mounts.length) {
    const mr = mountsRootfs(rootfs, Math.max(1, maxMounts));
    const before = signature(mr.rootfs);
    const levels = [0, ...O.mounts.filter((k) => k > 0)];
    const cs = levels.map((k) => {
      const mounts = Array.from({ length: k }, (_, i) => ({ type: 'bind', source: mr.source, target: `/m/${i}`, readonly: true }));
      return {
        id: `mounts-${k}`,
        k,
        run: async () => {
          const r = await nsbox.run({ rootfs: mr.rootfs, command: ['/bin/true'], mounts });
          if (r.exitCode !== 0) throw new Error(`exit ${r.exitCode ?? r.signal}`);
        },
      };
    });
    log(`growth: app round trip with ${levels.join(', ')} read-only bind mounts (n=${O.growthN}, interleaved)`);
    const res = await interleaved(cs, O.growthN, Math.min(O.warmup, 10));
    R.growthMounts = cs.map((c) => ({ mounts: c.k, ...res.get(c) }));
    const unchanged = signature(mr.rootfs) === before;
    R.growthMountsRootfsUnchanged = unchanged;
    const m0 = R.growthMounts[0];
    out.push(
      `\n**App round trip with read-only bind mounts** (\`mounts: [{ type: 'bind', source, target: '/m/i', readonly: true }]\` on a copy of the rootfs whose /m/0…/m/${maxMounts - 1} exist; rootfs tree ${unchanged ? 'unchanged afterwards' : 'CHANGED by the runs'})\n`,
      table(
        ['bind mounts', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'p50 ÷ with 0', 'failures'],
        R.growthMounts.map((g) => [g.mounts, g.n, f2(g.p50), f2(g.p90), f2(g.p99), fx(ratio(g.p50, m0.p50)), g.failures ? `${g.failures} (${g.firstError})` : '0']),
      ),
    );
  }
  return out.join('\n');
}

module.exports = { key: 'growth', number: 4, title: () => 'Growth', run };
