// Issue #22: in a pod with a masked /proc (mounts over /proc/kcore, /proc/keys, ..., a read-only
// /proc/sys) the kernel refuses a new procfs in a user namespace ("mount_too_revealing"). The error
// at mount.proc says so, with the remedies. The shape is made with util-linux unshare: a user and
// mount namespace of our own (private propagation), a file bound over /proc/keys (or another masked
// file) and a read-only tmpfs over a /proc directory, then the runner starts a rootless container.
// The mounts live only in that namespace and go with it.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const unshare = ['/usr/bin/unshare', '/bin/unshare'].find((p) => fs.existsSync(p));
const runner = path.join(__dirname, 'runner.js');
const file = ['/proc/kcore', '/proc/keys', '/proc/timer_list'].find((p) => fs.existsSync(p));
const dir = ['/proc/acpi', '/proc/scsi', '/proc/asound', '/proc/bus'].find((p) => fs.existsSync(p));
const usable = spawnSync(unshare ?? 'unshare', ['-Urm', 'true']).status === 0;
const skip = !unshare ? 'needs util-linux unshare' : !usable ? 'this process cannot create a user namespace (unshare -Urm true failed)' : !file || !dir ? 'no /proc file or directory to mask here' : false;

/** The runner in a fresh user and mount namespace after `masks` (shell commands); its JSON line. */
function inUserns(t, masks, what = 'start', proc = undefined) {
  const xdg = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-pod-mp-'));
  t.teardown(() => fs.rmSync(xdg, { recursive: true, force: true }));
  const script = `${masks.join(' && ')}${masks.length ? ' && ' : ''}exec "$0" "$@"`;
  const r = spawnSync(unshare, ['-Urm', '--propagation', 'private', 'sh', '-c', script, process.execPath, runner, what, ...(proc ? [proc] : [])], {
    encoding: 'utf8', timeout: 60000, env: { ...process.env, XDG_RUNTIME_DIR: xdg },
  });
  t.equal(r.status, 0, `the runner ran (${r.stderr.slice(-500)})`);
  return JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
}

const masks = [`mount --bind /dev/null ${file}`, `mount -t tmpfs -o ro tmpfs ${dir}`];

// Whether this system refuses the procfs behind these masks, asked without nsbox (util-linux
// unshare, a nested user namespace): the kernel lets it through when any procfs mount of the mount
// namespace is fully visible, as in the VM lane (the initramfs's /proc stays under switch_root;
// docs/deploy.md). Null where it cannot be asked.
function kernelRefuses() {
  if (skip) return null;
  const r = spawnSync(unshare, ['-Urm', '--propagation', 'private', 'sh', '-c', `${masks.join(' && ')} || exit 90; exec "$0" -Urmpf --mount-proc true`, unshare], { encoding: 'utf8' });
  return r.status === 90 || r.status === null ? null : r.status !== 0;
}
const refuses = kernelRefuses();

t.test('control: the same user namespace without masks starts the container', { skip }, async (t) => {
  const out = inUserns(t, []);
  t.same(out.start, { exitCode: 0 }, 'mount.proc works with an unmasked /proc');
});

t.test('masked /proc: EPERM at mount.proc, with the masked paths and the remedies', { skip }, async (t) => {
  const out = inUserns(t, masks);
  const e = out.start?.error;
  if (refuses === false) {
    t.comment(`this system (Linux ${os.release()}) lets a user namespace mount a procfs behind these masks (checked with unshare): nsbox starts`);
    t.same(out.start, { exitCode: 0 }, 'a start works, as with unshare');
    return;
  }
  t.match(e, { name: 'NsboxError', code: 'EPERM', errno: 1, syscall: 'mount', step: 'mount.proc', path: '/proc' }, 'the kernel\'s refusal, as it was');
  t.match(e?.message, /^mount '\/proc': EPERM \(step mount\.proc\): this process's \/proc has mounts over its subpaths/);
  t.ok(e?.message.includes(`masked paths: ${file}, ${dir}`), 'the masked paths are named');
  t.match(e?.message, /procMount: Unmasked \(with hostUsers: false\)/, 'Kubernetes');
  t.match(e?.message, /docker run --security-opt systempaths=unconfined/, 'Docker');
  t.match(e?.message, /podman run --security-opt unmask=ALL/, 'Podman');
  t.notMatch(e?.message, /seccomp/, 'no seccomp filter here: not blamed');
  t.match(e?.message, /or start the container with proc: 'none'/, 'the opt-in that runs here');
});

t.test('masked /proc, opted in with proc: \'none\': the container runs, with an empty read-only /proc', { skip }, async (t) => {
  const out = inUserns(t, masks, 'both', 'none');
  t.same(out.start, { exitCode: 0, stdout: '0 entries, pid 1\nread-only\n', stderr: '' }, 'it ran as pid 1 of its own namespace; /proc empty and not writable');
  t.match(out.probe?.trials, { procNone: { ok: true } }, 'probe(): the proc: \'none\' trial works');
  if (refuses === false) {
    t.same(out.probe?.procModes, ['fresh', 'none'], 'probe(): this system lets a procfs through behind these masks (checked with unshare): both modes work');
    return;
  }
  t.match(out.probe?.trials, { procfs: { ok: false, code: 'EPERM', syscall: 'mount', path: '/proc' } }, 'probe(): the procfs trial is refused');
  t.same(out.probe?.procModes, ['none'], 'probe(): proc: \'none\' is the mode that works here');
  t.ok(out.probe?.notes.some((n) => /containers fail at step mount\.proc; proc: 'none' \(no \/proc in the container\) works here/.test(n)), 'probe(): the note names the opt-in');
});

t.test('procMasks reads mountinfo: children of a procfs mount, binfmt_misc aside', async (t) => {
  const { procMasks } = require('../../dist/causes');
  const base = '22 1 0:21 / /proc rw,relatime shared:12 - proc proc rw\n';
  t.same(procMasks(base), [], 'a bare /proc hides nothing');
  t.same(procMasks(base + '30 22 0:40 / /proc/sys/fs/binfmt_misc rw - autofs systemd-1 rw\n'), [], 'binfmt_misc stays empty for good');
  const masked = base + '31 22 0:6 /null /proc/kcore rw - devtmpfs udev rw\n32 22 0:21 /sys /proc/sys ro - proc proc rw\n';
  t.same(procMasks(masked), ['/proc/kcore', '/proc/sys'], 'a bind over a file, a read-only /proc/sys');
  t.same(procMasks(masked + '40 1 0:50 / /tmp/p rw - proc proc rw\n'), [], 'another procfs mount fully visible: nothing to blame');
  t.same(procMasks(masked.replace('/proc/kcore', '/proc/a\\040b')), ['/proc/a b', '/proc/sys'], 'octal escapes are undone');
});
