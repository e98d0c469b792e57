#!/usr/bin/env node
// A CI step: runs a repository's tests in a container and exits with their exit status.
//
//   node examples/ci-step.js --rootfs /srv/rootfs/debian --repo . -- make test
//   node examples/ci-step.js --image busybox --repo . --copy -- sh ./run-tests.sh
//
// The repository is bound read-only at /src (the working directory), so the tests cannot change
// the checkout; /scratch is a writable tmpfs (HOME and TMPDIR point there) that goes away with the
// container. With --copy the checkout is first copied to /scratch/src inside the container, for
// test suites that write into their own tree; the host copy is still never written. The tests run
// as the owner of the repository directory, with no network (--network loopback for a lo).
//
// The tests' own output goes to stderr as it comes; stdout gets one JSON line with the result:
//   {"event":"result","exitCode":1,"signal":null,"timedOut":false,"durationMs":412,"status":1}
// Exit status: the tests' (128 + n when killed by signal n, 124 past --timeout, 125 when the
// container could not start, 2 for a bad command line).
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { finished } = require('node:stream/promises');
const { parseArgs } = require('node:util');
const { spawn, NsboxError } = require('nsbox');

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true, // the test command, after `--`
    options: {
      rootfs: { type: 'string' },
      image: { type: 'string' },
      store: { type: 'string' }, // with --image: the image store (default: nsbox's)
      repo: { type: 'string', default: '.' },
      copy: { type: 'boolean', default: false },
      timeout: { type: 'string', default: String(30 * 60 * 1000) },
      network: { type: 'string', default: 'none' },
      scratch: { type: 'string', default: '512M' }, // the tmpfs's size (RAM)
    },
  });
  if (positionals.length === 0 || !values.rootfs === !values.image || !['none', 'loopback'].includes(values.network)) {
    emit({ event: 'error', message: 'usage: ci-step.js (--rootfs DIR | --image REF [--store DIR]) [--repo DIR] [--copy] [--timeout MS] [--network none|loopback] -- COMMAND...' });
    return 2;
  }
  const repo = path.resolve(values.repo);
  const owner = fs.statSync(repo); // the tests run with the checkout owner's ids

  // --copy: a shell inside the container copies the checkout and then becomes the test command.
  const command = values.copy
    ? ['sh', '-c', 'cp -a /src/. /scratch/src && cd /scratch/src && exec "$@"', 'ci-step', ...positionals]
    : positionals;

  const c = spawn({
    ...(values.rootfs ? { rootfs: values.rootfs } : { image: values.image, storeDir: values.store }),
    command,
    cwd: '/src',
    user: { uid: owner.uid, gid: owner.gid },
    env: { PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', HOME: '/scratch', TMPDIR: '/scratch', CI: 'true' },
    mounts: [
      { type: 'bind', source: repo, target: '/src', readonly: true },
      { type: 'tmpfs', target: '/scratch', size: values.scratch, mode: 0o1777 },
    ],
    network: values.network,
    timeout: Number(values.timeout),
    init: true, // reaps whatever the test suite leaves running in the background
  });
  // A cancelled CI job (SIGTERM, Ctrl-C) ends the container too.
  const cancel = () => c.kill('SIGKILL');
  process.on('SIGTERM', cancel);
  process.on('SIGINT', cancel);

  c.stdin.end(); // the tests read end-of-file, not the CI runner's stdin
  c.stdout.pipe(process.stderr, { end: false });
  c.stderr.pipe(process.stderr, { end: false });
  const [info] = await Promise.all([c.wait(), finished(c.stdout), finished(c.stderr)]);
  process.off('SIGTERM', cancel);
  process.off('SIGINT', cancel);

  const status = info.timedOut ? 124 : info.signal ? 128 + os.constants.signals[info.signal] : info.exitCode;
  emit({ event: 'result', exitCode: info.exitCode, signal: info.signal, timedOut: info.timedOut, durationMs: Math.round(info.durationMs), status });
  return status;
}

main().then(
  (status) => {
    process.exitCode = status;
  },
  (e) => {
    // The container did not start (no such rootfs, command not found, ...): not the tests' fault.
    emit({ event: 'error', message: e.message, code: e instanceof NsboxError ? e.code : undefined, step: e.step });
    process.exitCode = 125;
  },
);
