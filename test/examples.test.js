// The programs in examples/ do what their comments say: each is run as a user would run it (a child
// process, `require('nsbox')` resolving to this checkout by the package's self-reference) and its
// JSON lines and exit status are checked, then that it left nothing behind.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const { spawn: spawnChild } = require('node:child_process');
const { probe, importImage } = require('..');
const { busyboxRootfs, isRoot, root } = require('./helpers');
const { detectCgroupHost } = require('../dist/cgroup');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
// The examples start containers from the busybox fixture, which this lane runs as root (the
// rootless lane, test/rootless/run.sh, does not list this file).
const skip = noBusybox || (isRoot() ? false : 'the examples start containers; this file runs in the root lane');
const cg = detectCgroupHost();
const noMemory = cg.controllers.includes('memory') ? false : `no cgroup v2 memory controller here (cgroups: ${cg.mode}); the VM lane has one`;

/** A private directory, removed at the end; TMPDIR of the examples, so their temp files are seen. */
function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-examples-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(path.join(dir, 'tmp'));
  return dir;
}

/** The cgroups nsbox made for the process `pid` that still exist (a live container has one). */
function cgroupsOf(pid) {
  const { base } = detectCgroupHost();
  if (!base) return [];
  try {
    return fs.readdirSync(base).filter((n) => n.startsWith(`${pid}.`));
  } catch {
    return [];
  }
}

