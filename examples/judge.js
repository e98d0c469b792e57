#!/usr/bin/env node
// An online judge: runs one submission against test cases (stdin -> expected stdout), each in a
// fresh container with no network, a read-only root, an unprivileged user, a time limit, an output
// cap and, where the host can enforce them, memory and process limits.
//
//   node examples/judge.js --rootfs /srv/rootfs/busybox --tests tests.json solution.sh
//   node examples/judge.js --image busybox --tests tests.json solution.sh
//
// tests.json is an array of { "input": "1 2\n", "output": "3\n" }. The submission is run as
// `sh /judge/solution` (--interpreter NAME for another program in the rootfs, --interpreter none
// to run the file itself, e.g. a static binary).
//
// Output: one JSON object per line on stdout.
//   {"type":"limits","enforced":{...},"unavailable":[{"limit":"memory","reason":"..."}]}
//   {"type":"case","case":1,"verdict":"AC","exitCode":0,...}
//   {"type":"summary","verdict":"AC","passed":3,"total":3,"limitsUnavailable":["memory"]}
// Verdicts: AC accepted, WA wrong answer, TLE time limit, MLE memory limit (the kernel's OOM killer
// acted), OLE output limit, RE runtime error (non-zero exit or a signal).
// Exit status: 0 all accepted, 1 some case failed, 2 the judge itself could not run.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { run, probe, NsboxError } = require('nsbox');

const USAGE = 'usage: judge.js (--rootfs DIR | --image REF [--store DIR]) --tests FILE [--time-limit MS] [--memory SIZE] ' +
  '[--pids N] [--output-limit BYTES] [--interpreter NAME|none] [--strict-limits] SUBMISSION';

/** A bad command line or test file: reported without a stack trace. */
class UsageError extends Error {}

/** One JSON line on stdout: what a program driving the judge reads. */
function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** Judges compare output ignoring trailing spaces on each line and trailing blank lines. */
function normalize(text) {
  return text.split('\n').map((l) => l.trimEnd()).join('\n').trimEnd();
}

/**
 * The limits to ask for, and those this host cannot enforce. A cgroup v2 controller must be
 * available to nsbox (probe().cgroup.controllers); on a hybrid-cgroup host memory and pids are bound
 * to cgroup v1 and nsbox refuses them (ENOTSUP) rather than silently ignore them. We drop those
 * and say so in every report instead of pretending the submission ran under them.
 */
async function planLimits(wanted) {
  const host = await probe();
  const available = new Set(host.cgroup.controllers);
  const enforced = {};
  const unavailable = [];
  for (const [limit, value] of Object.entries(wanted)) {
    const controller = limit; // memory and pids: each limit is its controller's name
    if (available.has(controller)) {
      enforced[limit] = value;
    } else {
      const reason = `the ${controller} cgroup v2 controller is not available here (cgroups: ${host.cgroup.mode}; v2 controllers: [${host.cgroup.controllers.join(', ')}])`;
      unavailable.push({ limit, value, reason });
    }
  }
  return { enforced, unavailable };
}

/** The verdict of one run. Order matters: a killed run's exit status says nothing about its answer. */
function verdict(r, expected) {
  if (r.timedOut) return 'TLE';
  if (r.oomKilled) return 'MLE';
  if (r.stdoutDropped > 0) return 'OLE';
  if (r.signal !== null || r.exitCode !== 0) return 'RE';
  return normalize(r.stdout) === normalize(expected) ? 'AC' : 'WA';
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      rootfs: { type: 'string' },
      image: { type: 'string' },
      store: { type: 'string' }, // with --image: the image store (default: nsbox's)
      tests: { type: 'string' },
      'time-limit': { type: 'string', default: '2000' },
      memory: { type: 'string', default: '64M' },
      pids: { type: 'string', default: '32' },
      'output-limit': { type: 'string', default: String(64 * 1024) },
      interpreter: { type: 'string', default: 'sh' },
      'strict-limits': { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 1 || !values.tests || !values.rootfs === !values.image) {
    throw new UsageError(USAGE);
  }
  const cases = JSON.parse(fs.readFileSync(values.tests, 'utf8'));
  if (!Array.isArray(cases) || cases.length === 0) throw new UsageError(`${values.tests}: expected a non-empty array of { input, output }`);

  const { enforced, unavailable } = await planLimits({ memory: values.memory, pids: Number(values.pids) });
  emit({ type: 'limits', enforced, unavailable, timeLimitMs: Number(values['time-limit']), outputLimitBytes: Number(values['output-limit']) });
  if (unavailable.length > 0 && values['strict-limits']) {
    // Judging without the limits would accept a submission that a real judge would reject.
    throw new UsageError(`--strict-limits: cannot enforce ${unavailable.map((u) => u.limit).join(', ')}: ${unavailable[0].reason}`);
  }

  // The submission is copied into a private directory (readable by the sandbox user, and safe from
  // being changed while it is judged) and bound read-only into every container.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'judge-'));
  try {
    fs.chmodSync(dir, 0o755);
    const solution = path.join(dir, 'solution');
    fs.copyFileSync(positionals[0], solution);
    fs.chmodSync(solution, 0o755);
    const command = values.interpreter === 'none' ? ['/judge/solution'] : [values.interpreter, '/judge/solution'];

    let passed = 0;
    let first = null; // the first failing verdict is the submission's
    for (const [i, tc] of cases.entries()) {
      const r = await run({
        ...(values.rootfs ? { rootfs: values.rootfs } : { image: values.image, storeDir: values.store }),
        command,
        input: tc.input ?? '',
        encoding: 'utf8',
        mounts: [
          { type: 'bind', source: solution, target: '/judge/solution', readonly: true },
          { type: 'tmpfs', target: '/tmp', size: '16M' }, // the only writable place
        ],
        readonly: true,                       // the default, spelled out: the rootfs is never written
        network: 'none',                      // no interfaces at all, not even lo
        user: { uid: 65534, gid: 65534 },     // nobody: no capabilities inside
        init: true,                           // a real PID 1: signals the submission sends itself land
        timeout: Number(values['time-limit']),
        maxOutput: Number(values['output-limit']),
        limits: enforced,
      });
      const v = verdict(r, tc.output ?? '');
      if (v === 'AC') passed++;
      else first ??= v;
      emit({
        type: 'case',
        case: i + 1,
        verdict: v,
        exitCode: r.exitCode,
        signal: r.signal,
        timeMs: Math.round(r.durationMs),
        cpuMs: Math.round(r.stats.cpuUsageUs / 1000),
        memoryPeakBytes: r.stats.memoryPeakBytes ?? null, // null: this host cannot measure it
        stderr: r.stderr.slice(0, 200),
      });
    }
    emit({ type: 'summary', verdict: first ?? 'AC', passed, total: cases.length, limitsUnavailable: unavailable.map((u) => u.limit) });
    return first ? 1 : 0;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}


main().then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    // A judge error is not a verdict: say what went wrong (an NsboxError names the step and path).
    emit({ type: 'error', message: e.message, code: e instanceof NsboxError ? e.code : undefined });
    if (!(e instanceof UsageError)) console.error(e);
    process.exitCode = 2;
  },
);
