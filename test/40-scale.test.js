// Many containers in a row and at once: every one is reaped and cleaned up, and the Node process
// neither gains threads (exits are watched on the event loop, not by a thread per child) nor fds.
'use strict';
const t = require('tap');
const { run } = require('..');
const { warmUp, snapshot, assertNoLeaks, threads } = require('./helpers');

let before;
let threadsBefore;
t.before(async () => {
  before = await warmUp();
  threadsBefore = threads();
});

t.test('500 sequential containers all exit 0 and leave nothing behind', async (t) => {
  let ok = 0;
  let maxThreads = 0;
  for (let i = 0; i < 500; i++) {
    const r = await run({ command: ['/bin/true'] });
    if (r.exitCode === 0) ok++;
    if (i % 50 === 0) maxThreads = Math.max(maxThreads, threads());
  }
  t.equal(ok, 500);
  t.equal(maxThreads, threadsBefore, 'thread count stayed flat');
  await assertNoLeaks(t, before, 'after 500 sequential containers');
});

t.test('200 concurrent containers (Promise.all) all exit 0 and leave nothing behind', async (t) => {
  let maxThreads = 0;
  const sampler = setInterval(() => (maxThreads = Math.max(maxThreads, threads())), 5);
  const results = await Promise.all(
    Array.from({ length: 200 }, (_, i) => run({ command: ['/bin/sh', '-c', `sleep 0.2; exit ${i % 7}`] })),
  );
  clearInterval(sampler);
  t.same(results.map((r) => r.exitCode), Array.from({ length: 200 }, (_, i) => i % 7), 'each got its own exit code');
  t.equal(maxThreads, threadsBefore, `thread count stayed flat while 200 ran (${maxThreads})`);
  await assertNoLeaks(t, before, 'after 200 concurrent containers');
});
