// Machine.exec against a hostile root inside the machine (docs/security.md, "What a machine can
// reach during exec"). Each test runs the execs in a child Node process (exec-hang-runner.js) whose
// run time the test bounds: on a build where the machine can hang Node's JS thread the runner never
// answers and the test fails instead of hanging the suite. The runner also reports its event
// loop's longest stall, what each exec did, and what it left behind (fds, zombies, children).
//
// NSBOX_UNDER_TEST=DIR runs the execs with another build (e.g. the commit before the fix), to
// check that these tests fail there.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawn: cpSpawn } = require('node:child_process');
const { Machine } = require('../..');
const { busyboxRootfs, machineStateDir, isRoot, noCgroup, once } = require('../helpers');

const LIB = process.env.NSBOX_UNDER_TEST ? path.resolve(process.env.NSBOX_UNDER_TEST) : path.join(__dirname, '..', '..');
// How long a runner may take before it counts as hung (each test's own work takes a few seconds).
const BOUND_MS = 20000;
// The runner's event loop may stall this long (a clone, GC, a loaded CI host), no more.
const MAX_STALL_MS = 1000;
const START_TIMEOUT = 1500;

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const skip = noBusybox || (!isRoot() && 'machine root with host capabilities needs root (no user namespace)') || false;
const stateDir = skip ? null : machineStateDir(t, 'nsbox-exec-hang-');

/** The attack helper, static (it runs inside the busybox machine), in a directory of its own. */
function attackDir() {
  const src = path.join(__dirname, 'exec-attack.c');
  const dir = path.join(__dirname, '..', '.fixtures', 'exec-attack');
  const out = path.join(dir, 'exec-attack');
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs < fs.statSync(src).mtimeMs) fs.rmSync(out);
  once(out, (tmp) => execFileSync(process.env.CC || 'cc', ['-O2', '-static', '-Wall', '-o', tmp, src], { stdio: 'inherit' }));
  return dir;
}

async function startMachine(t, name) {
  const m = await Machine.start({ name, rootfs: bb, ephemeral: true, stateDir, mounts: [{ type: 'bind', source: attackDir(), target: '/x', readonly: true }] });
  t.teardown(async () => {
    m.kill('SIGKILL');
    await m.stop({ timeout: 2000 }).catch(() => {});
    await m.destroy().catch(() => {});
  });
  return m;
}

