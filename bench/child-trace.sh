#!/bin/bash
# child-trace.sh: every system call of a container's child between its clone and its first execve
# (tracefs raw_syscalls and sched_process_fork/exec events), for N sequential run()s of /bin/true on
# the busybox rootfs after 50 untraced ones: per system call its count and total time (p50 over the
# containers), and the total count.
# Usage (root): bash bench/child-trace.sh [N] [loopback|host|none] [busybox|default]   (N default 40;
# default: the default rootfs, the host's system directories bound on a tmpfs)
# NSBOX_MNT_TEMPLATE=0 and the other environment switches of the addon pass through.
set -euo pipefail
n=${1:-40}; net=${2:-loopback}; root=${3:-busybox}
cd "$(dirname "$0")/.."
. bench/lib/tracefs.sh
out=$(mktemp /tmp/nsbox-child-trace.XXXXXX)
tracefs_cleanup() { rm -f "$out"; }
tracefs_begin child-trace "sched/sched_process_exec sched/sched_process_fork raw_syscalls/sys_enter raw_syscalls/sys_exit" 65536
# Tracing is switched on and off by the script itself, around the measured runs only.
node -e "
const fs = require('fs');
const { run } = require('.');
const rootfs = '$root' === 'default' ? undefined : require('./bench/lib/rootfs').busyboxRootfs().rootfs;
(async () => {
  for (let i = 0; i < 50; i++) await run({ rootfs, command: ['/bin/true'], network: '$net' });
  fs.writeFileSync('$T/tracing_on', '1');
  for (let i = 0; i < $n; i++) await run({ rootfs, command: ['/bin/true'], network: '$net' });
  fs.writeFileSync('$T/tracing_on', '0');
})();"
cp $T/trace "$out"
python3 - "$out" <<'PY'
import collections, re, statistics as st, sys
names = {}
for hdr in ('/usr/include/x86_64-linux-gnu/asm/unistd_64.h', '/usr/include/asm/unistd_64.h'):
    try:
        for l in open(hdr):
            m = re.match(r'#define __NR_(\w+) (\d+)', l)
            if m: names[int(m.group(2))] = m.group(1)
        break
    except OSError:
        pass
forked = set(); ev = collections.defaultdict(list)
for l in open(sys.argv[1]):
    m = re.search(r'^\s*(.+?)-(\d+)\s+\[\d+\]\s+\S+\s+([\d.]+): (\w+): (.*)', l)
    if not m: continue
    pid, ts, e, rest = int(m.group(2)), float(m.group(3)), m.group(4), m.group(5)
    if e == 'sched_process_fork':
        c = int(re.search(r'child_pid=(\d+)', rest).group(1)); forked.add(c); ev[c].append((ts, 'fork', None))
    elif pid in forked:
        if e in ('sys_enter', 'sys_exit'): ev[pid].append((ts, e, int(rest.split()[1])))
        elif e == 'sched_process_exec': ev[pid].append((ts, 'exec', None))
tot = collections.defaultdict(list); cnt = collections.defaultdict(list); calls = []; spans = []
for pid, evs in ev.items():
    if not any(x[1] == 'exec' for x in evs): continue  # the reserve's and the template's helpers
    d = collections.defaultdict(float); c = collections.Counter(); cur = None; n = 0
    for ts, k, nr in evs[1:]:
        if k == 'sys_enter': cur = (nr, ts)
        elif k == 'sys_exit' and cur: d[cur[0]] += ts - cur[1]; c[cur[0]] += 1; n += 1; cur = None
        elif k == 'exec':
            if cur: d[cur[0]] += ts - cur[1]; c[cur[0]] += 1; n += 1
            spans.append(ts - evs[0][0]); break
    calls.append(n)
    for nr in set(d) | set(tot):
        tot[nr].append(d.get(nr, 0.0)); cnt[nr].append(c.get(nr, 0))
if not calls:
    sys.exit('child-trace: no container was traced')
print(f'containers {len(calls)}; clone -> first execve p50 {st.median(spans) * 1e6:.0f} us; system calls p50 {st.median(calls):.0f}')
print('| system call | calls p50 | time p50 µs |')
print('|---|---|---|')
for t, name, c in sorted(((st.median(v) * 1e6, names.get(nr, str(nr)), st.median(cnt[nr])) for nr, v in tot.items()), reverse=True):
    if c: print(f'| {name} | {c:.0f} | {t:.1f} |')
PY
