'use strict';
// Section 3 of the benchmark: machines with the builtin init: start to the first exec's result,
// stop and destroy, and exec into a running machine beside nsenter.
const { summarize, f2, fx, ratio, table, now } = require('../lib/stats');
const { spawnWait, which } = require('../lib/peers');
const { Fleet } = require('../lib/machines');
const { interleaved } = require('../lib/measure');
const { cleanups } = require('../lib/cleanup');

async function run({ O, log, nsbox, rootfs, R }) {
  const fleet = new Fleet(nsbox, rootfs);
  cleanups.push(() => fleet.cleanup().then((left) => left.map((n) => `machine state left in ${fleet.stateDir}: ${n}`)));
  const starts = { total: [], start: [], firstExec: [], stopDestroy: [] };
  const warm = Math.min(3, O.starts);
  log(`machine: ${O.starts} starts to first exec result (after ${warm} warm-up starts), stop+destroy each`);
  for (let i = 0; i < warm + O.starts; i++) {
    const t0 = now();
    const m = await fleet.start();
    const t1 = now();
    const r = await m.run(['/bin/true']);
    const t2 = now();
    if (r.exitCode !== 0) throw new Error(`first exec in ${m.name}: exit ${r.exitCode ?? r.signal}`);
    await fleet.remove(m);
    const t3 = now();
    if (i < warm) continue;
    starts.total.push(t2 - t0);
    starts.start.push(t1 - t0);
    starts.firstExec.push(t2 - t1);
    starts.stopDestroy.push(t3 - t2);
  }
  R.machineStart = Object.fromEntries(Object.entries(starts).map(([k, v]) => [k, summarize(v)]));

  log(`machine: exec round trip into a running machine vs nsenter, n=${O.execN}`);
  const m = await fleet.start();
  const nsenter = which('nsenter');
  const cs = [
    {
      id: 'exec',
      label: "m.run(['/bin/true'])",
      run: async () => {
        const r = await m.run(['/bin/true']);
        if (r.exitCode !== 0) throw new Error(`exec exit ${r.exitCode ?? r.signal}`);
      },
    },
  ];
  if (nsenter) cs.push({ id: 'nsenter', label: `nsenter -t ${m.pid} -a /bin/true (child_process, pipes, 'close')`, run: () => spawnWait([nsenter, '-t', String(m.pid), '-a', '/bin/true'], { stdio: 'pipe', event: 'close' }) });
  cs.push({
    id: 'exec_ignore',
    label: "m.exec(['/bin/true'], { stdio: 'ignore' }).wait()",
    run: async () => {
      const r = await m.exec(['/bin/true'], { stdio: 'ignore' }).wait();
      if (r.exitCode !== 0) throw new Error(`exec exit ${r.exitCode ?? r.signal}`);
    },
  });
  if (nsenter) cs.push({ id: 'nsenter_ignore', label: "nsenter -t PID -a /bin/true (stdio 'ignore', 'exit')", run: () => spawnWait([nsenter, '-t', String(m.pid), '-a', '/bin/true']) });
  const res = await interleaved(cs, O.execN, O.warmup);
  R.machineExec = cs.map((c) => ({ id: c.id, label: c.label, ...res.get(c) }));
  await fleet.remove(m);
  await fleet.cleanup();
  cleanups.pop();

  const ms = R.machineStart;
  const ex = (id) => R.machineExec.find((r) => r.id === id);
  const rows = [
    ['Machine.start → first m.run([\'/bin/true\']) result', ms.total.n, f2(ms.total.p50), f2(ms.total.p90), f2(ms.total.p99), ''],
    ['  of which Machine.start({ ephemeral: true }) resolves', ms.start.n, f2(ms.start.p50), f2(ms.start.p90), f2(ms.start.p99), ''],
    ['  of which the first m.run() round trip', ms.firstExec.n, f2(ms.firstExec.p50), f2(ms.firstExec.p90), f2(ms.firstExec.p99), ''],
    ['m.stop() + m.destroy() (builtin init, halt signal)', ms.stopDestroy.n, f2(ms.stopDestroy.p50), f2(ms.stopDestroy.p90), f2(ms.stopDestroy.p99), ''],
    ...R.machineExec.map((r) => {
      const base = r.id.endsWith('_ignore') ? ex('nsenter_ignore') : ex('nsenter');
      return [
        r.label + (r.failures ? ` — ${r.failures} failures (${r.firstError})` : ''),
        r.n,
        f2(r.p50),
        f2(r.p90),
        f2(r.p99),
        r.id.startsWith('exec') ? `${fx(ratio(r.p50, base?.p50))} of nsenter` : '',
      ];
    }),
  ];
  return table(['what', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'ratio'], rows);
}

module.exports = { key: 'machine', number: 3, title: () => 'Machines (builtin init, ephemeral, busybox rootfs)', run };
