#!/usr/bin/env bash
# The rootless lane: the app, machine, image and security test files again as an unprivileged user
# (nsbox-ci, made by test/fixtures/rootless-user.sh), with the same assertions where they apply:
#   1. rootless, in a cgroup v2 subtree delegated to the user (what systemd's Delegate=yes gives);
#   2. rootless inside `unshare -r` (uid 0 in a user namespace, still no privilege on the host).
# Runs as root (it makes the user and the delegated cgroup, and removes the cgroup at the end).
# Each file runs with plain node (tap's runner wants to write to the checkout); the counts are
# added up from each file's closing `# { total, pass, fail }` line.
set -euo pipefail
cd "$(dirname "$0")/../.."
user=${NSBOX_ROOTLESS_USER:-nsbox-ci}
bash test/fixtures/rootless-user.sh >/dev/null
# Fixtures the user only reads (they are root's, in the checkout).
# (npm test, which runs first as root, built them all; these two are made here if it did not.)
node -e "const h = require('./test/helpers'); h.busyboxRootfs(); h.plantedRootfs(); h.probeBinary()"
NSBOX_FIXTURES_ONLY=1 node test/security/seccomp.test.js >/dev/null
if [ -x "${NSBOX_DEBIAN_ROOTFS:-/var/cache/nsbox-test/debian}/lib/systemd/systemd" ]; then
  bash test/fixtures/debian-rootfs-rootless.sh "$user"
  export NSBOX_ROOTLESS_DEBIAN_ROOTFS="$(dirname "${NSBOX_DEBIAN_ROOTFS:-/var/cache/nsbox-test/debian}")/debian-$user"
fi
files=${NSBOX_ROOTLESS_FILES:-"test/20-app.test.js test/22-app-tty.test.js test/24-rlimits.test.js test/30-errors.test.js test/49-mount-points.test.js test/49-proc-mode.test.js test/45-pool.test.js test/70-machine.test.js test/85-rootless.test.js test/86-rootless-images.test.js test/cli-machine.test.js test/cli-detached.test.js test/cli-machine-extra.test.js test/security/paths.test.js test/security/privileges.test.js test/security/seccomp.test.js test/security/escapes.test.js test/security/userns-ranges.test.js test/oci/containerd-runc.test.js test/oci/config.test.js test/oci/runtime.test.js"}

v2=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup2" && $4 == "/") print $5; break } }' /proc/self/mountinfo | head -1)
cg=""
if [ -n "$v2" ]; then
  cg="$v2/nsbox-rootless-$$"
  mkdir "$cg"
  chown "$user" "$cg" "$cg/cgroup.procs" "$cg/cgroup.subtree_control" "$cg/cgroup.threads"
fi
cleanup() {
  if [ -n "$cg" ] && [ -d "$cg" ]; then
    # Whatever a failed test left in there is the user's: kill it, then remove the tree.
    [ -e "$cg/cgroup.kill" ] && echo 1 > "$cg/cgroup.kill" 2>/dev/null || true
    sleep 0.2
    find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  fi
  # The user's nsbox runtime directory in /tmp (staging and scratch mount points, both empty).
  rm -rf "/tmp/nsbox-$(id -u "$user")"
}
trap cleanup EXIT

total_pass=0; total_fail=0; total_skip=0; bad_files=""
run_as_user() {  # mode file
  local mode=$1 file=$2 out rc
  out=$(mktemp)
  local envs=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$(getent passwd "$user" | cut -d: -f6)"
    CI="${CI:-}" NSBOX_REQUIRE_ROOTLESS=1 NSBOX_ROOTLESS_MODE="$mode" NSBOX_DEBIAN_ROOTFS="${NSBOX_DEBIAN_ROOTFS:-/var/cache/nsbox-test/debian}"
    NSBOX_ROOTLESS_DEBIAN_ROOTFS="${NSBOX_ROOTLESS_DEBIAN_ROOTFS:-}" TAP_TIMEOUT=0)
  set +e
  if [ "$mode" = delegated ]; then
    ( [ -n "$cg" ] && echo "$BASHPID" > "$cg/cgroup.procs"; exec runuser -u "$user" -- "${envs[@]}" node "$file" ) > "$out" 2>&1
  else
    runuser -u "$user" -- "${envs[@]}" unshare -r node "$file" > "$out" 2>&1
  fi
  rc=$?
  set -e
  local counts; counts=$(grep -E '^# \{ total' "$out" | tail -1 || true)
  local p f s
  p=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$counts"); f=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$counts"); s=$(sed -nE 's/.*skip: ([0-9]+).*/\1/p' <<<"$counts")
  total_pass=$((total_pass + ${p:-0})); total_fail=$((total_fail + ${f:-0})); total_skip=$((total_skip + ${s:-0}))
  if [ "$rc" != 0 ] || [ -z "$counts" ]; then
    bad_files="$bad_files $mode:$file"
    echo "---- $mode $file (exit $rc)"; grep -E '^(not ok|    not ok|# Subtest)|^\s+(code|message|found|wanted):' "$out" | grep -B1 -A4 'not ok' | head -60 || tail -30 "$out"
  fi
  echo "rootless[$mode] $file: ${counts:-no counts (exit $rc)}"
  rm -f "$out"
}
for mode in delegated unshare; do
  for f in $files; do run_as_user "$mode" "$f"; done
done
echo "rootless: $total_pass passed, $total_fail failed, $total_skip skipped"
if [ -n "$bad_files" ]; then echo "rootless lane failed in:$bad_files"; exit 1; fi
