#!/usr/bin/env bash
# The VM lane: runs test files inside a throw-away VM with a pure cgroup v2 kernel, where the memory,
# pids, cpu and io controllers are available (the development machine is hybrid and cannot enable
# them). The distribution kernel boots under qemu (TCG: KVM is not relied on) with the host's root
# shared read-only over 9p and a tmpfs overlay on top, so the tests run against this very checkout
# and the host's node. NSBOX_REQUIRE_CGROUP=1 turns "controller missing" skips into failures.
#
# Usage: test/vm/run.sh [TEST_FILE...]   (default: the cgroup, app and error suites)
# Needs: qemu-system-x86, linux-image-amd64, busybox-static (Debian packages).
# Env:   NSBOX_VM_TIMEOUT (seconds, default 1500), NSBOX_VM_MEM (MiB, default 2048); NSBOX_SOAK_* are
#        passed in (the soak: NSBOX_VM_NO_ROOTLESS=1 NSBOX_SOAK_MINUTES=2 test/vm/run.sh test/soak/soak.js)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(test/60-cgroup.test.js test/62-cgroup-placement.test.js test/61-memory-hogs.test.js test/20-app.test.js test/30-errors.test.js test/45-pool.test.js test/47-fast-paths.test.js test/70-machine.test.js test/80-systemd.test.js test/security/privileges.test.js test/security/escapes.test.js test/security/userns-ranges.test.js test/pod/bundles.test.js)

# NSBOX_VM_INIT=systemd: boot the host's systemd as PID 1 and run the tests in a unit of it (for
# the files that need a real systemd around Node: test/63-systemd-delegate.test.js).
vm_init=${NSBOX_VM_INIT:-sh}
append=""
if [ "$vm_init" = systemd ]; then
  [ -x /lib/systemd/systemd ] || { echo "vm: NSBOX_VM_INIT=systemd needs /lib/systemd/systemd (apt-get install systemd)" >&2; exit 1; }
  append=" systemd.unit=nsbox-vm.target systemd.show_status=0"
  NSBOX_VM_NO_ROOTLESS=1
fi
kernel=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$kernel" ] || { echo "vm: no /boot/vmlinuz-* (apt-get install linux-image-amd64)" >&2; exit 1; }
kver=${kernel#/boot/vmlinuz-}
moddir=/lib/modules/$kver
[ -d "$moddir" ] || { echo "vm: no modules for $kver in $moddir" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "vm: qemu-system-x86_64 missing (apt-get install qemu-system-x86)" >&2; exit 1; }
busybox=$(command -v busybox || true)
[ -n "$busybox" ] && file -L "$busybox" | grep -q 'statically linked' || { echo "vm: a static busybox is needed (apt-get install busybox-static)" >&2; exit 1; }

# Fixtures are built on the host: the VM sees the checkout read-only.
node -e "require('./test/helpers').busyboxRootfs()"

work=$(mktemp -d /tmp/nsbox-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
ird=$work/initramfs
mkdir -p "$ird"/{bin,modules,proc,sys,dev,host,newroot,results,upper} "$work/results"
cp "$busybox" "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
# Order matters: each module needs the ones before it. Built-in ones are simply not found.
mods="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci 9pnet netfs fscache 9pnet_virtio 9p overlay"
for m in $mods; do
  f=$(find "$moddir/kernel" -name "$m.ko*" | head -n 1)
  [ -z "$f" ] && continue
  case "$f" in
    *.ko.xz) xz -dc "$f" > "$ird/modules/$m.ko" ;;
    *.ko.zst) zstd -dcq "$f" > "$ird/modules/$m.ko" ;;
    *) cp "$f" "$ird/modules/$m.ko" ;;
  esac
done

cat > "$ird/init" <<INIT
#!/bin/sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $mods; do [ -f /modules/\$m.ko ] && insmod /modules/\$m.ko 2>/dev/null; done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro hostroot /host || echo "vm: 9p root mount failed"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /results || echo "vm: 9p results mount failed"
mount -t tmpfs tmpfs /upper
mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/host,upperdir=/upper/u,workdir=/upper/w /newroot || echo "vm: overlay failed"
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
# No tmpfs over /tmp or /run: the checkout may live there; the overlay's tmpfs upper takes writes.
mkdir -p /newroot/results
mount --bind /results /newroot/results
echo "vm: kernel \$(uname -r), cgroup controllers: \$(cat /newroot/sys/fs/cgroup/cgroup.controllers)"
# switch_root, not chroot: a process in a chroot may not create user namespaces (EPERM), which the
# rootless tests do. The new root becomes the mount namespace's root; the tests run as PID 1's child.
if [ "$vm_init" = systemd ]; then
  # The host's own systemd as PID 1, told (systemd.unit= on the kernel command line) to start
  # nothing but the tests' unit: no host service runs, and the tests can make units of their own.
  mkdir -p /newroot/etc/systemd/system
  printf '%s\n' '[Unit]' 'Description=nsbox VM lane tests' 'DefaultDependencies=no' '[Service]' 'Type=oneshot' 'TimeoutStartSec=infinity' \
    "ExecStart=/bin/sh -c '/bin/sh /results/cmd.sh > /results/tap.txt 2>&1; echo \\\$\\\$? > /results/rc; sync; /bin/busybox poweroff -f'" \
    > /newroot/etc/systemd/system/nsbox-vm.service
  printf '%s\n' '[Unit]' 'Description=nsbox VM lane' 'Requires=nsbox-vm.service' 'AllowIsolate=yes' > /newroot/etc/systemd/system/nsbox-vm.target
  # The host's /.dockerenv (in the overlay's lower layer) would make systemd believe it runs in a
  # container and ignore the kernel command line: it is whited out, and the unit also given as argv.
  rm -f /newroot/.dockerenv /newroot/run/.containerenv
  # systemd-tmpfiles-setup (pulled in by the first unit with default dependencies) empties /tmp
  # ('D /tmp' in tmp.conf): a checkout under /tmp (a CI clone) would vanish under the tests.
  for u in systemd-tmpfiles-setup.service systemd-tmpfiles-clean.timer tmp.mount; do ln -sf /dev/null /newroot/etc/systemd/system/\$u; done
  exec switch_root /newroot /lib/systemd/systemd --unit=nsbox-vm.target --show-status=0
