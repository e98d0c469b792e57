// NSBOX_DEBUG=1 (or DEBUG naming nsbox, as the debug package reads it): each start's steps on
// stderr with the ms since it began, in the order they happen; nothing without it. Run in child
// Node processes, since the setting is read once, when nsbox is loaded (lib/env.ts).
'use strict';
const t = require('tap');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { debugEnables } = require('../dist/env');

const root = path.join(__dirname, '..');

// A run (and a spawn that fails at exec) in a child; prints the exit code.
const script = `
const { run, spawn } = require(${JSON.stringify(root)});
(async () => {
  const r = await run({ command: ['/bin/true'] });
  try { spawn({ command: ['/no/such/command'] }); } catch (e) { process.stdout.write(e.code + ' '); }
  process.stdout.write(String(r.exitCode));
})().catch((e) => { process.stdout.write('FAILED ' + e.message); });
`;

function child(env) {
  const clean = { ...process.env };
  delete clean.NSBOX_DEBUG;
  delete clean.DEBUG;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000, env: { ...clean, ...env } });
  if (r.error) throw r.error;
  return r;
}

/** The trace lines of stderr as [id, ms, step]. */
function lines(stderr) {
  return stderr
    .split('\n')
    .filter(Boolean)
    .map((l) => /^nsbox\[(\d+)\] (\S+) \+(\d+\.\d\d)ms (.*)$/.exec(l))
    .map((m) => (m ? [m[2], Number(m[3]), m[4]] : null));
}

const RUN_STEPS = [/^options resolved$/, /^plan built$/, /^cgroup /, /^clone /, /^exec done \(pid \d+; its error pipe closed\)$/, /^exit \(code 0\)$/, /^exit handled /];

for (const env of [{ NSBOX_DEBUG: '1' }, { DEBUG: 'express:*,nsbox' }, { DEBUG: 'nsbox:*' }]) {
  t.test(`${Object.entries(env)[0].join('=')}: each step of a run on stderr, in order, with its ms`, async (t) => {
    const r = child(env);
    if (r.stdout.startsWith('FAILED')) return t.skip(`no container can start here: ${r.stdout}`);
    t.equal(r.stdout, 'ENOENT 0', 'the run exited 0; the spawn failed at exec');
    const all = lines(r.stderr);
    t.same(all.filter((l) => l === null), [], `every stderr line is a trace line:\n${r.stderr}`);
    const run = all.filter((l) => l[0] === 'run#1');
    t.equal(run.length, RUN_STEPS.length, `the run's steps: ${run.map((l) => l[2]).join(' | ')}`);
    for (const [i, re] of RUN_STEPS.entries()) t.match(run[i]?.[2], re, `step ${i + 1}: ${re}`);
    const ms = run.map((l) => l[1]);
    t.same(ms, [...ms].sort((a, b) => a - b), 'the ms since the start never go back');
    // The failed spawn is a start of its own, ended by the step that failed.
    const spawn = all.filter((l) => l[0] === 'spawn#2').map((l) => l[2]);
    t.match(spawn, ['options resolved', 'plan built', /^cgroup /, /^clone /, /^failed at step exec \(errno 2\)$/], spawn.join(' | '));
  });
}

for (const env of [{}, { NSBOX_DEBUG: '0' }, { NSBOX_DEBUG: '' }, { DEBUG: 'express:*' }, { DEBUG: '*,-nsbox' }]) {
  t.test(`${JSON.stringify(env)}: no trace lines`, async (t) => {
    const r = child(env);
    if (r.stdout.startsWith('FAILED')) return t.skip(`no container can start here: ${r.stdout}`);
    t.equal(r.stdout, 'ENOENT 0');
    t.equal(r.stderr, '', 'nothing on stderr');
  });
}

t.test('NSBOX_DEBUG=1: a pool run and a machine start and exec trace their steps in order', async (t) => {
  const { rootfs, reason } = require('./helpers').busyboxRootfs();
  if (!rootfs) return t.skip(reason);
  const stateDir = require('./helpers').machineStateDir(t, 'nsbox-trace-');
  const code = `
const { createPool, Machine } = require(${JSON.stringify(root)});
(async () => {
  const pool = createPool({ size: 1 });
  await pool.run(['/bin/true']);
  await pool.close();
  const m = await Machine.start({ name: 'trace', rootfs: ${JSON.stringify(rootfs)}, stateDir: ${JSON.stringify(stateDir)}, ephemeral: true });
  await m.run(['/bin/true']);
  await m.stop();
  await m.destroy();
  process.stdout.write('done');
})().catch((e) => { process.stdout.write('FAILED ' + e.message); });
`;
  const clean = { ...process.env };
  delete clean.DEBUG;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 120_000, env: { ...clean, NSBOX_DEBUG: '1' } });
  if (r.stdout.startsWith('FAILED')) return t.skip(`no machine can start here: ${r.stdout}`);
  t.equal(r.stdout, 'done');
  const all = lines(r.stderr).filter(Boolean);
  const of = (kind) => {
    const ids = [...new Set(all.map((l) => l[0]).filter((id) => id.startsWith(kind + '#')))];
    return all.filter((l) => l[0] === ids[0]).map((l) => l[2]);
  };
  t.match(of('pool.fill'), ['plan built', /^cgroup /, /^clone /, /^cloned \(pid \d+\); set up, waiting for its command$/], 'a pool fill: set up, then waiting');
  // The run took the ready container, or (the fill not done yet) started one of its own.
  t.match(of('pool.run'), [/^options resolved; /, /^command written/, /^exec done/, /^exit \(code 0\)$/, /^exit handled /], 'a pool run');
  t.match(of('machine.start'), ['options resolved', 'ops built', /^cgroup /, 'plan built', /^clone /, /^exec done/, /^started/], 'a machine start');
  const exec = of('machine.exec');
  t.match(exec.slice(0, 3), ['options resolved', /^plan built/, /^clone /], 'a machine exec: up to the clone');
  // The exit and the error pipe's end come from two watchers: either may be seen first.
  t.same(exec.slice(3).map((s) => s.split(' ')[0]).sort(), ['cloned', 'exec', 'exit', 'exit'], `then cloned, exec done, exit, exit handled: ${exec.join(' | ')}`);
});

t.test('DEBUG is read as the debug package reads it', async (t) => {
  const names = ['nsbox', 'nsbox:start'];
  for (const v of ['nsbox', 'nsbox*', 'nsbox:*', '*', 'a,nsbox', 'a nsbox', 'a:*,nsbox:start']) t.ok(debugEnables(v, names), `DEBUG=${v}`);
  for (const v of [undefined, '', 'express:*', 'nsboxx', '*,-nsbox', '*,-nsbox:*', 'nsbox,-nsbox']) t.notOk(debugEnables(v, names), `DEBUG=${v}`);
});
