// Two findings of the review about machines: a Machine.start that fails after the clone must not
// leave PID 1 running without state, and the host's power counters (powercap) are masked in /sys.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { execFileSync } = require('node:child_process');
const { busyboxRootfs, isRoot, noCgroup, machineStateDir } = require('../helpers');

// NSBOX_TEST_LIB: the nsbox checkout to test (to show a build without the fix fail).
const lib = process.env.NSBOX_TEST_LIB || path.join(__dirname, '..', '..');
const { Machine } = require(lib);

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const skip = noBusybox || (!isRoot() && 'needs root (a tmpfs state directory)');

/** Host pids whose cgroup path contains `part`. */
function pidsInCgroup(part) {
  const out = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (fs.readFileSync(`/proc/${p}/cgroup`, 'utf8').includes(part)) out.push(Number(p));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Cgroup directories named `name` anywhere under the v2 mount (a few levels deep). */
function cgroupDirs(name) {
  try {
    return execFileSync('find', ['/sys/fs/cgroup', '-maxdepth', '5', '-type', 'd', '-name', name], { encoding: 'utf8' }).split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

function ownFds() {
  return fs.readdirSync('/proc/self/fd').length;
}

t.test('a Machine.start that fails writing its state leaves no PID 1, cgroup or fd behind', { skip: skip || noCgroup() }, async (t) => {
  // The state directory is a tiny tmpfs, filled up: the start gets as far as the clone (the
  // name's directory and the empty console log need no space), then writing state.json fails.
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-full-state-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', stateDir]);
  const name = 'nospace';
  const cgName = `m-${crypto.createHash('sha256').update(stateDir).digest('hex').slice(0, 8)}-${name}`;
  t.teardown(() => {
    // Whatever a failing build left behind: its processes and cgroup, then the tmpfs.
    for (const d of cgroupDirs(cgName)) {
      try {
        fs.writeFileSync(path.join(d, 'cgroup.kill'), '1');
      } catch {}
    }
    for (let i = 0; i < 50 && pidsInCgroup(cgName).length; i++) execFileSync('sleep', ['0.1']);
    for (const d of cgroupDirs(cgName)) fs.rmSync(d, { recursive: true, force: true });
    try {
      execFileSync('umount', [stateDir]);
    } catch {}
    fs.rmSync(stateDir, { recursive: true, force: true });
  });
  try {
    fs.writeFileSync(path.join(stateDir, 'filler'), Buffer.alloc(1024 * 1024));
  } catch (e) {
    t.equal(e.code, 'ENOSPC', 'the state directory is full');
  }
  // Warm up (the init memfd, the template) so that the fd count compares like with like.
  await Machine.start({ name: 'warm', rootfs: bb, ephemeral: true, stateDir: fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-warm-')) })
    .then(async (m) => {
      await m.stop({ timeout: 5000 });
      await m.destroy();
      fs.rmSync(m.stateDir, { recursive: true, force: true });
    });
  const fdsBefore = ownFds();
  const e = await Machine.start({ name, rootfs: bb, ephemeral: true, stateDir }).catch((x) => x);
  t.type(e, Error, 'the start fails');
  t.equal(e.code, 'ENOSPC', e.message);
  t.same(pidsInCgroup(cgName), [], 'no process of the machine is left running');
  t.same(cgroupDirs(cgName), [], "the machine's cgroup is gone");
  t.equal(ownFds(), fdsBefore, 'no fd of the start (pidfd, console log) is left open');
  t.notOk(fs.existsSync(path.join(stateDir, name)), 'no state directory is left');
});

t.test('machines mask powercap in /sys, wherever the host has it', async (t) => {
  // The ops are made only for paths the host has; this host may have none (CONFIG_POWERCAP off).
  const { MASKED_SYS_DIRS } = require(path.join(lib, 'dist', 'fsops'));
  t.ok(Array.isArray(MASKED_SYS_DIRS) && MASKED_SYS_DIRS.includes('/sys/devices/virtual/powercap'), 'powercap is in the list');
  t.ok(MASKED_SYS_DIRS.includes('/sys/firmware'), 'and the firmware tables');
});

const present = ['/sys/devices/virtual/powercap', '/sys/firmware'].filter((p) => fs.existsSync(p));
t.test("a machine cannot read the host's powercap (RAPL energy counters) or firmware tables", { skip: skip || (!present.length && 'the host has neither /sys/devices/virtual/powercap nor /sys/firmware') }, async (t) => {
  const stateDir = machineStateDir(t, 'nsbox-sysmask-');
  const m = await Machine.start({ name: 'sysmask', rootfs: bb, ephemeral: true, stateDir });
  t.teardown(async () => {
    await m.stop({ timeout: 5000 }).catch(() => {});
    await m.destroy().catch(() => {});
  });
  for (const p of present) {
    const host = fs.readdirSync(p);
    const r = await m.run(['/bin/sh', '-c', `ls -A ${p}; find ${p} -name energy_uj -exec cat {} + 2>&1; echo end`]);
    t.equal(r.stdout.toString(), 'end\n', `${p} is empty inside (the host has ${host.length} entries)`);
  }
  if (!fs.existsSync('/sys/devices/virtual/powercap')) t.comment('this host has no powercap (CONFIG_POWERCAP off): only the other masks were checked');
});