fi
exec switch_root /newroot /bin/sh -c '/bin/sh /results/cmd.sh > /results/tap.txt 2>&1; echo \$? > /results/rc; sync; /bin/busybox poweroff -f'
INIT
chmod +x "$ird/init"
(cd "$ird" && find . | "$busybox" cpio -o -H newc 2>/dev/null | gzip -1) > "$work/initrd"

{
  echo "cd '$root' || exit 1"
  # TCG is several times slower than the host: no per-file time limit inside (the VM has its own).
  echo "export NSBOX_REQUIRE_CGROUP=1 NSBOX_VM=1 TAP_TIMEOUT=0 HOME=/tmp PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  [ -n "${NSBOX_REQUIRE_SYSTEMD:-}" ] && echo "export NSBOX_REQUIRE_SYSTEMD=$NSBOX_REQUIRE_SYSTEMD"
  [ "$vm_init" = systemd ] && echo "export NSBOX_REQUIRE_SYSTEMD_PID1=1"
  [ -n "${NSBOX_REQUIRE_TOOLS:-}" ] && echo "export NSBOX_REQUIRE_TOOLS=$NSBOX_REQUIRE_TOOLS"
  # The soak's settings (test/soak/soak.js reads NSBOX_SOAK_MINUTES and the like as its defaults).
  for v in $(compgen -e | grep '^NSBOX_SOAK_' || true); do printf 'export %s=%q\n' "$v" "${!v}"; done
  echo "rc=0"
  for f in "${tests[@]}"; do
    echo "echo '# vm: $f'"
    echo "node '$f' || rc=1"
  done
  # Rootless on a pure v2 kernel: the user of the rootless lane, in a cgroup delegated to it with
  # the memory, pids and cpu controllers, runs the limit tests. setpriv execs (runuser would stay
  # behind as a parent in the cgroup), so node is the only process there and can move to a leaf.
  if [ -z "${NSBOX_VM_NO_ROOTLESS:-}" ] && id "${NSBOX_ROOTLESS_USER:-nsbox-ci}" >/dev/null 2>&1; then
    u=${NSBOX_ROOTLESS_USER:-nsbox-ci}
    echo "echo '+cpuset +memory +pids +cpu' > /sys/fs/cgroup/cgroup.subtree_control"
    n=0
    for f in ${NSBOX_VM_ROOTLESS_FILES:-test/60-cgroup.test.js test/85-rootless.test.js}; do
      # A fresh delegated cgroup per file: the previous one has controllers enabled below it now,
      # and a cgroup that delegates controllers takes no processes of its own.
      n=$((n + 1))
      echo "cg=/sys/fs/cgroup/nsbox-rootless-$n"
      echo "mkdir -p \$cg && chown $u \$cg \$cg/cgroup.procs \$cg/cgroup.subtree_control \$cg/cgroup.threads"
      echo "echo '# vm: rootless $f'"
      echo "sh -c 'echo \$\$ > '\$cg'/cgroup.procs && exec setpriv --reuid=$u --regid=$u --init-groups env NSBOX_ROOTLESS_MODE=vm node $f' || rc=1"
    done
  fi
  echo "exit \$rc"
} > "$work/results/cmd.sh"

echo "vm: booting $kernel with ${#tests[@]} test file(s) under TCG"
start=$(date +%s)
set +e
timeout "${NSBOX_VM_TIMEOUT:-1500}" qemu-system-x86_64 -accel tcg -m "${NSBOX_VM_MEM:-2048}" -smp 2 \
  -nographic -no-reboot -kernel "$kernel" -initrd "$work/initrd" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on \
  -virtfs "local,path=$work/results,mount_tag=results,security_model=none" \
  -append "console=ttyS0 quiet panic=-1$append" < /dev/null > "$work/console.txt" 2>&1
qrc=$?
set -e
echo "vm: qemu exited with $qrc after $(( $(date +%s) - start )) s"
grep '^vm:' "$work/console.txt" || true
if [ ! -f "$work/results/rc" ]; then
  echo "vm: FAIL: the VM did not come back with a result (timeout or crash). Console tail:" >&2
  tail -n 40 "$work/console.txt" >&2
  [ -f "$work/results/tap.txt" ] && tail -n 40 "$work/results/tap.txt" >&2
  exit 1
fi
cat "$work/results/tap.txt"
rc=$(cat "$work/results/rc")
pass=$(grep -cE '^ *ok [0-9]+' "$work/results/tap.txt" || true)
fail=$(grep -cE '^ *not ok [0-9]+' "$work/results/tap.txt" || true)
echo "vm: $pass passed, $fail failed (exit $rc)"
[ "$rc" = 0 ] && [ "$fail" = 0 ]
