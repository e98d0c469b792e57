#!/usr/bin/env node
// The package's install script (package.json scripts.install). Where nsbox runs (Linux on x64 or
// arm64): node-gyp-build, which keeps a prebuild that loads (prebuilds/linux-<arch>, made by
// scripts/prebuild.js) and runs `node-gyp rebuild` only when none does or when asked
// (--build-from-source, npm_config_build_from_source=true). Anywhere else there is nothing to build:
// the package installs, and every start fails with ENOTSUP naming the platform (lib/platform.ts).
'use strict';
if (process.platform !== 'linux' || !['x64', 'arm64'].includes(process.arch)) {
  console.error(`nsbox: no native build on ${process.platform}/${process.arch} (nsbox runs on Linux on x64 and arm64)`);
  process.exit(0);
}
require('node-gyp-build/bin.js');
