// The path and privilege attacks again, in a process where openat2 and the new mount API answer ENOSYS
// (a seccomp filter installed by the harness), so the per-component walk is what stands in the way.
'use strict';
const t = require('tap');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

t.test('the path and privilege battery passes with openat2 and the new mount API hidden', async (t) => {
  const r = spawnSync(process.execPath, [path.join(__dirname, 'fallback-runner.js')], { encoding: 'utf8', timeout: 240000, env: { ...process.env, NSBOX_FORCE_PATH_WALK: '' } });
  t.match(r.stdout, /fallback harness: openat2 and the new mount API answer ENOSYS/, 'the harness hid them');
  const failed = r.stdout.split('\n').filter((l) => /^\s*not ok/.test(l));
  t.same(failed, [], 'no attack succeeded');
  t.equal(r.status, 0, r.stderr.slice(-2000));
  const passed = r.stdout.split('\n').filter((l) => /^\s*ok \d+ - /.test(l)).length;
  t.ok(passed >= 20, `the attacks ran (${passed} passing test points)`);
});
