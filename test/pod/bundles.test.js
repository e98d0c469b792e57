// Issue #22: nsbox inside the pods that runc and crun make, as Kubernetes, Docker and Podman shape
// them. Each test writes an OCI bundle (config.json from `<runtime> spec`, then shaped: capability
// set, seccomp profile, masked and read-only /proc paths, user namespace with mappings, cgroup
// namespace, read-only or writable cgroupfs), starts Node in it through a shell (`sh -c 'node ...;
// true'`, which leaves the shell beside Node in the pod's cgroup, or `sh -c 'exec node ...'`) and
// reads the JSON lines test/pod/bundle-runner.js prints: a start and a memory limit either work,
// or fail with the precise cause (code, step, syscall, a message naming the seccomp filter or the
// masked paths) and the remedy. While a container runs, the test looks at it from the host: every
// process of it is inside the pod's cgroup (nothing escapes).
//
// The pod's root: the Debian tools rootfs (test/fixtures/debian-tools-rootfs.sh), read-only. Its
// own node is Debian 12's v18, for which the addon built here (ABI of the Node running the tests)
// does not load, so the host's node binary is bound over /usr/bin/node: it links only libc, libm,
// libstdc++ and libgcc_s, which that rootfs has (both Debian 12). The rest of the host stays out of
// the pod. This checkout is bound read-only at /opt (an empty directory there: nothing is created
// in the shared rootfs) and the inner containers' root is its busybox fixture.
//
// Runtimes: runc, and crun where the host's cgroups are pure v2 (crun refuses a hybrid host: "cgroups
// in hybrid mode not supported"); the VM lane (test/vm/run.sh) runs both. Each run uses a state
// directory of its own (--root), and deletes its container, bundle and cgroup.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { busyboxRootfs } = require('../helpers');
const { detectCgroupHost } = require('../../dist/cgroup');
const { CAPABILITY_NAMES } = require('../../dist/caps');

const checkout = path.join(__dirname, '..', '..');
const podRoot = process.env.NSBOX_DEBIAN_TOOLS || '/var/cache/nsbox-test/debian-tools';
const find = (names) => names.find((p) => fs.existsSync(p));
const runtimes = { runc: find(['/usr/sbin/runc', '/usr/bin/runc']), crun: find(['/usr/bin/crun', '/usr/sbin/crun']) };
const host = detectCgroupHost();
const { rootfs: busybox, reason: noBusybox } = busyboxRootfs();
const innerRootfs = busybox ? path.join('/opt', path.relative(checkout, busybox)) : null;
const contained = busybox && !path.relative(checkout, busybox).startsWith('..');

const notHere =
  process.geteuid() !== 0 ? 'needs root (runc and crun make the pods as root)' :
  !fs.existsSync(path.join(podRoot, 'bin/sh')) ? `needs the Debian tools rootfs at ${podRoot} (bash test/fixtures/debian-tools-rootfs.sh)` :
  !busybox ? noBusybox :
  !contained ? 'the busybox fixture lies outside this checkout' :
  !host.mountPoint ? `no cgroup v2 hierarchy here (${host.reason})` :
  false;

function skipFor(rt) {
  if (notHere) return notHere;
  if (!runtimes[rt]) return `${rt} is not installed`;
  if (rt === 'crun' && host.mode === 'hybrid') return 'crun refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2"); the VM lane runs it on pure v2';
  return false;
}

