#!/bin/sh
# Builds the bundled init as a static executable without libc (called by binding.gyp).
# Usage: build.sh OUTPUT
set -eu
here=$(dirname "$0")
exec "${CC:-cc}" -Os -static -nostdlib -ffreestanding -fno-stack-protector \
  -fno-asynchronous-unwind-tables -fno-pie -no-pie -Wall -Wextra -Werror -Wl,--gc-sections \
  -o "$1" "$here/init.c"
