'use strict';
// Section 1 of the benchmark: the app round trip, `/bin/true` spawned and its exit seen in JS,
// nsbox beside child_process, the kernel floor and the peers, sequential and interleaved.
const { f2, fx, ratio, table } = require('../lib/stats');
const { BLOCK, interleaved } = require('../lib/measure');

/** The round trip's contenders that take a few ms or less: nsbox, child_process and the kernel floor. */
const isFast = (c) => /^(nsbox|child_process|floor_)/.test(c.id);

async function run({ O, log, cs, R }) {
  log(`round trip: ${cs.map((c) => c.id).join(', ')}; n=${O.nFast} for nsbox, child_process and the kernel floor, n=${O.n} for the other peers (warm-up ${O.warmup}), interleaved in blocks of ${BLOCK}`);
  const res = await interleaved(cs, O.n, O.warmup, O.nFast, isFast);
  R.roundtrip = cs.map((c) => ({ id: c.id, label: c.label, command: c.command, ...res.get(c) }));
  const get = (id) => R.roundtrip.find((r) => r.id === id);
  const floor = get('child_process');
  const nb = get('nsbox');
  const rows = R.roundtrip.map((r) => [
    r.label,
    r.n,
    f2(r.p50),
    f2(r.p90),
    f2(r.p99),
    fx(ratio(r.p50, floor?.p50)),
    r.id === 'nsbox' || r.id.startsWith('child_process') || r.reference ? '—' : fx(ratio(r.p50, nb?.p50)),
    r.failures ? `${r.failures} (${r.firstError})` : '0',
  ]);
  return table(['runtime', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'p50 ÷ child_process p50', 'p50 ÷ nsbox run() p50', 'failures'], rows);
}

module.exports = {
  key: 'roundtrip',
  number: 1,
  title: () => 'App round trip: `/bin/true` on the busybox rootfs, spawn → exit seen in JS, sequential',
  run,
  notes: ({ cs }) =>
    '\nCommands:\n\n' +
    cs.map((c) => `- ${c.label}: \`${c.command}\``).join('\n') +
    '\n\nThe peers are started with `child_process.spawn(…, { stdio: \'ignore\' })` and resolved on `exit`. Contenders take turns in blocks of 10 round trips (after their own warm-up), so drift of the host affects all alike.',
};
