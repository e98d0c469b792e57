#!/bin/bash
# A start given its state directory through a symlink (/var/run -> /run), killed after the clone
# (kill mode, as test 34): Machine.list() of the real path removes its directory but not its PID 1.
# In a cgroup namespace rooted at our own cgroup, with cgroup2 remounted: nsbox's base (and its sweep) is ours alone.
set -u
D=$(cd "$1" && pwd)
umount -l /sys/fs/cgroup/unified && mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified || exit 9
node -e "console.log('nsbox base here:', require('$D/../dist/cgroup').detectCgroupHost().base)"
R=$(mktemp -d /tmp/rk-alias-real-XXXX); L=/tmp/rk-alias-link-$$; ln -s $R $L
# The start is given the state dir through a symlink (as /var/run -> /run); Node dies after the clone, before state.json.
NSBOX_TEST_FAULT=seccomp:-1:SIGKILL node -e "
require('$D/..').Machine.start({ name: 'orphan', rootfs: require('$D/../test/helpers').busyboxRootfs().rootfs, ephemeral: true, stateDir: '$L' })" &
N=$!
# As test 34 does: the child waits at the fault point (ppoll, 5th argument 0x6b696c6c); Node is killed then.
for i in $(seq 500); do grep -qs 0x6b696c6c /sys/fs/cgroup/unified/nsbox/m-*-orphan/cgroup.procs /dev/null && break; for p in $(cat /sys/fs/cgroup/unified/nsbox/m-*-orphan/cgroup.procs 2>/dev/null); do grep -q 0x6b696c6c /proc/$p/syscall 2>/dev/null && break 2; done; sleep 0.02; done
kill -9 $N; wait $N; echo "starter exit: $?"
sleep 0.5
echo "cgroups: $(ls /sys/fs/cgroup/unified/nsbox | grep '^m-')"
P1=$(cat /sys/fs/cgroup/unified/nsbox/m-*-orphan/cgroup.procs | head -1); echo "PID 1 of orphan runs: $P1 $(cat /proc/$P1/comm 2>/dev/null)"
echo "state dir: $(ls $R/orphan)"
node -e "require('$D/..').Machine.list({ stateDir: '$R' }).then((l) => console.log('list via the real path ->', JSON.stringify(l)))"
# Killed is enough: a zombie (state Z) waits for whichever reaper it was given, and kill -0 still finds it.
sleep 0.5
st=$(sed 's/.*) //' /proc/$P1/stat 2>/dev/null | cut -d' ' -f1)
echo "after list: state dir entries: [$(ls -A $R | tr '\n' ' ')]; PID 1 $P1 still runs: $([ -n "$st" ] && [ "$st" != Z ] && echo "yes: $(cat /proc/$P1/comm) ($st)" || echo no)"
node -e "require('$D/..').Machine.list({ stateDir: '$L' }).then((l) => console.log('list via the link ->', JSON.stringify(l)))"
# clean up
for c in /sys/fs/cgroup/unified/nsbox/*/; do echo 1 > $c/cgroup.kill; done
sleep 0.5
for c in /sys/fs/cgroup/unified/nsbox/*/; do rmdir $c; done
rmdir /sys/fs/cgroup/unified/nsbox
rm -rf $R $L
