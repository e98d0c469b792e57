#!/usr/bin/env bash
# clang-tidy over native/ with the checked-in .clang-tidy, from a compile_commands.json that CMake
# writes over binding.gyp's source lists (no build needed: configure only). Any finding fails.
#
# Usage: scripts/clang-tidy.sh [FILE...]   (default: every native/core and native/glue source)
# Needs: clang-tidy (Debian: apt-get install clang-tidy), cmake, `npm install` done (node-addon-api).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v clang-tidy >/dev/null || { echo "clang-tidy: not installed (apt-get install clang-tidy)" >&2; exit 1; }
out=build-tidy
cmake -S . -B "$out" -DNSBOX_WERROR=OFF >/dev/null
files=("$@")
[ ${#files[@]} -gt 0 ] || mapfile -t files < <(ls native/core/*.cc native/glue/*.cc)
clang-tidy -p "$out" --quiet "${files[@]}"
echo "clang-tidy: ${#files[@]} files clean"