/** Lines of a stream, as they come. */
function lines(stream, onLine) {
  let buf = '';
  stream.on('data', (d) => {
    buf += d;
    for (let i; (i = buf.indexOf('\n')) >= 0; ) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

/**
 * Runs the runner against machine m: `attack(victimPid)` starts the attacker once the runner is
 * ready; `during(runnerPid, line)` sees each line the runner prints. Resolves with its final report,
 * { hung: true } when it did not finish within BOUND_MS (it is killed then), or { died } when it
 * exited without a report.
 */
function runRunner(t, m, cfg, attack, during = () => {}) {
  return new Promise((resolve) => {
    const child = cpSpawn(process.execPath, [path.join(__dirname, 'exec-hang-runner.js'), JSON.stringify({ lib: LIB, stateDir, name: m.name, ...cfg })], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let report = null;
    let bound = false;
    const timer = setTimeout(() => {
      bound = true;
      child.kill('SIGKILL');
    }, BOUND_MS);
    lines(child.stdout, async (line) => {
      const o = JSON.parse(line);
      if (o.ready) {
        await attack(o.victim);
        child.stdin.write('go\n');
      } else if (o.done || o.error) {
        report = o;
      } else {
        during(child.pid, o);
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(report ?? (bound ? { hung: true } : { died: `exit code ${code}, signal ${signal}` }));
    });
  });
}

/** Asserts the runner finished, never stalled and left nothing behind. */
function checkRunner(t, r, what) {
  t.notOk(r.hung, `Node's JS thread was not hung by ${what} (the runner answered within ${BOUND_MS} ms)`);
  if (r.hung) return false;
  t.notOk(r.died, `Node did not die of ${what} (${r.died})`);
  if (r.died) return false;
  t.notOk(r.error, r.error ?? 'runner ran');
  if (r.error) return false;
  t.ok(r.hasStart, 'the build under test has the async start (Container.started, startTimeout)');
  t.ok(r.maxGap < MAX_STALL_MS, `the runner's event loop never stalled (longest: ${Math.round(r.maxGap)} ms)`);
  t.same(r.after, r.before, 'nothing left behind in the runner (fds, zombies, live children)');
  for (const x of r.results) t.ok(x.ms < START_TIMEOUT + 1000, `every exec settled within its start limit (${Math.round(x.ms)} ms: ${x.code ?? 'started'})`);
  return true;
}

/** Host pids of the processes in pid namespace `ns` that are children of `ppid`. */
function childrenIn(ns, ppid) {
  const out = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (rest[0] !== 'Z' && Number(rest[1]) === ppid && fs.readlinkSync(`/proc/${e}/ns/pid`) === ns) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Starts `argv` inside m as the attacker; resolves once it printed `readyRe` (or at once; at most 30 s: a busy host). */
async function attacker(t, m, argv, readyRe) {
  const c = m.exec(argv, { stdio: 'pipe' });
  const out = [];
  const ready = new Promise((resolve) => {
    if (!readyRe) resolve();
    lines(c.stdout, (l) => {
      out.push(l);
      if (readyRe && readyRe.test(l)) resolve();
    });
  });
  c.stderr.resume();
  t.teardown(async () => {
    c.kill('SIGKILL');
    await c.wait().catch(() => {});
  });
  await Promise.race([ready, new Promise((r) => setTimeout(r, 30000).unref())]);
  return out;
}

t.test('machine root stopping every process cannot hang Machine.exec', { skip }, async (t) => {
  const m = await startMachine(t, 'stopper');
  const r = await runRunner(t, m, { scenario: 'stop', command: ['true'], attempts: 8, stopAfter: 2, startTimeout: START_TIMEOUT }, async () => {
    // kill -1: every process of the machine's pid namespace but PID 1 and the shell itself.
    await attacker(t, m, ['sh', '-c', 'echo go; while :; do kill -STOP -1 2>/dev/null; done'], /^go/);
  });
  if (!checkRunner(t, r, 'a machine stopping every process')) return;
  const timedOut = r.results.filter((x) => x.code === 'ETIMEDOUT');
  t.ok(timedOut.length >= 1, `the attack landed (${timedOut.length} of ${r.results.length} starts were stopped)`);
  for (const x of timedOut) {
    t.equal(x.step, 'exec.start', 'ETIMEDOUT names the stage');
    t.equal(x.waitCode, 'ETIMEDOUT', 'wait() rejects with the start error once the process is reaped');
  }
});

t.test("the process entering a machine does not share Node's memory while the machine can reach it", { skip }, async (t) => {
  // Held inside the machine before its execve (its open of the machine's /dev/null waits on a
  // lease), where machine root with CAP_SYS_PTRACE could ptrace it and, through a shared mm,
  // write Node's memory: kcmp(KCMP_VM) against the runner says whether it shares the runner's mm.
  const m = await startMachine(t, 'sharer');
  let mm = null;
  const r = await runRunner(
    t,
    m,
    { scenario: 'mm', command: ['true'], attempts: 1, startTimeout: START_TIMEOUT },
    async () => {
      await attacker(t, m, ['/x/exec-attack', 'lease', '/dev/null'], /^leased/);
    },
    async (runnerPid, o) => {
      if (o.execing === undefined || mm) return;
      const ns = fs.readlinkSync(`/proc/${m.pid}/ns/pid`);
      for (let i = 0; i < 50 && !mm; i++) {
        for (const pid of childrenIn(ns, runnerPid)) {
          mm = execFileSync(path.join(attackDir(), 'exec-attack'), ['kcmp', String(runnerPid), String(pid)]).toString().trim();
          break;
        }
        if (!mm) await new Promise((r) => setTimeout(r, 20));
      }
    },
  );
  t.equal(mm, 'differ', "the process held inside the machine before its execve has an mm of its own (kcmp KCMP_VM: not Node's)");
  if (!checkRunner(t, r, 'an open that waits on a lease inside the machine')) return;
  for (const x of r.results) t.match(x, { code: 'ETIMEDOUT', step: 'exec.start' }, 'the start timed out and was killed');
});

t.test('machine root holding a lease on /dev/ptmx cannot hang a tty exec (a path opened inside the machine)', { skip }, async (t) => {
  // The pty comes from the devpts at /dev/pts (checked to be one, its ptmx a device: no lease can
  // be taken on it); the machine's /dev/ptmx, a file it may lease, is not opened any more.
  const m = await startMachine(t, 'leaser');
  const r = await runRunner(t, m, { scenario: 'lease', tty: true, command: ['true'], attempts: 2, startTimeout: START_TIMEOUT }, async () => {
    const out = await attacker(t, m, ['/x/exec-attack', 'lease', '/dev/ptmx'], /^leased/);
    t.match(out.join('\n'), /leased \/dev\/ptmx/, 'the attacker holds a write lease on /dev/ptmx');
  });
  if (!checkRunner(t, r, 'an open that waits on a lease inside the machine')) return;
  for (const x of r.results) t.ok(x.started, `the tty exec started all the same (${x.code ?? x.threw ?? 'started'})`);
});

for (const [mode, expect] of [
  ['entered', { code: 'EPROTO', step: 'spawn.sync' }],
  ['error', { code: 'ENOENT', step: 'exec' }],
  ['partial', { code: 'ETIMEDOUT', step: 'exec.start' }],
]) {
  t.test(`a forged ${mode} record on the error pipe makes Node wait on, signal or report about no other process`, { skip }, async (t) => {
    const m = await startMachine(t, `forger-${mode}`);
    let forged = [];
    const r = await runRunner(t, m, { scenario: 'forge', victim: true, command: ['sleep', '5'], attempts: 8, stopAfter: 2, startTimeout: START_TIMEOUT }, async (victim) => {
      forged = await attacker(t, m, ['/x/exec-attack', 'forge', mode, String(victim), 'any'], /^watching/);
    });
    if (!checkRunner(t, r, `a forged ${mode} record`)) return;
    t.equal(r.victimAlive, true, 'the process the forged record names was neither signalled nor reaped');
    t.ok(forged.some((l) => /^forged/.test(l)), `the attacker wrote its record (${forged.join('; ')})`);
    // A start the attacker did not catch in time (it scans /proc) just runs.
    const hit = r.results.filter((x) => !x.started);
    t.ok(hit.length >= 1, `the attack landed (${hit.length} of ${r.results.length} starts)`);
    for (const x of hit) t.match(x, expect, `the start failed as the record says, no more (${x.message})`);
  });
}

t.test('machine root seizing the process entering it finds no fd that climbs to the host', { skip }, async (t) => {
  // The attacker waits for the next pid of the machine, seizes it with ptrace before it can close
  // anything, takes its fds, and climbs ".." from every directory among them toward a host file.
  // On 5522d3d the process carried Node's fd table (the machine's cgroup directory among it).
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'nsbox-climb-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'marker'), 'host\n');
  const rel = path.join(dir, 'marker').slice(1);
  const m = await startMachine(t, 'climb');
  // The entering process lives on as `sleep 1`, so that the attacker always seizes it; whether it
  // did so before the exec (comm "nsbox-starting", the window the attack is about) depends on the
  // scheduler, so of five rounds at least one must have.
  const comms = [];
  for (let round = 0; round < 5; round++) {
    const attacker = m.exec(['/x/exec-attack', 'climb', rel]);
    let out = '';
    attacker.stdout.on('data', (d) => (out += d));
    for (let i = 0; i < 2000 && !/^ready$/m.test(out); i++) await new Promise((r) => setTimeout(r, 10));
    await m.run(['/bin/sleep', '1']).catch(() => {});
    const done = await Promise.race([attacker.wait(), new Promise((r) => setTimeout(() => r(null), 5000))]);
    if (done === null) attacker.kill('SIGKILL');
    await attacker.wait().catch(() => {});
    const seized = /^seized \d+ (.*)$/m.exec(out);
    t.ok(seized, `round ${round}: the attacker seized the next process (${seized ? seized[0] : out.trim()})`);
    if (seized) comms.push(seized[1]);
    t.notMatch(out, /ESCAPED/, `round ${round}: no fd of it led to the host's files (${out.trim().split('\n').pop()})`);
  }
  t.ok(comms.includes('nsbox-starting'), `at least one round seized it before its exec (${comms.join(', ')})`);
});

t.test('a pty master stolen on its way to Node fails only that exec, and leaves no zombie', { skip }, async (t) => {
  // Racing the process before its execve (it holds a copy of Node's end of the socket on the
  // build before the fix; now it holds only what its plan needs, so there is nothing to take).
  const m = await startMachine(t, 'thief');
  let stolen = [];
  const r = await runRunner(t, m, { scenario: 'steal', tty: true, command: ['true'], attempts: 30, startTimeout: START_TIMEOUT }, async () => {
    stolen = await attacker(t, m, ['/x/exec-attack', 'steal'], /^watching/);
  });
  t.comment(`stolen: ${stolen.filter((l) => /^stole/.test(l)).length} (${stolen.slice(0, 3).join('; ')})`);
  if (!checkRunner(t, r, 'a thief of pty masters')) return;
  for (const x of r.results.filter((y) => y.code || y.threw)) t.match(x, { step: 'exec.pty' }, `a start without its master fails at exec.pty (${x.code})`);
  t.equal(stolen.filter((l) => /^stole/.test(l)).length, 0, 'the process inside the machine holds no fd of Node to steal the master from');
});

t.test('an fd injected ahead of the pty master is refused, and the exec leaves no zombie', { skip }, async (t) => {
  const m = await startMachine(t, 'injector');
  let injected = [];
  const r = await runRunner(t, m, { scenario: 'inject', tty: true, command: ['true'], attempts: 40, stopAfter: 2, startTimeout: START_TIMEOUT }, async () => {
    injected = await attacker(t, m, ['/x/exec-attack', 'inject', 'stop'], /^watching/);
  });
  if (!checkRunner(t, r, 'an injected fd')) return;
  const refused = r.results.filter((x) => x.code);
  for (const x of refused) t.match(x, { code: 'EPROTO', step: 'exec.pty' }, 'what is not a pty master is refused (EPROTO, step exec.pty)');
  t.ok(refused.length >= 1, `the attack landed (${refused.length} of ${r.results.length}; ${injected.filter((l) => /^injected/.test(l)).length} injections)`);
});

t.test('an exec whose start is held up does not keep Node alive once it is unref()ed', { skip }, async (t) => {
  const m = await startMachine(t, 'unref');
  const out = await attacker(t, m, ['/x/exec-attack', 'lease', '/dev/null'], /^leased/);
  t.match(out.join('\n'), /leased \/dev\/null/, "the attacker holds a write lease on the machine's /dev/null: an exec cannot start");
  // A process that only wants the exec's result if it comes, and otherwise to exit: with the start
  // watch and its time limit (120 s here) still holding the loop, it would wait for them.
  const script = `
    const { Machine } = require(${JSON.stringify(LIB)});
    Machine.get(${JSON.stringify(m.name)}, { stateDir: ${JSON.stringify(stateDir)} }).then((m) => {
      const c = m.exec(['true'], { stdio: 'ignore', startTimeout: 120000 });
      c.started.catch(() => {});
      c.wait().catch(() => {});
      c.unref();
      console.log('unrefed');
    });`;
  const r = await new Promise((resolve) => {
    const child = cpSpawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    const bound = setTimeout(() => child.kill('SIGKILL'), BOUND_MS);
    child.on('exit', (code, signal) => {
      clearTimeout(bound);
      resolve({ code, signal, stdout });
    });
  });
  t.match(r.stdout, /unrefed/, 'the exec was made and unref()ed');
  t.same({ code: r.code, signal: r.signal }, { code: 0, signal: null }, `Node exited by itself, well before the start's limit (not killed at ${BOUND_MS} ms)`);
});
