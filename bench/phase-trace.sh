#!/bin/bash
# phase-trace.sh: where one app round trip's time goes, phase by phase, from Node's call to the
# JS seeing the exit. N sequential spawn({ rootfs, command: ['/bin/true'], stdio: 'ignore' }).wait()
# on the busybox rootfs (after 50 untraced), each split at points taken from two clocks that agree
# (CLOCK_MONOTONIC: tracefs with trace_clock mono, and process.hrtime in JS):
#   js_before   the call until the addon's spawn is entered (options, plan, cgroup, pipes)
#   to_fork     the addon until the clone is done (plan conversion, reserves, clone3)
#   child       the clone until the child's first execve (the whole set-up in the child)
#   tramp       that execve until the trampoline's execve of the command
#   run_exit    the command's execve until its exit starts (/bin/true itself: load, run)
#   exit_to_cb  its exit until the addon's exit callback runs in JS (the namespaces' teardown, the
#               pidfd's wake-up, the event loop)
#   after       that callback until wait() resolves (stats, cgroup removal, promises)
# Prints the p50 of each phase over the N runs, and of their total.
# Usage (root): bash bench/phase-trace.sh [N] [DIR]   (N default 200; DIR: an nsbox checkout, default
# this one, e.g. a `git worktree` of another commit with its addon and dist built)
set -euo pipefail
n=${1:-200}
cd "$(dirname "$0")/.."
dir=$(realpath "${2:-.}")
. bench/lib/tracefs.sh
out=$(mktemp /tmp/nsbox-phase-trace.XXXXXX)
tracefs_cleanup() { rm -f "$out" "$out.json"; }
tracefs_begin phase-trace "sched/sched_process_fork sched/sched_process_exec sched/sched_process_exit" 16384 mono
DIR="$dir" OUT="$out.json" N="$n" ROOTFS="$(node -e "console.log(require('./bench/lib/rootfs').busyboxRootfs().rootfs)")" node -e "
const fs = require('fs');
const { native } = require(process.env.DIR + '/dist/native');
const nsbox = require(process.env.DIR);
const rootfs = process.env.ROOTFS;
const b = native();
const orig = b.spawn;
const us = () => Number(process.hrtime.bigint()) / 1e3;
let cur = null;
b.spawn = function (plan) {
  if (cur) cur.spawnIn = us();
  const res = orig.call(this, plan);
  if (cur && res && res.process) {
    const rec = cur;
    const w = res.process.watch;
    // N-API methods are read-only on the prototype: shadow it on the instance.
    Object.defineProperty(res.process, 'watch', { configurable: true, value(cb) { return w.call(this, (...a) => { rec.exitCb = us(); return cb(...a); }); } });
  }
  return res;
};
const once = () => nsbox.spawn({ rootfs, command: ['/bin/true'], stdio: 'ignore' }).wait();
(async () => {
  for (let i = 0; i < 50; i++) await once();
  const recs = [];
  fs.writeFileSync('$T/tracing_on', '1');
  for (let i = 0; i < Number(process.env.N); i++) {
    cur = { t0: us() };
    await once();
    cur.end = us();
    recs.push(cur);
    cur = null;
  }
  fs.writeFileSync('$T/tracing_on', '0');
  fs.writeFileSync(process.env.OUT, JSON.stringify({ pid: process.pid, recs }));
})();"
cp $T/trace "$out"
python3 - "$out" "$out.json" <<'PY'
import bisect, json, re, statistics as st, sys
d = json.load(open(sys.argv[2])); main = d['pid']
ev = []
for l in open(sys.argv[1]):
    m = re.search(r'-(\d+)\s+\[\d+\]\s+\S+\s+([\d.]+): (\w+): (.*)', l)
    if m: ev.append((float(m.group(2)) * 1e6, int(m.group(1)), m.group(3), m.group(4)))
ev.sort(); ts = [e[0] for e in ev]
rows = []
for r in d['recs']:
    seg = ev[bisect.bisect_left(ts, r['t0']):bisect.bisect_right(ts, r['end'])]
    fork = next((e for e in seg if e[2] == 'sched_process_fork' and e[1] == main), None)
    if not fork or 'spawnIn' not in r or 'exitCb' not in r: continue
    child = int(re.search(r'child_pid=(\d+)', fork[3]).group(1))
    execs = [e for e in seg if e[2] == 'sched_process_exec' and e[1] == child]
    ex = next((e for e in seg if e[2] == 'sched_process_exit' and e[1] == child), None)
    if len(execs) < 2 or not ex: continue
    rows.append({'js_before': r['spawnIn'] - r['t0'], 'to_fork': fork[0] - r['spawnIn'], 'child': execs[0][0] - fork[0],
                 'tramp': execs[1][0] - execs[0][0], 'run_exit': ex[0] - execs[1][0], 'exit_to_cb': r['exitCb'] - ex[0],
                 'after': r['end'] - r['exitCb'], 'total': r['end'] - r['t0']})
if not rows: sys.exit('phase-trace: no round trip could be split')
print(f'{len(rows)} round trips; p50 per phase, µs')
print('| ' + ' | '.join(rows[0]) + ' |')
print('|' + '---|' * len(rows[0]))
print('| ' + ' | '.join(f'{st.median([x[k] for x in rows]):.0f}' for k in rows[0]) + ' |')
PY
