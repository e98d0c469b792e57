#!/usr/bin/env bash
# The OCI runtime validation suite (opencontainers/runtime-tools, vendored in ../shared/vendor/runtime-tools)
# run against any OCI runtime binary, with a tally per program and totals.
#
#   test/oci/validation.sh [--all] [--timeout SECONDS] RUNTIME [PROGRAM...]
#   test/oci/validation.sh [--all] [--timeout SECONDS] --compare RUNTIME_A RUNTIME_B [PROGRAM...]
#   npm run test:oci-validation -- RUNTIME                   (the whole suite)
#
# PROGRAM is a program's name (`state`, `linux_sysctl`); none given means the CI subset below, --all means
# all 58. Must run as root from anywhere in the repository; needs Go 1.19 (Debian's golang-go), make, tar.
#
# The vendored tree is never copied into the project: it is copied into /tmp, built offline there
# (GOFLAGS=-mod=vendor GOTOOLCHAIN=local GOPROXY=off), reduced to the programs, `runtimetest` and the rootfs
# tarball, and kept as /tmp/nsbox-runtime-tools-<commit>-<digest> for the next run (the digest is of the
# vendored files, so a changed vendor tree never reuses a stale build).
#
# Each program runs under `timeout` (default 180 s, --timeout or NSBOX_OCI_TIMEOUT), in its own scratch
# directory under /tmp (its bundles included, through TMPDIR), with the runtime wrapped so that every call
# gets `--root <scratch>/state`: containers it leaves are deleted with the runtime's own `delete --force`
# afterwards, and the scratch directory is removed, whatever the program did (a hang, a crash, a failure).
# The private --root also keeps the suite off the state of any other user of the same runtime on the host.
#
# Exit status: single runtime: 0 when every program ran (its result, clean or not, is in the tally), 1 on a
# harness failure (build, missing runtime, unknown program). --compare: additionally 1 when a program clean
# under RUNTIME_A (exit 0, no `not ok`) is not clean under RUNTIME_B, or has more `not ok` under B than
# under A, or B has more `not ok` in total: the gate "at least as well as the baseline" (A is the baseline).
# "Clean" is what the vendored README counts: exit 0 and no `not ok` (a program that skips all, `1..0`,
# is clean). A timeout shows as exit "timeout" and is never clean.
set -euo pipefail

# The CI subset: the lifecycle programs that drive every command of the CLI surface, then one or two
# programs per area of config.json a runtime must honour. Chosen among those whose result with runc 1.1.5
# here was the same in three whole-suite runs (pidfile, killsig and linux_ns_nopath were not: each failed
# once); most are clean with runc, and three that are not (start, delete, hooks_stdin: runc's own
# `not ok`s here) are in for the commands and the hook stdin they cover, where --compare gates on "no
# more `not ok` than the baseline". The programs that run runtimetest inside the container check
# several hundred assertions each (the whole default config). About a minute per runtime here.
CI_PROGRAMS=(
  create                       # create: state "created", the init blocked before the user process
  start                        # start: the user process runs only after start; start twice fails
  state                        # state: the OCI state JSON
  kill                         # kill: signals reach the container; kill of a stopped container fails
  kill_no_effect               # kill of a container that has ended has no effect
  delete                       # delete: resources go; delete of a running container fails
  delete_resources             # delete removes the cgroup that create made
  default                      # the default config checked from inside by runtimetest
  process                      # process: args, env, cwd, terminal off
  process_user                 # uid, gid, additionalGids
  process_rlimits              # rlimits
  process_oom_score_adj        # oomScoreAdj
  hostname                     # UTS namespace and hostname
  mounts                       # bind mounts and tmpfs as config.json lists them
  root_readonly_true           # root.readonly
  linux_masked_paths           # maskedPaths
  linux_readonly_paths         # readonlyPaths
  linux_devices                # devices
  linux_sysctl                 # sysctl
  linux_ns_path                # namespaces joined by path
  linux_ns_path_type           # a namespace path of the wrong type is refused
  linux_uid_mappings           # user namespace with uid/gid mappings
  linux_cgroups_pids           # cgroupsPath (absolute) with a pids limit, read back from the cgroup
  linux_cgroups_relative_cpus  # cgroupsPath (relative) with cpu shares, quota, period, cpuset
  hooks_stdin                  # hooks get the state on stdin
)

die() { echo "validation.sh: $*" >&2; exit 1; }

ALL=0
TIMEOUT=${NSBOX_OCI_TIMEOUT:-180}
COMPARE=0
POSITIONAL=()
while [ $# -gt 0 ]; do
  case "$1" in
    --all) ALL=1 ;;
    --timeout) shift; TIMEOUT=${1:?--timeout needs seconds} ;;
    --timeout=*) TIMEOUT=${1#--timeout=} ;;
    --compare) COMPARE=1 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    --) shift; POSITIONAL+=("$@"); break ;;
    -*) die "unknown option $1" ;;
    *) POSITIONAL+=("$1") ;;
  esac
  shift
