'use strict';
// Section 2 of the benchmark: throughput, many containers at a fixed concurrency, with the event
// loop's delay meanwhile; the contenders take turns round by round.
const { f1, f2, fx, ratio, table } = require('../lib/stats');
const { loopMonitor, pool } = require('../lib/measure');

async function run({ O, log, settle, cs: all, R }) {
  // Contenders that are references or can only run one at a time have no throughput.
  const cs = all.filter((c) => !c.reference && !c.sequentialOnly);
  // Each contender's `total` containers run in `rounds` chunks, and the contenders take turns chunk
  // by chunk (waiting for the host to settle before each), so load that comes and goes on the host
  // is spread over all of them instead of hitting one.
  const rounds = Math.max(1, Math.min(O.rounds, O.total));
  const st = new Map();
  for (const c of cs) {
    log(`throughput: ${c.id}: warm-up (${Math.min(O.total, 2 * O.concurrency)} containers)`);
    await pool(Math.min(O.total, 2 * O.concurrency), O.concurrency, (slot) => c.run(slot));
    st.set(c, { ms: 0, done: 0, failures: 0, firstError: null, eldMax: 0, eldP99: 0, eldCount: 0, longest: 0, settles: [] });
  }
  for (let r = 0; r < rounds; r++) {
    const chunk = Math.floor(O.total / rounds) + (r < O.total % rounds ? 1 : 0);
    for (const c of cs) {
      const s = st.get(c);
      const q = await settle(O.quick ? 3000 : 15000);
      s.settles.push(q);
      log(`throughput: ${c.id}: round ${r + 1}/${rounds}, ${chunk} containers at concurrency ${O.concurrency} (host busy ${q.busyCpus.toFixed(2)} CPUs after ${f1(q.waitedMs / 1000)} s of settling)`);
      // A fresh histogram per round (one re-enabled after a pause would record the pause itself);
      // the rounds combine as the worst max and the worst p99.
      const stop = loopMonitor();
      const res = await pool(chunk, O.concurrency, (slot) => c.run(slot));
      const loop = stop();
      if (loop.count) {
        s.eldMax = Math.max(s.eldMax, loop.max);
        s.eldP99 = Math.max(s.eldP99, loop.p99);
        s.eldCount += loop.count;
      }
      s.ms += res.ms;
      s.done += chunk;
      s.failures += res.failures;
      s.firstError ??= res.firstError;
      s.longest = Math.max(s.longest, loop.longestStall);
    }
  }
  R.throughput = cs.map((c) => {
    const s = st.get(c);
    return {
      id: c.id,
      label: c.label,
      total: s.done,
      concurrency: O.concurrency,
      rounds,
      ms: s.ms,
      perSecond: ((s.done - s.failures) / s.ms) * 1000,
      failures: s.failures,
      firstError: s.firstError,
      loopDelayMaxMs: s.eldMax,
      loopDelayP99Ms: s.eldP99,
      loopDelaySamples: s.eldCount,
      loopLongestStallMs: s.longest,
      settleBusyCpusMax: Math.max(...s.settles.map((q) => q.busyCpus)),
    };
  });
  const floor = R.throughput.find((r) => r.id === 'child_process');
  const nb = R.throughput.find((r) => r.id === 'nsbox');
  const rows = R.throughput.map((r) => [
    r.label,
    r.total,
    r.concurrency,
    f2(r.ms / 1000),
    f1(r.perSecond),
    fx(ratio(r.perSecond, floor?.perSecond)),
    r.id === 'nsbox' || r.id.startsWith('child_process') ? '—' : fx(ratio(nb?.perSecond, r.perSecond)),
    r.loopDelaySamples ? f2(r.loopDelayMaxMs) : 'no sample',
    r.loopDelaySamples ? f2(r.loopDelayP99Ms) : 'no sample',
    r.loopDelaySamples,
    f2(r.loopLongestStallMs),
    r.failures ? `${r.failures} (${r.firstError})` : '0',
  ]);
  return table(
    ['runtime', 'containers', 'concurrency', 'wall s (sum of rounds)', 'containers/s', '÷ child_process', 'nsbox run() ÷ this', 'loop delay max ms', 'loop delay p99 ms (worst round)', 'delay samples', 'longest stall ms', 'failures'],
    rows,
  );
}

module.exports = {
  key: 'throughput',
  number: 2,
  title: (O) => `Throughput: ${O.total} containers at concurrency ${O.concurrency} (in ${O.rounds} rounds, contenders taking turns)`,
  run,
  notes: () =>
    '\nEvent loop: `perf_hooks.monitorEventLoopDelay({ resolution: 1 })` over each measured run (max and p99 of the histogram, which records whole timer intervals: an idle loop shows ≈ 1 ms; "delay samples" is its count). "Longest stall" is the longest gap between ticks of a 1 ms `setInterval` running alongside, including the gap up to the end of the run, which the histogram never records: a loop starved for the whole run has no histogram sample at all. Each contender re-spawns from its exit callback, as a job runner would. Each contender\'s containers run in rounds, the contenders taking turns round by round; before each round the bench waits for the host to settle (the previous round\'s network namespaces are torn down asynchronously by the kernel, work that no row is charged with).',
};
