// Attack on 00014e9 (the abandoned machine's cgroup removal on timers): reclaimAbandoned's
// killAndRemove keeps retrying rmTree(<base>/<machine cgroup name>) for ~5 s after its kill. A start
// of the same name meanwhile (ContainerCgroup.create's EEXIST path) removes the emptied cgroup and
// makes a new one at the same path; the pending retry then removes the new start's cgroup (empty
// until the clone puts PID 1 there), or, once PID 1 is in it, the empty cgroups below it.
// Everything runs under a cgroup parent of the test's own (never nsbox's shared base).
'use strict';
const t = require('tap');
const fs = require('node:fs');
const path = require('node:path');
const { spawn: cpSpawn } = require('node:child_process');
const { isRoot } = require('../helpers');

const skip = !isRoot() ? 'root in the initial user namespace' : false;

function ownParent(t) {
  const { detectCgroupHost } = require('../../dist/cgroup');
  const mp = detectCgroupHost().mountPoint;
  const rel = `/nsbox-attack1-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  fs.mkdirSync(path.join(mp, rel));
  t.teardown(async () => {
    const rm = (d) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) rm(path.join(d, e.name));
      try { fs.writeFileSync(path.join(d, 'cgroup.kill'), '1'); } catch { /* none */ }
      for (let i = 0; i < 100; i++) {
        try { fs.rmdirSync(d); return; } catch { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20); }
      }
    };
    rm(path.join(mp, rel));
  });
  return rel;
}

const populated = (dir) => {
  try {
    return /populated 1/.test(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8'));
  } catch {
    return false;
  }
};

t.test('a pending abandoned-machine cgroup removal does not remove the next start\'s cgroup of that name', { skip }, async (t) => {
  const { detectCgroupHost, withParent, killAndRemove, ContainerCgroup } = require('../../dist/cgroup');
  const host = withParent(detectCgroupHost(), ownParent(t));
  const name = 'm-0123abcd-victim';
  const dir = path.join(host.base, name);
  // What an abandoned start left: its machine's cgroup with a process still running in it. (Tried
  // again where the killed process left before killAndRemove's first attempt: no retry is pending.)
  let pending;
  for (let tries = 0; tries < 20 && !fs.existsSync(dir); tries++) {
    fs.mkdirSync(dir);
    // Many processes: their exit after cgroup.kill outlasts killAndRemove's first attempt.
    const p = cpSpawn('sh', ['-c', 'read x; for i in $(seq 100); do sleep 100 & done; wait'], { stdio: ['pipe', 'ignore', 'ignore'] });
    t.teardown(() => p.kill('SIGKILL'));
    await new Promise((r) => p.on('spawn', r));
    fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(p.pid));
    p.stdin.write('go\n');
    for (const end = Date.now() + 5000; Date.now() < end && fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').trim().split('\n').length < 101; ) await new Promise((r) => setTimeout(r, 10));
    // reclaimAbandoned: kill, first removal attempt (EBUSY while the process dies), retries on timers.
    pending = killAndRemove(dir);
    if (!fs.existsSync(dir)) await pending;
  }
  t.ok(fs.existsSync(dir), 'the removal of the killed cgroup is pending (its process was on its way out)');
  // The start of the same name (claimName then ContainerCgroup.create, same tick in Machine.start);
  // its create is tried once the killed process has left (as a start a moment later would be).
  for (const end = Date.now() + 2000; Date.now() < end && populated(dir); );
  const cg = ContainerCgroup.create(host, undefined, name);
  t.equal(cg.path, dir, 'the new start has its cgroup at the same path');
  t.ok(fs.existsSync(dir), 'made');
  // The new start's clone runs on a worker meanwhile (spawnAsync): the event loop turns.
  await new Promise((r) => setTimeout(r, 300));
  t.ok(fs.existsSync(dir), "the new start's cgroup is still there (before its PID 1 is cloned into it)");
  t.comment(`the old removal resolved ${await pending}`);
  try { fs.rmdirSync(dir); } catch { /* gone */ }
});