/** Starts examples/<name> with `args`; `lines()` gives the JSON lines so far, `done` its end. */
function start(name, args, dir) {
  const child = spawnChild(process.execPath, [path.join(root, 'examples', name), ...args], {
    cwd: dir,
    env: { ...process.env, TMPDIR: path.join(dir, 'tmp') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters = [];
  child.stdout.on('data', (d) => {
    out += d;
    for (const w of waiters.splice(0)) w();
  });
  child.stderr.on('data', (d) => (err += d));
  const lines = () => out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const done = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, lines: lines(), stderr: err })));
  /** Resolves with the first JSON line that `pred` accepts (rejects if the program ends first). */
  const line = async (pred) => {
    for (;;) {
      const found = lines().find(pred);
      if (found) return found;
      if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}) without that line: ${out}${err}`);
      await Promise.race([new Promise((r) => waiters.push(r)), done]);
    }
  };
  return { child, done, line };
}

/** Runs an example to its end and checks it left no cgroup (so no process) and no temp file. */
async function runExample(t, name, args, dir) {
  const { child, done } = start(name, args, dir);
  const res = await done;
  t.same(cgroupsOf(child.pid), [], `${name}: no container of it is left`);
  t.same(fs.readdirSync(path.join(dir, 'tmp')), [], `${name}: no temp file is left`);
  return res;
}

t.test('judge.js: accepted, wrong answer, time limit and runtime error verdicts, limits it cannot enforce reported', { skip }, async (t) => {
  const dir = tempDir(t);
  const host = await probe();
  const hasMemory = host.cgroup.controllers.includes('memory');
  fs.writeFileSync(path.join(dir, 'tests.json'), JSON.stringify([
    { input: '1 2\n', output: '3\n' },
    { input: '10 20\n', output: '30\n' },
    { input: '-5 5\n', output: '0\n' },
  ]));
  fs.writeFileSync(path.join(dir, 'one.json'), JSON.stringify([{ input: '1 2\n', output: '3\n' }]));
  const sub = {
    good: 'read a b\necho $((a + b))\n',
    // right on the first case only: the verdicts are per case
    wrong: 'read a b\nif [ "$a" = 1 ]; then echo 3; else echo $((a * b)); fi\n',
    loop: 'while :; do :; done\n',
    crash: 'read a b\nkill -SEGV $$\n',
  };
  for (const [k, v] of Object.entries(sub)) fs.writeFileSync(path.join(dir, `${k}.sh`), v);
  const judge = (s, tests = 'tests.json', extra = []) =>
    runExample(t, 'judge.js', ['--rootfs', bb, '--tests', tests, '--time-limit', '10000', ...extra, `${s}.sh`], dir);
  const cases = (r) => r.lines.filter((l) => l.type === 'case').map((l) => l.verdict);
  const summary = (r) => r.lines.find((l) => l.type === 'summary');

  const good = await judge('good');
  t.equal(good.code, 0, 'all accepted: exit 0');
  t.same(cases(good), ['AC', 'AC', 'AC']);
  t.match(summary(good), { verdict: 'AC', passed: 3, total: 3 });
  const limits = good.lines[0];
  t.equal(limits.type, 'limits', 'the limits come first');
  t.equal(limits.unavailable.some((u) => u.limit === 'memory'), !hasMemory, 'memory is listed as unavailable exactly when probe() lacks the memory controller');
  t.equal('memory' in limits.enforced, hasMemory, 'and enforced exactly when it has it');
  t.same(summary(good).limitsUnavailable, limits.unavailable.map((u) => u.limit), 'the summary repeats what was not enforced');

  const wrong = await judge('wrong');
  t.equal(wrong.code, 1, 'a failed case: exit 1');
  t.same(cases(wrong), ['AC', 'WA', 'WA']);
  t.match(summary(wrong), { verdict: 'WA', passed: 1, total: 3 });

  const loop = await judge('loop', 'one.json', ['--time-limit', '300']);
  t.equal(loop.code, 1);
  t.same(cases(loop), ['TLE'], 'killed at the time limit');
  t.match(loop.lines.find((l) => l.type === 'case'), { signal: 'SIGKILL', exitCode: null });

  const crash = await judge('crash');
  t.equal(crash.code, 1);
  t.same(cases(crash), ['RE', 'RE', 'RE'], 'a signal is a runtime error (init: true lets the shell signal itself)');
  t.match(crash.lines.find((l) => l.type === 'case'), { signal: 'SIGSEGV' });

  const strict = await judge('good', 'tests.json', ['--strict-limits']);
  if (hasMemory) {
    t.equal(strict.code, 0, '--strict-limits judges where the limits hold');
  } else {
    t.equal(strict.code, 2, '--strict-limits refuses to judge without the memory limit');
    t.match(strict.lines.at(-1), { type: 'error', message: /cannot enforce memory/ });
    t.notOk(strict.lines.some((l) => l.type === 'case'), 'and runs no case');
  }
});

t.test('judge.js: a submission past its memory limit is MLE', { skip: skip || noMemory }, async (t) => {
  const dir = tempDir(t);
  fs.writeFileSync(path.join(dir, 'one.json'), JSON.stringify([{ input: '', output: '' }]));
  fs.writeFileSync(path.join(dir, 'hog.sh'), 's=xxxxxxxx; while :; do s="$s$s"; done\n');
  const r = await runExample(t, 'judge.js', ['--rootfs', bb, '--tests', 'one.json', '--memory', '32M', '--time-limit', '60000', 'hog.sh'], dir);
  t.same(r.lines.filter((l) => l.type === 'case').map((l) => l.verdict), ['MLE']);
});

/** POSTs `script` to the service; resolves with the parsed JSON answer and the status. */
function post(port, script) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/run', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(body) }));
    });
    req.on('error', reject);
    req.end(script);
  });
}

t.test('exec-service.js: answers concurrent requests, times one out, and shuts down leaving nothing', { skip }, async (t) => {
  const dir = tempDir(t);
  const host = await probe();
  const hasMemory = host.cgroup.controllers.includes('memory');
  if (!hasMemory) {
    const refused = await runExample(t, 'exec-service.js', ['--rootfs', bb], dir);
    t.equal(refused.code, 2, 'without the memory controller it refuses to serve by default');
    t.match(refused.lines.at(-1), { event: 'error', message: /no memory limit on this host.*--allow-no-memory-limit/ });
  }
  const svc = start('exec-service.js', ['--rootfs', bb, '--timeout', '1000', ...(hasMemory ? [] : ['--allow-no-memory-limit'])], dir);
  t.teardown(() => svc.child.kill('SIGKILL')); // only if an assertion below threw first
  const { port, memoryLimit } = await svc.line((l) => l.event === 'listening');
  t.equal(memoryLimit, hasMemory ? '64M' : null, 'the memory limit it holds, or null where it holds none');
  if (cg.base) t.not(cgroupsOf(svc.child.pid).length, 0, 'its warm containers are seen while it serves (the check after shutdown can fail)');

  const [a, b] = await Promise.all([
    post(port, 'sleep 0.2; echo "a $(id -u)"; echo to-stderr >&2; exit 3'),
    post(port, 'read x; echo "b [$x] $(hostname)"; wget -q -O- http://192.0.2.1/ 2>/dev/null || echo no-network'),
  ]);
  t.equal(a.status, 200);
  t.match(a.body, { exitCode: 3, signal: null, stdout: 'a 65534\n', stderr: 'to-stderr\n', timedOut: false, memoryLimit });
  t.match(b.body, { exitCode: 0, stdout: 'b [] nsbox\nno-network\n', timedOut: false }, 'empty stdin, no network');

  const slow = await post(port, 'while :; do :; done');
  t.match(slow.body, { timedOut: true, exitCode: null, signal: 'SIGKILL' }, 'killed at the request timeout');
  const bad = await new Promise((resolve) => http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => resolve(res.statusCode)));
  t.equal(bad, 404, 'only POST /run');

  svc.child.kill('SIGTERM');
  const end = await svc.done;
  t.equal(end.code, 0, 'SIGTERM: a clean exit');
  t.same(end.lines.slice(-2).map((l) => l.event), ['shutdown', 'closed']);
  t.same(cgroupsOf(svc.child.pid), [], 'the pool is closed: no container is left');
  const refusedAfter = await post(port, 'true').then(() => 'answered', (e) => e.code);
  t.equal(refusedAfter, 'ECONNREFUSED', 'the server is closed');
});

t.test('ci-step.js: exits with the test suite\'s status; the checkout is read-only, /scratch writable', { skip }, async (t) => {
  const dir = tempDir(t);
  const repo = path.join(dir, 'repo');
  fs.mkdirSync(path.join(repo, 'tests'), { recursive: true });
  fs.writeFileSync(path.join(repo, 'run-tests.sh'), 'for f in tests/*.sh; do sh "$f" || exit $?; done\necho all passed\n');
  fs.writeFileSync(path.join(repo, 'tests', 'a.sh'), 'test "$(hostname)" = nsbox && echo "$CI" > "$TMPDIR/ci" && test "$(cat /scratch/ci)" = true\n');
  fs.writeFileSync(path.join(repo, 'tests', 'b.sh'), 'if touch written 2>/dev/null; then echo "tree writable"; else echo "tree read-only"; fi\n');
  const step = (args) => runExample(t, 'ci-step.js', ['--rootfs', bb, '--repo', repo, ...args], dir);

  const pass = await step(['--', 'sh', 'run-tests.sh']);
  t.equal(pass.code, 0, 'a passing suite: exit 0');
  t.match(pass.lines, [{ event: 'result', exitCode: 0, status: 0, timedOut: false }]);
  t.match(pass.stderr, /tree read-only\nall passed\n/, "the suite's output on stderr; the checkout cannot be written");

  const copy = await step(['--copy', '--', 'sh', 'run-tests.sh']);
  t.equal(copy.code, 0);
  t.match(copy.stderr, /tree writable\nall passed\n/, '--copy: the suite writes into its copy');
  t.same(fs.readdirSync(repo).sort(), ['run-tests.sh', 'tests'], 'the host checkout is never written');

  fs.writeFileSync(path.join(repo, 'tests', 'c.sh'), 'echo "expected 2, got 3" >&2; exit 7\n');
  const fail = await step(['--', 'sh', 'run-tests.sh']);
  t.equal(fail.code, 7, "a failing suite: its exit status");
  t.match(fail.lines, [{ event: 'result', exitCode: 7, status: 7 }]);
  t.match(fail.stderr, /expected 2, got 3/);

  const hung = await step(['--timeout', '300', '--', 'sleep', '30']);
  t.equal(hung.code, 124, 'past --timeout: 124, as timeout(1)');
  t.match(hung.lines, [{ event: 'result', timedOut: true, signal: 'SIGKILL' }]);

  const missing = await step(['--', 'no-such-test-runner']);
  t.equal(missing.code, 125, 'a command that cannot start: 125, not a test failure');
  t.match(missing.lines, [{ event: 'error', code: 'ENOENT', step: 'exec' }]);
});

t.test('--image instead of --rootfs: the three run an image from a store (imported, offline)', { skip: skip || require('./images/helpers').missingTools() }, async (t) => {
  const dir = tempDir(t);
  // The busybox rootfs as a one-layer OCI layout, imported into a store of this test's own.
  const { umociImage } = require('./images/helpers');
  const img = umociImage(path.join(dir, 'umoci'), 'v1', [(r) => fs.cpSync(bb, r, { recursive: true, verbatimSymlinks: true })]);
  const store = path.join(dir, 'store');
  await importImage(img.layout, { storeDir: store, tag: 'local/busybox:v1' });
  const image = ['--image', 'local/busybox:v1', '--store', store];

  fs.writeFileSync(path.join(dir, 'tests.json'), JSON.stringify([{ input: '2 3\n', output: '5\n' }]));
  fs.writeFileSync(path.join(dir, 'good.sh'), 'read a b\necho $((a + b))\n');
  const judged = await runExample(t, 'judge.js', [...image, '--tests', 'tests.json', 'good.sh'], dir);
  t.equal(judged.code, 0, judged.stderr);
  t.match(judged.lines.at(-1), { type: 'summary', verdict: 'AC', passed: 1 });

  const repo = path.join(dir, 'repo');
  fs.mkdirSync(repo);
  fs.writeFileSync(path.join(repo, 't.sh'), 'exit 4\n');
  const step = await runExample(t, 'ci-step.js', [...image, '--repo', repo, '--', 'sh', 't.sh'], dir);
  t.equal(step.code, 4, step.stderr);

  const svc = start('exec-service.js', [...image, '--allow-no-memory-limit', '--size', '1'], dir);
  t.teardown(() => svc.child.kill('SIGKILL'));
  const { port } = await svc.line((l) => l.event === 'listening');
  t.match((await post(port, 'echo from-image')).body, { exitCode: 0, stdout: 'from-image\n' });
  svc.child.kill('SIGTERM');
  t.equal((await svc.done).code, 0);
  t.same(cgroupsOf(svc.child.pid), [], 'no container of it is left');
});