done
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive number of seconds, not '$TIMEOUT'"
[ "$(id -u)" = 0 ] || die "the validation programs must run as root"

RUNTIMES=()
if [ "$COMPARE" = 1 ]; then
  [ ${#POSITIONAL[@]} -ge 2 ] || die "--compare needs RUNTIME_A RUNTIME_B"
  RUNTIMES=("${POSITIONAL[0]}" "${POSITIONAL[1]}")
  PROGRAMS=("${POSITIONAL[@]:2}")
else
  [ ${#POSITIONAL[@]} -ge 1 ] || die "usage: validation.sh [--all] [--timeout S] RUNTIME [PROGRAM...] (see --help)"
  RUNTIMES=("${POSITIONAL[0]}")
  PROGRAMS=("${POSITIONAL[@]:1}")
fi
for i in "${!RUNTIMES[@]}"; do
  r=$(command -v -- "${RUNTIMES[$i]}" || true)
  [ -n "$r" ] && [ -x "$r" ] || die "runtime '${RUNTIMES[$i]}' is not an executable"
  RUNTIMES[$i]=$(readlink -f -- "$r")
done

REPO=$(cd "$(dirname "$0")/../.." && pwd)
VENDOR="$REPO/../shared/vendor/runtime-tools"
[ -f "$VENDOR/Makefile" ] || die "the vendored runtime-tools is not at $VENDOR (../shared/vendor/runtime-tools from the repository)"
VENDOR=$(cd "$VENDOR" && pwd)

# ---- build (cached) ---------------------------------------------------------------------------------
COMMIT=$(sed -n 's/.*runtime-tools.*at commit \([0-9a-f]\{7,40\}\).*/\1/p' "$VENDOR/../README.md" 2>/dev/null | head -1)
DIGEST=$(cd "$VENDOR" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
CACHE="/tmp/nsbox-runtime-tools-${COMMIT:-unknown}-$DIGEST"

build() {
  command -v go >/dev/null || die "Go is needed to build the suite (apt-get install golang-go)"
  local work t0=$SECONDS
  work=$(mktemp -d /tmp/nsbox-runtime-tools-build.XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  echo "# building runtime-tools ${COMMIT:-?} (offline, vendored modules) in $work" >&2
  cp -r "$VENDOR" "$work/src"
  chmod -R u+w "$work/src"
  if ! (cd "$work/src" && GOFLAGS=-mod=vendor GOTOOLCHAIN=local GOPROXY=off GOCACHE="$work/gocache" \
        GOPATH="$work/gopath" HOME="$work" nice -n 10 make runtimetest validation-executables) >"$work/build.log" 2>&1; then
    tail -30 "$work/build.log" >&2
    die "building runtime-tools failed"
  fi
  mkdir -p "$work/out/validation"
  cp "$work/src/runtimetest" "$work/src/rootfs-amd64.tar.gz" "$work/out/"
  for t in "$work"/src/validation/*/*.t; do cp "$t" "$work/out/validation/"; done
  cp "$work/src/LICENSE" "$work/out/"
  # Publish atomically; a concurrent run that got there first wins and ours is dropped.
  mv -T "$work/out" "$CACHE" 2>/dev/null || true
  echo "# built in $((SECONDS - t0)) s, cached as $CACHE" >&2
}
if [ ! -x "$CACHE/runtimetest" ] || [ ! -f "$CACHE/rootfs-amd64.tar.gz" ]; then
  rm -rf "$CACHE"
  build
fi
[ -x "$CACHE/runtimetest" ] || die "no build in $CACHE"

mapfile -t AVAILABLE < <(cd "$CACHE/validation" && ls -1 -- *.t | sed 's/\.t$//' | LC_ALL=C sort)
if [ ${#PROGRAMS[@]} -eq 0 ]; then
  if [ "$ALL" = 1 ]; then PROGRAMS=("${AVAILABLE[@]}"); else PROGRAMS=("${CI_PROGRAMS[@]}"); fi
fi
for p in "${PROGRAMS[@]}"; do
  [ -x "$CACHE/validation/$p.t" ] || die "no validation program '$p' (have: ${AVAILABLE[*]})"
done

# ---- run --------------------------------------------------------------------------------------------
SCRATCH=$(mktemp -d /tmp/nsbox-oci-validation.XXXXXX)
# Traversable like /tmp: linux_uid_mappings's container root (a mapped uid) must reach its bundle.
chmod 755 "$SCRATCH"

# The cgroups the suite names itself (validation/cgroups: "/cgrouptest" and the relative
# "testdir/cgrouptest/container"): a runtime removes the container's own cgroup on delete but not the
# parents it made for a relative path. Candidates in every cgroup hierarchy, deepest first, at the root and
# under this process's own cgroup; only those that did not exist before the run are removed (rmdir: empty).
suite_cgroups() {
  local m p leaf
  local -a mnts paths
  mapfile -t mnts < <(awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup" || $(i+1) == "cgroup2") print $5; break } }' /proc/self/mountinfo)
  mapfile -t paths < <(cut -d: -f3- /proc/self/cgroup; echo /)
  for m in "${mnts[@]}"; do
    for p in "${paths[@]}"; do
      for leaf in testdir/cgrouptest/container testdir/cgrouptest testdir cgrouptest; do
        echo "$m${p%/}/$leaf"
      done
    done
  done | awk '!seen[$0]++'
}
declare -A CGROUPS_BEFORE=()
while read -r d; do [ -d "$d" ] && CGROUPS_BEFORE[$d]=1; done < <(suite_cgroups)

# umount_under DIR: what a program left mounted under its scratch directory (linux_rootfs_propagation with
# a shared rootfsPropagation propagates the container's mounts back onto the bundle), deepest first.
umount_under() {
  awk -v p="$1/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | LC_ALL=C sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || echo "# warning: could not unmount $m" >&2
  done
}

cleanup_scratch() {
  # Containers first (their mounts live under the bundles), then mounts, cgroups, files.
  local d
  for d in "$SCRATCH"/*/; do [ -d "$d/state" ] && delete_all "${d%/}"; done
  umount_under "$SCRATCH"
  while read -r d; do
    [ -d "$d" ] && [ -z "${CGROUPS_BEFORE[$d]:-}" ] && { rmdir "$d" 2>/dev/null || echo "# warning: cgroup $d is left (not empty)" >&2; }
  done < <(suite_cgroups)
  rm -rf --one-file-system "$SCRATCH" 2>/dev/null || true
  [ ! -e "$SCRATCH" ] || echo "# warning: could not remove $SCRATCH" >&2
}
trap cleanup_scratch EXIT
trap 'exit 130' INT TERM

# delete_all DIR: every container the runtime (DIR/runtime, a wrapper carrying --root) still knows.
delete_all() {
  local dir=$1 id
  [ -x "$dir/runtime" ] || return 0
  for id in $(timeout -k 5 30 "$dir/runtime" list -q 2>/dev/null); do
    timeout -k 5 30 "$dir/runtime" delete --force "$id" >/dev/null 2>&1 \
      || echo "# warning: '$id' survived delete --force" >&2
  done
}

# run_one RUNTIME PROGRAM RESULTFILE: one program; appends "program exit ok notok skip seconds" to RESULTFILE.
run_one() {
  local runtime=$1 prog=$2 results=$3 dir t0 rc ok notok skip
  dir=$(mktemp -d "$SCRATCH/run.XXXXXX")
  chmod 755 "$dir"
  mkdir "$dir/state" "$dir/tmp"
  chmod 1777 "$dir/tmp"
  printf '#!/bin/sh\nexec %q --root %q "$@"\n' "$runtime" "$dir/state" >"$dir/runtime"
  chmod +x "$dir/runtime"
  # A copy, not a link: the programs copy it into each bundle's rootfs and a link would dangle there.
  cp "$CACHE/runtimetest" "$dir/runtimetest"
  ln -s "$CACHE/rootfs-amd64.tar.gz" "$dir/rootfs-amd64.tar.gz"
  t0=$(date +%s.%N)
  set +e
  (cd "$dir" && RUNTIME="$dir/runtime" TMPDIR="$dir/tmp" timeout -k 10 "$TIMEOUT" \
     "$CACHE/validation/$prog.t" </dev/null >"$dir/tap" 2>"$dir/stderr")
  rc=$?
  set -e
  ok=$(grep -Ec '^ok [0-9]+' "$dir/tap" || true)
  skip=$(grep -Eic '^ok [0-9]+.*# *skip' "$dir/tap" || true)
  notok=$(grep -Ec '^not ok [0-9]+' "$dir/tap" || true)
  ok=$((ok - skip))
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then rc=timeout; fi   # timeout's own status, or its -k KILL
  printf '%s %s %s %s %s %.1f\n' "$prog" "$rc" "$ok" "$notok" "$skip" \
    "$(echo "$(date +%s.%N) - $t0" | bc)" >>"$results"
  if [ -n "${NSBOX_OCI_KEEP_TAP:-}" ]; then
    mkdir -p "$NSBOX_OCI_KEEP_TAP"
    cp "$dir/tap" "$NSBOX_OCI_KEEP_TAP/$(basename "$runtime").$prog.tap"
    cp "$dir/stderr" "$NSBOX_OCI_KEEP_TAP/$(basename "$runtime").$prog.stderr"
  fi
  delete_all "$dir"
  umount_under "$dir"
  rm -rf --one-file-system "$dir" 2>/dev/null || echo "# warning: could not remove $dir" >&2
}

RESULTS=()
for i in "${!RUNTIMES[@]}"; do
  res="$SCRATCH/results.$i"
  : >"$res"
  echo "# ${RUNTIMES[$i]}: ${#PROGRAMS[@]} program(s), timeout ${TIMEOUT} s each" >&2
  for p in "${PROGRAMS[@]}"; do
    run_one "${RUNTIMES[$i]}" "$p" "$res"
    echo "#   $(tail -1 "$res")" >&2
  done
  RESULTS+=("$res")
done

# ---- report -----------------------------------------------------------------------------------------
clean() { [ "$2" = 0 ] && [ "$4" = 0 ]; }   # fields: program exit ok notok skip secs

tally_single() {
  local res=$1 n=0 c=0 ok=0 nok=0 sk=0 secs=0
  printf '%-32s %7s %6s %6s %6s %7s\n' program exit ok 'not ok' skip seconds
  while read -r p rc o no s t; do
    printf '%-32s %7s %6s %6s %6s %7s\n' "$p" "$rc" "$o" "$no" "$s" "$t"
    n=$((n + 1)); ok=$((ok + o)); nok=$((nok + no)); sk=$((sk + s)); secs=$(echo "$secs + $t" | bc)
    clean "$p" "$rc" "$o" "$no" && c=$((c + 1))
  done <"$res"
  printf '%-32s %7s %6s %6s %6s %7s\n' "total: $c of $n clean" '' "$ok" "$nok" "$sk" "$secs"
}

if [ "$COMPARE" = 0 ]; then
  echo "runtime: ${RUNTIMES[0]}"
  tally_single "${RESULTS[0]}"
  exit 0
fi

a_name=$(basename "${RUNTIMES[0]}"); b_name=$(basename "${RUNTIMES[1]}")
[ "$a_name" = "$b_name" ] && { a_name="A"; b_name="B"; }
echo "A: ${RUNTIMES[0]}"
echo "B: ${RUNTIMES[1]}"
printf '%-30s | %-37s | %-37s\n' '' "A ($a_name): exit ok notok skip" "B ($b_name): exit ok notok skip"
regressions=()
na=0 nb=0 ca=0 cb=0
declare -A tot=([aok]=0 [anok]=0 [ask]=0 [bok]=0 [bnok]=0 [bsk]=0)
while read -r p arc aok anok ask _ <&3 && read -r _ brc bok bnok bsk _ <&4; do
  mark=''
  if clean "$p" "$arc" "$aok" "$anok"; then ca=$((ca + 1))
    clean "$p" "$brc" "$bok" "$bnok" || { mark='  <- not clean where A is'; regressions+=("$p"); }
  elif [ "$bnok" -gt "$anok" ]; then
    mark='  <- more not ok than A'; regressions+=("$p")
  fi
  clean "$p" "$brc" "$bok" "$bnok" && cb=$((cb + 1))
  na=$((na + 1)); nb=$((nb + 1))
  tot[aok]=$((tot[aok] + aok)); tot[anok]=$((tot[anok] + anok)); tot[ask]=$((tot[ask] + ask))
  tot[bok]=$((tot[bok] + bok)); tot[bnok]=$((tot[bnok] + bnok)); tot[bsk]=$((tot[bsk] + bsk))
  printf '%-30s | %7s %6s %6s %6s %8s | %7s %6s %6s %6s %8s%s\n' "$p" "$arc" "$aok" "$anok" "$ask" '' \
    "$brc" "$bok" "$bnok" "$bsk" '' "$mark"
done 3<"${RESULTS[0]}" 4<"${RESULTS[1]}"
printf '%-30s | %-36s | %-36s\n' 'total' "$ca of $na clean, ${tot[aok]} ok, ${tot[anok]} not ok, ${tot[ask]} skip" \
  "$cb of $nb clean, ${tot[bok]} ok, ${tot[bnok]} not ok, ${tot[bsk]} skip"
status=0
if [ ${#regressions[@]} -gt 0 ]; then
  echo "B does worse than A in: ${regressions[*]}"; status=1
fi
if [ "${tot[bnok]}" -gt "${tot[anok]}" ]; then
  echo "B has more 'not ok' than A (${tot[bnok]} > ${tot[anok]})"; status=1
fi
exit $status
