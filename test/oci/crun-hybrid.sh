#!/bin/sh
# crun as an OCI runtime binary on this kind of host, for the baselines (validation.sh --compare,
# NSBOX_OCI_BASELINE for test/oci/containerd-runc.test.js). crun 1.8 refuses a hybrid cgroup host
# ("cgroups in hybrid mode not supported"), so where cgroup v2 is mounted at /sys/fs/cgroup/unified
# beside the v1 hierarchies, each call runs in a private mount namespace without that mount (the host's
# mount is untouched) and crun sees, and uses, cgroup v1 only. This is what bench/lib/peers.js does.
# Elsewhere it is crun itself.
crun=${NSBOX_CRUN:-crun}
if [ -n "$(awk '$5 == "/sys/fs/cgroup/unified" && $0 ~ / - cgroup2 /' /proc/self/mountinfo)" ]; then
  exec unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec "$0" "$@"' "$crun" "$@"
fi
exec "$crun" "$@"