// What a Kubernetes pod gets by default from containerd (its default capability set) and from the
// RuntimeDefault seccomp profile, for the calls nsbox needs: namespaces and mounts need
// CAP_SYS_ADMIN; without it clone3 is answered with ENOSYS (so that libcs fall back to clone) and
// clone with a CLONE_NEW* flag, unshare, setns, mount and the new mount API with EPERM (the
// default action). The rest of the profile: the containers-common one installed here (Podman's
// default), evaluated for this capability set and architecture as Docker does.
const DEFAULT_CAPS = ['CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID', 'SETFCAP', 'SETPCAP', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE'].map((c) => `CAP_${c}`);
const SYS_ADMIN_CALLS = [
  'bpf', 'clone', 'clone3', 'fanotify_init', 'fsconfig', 'fsmount', 'fsopen', 'fspick', 'lookup_dcookie', 'mount', 'mount_setattr', 'move_mount',
  'open_tree', 'perf_event_open', 'quotactl', 'quotactl_fd', 'setdomainname', 'sethostname', 'setns', 'syslog', 'umount', 'umount2', 'unshare',
];
const CLONE_NEW_MASK = 0x7e020000; // CLONE_NEWNS|CLONE_NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
const containersProfile = find(['/usr/share/containers/seccomp.json']);
const dockerArch = { x64: 'amd64', arm64: 'arm64' }[process.arch];

function runtimeDefaultSeccomp(caps) {
  const src = JSON.parse(fs.readFileSync(containersProfile, 'utf8'));
  const has = (c) => caps.includes(c);
  const applies = (r) =>
    (!r.includes?.arches?.length || r.includes.arches.includes(dockerArch)) &&
    (!r.includes?.caps?.length || r.includes.caps.every(has)) &&
    !(r.excludes?.arches ?? []).includes(dockerArch) &&
    !(r.excludes?.caps ?? []).some(has);
  const syscalls = [];
  for (const r of src.syscalls) {
    if (!applies(r)) continue;
    const names = r.names.filter((n) => !SYS_ADMIN_CALLS.includes(n));
    if (!names.length) continue;
    const rule = { names, action: r.action };
    if (r.errnoRet !== undefined) rule.errnoRet = r.errnoRet;
    if (r.args?.length) rule.args = r.args;
    syscalls.push(rule);
  }
  if (has('CAP_SYS_ADMIN')) {
    syscalls.push({ names: SYS_ADMIN_CALLS, action: 'SCMP_ACT_ALLOW' });
  } else {
    syscalls.push({ names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: CLONE_NEW_MASK, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] });
    syscalls.push({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
  }
  const arches = (src.archMap ?? []).find((a) => a.architecture === { x64: 'SCMP_ARCH_X86_64', arm64: 'SCMP_ARCH_AARCH64' }[process.arch]);
  return { defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 1, architectures: arches ? [arches.architecture, ...arches.subArchitectures] : [], syscalls };
}

/** Every capability this process has in its bounding set: a privileged pod gets no more. */
function allCaps() {
  const bnd = BigInt('0x' + /^CapBnd:\s+([0-9a-f]+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);
  return CAPABILITY_NAMES.map((n, i) => ((bnd >> BigInt(i)) & 1n ? `CAP_${n}` : null)).filter(Boolean);
}

const POD_IDS = { containerID: 0, hostID: 2000000000, size: 65536 };
let serial = 0;

/**
 * The shapes. `caps`: 'all' (this process's bounding set), 'default' (containerd's and Docker's
 * default set) or 'default+X+Y' (with CAP_X and CAP_Y added); `seccomp`: 'runtime-default' or none; `masked`:
 * the spec template's masked and read-only /proc paths (Kubernetes procMount Default); `userns`:
 * a user namespace with POD_IDS; `cgroupns`; `cgroupfs`: 'rw', 'ro' or 'delegated' (rw, and the
 * pod's cgroup chowned to its root, as systemd's Delegate=yes or a userns-aware runtime does).
 */
const SHAPES = {
  privileged: { caps: 'all', seccomp: null, masked: false, userns: false, cgroupns: true, cgroupfs: 'rw' },
  'privileged-host-cgroupns': { caps: 'all', seccomp: null, masked: false, userns: false, cgroupns: false, cgroupfs: 'rw' },
  'privileged-ro-cgroupfs': { caps: 'all', seccomp: null, masked: false, userns: false, cgroupns: true, cgroupfs: 'ro' },
  'privileged-masked': { caps: 'all', seccomp: null, masked: true, userns: false, cgroupns: true, cgroupfs: 'rw' },
  'sys-admin-unconfined': { caps: 'default+SYS_ADMIN', seccomp: null, masked: false, userns: false, cgroupns: true, cgroupfs: 'ro' },
  'sys-admin-net-admin-unconfined': { caps: 'default+SYS_ADMIN+NET_ADMIN', seccomp: null, masked: false, userns: false, cgroupns: true, cgroupfs: 'ro' },
  'k8s-default': { caps: 'default', seccomp: 'runtime-default', masked: true, userns: false, cgroupns: true, cgroupfs: 'ro' },
  'k8s-default-unconfined': { caps: 'default', seccomp: null, masked: true, userns: false, cgroupns: true, cgroupfs: 'ro' },
  userns: { caps: 'default', seccomp: null, masked: false, userns: true, cgroupns: true, cgroupfs: 'delegated' },
  'userns-masked': { caps: 'default', seccomp: null, masked: true, userns: true, cgroupns: true, cgroupfs: 'delegated' },
};

/** config.json for `shape`, from `<runtime> spec`; `args`: the pod's command. */
function bundleConfig(rt, dir, shape, args, cgroupsPath) {
  const r = spawnSync(runtimes[rt], ['spec'], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${rt} spec: ${r.stderr}`);
  const c = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  const s = SHAPES[shape];
  c.root = { path: podRoot, readonly: true };
  c.hostname = 'pod';
  Object.assign(c.process, { terminal: false, args, cwd: '/', noNewPrivileges: false });
  c.process.env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/tmp'];
  delete c.process.rlimits;
  const caps = s.caps === 'all' ? allCaps() : s.caps === 'default' ? DEFAULT_CAPS : [...DEFAULT_CAPS, ...s.caps.split('+').slice(1).map((c) => `CAP_${c}`)];
  c.process.capabilities = { bounding: caps, effective: caps, permitted: caps };
  const ro = s.cgroupfs === 'ro' ? 'ro' : 'rw';
  c.mounts = c.mounts.filter((m) => m.destination !== '/sys/fs/cgroup' && m.destination !== '/sys');
  c.mounts.push(
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', s.caps === 'all' ? 'rw' : 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', ro] },
  );
  // On a hybrid host runc mounts only the v1 hierarchies at /sys/fs/cgroup: the pod gets the v2 one
  // where the host has it, as systemd-based images expect it.
  if (host.mode === 'hybrid') {
    c.mounts.push({ destination: '/sys/fs/cgroup/unified', type: 'cgroup2', source: 'cgroup2', options: ['nosuid', 'noexec', 'nodev', ro] });
  }
  c.mounts.push(
    { destination: '/usr/bin/node', type: 'bind', source: process.execPath, options: ['rbind', 'ro'] },
    { destination: '/opt', type: 'bind', source: checkout, options: ['rbind', 'ro'] },
    { destination: '/mnt', type: 'bind', source: path.join(dir, 'sync'), options: ['rbind', 'ro'] },
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
    { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=755'] },
  );
  c.linux.namespaces = c.linux.namespaces.filter((n) => n.type !== 'cgroup' && n.type !== 'user');
  if (s.cgroupns) c.linux.namespaces.push({ type: 'cgroup' });
  if (s.userns) {
    c.linux.namespaces.push({ type: 'user' });
    c.linux.uidMappings = [POD_IDS];
    c.linux.gidMappings = [POD_IDS];
  }
  if (!s.masked) {
    delete c.linux.maskedPaths;
    delete c.linux.readonlyPaths;
  }
  if (s.seccomp) c.linux.seccomp = runtimeDefaultSeccomp(caps);
  else delete c.linux.seccomp;
  c.linux.cgroupsPath = cgroupsPath;
  c.linux.resources = { devices: [{ allow: s.caps === 'all', access: 'rwm' }] };
  return c;
}

/** The cgroup lines of /proc/<pid>/cgroup as { 'hierarchy:controllers': path }. */
function cgroupsOf(pid) {
  const out = {};
  for (const l of fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n')) {
    const i = l.lastIndexOf(':', l.indexOf('/'));
    out[l.slice(0, i)] = l.slice(i + 1);
  }
  return out;
}

const readOr = (p) => {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch (e) {
    return `(${e.code})`;
  }
};
const under = (p, top) => p === top || p.startsWith(top.endsWith('/') ? top : `${top}/`);

/** The host's processes running `sleep <marker>` (the inner container's), with their cgroups. */
function markerProcesses(marker) {
  const out = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (/sleep$/.test(argv[0]) && argv[1] === marker) out.push({ pid: Number(e), cgroups: cgroupsOf(e) });
    } catch {
      /* gone */
    }
  }
  return out;
}

function runtimeCall(rt, state, args) {
  return spawnSync(runtimes[rt], ['--root', state, ...args], { encoding: 'utf8', timeout: 120000 });
}

/**
 * Makes the bundle, creates and starts the pod, and collects the runner's lines. With `hold`, the
 * runner keeps a container running until the host has looked at it: `onHold(line, pod, marker)`
 * gets its line, { pid, cgroups } of the pod's process on the host and the container's marker. Resolves with the runner's last line
 * and what the host saw; everything is deleted in the teardown.
 */
async function inPod(t, rt, shape, { form = 'shell', hold = null, onHold = () => {} } = {}) {
  const n = ++serial;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-pod-bundle-'));
  fs.chmodSync(dir, 0o755);
  const state = path.join(dir, 'state');
  fs.mkdirSync(state);
  fs.mkdirSync(path.join(dir, 'sync'), { mode: 0o755 });
  const id = `nsbox-pod-${process.pid}-${n}`;
  const cgroupsPath = `/${id}`;
  const marker = String(7000000 + ((process.pid * 100 + n) % 1000000));
  const node = `node /opt/test/pod/bundle-runner.js ${innerRootfs} ${marker}${hold ? ` ${hold}` : ''}`;
  const args = form === 'exec' ? ['/bin/sh', '-c', `exec ${node}`] : ['/bin/sh', '-c', `${node}; true`];
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(bundleConfig(rt, dir, shape, args, cgroupsPath), null, 2));
  let podCgroupDir = null;
  t.teardown(() => {
    runtimeCall(rt, state, ['delete', '-f', id]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const child = spawn(runtimes[rt], ['--root', state, 'create', '--bundle', dir, id], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const lines = [];
  let holdSeen = null;
  const ended = new Promise((resolve) => {
    let open = 2;
    const done = () => --open === 0 && resolve();
    child.stdout.on('end', done);
    child.stderr.on('end', done);
  });
  child.stderr.on('data', (d) => (stderr += d));
  const holdDone = new Promise((resolveHold) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      let i;
      while ((i = stdout.indexOf('\n')) >= 0) {
        const l = stdout.slice(0, i);
        stdout = stdout.slice(i + 1);
        let o;
        try {
          o = JSON.parse(l);
        } catch {
          continue;
        }
        lines.push(o);
        if (o.phase === 'hold') {
          holdSeen = o;
          Promise.resolve()
            .then(() => onHold(o, pod, marker))
            .finally(() => {
              fs.mkdirSync(path.join(dir, 'sync', 'go'));
              resolveHold();
            });
        }
      }
    });
  });
  const created = await new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  t.equal(created, 0, `${rt} create (${stderr.slice(-400)})`);
  const st = runtimeCall(rt, state, ['state', id]);
  const pod = { pid: JSON.parse(st.stdout || '{}').pid ?? null, cgroups: null };
  if (pod.pid) {
    pod.cgroups = cgroupsOf(pod.pid);
    podCgroupDir = path.join(host.mountPoint, pod.cgroups['0:'] ?? '/nonexistent');
    if (SHAPES[shape].cgroupfs === 'delegated') {
      // The pod's root owns its cgroup, as systemd's Delegate=yes gives a user its unit's.
      for (const f of ['', 'cgroup.procs', 'cgroup.subtree_control', 'cgroup.threads']) fs.chownSync(path.join(podCgroupDir, f), POD_IDS.hostID, POD_IDS.hostID);
    }
  }
  const started = runtimeCall(rt, state, ['start', id]);
  t.equal(started.status, 0, `${rt} start (${started.stderr.slice(-400)})`);
  // A pod that did not start still holds the pipes in its waiting init: delete it, or wait forever.
  if (started.status !== 0) runtimeCall(rt, state, ['delete', '-f', id]);
  await ended;
  if (hold && holdSeen) await holdDone;
  const last = lines.filter((l) => l.phase === 'done').pop() ?? { phase: 'none', stderr: stderr.slice(-2000) };
  t.comment(`${rt} ${shape} (${form}${hold ? `, hold ${hold}` : ''}): ${JSON.stringify(last)}`);
  const del = runtimeCall(rt, state, ['delete', '-f', id]);
  t.equal(del.status, 0, `${rt} delete (${del.stderr.slice(-300)})`);
  if (podCgroupDir) t.notOk(fs.existsSync(podCgroupDir), `the pod's cgroup ${podCgroupDir} is gone after ${rt} delete`);
  return { out: last, pod, hold: holdSeen, stderr };
}


const limitsHere = host.controllers.includes('memory');

/**
 * Whether this system refuses a new procfs in a user namespace behind masks, tried without nsbox
 * (util-linux unshare, as test/pod/masked-proc.test.js masks): a file bound over and a read-only
 * tmpfs over a directory of /proc in a user namespace, then a nested one mounts a procfs. The
 * kernel (mount_too_revealing) lets it through when any procfs mount in the mount namespace is
 * fully visible, reachable or not: in the VM lane, most likely the initramfs's /proc, which stays
 * in every mount namespace under switch_root's chroot. Null where it cannot be tried.
 */
function kernelRefusesMaskedProc() {
  const unshare = find(['/usr/bin/unshare', '/bin/unshare']);
  const file = ['/proc/kcore', '/proc/keys', '/proc/timer_list'].find((p) => fs.existsSync(p));
  const dir = ['/proc/acpi', '/proc/scsi', '/proc/asound', '/proc/bus'].find((p) => fs.existsSync(p));
  if (!unshare || !file || !dir) return null;
  const masks = `mount --bind /dev/null ${file} && mount -t tmpfs -o ro tmpfs ${dir}`;
  const r = spawnSync(unshare, ['-Urm', '--propagation', 'private', 'sh', '-c', `${masks} || exit 90; exec ${unshare} -Urmpf --mount-proc true`], { encoding: 'utf8' });
  return r.status === 90 || r.status === null ? null : r.status !== 0;
}
const refusesMasked = notHere ? null : kernelRefusesMaskedProc();

/** A masked /proc in rootless mode: EPERM at mount.proc naming the masks, where the kernel refuses it. */
function expectMasked(t, out) {
  const e = out.start?.error;
  t.match(out.probe?.trials?.procNone, { ok: true }, 'probe(): proc: \'none\' (an empty read-only tmpfs on /proc) can be mounted');
  t.same(out.startNoProc, { exitCode: 0, stdout: '0 entries, pid 1\nread-only\n' }, 'opted in with proc: \'none\': a start works, pid 1 of its own namespace, /proc empty and read-only');
  if (refusesMasked === false) {
    t.comment(`this system (Linux ${os.release()}) lets a user namespace mount a procfs behind masks (checked with unshare): nsbox starts`);
    t.match(out.probe?.trials?.procfs, { ok: true }, 'probe(): the procfs trial works, as with unshare');
    t.same(out.probe?.procModes, ['fresh', 'none'], 'probe(): both proc modes work here');
    t.same(out.start, { exitCode: 0 }, 'a start works, as with unshare');
    return;
  }
  t.match(out.probe?.trials?.procfs, { ok: false, code: 'EPERM', syscall: 'mount', cause: /masked paths/ }, 'probe(): the procfs trial is refused, naming the masks');
  t.match(e, { name: 'NsboxError', code: 'EPERM', errno: 1, syscall: 'mount', step: 'mount.proc', path: '/proc' }, 'a start: EPERM at mount.proc');
  t.match(e?.message, /masked paths: .*\/proc\/sys/, 'the message names the masked paths');
  t.match(e?.message, /procMount: Unmasked \(with hostUsers: false\).*systempaths=unconfined.*unmask=ALL/, 'and the remedies');
  t.notMatch(e?.message, /seccomp filter/, 'no filter here: not blamed');
  t.match(e?.message, /or start the container with proc: 'none'/, 'and the opt-in');
  t.same(out.probe?.procModes, ['none'], 'probe(): proc: \'none\' is the mode that works here');
}
const seccompSkip = containersProfile ? false : 'needs the containers-common seccomp profile (/usr/share/containers/seccomp.json, Debian package golang-github-containers-common) as the base of the RuntimeDefault-like profile';
/** Cgroups nsbox left for containers below Node's cgroup (the runner lists the tree after its starts). */
const leftovers = (out) => (out.left ?? []).filter((p) => /(^|\/)\d+\.\d+$/.test(p));

/**
 * From the host, while the runner holds a container: every process running `sleep <marker>` is in
 * the pod's cgroup or below it, in every hierarchy (nothing escapes); `own`: in a cgroup of its
 * own below the pod's (nsbox could make one), else in the pod's own (Node's).
 */
function lookFromHost(t, held, pod, marker, { own }) {
  t.notOk(held.error, `the runner holds a container (${held.error?.message ?? ''})`);
  const procs = markerProcesses(marker);
  t.ok(procs.length >= 1, `the host sees the container's process (sleep ${marker})`, { held });
  for (const p of procs) {
    for (const [k, top] of Object.entries(pod.cgroups)) t.ok(under(p.cgroups[k] ?? '(none)', top), `pid ${p.pid} ${k} ${p.cgroups[k]} is inside the pod's ${top}`);
    const v2 = p.cgroups['0:'];
    const podV2 = pod.cgroups['0:'];
    if (own) {
      t.match(held.cgroup, /\/nsbox\/\d+\.\d+$/, 'the container has a cgroup of its own, below Node\'s');
      t.ok(v2.startsWith(`${podV2.replace(/\/$/, '')}/`) && v2.endsWith(held.cgroup.replace(/^.*(\/nsbox\/)/, '$1')), `on the host it is ${v2}, below the pod's ${podV2}`);
    } else {
      t.equal(v2, podV2, 'no cgroup could be made: the container stays in the pod\'s own cgroup');
    }
  }
  return procs;
}

for (const rt of ['runc', 'crun']) {
  const skip = skipFor(rt);

  t.test(`${rt}: privileged pod, Node beside its shell: starts work, containers stay inside the pod's cgroup`, { skip }, async (t) => {
    const r = await inPod(t, rt, 'privileged', { hold: 'plain', onHold: (h, pod, marker) => lookFromHost(t, h, pod, marker, { own: true }) });
    t.ok(r.hold, 'the host looked at a running container');
    t.match(r.out, { seccomp: '0', sysAdmin: true, ppidComm: 'sh' }, 'no filter, CAP_SYS_ADMIN, a shell beside Node');
    t.match(r.out.probe, { root: true, rootless: false, trials: { userns: { ok: true }, procfs: { ok: true }, cgroup: { ok: true } } }, 'probe(): every trial works');
    t.same(r.out.start, { exitCode: 0 }, 'a start works');
    if (limitsHere) {
      // Controllers must be enabled below Node's cgroup, where the shell is too: named, not moved.
      t.match(r.out.limit?.error, { code: 'EBUSY', step: 'cgroup.controllers' }, 'a limit: EBUSY at cgroup.controllers');
      t.match(r.out.limit?.error?.message, /sh/, 'the message names the shell beside Node');
      t.match(r.out.limit?.error?.message, /exec/, 'and the remedy: start Node with exec');
    } else {
      t.match(r.out.limit?.error, { code: 'ENOTSUP', step: 'cgroup.limits' }, 'a limit: ENOTSUP, no memory controller on this host\'s v2');
      t.match(r.out.limit?.error?.message, host.mode === 'hybrid' ? /hybrid cgroups: the memory controller is bound to cgroup v1/ : /memory/, 'saying why');
    }
    t.same(leftovers(r.out), [], 'no container cgroup left below Node\'s');
  });

  t.test(`${rt}: privileged pod, Node started with exec: a memory limit holds, inside the pod's cgroup`, { skip }, async (t) => {
    let memoryMax = null;
    const r = await inPod(t, rt, 'privileged', {
      form: 'exec',
      hold: limitsHere ? 'limit' : 'plain',
      onHold: (h, pod, marker) => {
        const procs = lookFromHost(t, h, pod, marker, { own: true });
        if (limitsHere && procs[0]) memoryMax = readOr(path.join(host.mountPoint, procs[0].cgroups['0:'], 'memory.max'));
      },
    });
    t.ok(r.hold, 'the host looked at a running container');
    t.not(r.out.ppidComm, 'sh', 'Node replaced the shell');
    t.same(r.out.start, { exitCode: 0 }, 'a start works');
    if (limitsHere) {
      t.equal(r.hold.memoryMax, String(48 * 1024 * 1024), 'the held container\'s memory.max, as the pod sees it');
      t.equal(memoryMax, String(48 * 1024 * 1024), 'and as the host sees it, in the container\'s cgroup below the pod\'s');
      t.same(r.out.limit, { exitCode: 0 }, 'a start with a limit works');
      t.match(r.out.oom, { oomKilled: true, signal: 'SIGKILL' }, 'and holds: a shell doubling a string under 32M is OOM-killed');
    } else {
      t.match(r.out.limit?.error, { code: 'ENOTSUP', step: 'cgroup.limits' }, 'a limit: ENOTSUP, no memory controller on this host\'s v2 (the VM lane has one)');
    }
    t.same(leftovers(r.out), [], 'no container cgroup left below Node\'s');
  });

  t.test(`${rt}: privileged pod without a cgroup namespace: containers go below the pod's cgroup, never the hierarchy's root`, { skip }, async (t) => {
    const r = await inPod(t, rt, 'privileged-host-cgroupns', { hold: 'plain', onHold: (h, pod, marker) => lookFromHost(t, h, pod, marker, { own: true }) });
    t.ok(r.hold, 'the host looked at a running container');
    t.match(r.out.self, /^\/nsbox-pod-/, 'Node sees its cgroup by its host path');
    t.match(r.hold?.cgroup, new RegExp(`^${r.out.self}/nsbox/\\d+\\.\\d+$`), 'the container\'s cgroup is below Node\'s own');
    t.same(r.out.start, { exitCode: 0 }, 'a start works');
    t.same(leftovers(r.out), [], 'no container cgroup left below Node\'s');
  });

  t.test(`${rt}: privileged pod with a read-only cgroupfs: starts work in the pod's cgroup; a limit is ENOTSUP naming the read-only mount`, { skip }, async (t) => {
    const r = await inPod(t, rt, 'privileged-ro-cgroupfs', { hold: 'plain', onHold: (h, pod, marker) => lookFromHost(t, h, pod, marker, { own: false }) });
    t.ok(r.hold, 'the host looked at a running container');
    t.match(r.out.probe?.trials?.cgroup, { ok: false, code: 'EROFS', syscall: 'mkdir' }, 'probe(): the cgroup trial is refused with EROFS');
    t.same(r.out.start, { exitCode: 0 }, 'a start works (without a cgroup of its own)');
    t.match(r.out.cgroup?.reason, /mounted read-only here \(EROFS/, 'why no cgroup can be made: the read-only cgroupfs');
    t.match(r.out.cgroup?.reason, /privileged: true.*--privileged/, 'the remedy: a writable cgroupfs');
    t.notMatch(r.out.cgroup?.reason, /Delegate=yes/, 'not delegation, which cannot help here');
    t.match(r.out.limit?.error, { name: 'NsboxError', code: 'ENOTSUP', step: 'cgroup.limits' }, 'a limit: ENOTSUP at cgroup.limits');
    // On a hybrid host the first obstacle is the missing v2 memory controller; elsewhere the mount.
    t.match(r.out.limit?.error?.message, host.mode === 'hybrid' ? /hybrid cgroups/ : /mounted read-only here \(EROFS.*privileged: true/, 'the limit\'s message says why');
  });

  t.test(`${rt}: privileged pod with the runtime's masked /proc: starts work (the masks matter only in a user namespace)`, { skip }, async (t) => {
    const r = await inPod(t, rt, 'privileged-masked', { form: 'exec' });
    t.match(r.out.probe, { root: true, trials: { procfs: { ok: true } } }, 'probe(): root mode, the procfs trial works');
    t.same(r.out.start, { exitCode: 0 }, 'a start works');
  });

  t.test(`${rt}: Docker's default capabilities plus SYS_ADMIN, seccomp unconfined: EPERM at network.loopback naming CAP_NET_ADMIN; network 'none' starts`, { skip }, async (t) => {
    const r = await inPod(t, rt, 'sys-admin-unconfined', { form: 'exec' });
    t.match(r.out, { seccomp: '0', sysAdmin: true }, 'no filter, CAP_SYS_ADMIN');
    t.match(r.out.probe, { root: true, rootless: false }, 'probe(): root mode');
    const e = r.out.start?.error;
    t.match(e, { name: 'NsboxError', code: 'EPERM', errno: 1, syscall: 'ioctl', step: 'network.loopback' }, 'a start: bringing up lo is refused');
    t.match(e?.message, /^ioctl: EPERM \(step network\.loopback\): this process lacks CAP_NET_ADMIN/, 'the message names the missing capability');
    t.match(e?.message, /--cap-add NET_ADMIN.*network: 'none'/, 'and the remedies');
    t.same(r.out.startNoNetwork, { exitCode: 0 }, "network: 'none' starts");
  });

  t.test(`${rt}: Docker's default capabilities plus SYS_ADMIN and NET_ADMIN, seccomp unconfined, unmasked: starts work in the pod's cgroup`, { skip }, async (t) => {
    const r = await inPod(t, rt, 'sys-admin-net-admin-unconfined', { form: 'exec', hold: 'plain', onHold: (h, pod, marker) => lookFromHost(t, h, pod, marker, { own: false }) });
    t.ok(r.hold, 'the host looked at a running container');
    t.match(r.out.probe, { root: true, rootless: false }, 'probe(): root mode');
    t.same(r.out.start, { exitCode: 0 }, 'a start works');
    t.match(r.out.limit?.error, { code: 'ENOTSUP', step: 'cgroup.limits' }, 'a limit: ENOTSUP (read-only cgroupfs)');
  });

  t.test(`${rt}: Kubernetes default pod (no CAP_SYS_ADMIN, RuntimeDefault seccomp, masked /proc, read-only cgroupfs): spawn.clone EPERM naming the filter`, { skip: skip || seccompSkip }, async (t) => {
    const r = await inPod(t, rt, 'k8s-default');
    t.match(r.out, { seccomp: '2', sysAdmin: false }, 'Node runs under the filter, without CAP_SYS_ADMIN');
    t.match(r.out.probe, { root: false, rootless: true, blockedBy: 'seccomp', trials: { userns: { ok: false, code: 'EPERM', syscall: 'clone' } } }, 'probe(): user namespaces blocked by seccomp');
    const e = r.out.start?.error;
    t.match(e, { name: 'NsboxError', code: 'EPERM', errno: 1, syscall: 'clone', step: 'spawn.clone' }, 'a start: clone (clone3 was ENOSYS) refused with EPERM');
    t.match(e?.message, /^clone: EPERM \(step spawn\.clone\): this process runs under a seccomp filter \(\/proc\/self\/status Seccomp: 2/, 'the message names the filter');
    t.match(e?.message, /seccompProfile type Unconfined or a Localhost profile/, 'and the Kubernetes remedy');
    t.match(r.out.limit?.error, { code: 'ENOTSUP', step: 'cgroup.limits' }, 'a limit: ENOTSUP, before any clone');
    t.match(r.out.limit?.error?.message, host.mode === 'hybrid' ? /hybrid cgroups/ : /mounted read-only here/, 'saying why');
    t.match(r.out.cgroup?.reason, /mounted read-only here/, 'no cgroup can be made: the cgroupfs is read-only');
  });

  t.test(`${rt}: pod without CAP_SYS_ADMIN, seccomp unconfined, masked /proc: EPERM at mount.proc naming the masks (where the kernel refuses them)`, { skip }, async (t) => {
    const r = await inPod(t, rt, 'k8s-default-unconfined');
    t.match(r.out, { seccomp: '0', sysAdmin: false }, 'no filter, no CAP_SYS_ADMIN');
    t.match(r.out.probe, { rootless: true, trials: { userns: { ok: true } } }, 'probe(): rootless, a user namespace works');
    expectMasked(t, r.out);
  });

  t.test(`${rt}: user-namespace pod, unmasked /proc, delegated cgroup: starts work${limitsHere ? ' and a memory limit holds' : ''}, inside the pod's cgroup`, { skip }, async (t) => {
    let memoryMax = null;
    const r = await inPod(t, rt, 'userns', {
      form: 'exec',
      hold: limitsHere ? 'limit' : 'plain',
      onHold: (h, pod, marker) => {
        const procs = lookFromHost(t, h, pod, marker, { own: true });
        if (limitsHere && procs[0]) memoryMax = readOr(path.join(host.mountPoint, procs[0].cgroups['0:'], 'memory.max'));
      },
    });
    t.ok(r.hold, 'the host looked at a running container');
    t.match(r.out, { seccomp: '0', uidMap: `0 ${POD_IDS.hostID} ${POD_IDS.size}` }, 'Node is root in the pod\'s user namespace only');
    t.match(r.out.probe, { root: false, rootless: true, trials: { userns: { ok: true }, procfs: { ok: true }, cgroup: { ok: true } } }, 'probe(): every trial works');
    t.same(r.out.start, { exitCode: 0 }, 'a start works');
    if (limitsHere) {
      t.equal(memoryMax, String(48 * 1024 * 1024), 'the held container\'s memory.max, seen from the host below the pod\'s cgroup');
      t.same(r.out.limit, { exitCode: 0 }, 'a start with a limit works');
      t.match(r.out.oom, { oomKilled: true, signal: 'SIGKILL' }, 'and holds: OOM-killed under 32M');
    } else {
      t.match(r.out.limit?.error, { code: 'ENOTSUP', step: 'cgroup.limits' }, 'a limit: ENOTSUP, no memory controller on this host\'s v2 (the VM lane has one)');
    }
    t.same(leftovers(r.out), [], 'no container cgroup left below Node\'s');
  });

  t.test(`${rt}: user-namespace pod with a masked /proc: EPERM at mount.proc naming the masks (where the kernel refuses them)`, { skip }, async (t) => {
    const r = await inPod(t, rt, 'userns-masked');
    t.match(r.out, { uidMap: `0 ${POD_IDS.hostID} ${POD_IDS.size}` }, 'Node is root in the pod\'s user namespace only');
    expectMasked(t, r.out);
  });
}

t.test('the RuntimeDefault-like profile: namespace and mount calls only with CAP_SYS_ADMIN', { skip: seccompSkip }, async (t) => {
  const p = runtimeDefaultSeccomp(DEFAULT_CAPS);
  const rule = (n) => p.syscalls.filter((r) => r.names.includes(n));
  t.same(rule('clone3'), [{ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }], 'clone3: ENOSYS');
  t.same(rule('clone').map((r) => r.args), [[{ index: 0, value: CLONE_NEW_MASK, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }]], 'clone: only without CLONE_NEW* flags');
  for (const n of ['unshare', 'setns', 'mount', 'umount2', 'fsopen', 'open_tree']) t.same(rule(n), [], `${n}: the default action (EPERM)`);
  t.equal(p.defaultErrnoRet, 1, 'the default action is EPERM');
  const admin = runtimeDefaultSeccomp([...DEFAULT_CAPS, 'CAP_SYS_ADMIN']);
  t.ok(admin.syscalls.some((r) => r.action === 'SCMP_ACT_ALLOW' && r.names.includes('unshare') && !r.args), 'with CAP_SYS_ADMIN: allowed');
});

t.test("netAdminCause: network.loopback EPERM without a user namespace and without CAP_NET_ADMIN, nothing else", async (t) => {
  const { netAdminCause } = require('../../dist/causes');
  const netAdmin = 1n << 12n;
  t.match(netAdminCause('network.loopback', 'EPERM', false, 1n << 21n), /lacks CAP_NET_ADMIN/, 'CAP_SYS_ADMIN alone');
  t.equal(netAdminCause('network.loopback', 'EPERM', false, netAdmin), null, 'with CAP_NET_ADMIN: another cause');
  t.equal(netAdminCause('network.loopback', 'EPERM', true, 0n), null, 'in a user namespace of its own the container has it');
  t.equal(netAdminCause('network.loopback', 'ENOMEM', false, 0n), null, 'only EPERM');
  t.equal(netAdminCause('mount.proc', 'EPERM', false, 0n), null, 'only network.loopback');
  t.equal(netAdminCause('network.loopback', 'EPERM', false, null), null, 'unknown capabilities: no guess');
});
