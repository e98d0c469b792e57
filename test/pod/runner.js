// Runs inside the shapes test/pod/*.test.js make (a seccomp filter from bwrap, a masked /proc in a
// user namespace) and prints one JSON line: what a start and probe() report there. A second
// argument is the start's `proc` mode: with one, the container reports what its /proc holds.
'use strict';
const nsbox = require('../..');

const fields = (e) => ({ name: e.name, code: e.code, errno: e.errno, syscall: e.syscall, step: e.step, path: e.path, message: e.message });

(async () => {
  const out = { seccomp: /^Seccomp:\s+(\d+)/m.exec(require('node:fs').readFileSync('/proc/self/status', 'utf8'))?.[1] };
  const what = process.argv[2] ?? 'start';
  const proc = process.argv[3];
  if (what === 'start' || what === 'both') {
    try {
      if (proc) {
        const look = 'echo "$(ls -A /proc | wc -l) entries, pid $$"; touch /proc/x 2>/dev/null && echo writable || echo read-only';
        const r = await nsbox.run({ command: ['/bin/sh', '-c', look], proc });
        out.start = { exitCode: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
      } else {
        const r = await nsbox.run({ command: ['/bin/true'] });
        out.start = { exitCode: r.exitCode };
      }
    } catch (e) {
      out.start = { error: fields(e) };
    }
  }
  if (what === 'probe' || what === 'both') {
    const p = await nsbox.probe();
    out.probe = { root: p.root, rootless: p.userns.rootless, blockedBy: p.userns.blockedBy, features: p.features, trials: p.trials, procModes: p.procModes, notes: p.notes };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
})().catch((e) => {
  process.stdout.write(JSON.stringify({ crashed: String(e && e.stack) }) + '\n');
  process.exitCode = 1;
});
