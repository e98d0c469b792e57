#!/usr/bin/env node
// `nsbox-runtime`: an OCI runtime with runc's command line (lib/oci/runtime.ts, docs/oci.md).
'use strict';

let rt;
try {
  rt = require('../dist/oci/runtime.js');
} catch (e) {
  process.stderr.write(`nsbox-runtime: cannot load: ${e && e.message ? e.message : e}\n`);
  process.exitCode = 1;
  return;
}

rt.main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`nsbox-runtime: internal error: ${e && e.stack ? e.stack : e}\n`);
    process.exitCode = 1;
  },
);
