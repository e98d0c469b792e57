#!/usr/bin/env node
// The `nsbox` command: lib/cli.ts (compiled to dist/cli.js) and the parts under lib/cli/.
'use strict';

let cli;
try {
  cli = require('../dist/cli.js');
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && /dist[\\/]cli\.js/.test(String(e.message))) {
    process.stderr.write("nsbox: dist/cli.js is missing; build the package first (npm run build:ts)\n");
  } else {
    process.stderr.write(`nsbox: cannot load: ${e && e.message ? e.message : e}\n`);
  }
  process.exitCode = 125;
  return;
}

cli.main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`nsbox: internal error: ${e && e.stack ? e.stack : e}\n`);
    process.exitCode = 125;
  },
).finally(() => {
  // Normally nothing is left and Node exits by itself once stdout/stderr are flushed. Should some
  // handle still hold the event loop, leave anyway; the unref'd timer itself keeps nothing alive.
  setTimeout(() => process.exit(), 2000).unref();
});
