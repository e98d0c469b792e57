#!/bin/sh
# Installs the peers the benchmark compares nsbox with (Debian packages). Run as root.
# Peers that are missing are skipped by bench/index.js with a printed note, so this is optional.
set -eu
pkgs="bubblewrap crun runc systemd-container busybox-static util-linux"
if ! apt-get install -y --no-install-recommends $pkgs; then
  apt-get update
  apt-get install -y --no-install-recommends $pkgs
fi
for b in bwrap crun runc systemd-nspawn nsenter unshare busybox; do
  printf '%-16s %s\n' "$b" "$(command -v "$b" || echo 'not found')"
done
