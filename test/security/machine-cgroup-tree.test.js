// Attack on the machine cgroup removal (00014e9, ContainerCgroup.create's EEXIST path): a machine
// may write its own cgroup (machineOps mounts its cgroup namespace's root writable, for a systemd
// inside). A chain of nested cgroups deeper than PATH_MAX allows to name from the host makes
// Node's rmTree fail (ENAMETOOLONG on the joined path), so the machine's cgroup is left behind
// at its stop, and every later start of that machine name fails at cgroup.create.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const path = require('node:path');
const { Machine } = require('../..');
const { busyboxRootfs, machineStateDir, isRoot } = require('../helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const skip = !isRoot() ? 'root in the initial user namespace' : noBusybox || false;

t.test('a machine that nests its cgroups deeply does not break the next start of its name', { skip }, async (t) => {
  const stateDir = machineStateDir(t, 'nsbox-attack1-cgtree-');
  const { detectCgroupHost } = require('../../dist/cgroup');
  const { machineCgroupName } = require('../../dist/machine-state');
  const cg = path.join(detectCgroupHost().base, machineCgroupName(stateDir, 'deep'));
  t.teardown(() => {
    // Cleaned from the bottom with relative paths (what the fix would do).
    if (!fs.existsSync(cg)) return;
    require('node:child_process').spawnSync('bash', ['-c', 'cd "$1" || exit 1; n=0; while [ -d a ]; do cd a; n=$((n+1)); done; while [ $n -gt 0 ]; do cd ..; rmdir a; n=$((n-1)); done; cd /; rmdir "$1"', 'bash', cg], { stdio: 'ignore' });
  });
  const m = await Machine.start({ name: 'deep', rootfs: bb, stateDir });
  const r = await m.run(['/bin/sh', '-c', 'cd /sys/fs/cgroup && i=0; while [ $i -lt 2100 ]; do mkdir a && cd a || break; i=$((i+1)); done; echo depth=$i']);
  t.comment(String(r.stdout).trim() + ' ' + String(r.stderr).trim());
  await m.stop({ timeout: 5000 }).catch((e) => t.comment(`stop: ${e.code} (${e.message.length} characters)`));
  await m.destroy().catch((e) => t.comment(`destroy: ${e.code}`));
  await new Promise((res) => setTimeout(res, 500));
  t.notOk(fs.existsSync(cg), "the machine's cgroup is removed with it");
  let again;
  try {
    again = await Machine.start({ name: 'deep', rootfs: bb, stateDir });
  } catch (e) {
    t.fail(`the next start of the name fails: ${e.code} (step ${e.step})`);
  }
  if (again) {
    t.pass('the next start of the name starts');
    await again.stop({ timeout: 5000 }).catch(() => {});
    await again.destroy().catch(() => {});
  }
});
