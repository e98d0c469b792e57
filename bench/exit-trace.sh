#!/bin/bash
# exit-trace.sh: how long the kernel takes from a process's exit to the SIGCHLD its parent gets
# (tracefs events sched:sched_process_exit -> signal:signal_generate sig 17), i.e. the teardown done
# on the exit path (for a container: its mount, PID, IPC... namespaces) before Node can see the exit.
# Usage (root): bash bench/exit-trace.sh container|host|child_process [N]
set -euo pipefail
what=${1:-container}; n=${2:-60}
cd "$(dirname "$0")/.."
case "$what" in
  container) js="const {run}=require('.'); const {rootfs}=require('./bench/lib/rootfs').busyboxRootfs(); (async()=>{ for(let i=0;i<$n;i++) await run({rootfs, command:['/bin/true']}); })()" ;;
  host) js="const {run}=require('.'); const {rootfs}=require('./bench/lib/rootfs').busyboxRootfs(); (async()=>{ for(let i=0;i<$n;i++) await run({rootfs, command:['/bin/true'], network:'host'}); })()" ;;
  child_process) js="const cp=require('child_process'); (async()=>{ for(let i=0;i<$n;i++) await new Promise(r=>cp.spawn('/bin/true').on('close',r)); })()" ;;
  *) echo "exit-trace: container, host or child_process" >&2; exit 2 ;;
esac
. bench/lib/tracefs.sh
tracefs_cleanup() { echo 0 > $T/events/signal/signal_generate/filter; }
tracefs_begin exit-trace "sched/sched_process_exit signal/signal_generate"
echo 'sig == 17' > $T/events/signal/signal_generate/filter
echo 1 > $T/tracing_on
node -e "$js"
echo 0 > $T/tracing_on
python3 - "$what" <<'PY'
import re, sys
ex = {}; res = []
for l in open('/sys/kernel/tracing/trace'):
    m = re.search(r'^\s*(\S+)-(\d+)\s+\[\d+\]\s+\S+\s+([\d.]+): (\w+):', l)
    if not m: continue
    comm, pid, ts, ev = m.group(1), int(m.group(2)), float(m.group(3)), m.group(4)
    if ev == 'sched_process_exit' and comm == 'true': ex[pid] = ts
    elif ev == 'signal_generate' and pid in ex: res.append((ts - ex.pop(pid)) * 1e6)
res.sort()
if not res: sys.exit('exit-trace: no exits seen')
print(f"{sys.argv[1]}: /bin/true exit -> SIGCHLD, n={len(res)}: p50 {res[len(res)//2]:.0f} us, p90 {res[int(len(res)*0.9)]:.0f} us")
PY
