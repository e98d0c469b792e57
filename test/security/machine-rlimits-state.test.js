// Attack on the rlimits option (2908d8a) at a later Machine.exec: a machine's rlimits are stored in
// state.json as resolved triples ([name, soft, hard], -1 for unlimited) and every exec passes them
// through resolveRlimits again, which refuses -1 (an amount is 0..MAX_SAFE_INTEGER, Infinity or
// 'unlimited'). So a machine started with an 'unlimited' (or Infinity) limit cannot exec anything.
'use strict';
const t = require('tap');
const { Machine } = require('../..');
const { busyboxRootfs, machineStateDir } = require('../helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();

t.test("a machine started with an 'unlimited' rlimit still execs, and its exec gets that limit", { skip: noBusybox }, async (t) => {
  const stateDir = machineStateDir(t, 'nsbox-attack1-rl-');
  // core: the machine profile's default is 0; unlimited needs no more than the caller's own hard limit.
  const own = require('../../dist/rlimits').ownRlimit('core');
  const hard = own && own.hard === -1 ? 'unlimited' : Infinity;
  t.comment(`this process's core hard limit: ${own ? own.hard : 'unknown'}`);
  const m = await Machine.start({ name: 'rl', rootfs: bb, stateDir, rlimits: { core: { soft: 0, hard } } });
  let r;
  try {
    r = await m.run(['/bin/sh', '-c', 'ulimit -H -c']);
  } catch (e) {
    r = { error: `${e.code}: ${e.message}` };
  }
  t.notOk(r.error, `the exec starts (${r.error ?? 'ok'})`);
  if (!r.error) t.equal(String(r.stdout).trim(), 'unlimited');
  await m.stop({ timeout: 5000 }).catch(() => {});
  await m.destroy().catch(() => {});
});
