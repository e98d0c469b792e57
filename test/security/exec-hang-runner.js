// exec-hang-runner.js: the Node process whose JS thread must not hang (test/security/exec-hang.test.js).
// It finds a machine the test started, runs execs into it while a hostile root inside attacks them,
// and prints one JSON line: what each exec did, the longest stall of its event loop, and what it
// left behind. The test bounds its run time: a runner that hangs never prints, and is killed.
//
//   node exec-hang-runner.js '{"lib": DIR, "stateDir": ..., "name": ..., "scenario": ..., ...}'
//
// `lib` is the nsbox checkout under test (NSBOX_UNDER_TEST in the test: the baseline for the check
// that these tests fail without the fix). Features it lacks (startTimeout, Container.started) are
// left out, so an old build is exercised as it is, not refused for an unknown option.
'use strict';
const fs = require('node:fs');
const { spawn: cpSpawn } = require('node:child_process');

const cfg = JSON.parse(process.argv[2]);
const { Machine, Container } = require(cfg.lib);
const hasStart = Object.getOwnPropertyDescriptor(Container.prototype, 'started') !== undefined;

function counts() {
  let zombies = 0;
  let children = 0;
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) !== process.pid) continue;
      if (rest[0] === 'Z') zombies++;
      else children++;
    } catch {
      /* gone */
    }
  }
  return { fds: fs.readdirSync('/proc/self/fd').length, zombies, children };
}

// The event loop's longest stall: a JS thread blocked in a clone, a read or a wait shows here.
let maxGap = 0;
let last = performance.now();
const hb = setInterval(() => {
  const now = performance.now();
  maxGap = Math.max(maxGap, now - last);
  last = now;
}, 20);

const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');

(async () => {
  const m = await Machine.get(cfg.name, { stateDir: cfg.stateDir });
  // Warm up what Node keeps for the life of the process (libuv's fds, the init's memfd, ...).
  await m.run(['true']);
  await new Promise((r) => setTimeout(r, 50));
  const before = counts();
  let victim = null;
  if (cfg.victim) {
    // A child of this Node process that no exec made: a forged record names it.
    victim = cpSpawn('sleep', ['1000'], { stdio: 'ignore' });
    await new Promise((r) => victim.once('spawn', r));
  }
  say({ ready: true, victim: victim?.pid ?? null });
  // The test starts the attacker now and answers on stdin.
  await new Promise((r) => process.stdin.once('data', r));
  maxGap = 0;
  last = performance.now();

  const results = [];
  for (let i = 0; i < cfg.attempts; i++) {
    const opts = { stdio: 'ignore', ...(cfg.tty ? { tty: true } : {}) };
    if (hasStart) opts.startTimeout = cfg.startTimeout;
    say({ execing: i });
    const t0 = performance.now();
    let c;
    try {
      c = m.exec(cfg.command, opts);
    } catch (e) {
      results.push({ threw: e.code, step: e.step, ms: performance.now() - t0 });
      continue;
    }
    say({ exec: i, pid: c.pid });
    let r;
    try {
      if (hasStart) await c.started;
      r = { started: true };
    } catch (e) {
      r = { code: e.code, step: e.step, message: e.message };
    }
    r.ms = performance.now() - t0;
    if (c.stdout) c.stdout.destroy();
    c.kill('SIGKILL');
    try {
      await c.wait();
    } catch (e) {
      r.waitCode = e.code;
    }
    results.push(r);
    // Enough starts the attack reached (a start it missed just ran).
    if (cfg.stopAfter && results.filter((x) => !x.started).length >= cfg.stopAfter) break;
  }
  await new Promise((r) => setTimeout(r, 100));
  let victimAlive = null;
  if (victim) {
    const st = fs.readFileSync(`/proc/${victim.pid}/stat`, 'utf8');
    victimAlive = st.slice(st.lastIndexOf(')') + 2)[0] !== 'Z';
    victim.kill('SIGKILL');
    await new Promise((r) => victim.once('exit', r));
  }
  await new Promise((r) => setTimeout(r, 100));
  clearInterval(hb);
  say({ done: true, hasStart, results, maxGap, before, after: counts(), victimAlive });
  process.stdin.destroy();
})().catch((e) => {
  say({ error: String(e && e.stack) });
  process.exit(1);
});
