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
  if (what === 'exec') {
    // A machine (the busybox fixture, built on the host beforehand), a command run in it, then
    // stopped and destroyed: what each step gave.
    const os = require('node:os');
    const path = require('node:path');
    const fs = require('node:fs');
    const { rootfs, reason } = require('../helpers').busyboxRootfs();
    if (reason) throw new Error(reason);
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-pod-exec-'));
    try {
      const m = await nsbox.Machine.start({ name: 'pod-exec', rootfs, stateDir, ephemeral: true });
      out.machine = { started: true };
      try {
        const r = await m.run(['/bin/true']);
        out.machine.exec = { exitCode: r.exitCode };
      } catch (e) {
        out.machine.exec = { error: fields(e) };
      }
      await m.stop({ timeout: 5000 });
      await m.destroy();
      out.machine.left = (await nsbox.Machine.list({ stateDir })).length;
    } catch (e) {
      out.machine = { ...out.machine, error: fields(e) };
    } finally {
      fs.rmSync(stateDir, { recursive: true, force: true });
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
