// The contenders for the app round trip and throughput sections: nsbox itself, child_process (the
// floor: no isolation at all) and the peers bwrap, crun, runc and systemd-nspawn, each started from
// Node with child_process. A peer that is not installed or does not work on this host is skipped
// with a note (the reason is printed, never hidden).
'use strict';
const cp = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const V2_UNIFIED_HYBRID = '/sys/fs/cgroup/unified';

/** Absolute path of an executable on PATH or in the usual sbin directories, or null. */
function which(name) {
  const dirs = [...(process.env.PATH || '').split(':'), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      /* next */
    }
  }
  return null;
}

/** Spawns argv and resolves on `event` ('exit' or 'close'); rejects on a spawn error or a non-zero exit. */
function spawnWait(argv, { stdio = 'ignore', event = 'exit' } = {}) {
  return new Promise((resolve, reject) => {
    const c = cp.spawn(argv[0], argv.slice(1), { stdio });
    c.once('error', reject);
    c.once(event, (code, sig) => {
      if (code === 0) resolve();
      else reject(new Error(`${path.basename(argv[0])} exited with ${code ?? sig}`));
    });
  });
}

/** Runs argv once with stderr captured: { ok, message } for the preflight of a peer. */
function preflight(argv) {
  const r = cp.spawnSync(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30000 });
  if (r.error) return { ok: false, message: r.error.message };
  if (r.status !== 0) {
    const first = r.stderr.toString().trim().split('\n').filter(Boolean).slice(-2).join(' / ');
    return { ok: false, message: `exit ${r.status ?? r.signal}: ${first}` };
  }
  return { ok: true, message: '' };
}

/**
 * bench/floor.c, built into the work directory and kept running: each once(mode) makes it start
 * ROOTFS's /bin/true once (`plain`: no isolation; `isolated`: mount, PID, UTS, IPC, cgroup namespaces,
 * a network namespace made beforehand, the root bound read-only with /proc and a tmpfs /dev, chroot)
 * and resolves with the milliseconds it measured itself, from before its clone to after its wait:
 * the kernel's part of a round trip, with no Node and no runtime around it.
 */
class FloorServer {
  constructor(workDir, rootfs) {
    this.exe = path.join(workDir, 'floor');
    this.workDir = workDir;
    this.rootfs = rootfs;
    this.proc = null;
    this.buf = '';
    this.waiting = [];
  }

  start() {
    const src = path.join(__dirname, '..', 'floor.c');
    const cc = which('cc') || which('gcc');
    if (!cc) throw new Error('no C compiler (cc) to build bench/floor.c');
    if (process.geteuid && process.geteuid() !== 0) throw new Error('needs root (it makes namespaces and mounts)');
    let fresh = false;
    try {
      fresh = fs.statSync(this.exe).mtimeMs >= fs.statSync(src).mtimeMs;
    } catch {
      /* not built yet */
    }
    if (!fresh) {
      fs.mkdirSync(path.dirname(this.exe), { recursive: true });
      const r = cp.spawnSync(cc, ['-O2', '-o', this.exe, src], { stdio: ['ignore', 'ignore', 'pipe'] });
      if (r.status !== 0) throw new Error(`cc bench/floor.c: ${(r.stderr || '').toString().trim() || r.status}`);
    }
    const p = (this.proc = cp.spawn(this.exe, [this.rootfs, ...this.nsboxDefaults()], { stdio: ['pipe', 'pipe', 'inherit'] }));
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (d) => {
      this.buf += d;
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const w = this.waiting.shift();
        if (!w) continue;
        if (/^\d+$/.test(line)) w.resolve(Number(line) / 1e6);
        else w.reject(new Error(`floor: ${line}`));
      }
    });
    const gone = (why) => {
      for (const w of this.waiting.splice(0)) w.reject(new Error(`floor: ${why}`));
      this.proc = null;
    };
    p.on('error', (e) => gone(e.message));
    p.on('exit', (code, sig) => gone(`exited with ${code ?? sig}`));
  }

  /**
   * For the `defaults` mode: nsbox's trampoline binary, its seccomp filter and bounding set for an
   * app container on this rootfs, taken from nsbox's own plan (so that the floor runs the very filter
   * nsbox installs).
   */
  nsboxDefaults() {
    const root = path.join(__dirname, '..', '..');
    const { basePlan } = require(path.join(root, 'dist/plan'));
    const { resolveAppOptions } = require(path.join(root, 'dist/options'));
    const { staging } = require(path.join(root, 'dist/runtime'));
    const { capLast } = require(path.join(root, 'dist/caps'));
    const { buildDir } = require(path.join(root, 'dist/native'));
    const plan = basePlan(resolveAppOptions({ rootfs: this.rootfs, command: ['/bin/true'] }), staging(), capLast(), false).plan;
    const filter = path.join(this.workDir, 'floor-filter.bin');
    fs.writeFileSync(filter, plan.seccomp);
    return [path.join(buildDir, 'nsbox-init'), filter, BigInt(plan.capsKeep).toString(16)];
  }

  once(mode) {
    if (!this.proc) this.start();
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.proc.stdin.write(`${mode}\n`);
    });
  }

  close() {
    if (!this.proc) return;
    const p = this.proc;
    this.proc = null;
    p.stdin.end();
    return new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once('exit', r)));
  }
}

/** Mount points from /proc/self/mountinfo: [{ mountPoint, fstype, source, super }]. */
function mounts() {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const [a, b] = l.split(' - ');
      const f = a.split(' ');
      const g = b.split(' ');
      return { mountPoint: f[4], fstype: g[0], source: g[1], super: g[2] };
    });
}

function hybridUnifiedMounted() {
  return mounts().some((m) => m.mountPoint === V2_UNIFIED_HYBRID && m.fstype === 'cgroup2');
}

/** The OCI bundle for crun and runc: a config.json pointing at the (shared, read-only) rootfs. */
function writeOciBundle(dir, rootfs) {
  fs.mkdirSync(dir, { recursive: true });
  // The capability set nsbox gives an app container (containerd 2.0's), so both do the same work.
  const caps = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE'];
  const config = {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: ['/bin/true'],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/'],
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: rootfs, readonly: true },
    hostname: 'bench',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
    ],
    linux: {
      // No cgroup limits (no `resources`); the namespaces the brief asks for.
      namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }, { type: 'network' }],
      maskedPaths: ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/proc/sched_debug'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  return dir;
}

/** This process's cgroup in the v2 hierarchy and in the name=systemd v1 hierarchy, as host paths. */
function ownCgroupDirs() {
  const out = [];
  const lines = fs.readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n');
  const ms = mounts();
  for (const l of lines) {
    const [, , ctrl, rel] = /^(\d+):([^:]*):(.*)$/.exec(l) || [];
    let mp;
    if (ctrl === '') mp = ms.find((m) => m.fstype === 'cgroup2');
    else if (ctrl === 'name=systemd') mp = ms.find((m) => m.fstype === 'cgroup' && /(^|,)name=systemd(,|$)/.test(m.super));
    if (mp) out.push(path.join(mp.mountPoint, rel));
  }
  return out;
}

/**
 * systemd-nspawn --keep-unit creates `payload` and `supervisor` cgroups under its own cgroup and
 * leaves them behind. So each concurrency slot gets a cgroup of ours (in the v2 and the name=systemd
 * hierarchy) that the nspawn process moves into before it execs; all are removed at the end.
 */
class NspawnSlots {
  constructor(tag) {
    this.tag = tag;
    this.parents = ownCgroupDirs();
    this.made = new Set();
  }
  dirs(slot) {
    return this.parents.map((p) => path.join(p, `${this.tag}-${slot}`));
  }
  ensure(slot) {
    const ds = this.dirs(slot);
    for (const d of ds) {
      if (!this.made.has(d)) {
        fs.mkdirSync(d, { recursive: true });
        this.made.add(d);
      }
    }
    return ds;
  }
  /** Removes every slot cgroup (children first); returns the ones that could not be removed. */
  cleanup() {
    const left = [];
    const rm = (d) => {
      let entries = [];
      try {
        entries = fs.readdirSync(d, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) if (e.isDirectory()) rm(path.join(d, e.name));
      try {
        fs.rmdirSync(d);
      } catch (e) {
        if (e.code !== 'ENOENT') left.push(`${d} (${e.code})`);
      }
    };
    for (const d of this.made) rm(d);
    this.made.clear();
    return left;
  }
}

/**
 * Builds the contenders. Each: { id, label, command (display), run(slot) → Promise, note? }.
 * Unavailable peers come back as { id, label, skip: reason }.
 */
function contenders({ nsbox, rootfs, workDir, only, poolSize = 16 }) {
  const want = (id) => !only || only.includes(id);
  const list = [];
  const tag = `nsb-${process.pid}`;
  let seq = 0;

  if (want('child_process')) {
    list.push({
      id: 'child_process',
      label: 'child_process.spawn (floor, no isolation)',
      command: "child_process.spawn('/bin/true') — default pipes, resolved on 'close'",
      run: () => spawnWait(['/bin/true'], { stdio: 'pipe', event: 'close' }),
    });
  }
  if (want('nsbox')) {
    list.push({
      id: 'nsbox',
      label: 'nsbox run()',
      command: "nsbox run({ rootfs, command: ['/bin/true'] }) — pipes, output collected",
      run: async () => {
        const r = await nsbox.run({ rootfs, command: ['/bin/true'] });
        if (r.exitCode !== 0) throw new Error(`nsbox exit ${r.exitCode ?? r.signal}`);
      },
    });
  }
  if (want('nsbox_init')) {
    // The same with the bundled init as PID 1 (reaps orphans, forwards signals), the command its
    // child: what `init: true` costs a round trip (docs/compat.md weighs it as a default).
    list.push({
      id: 'nsbox_init',
      label: 'nsbox run(), init: true',
      sequentialOnly: true,
      command: "nsbox run({ rootfs, command: ['/bin/true'], init: true }) — pipes, output collected",
      run: async () => {
        const r = await nsbox.run({ rootfs, command: ['/bin/true'], init: true });
        if (r.exitCode !== 0) throw new Error(`nsbox exit ${r.exitCode ?? r.signal}`);
      },
    });
  }
  if (want('nsbox_host')) {
    // Every isolation of run() but the network namespace: how much of the gap to child_process is
    // the kernel's making and tearing down of one network namespace per container.
    list.push({
      id: 'nsbox_host',
      label: "nsbox run(), network 'host'",
      command: "nsbox run({ rootfs, command: ['/bin/true'], network: 'host' }) — pipes, output collected",
      run: async () => {
        const r = await nsbox.run({ rootfs, command: ['/bin/true'], network: 'host' });
        if (r.exitCode !== 0) throw new Error(`nsbox exit ${r.exitCode ?? r.signal}`);
      },
    });
  }
  if (want('nsbox_pool') && typeof nsbox.createPool === 'function') {
    // The warm pool (createPool/pool.run): set-up happens ahead of time, in the background.
    let pool = null;
    list.push({
      id: 'nsbox_pool',
      label: `nsbox pool.run() (warm pool of ${poolSize})`,
      command: `nsbox createPool({ size: ${poolSize}, rootfs }).run(['/bin/true']) — pipes, output collected`,
      run: async () => {
        pool ??= nsbox.createPool({ size: poolSize, rootfs });
        const r = await pool.run(['/bin/true']);
        if (r.exitCode !== 0) throw new Error(`nsbox pool exit ${r.exitCode ?? r.signal}`);
      },
      cleanup: async () => {
        if (pool) await pool.close();
        pool = null;
      },
    });
  }
  if (want('nsbox_pool_ready') && typeof nsbox.createPool === 'function') {
    // The same, timed only once the pool is full again: the hot path alone, refill not counted (a
    // caller with idle time between runs). Round trip only: under load there is no idle time.
    let pool = null;
    const full = async () => {
      pool ??= nsbox.createPool({ size: 2, rootfs });
      for (let i = 0; pool.ready < 2 && i < 1000; i++) await new Promise((r) => setTimeout(r, 1));
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
    };
    list.push({
      id: 'nsbox_pool_ready',
      label: 'nsbox pool.run(), pool full before each run (refill not timed)',
      command: "nsbox createPool({ size: 2, rootfs }).run(['/bin/true']), started once pool.ready === 2",
      before: full,
      sequentialOnly: true,
      run: async () => {
        pool ??= nsbox.createPool({ size: 2, rootfs });
        const r = await pool.run(['/bin/true']);
        if (r.exitCode !== 0) throw new Error(`nsbox pool exit ${r.exitCode ?? r.signal}`);
      },
      cleanup: async () => {
        if (pool) await pool.close();
        pool = null;
      },
    });
  }
  if (want('floor')) {
    // The kernel's part alone (bench/floor.c): the time of a round trip of each kind measured inside
    // a C program, with no Node and no runtime. Reference rows: what nothing can go below here.
    const server = new FloorServer(workDir, rootfs);
    let users = 0;
    for (const [mode, label, what] of [
      ['plain', 'kernel floor, no isolation (C: vfork, exec, wait)', 'vfork-style clone, execve(ROOTFS/bin/true), waitpid'],
      ['isolated', 'kernel floor, isolated (C: namespaces, root, exec, wait)', "vfork-style clone into new mount/PID/UTS/IPC/cgroup namespaces, setns into a network namespace made beforehand, ROOTFS bound read-only with /proc and a tmpfs /dev, chroot, execve('/bin/true'), waitpid"],
      ['defaults', "kernel floor with nsbox's defaults (C: isolated + /dev, /proc masks, seccomp, caps, trampoline)", "isolated, plus nsbox's child path in C: signals reset, setsid, /dev nodes, links, devpts, /dev/shm, /proc sys/irq/bus/fs read-only, keys/timer_list/acpi masked, /tmp, hostname, rlimits, session keyring, bounding set, nsbox's seccomp filter, credentials, capset, no_new_privs, pdeathsig, close_range, execveat of nsbox-init --exec"],
    ]) {
      users++;
      list.push({
        id: `floor_${mode}`,
        label,
        command: `bench/floor.c \`${mode}\`: ${what}; timed inside the C program`,
        reference: true,
        sequentialOnly: true,
        insideTiming: true,
        run: () => server.once(mode),
        cleanup: () => (--users === 0 ? server.close() : undefined),
      });
    }
  }
  if (want('child_process_ignore')) {
    list.push({
      id: 'child_process_ignore',
      label: "child_process.spawn, stdio 'ignore'",
      command: "child_process.spawn('/bin/true', { stdio: 'ignore' }) — resolved on 'exit'",
      run: () => spawnWait(['/bin/true'], { stdio: 'ignore', event: 'exit' }),
    });
  }
  if (want('nsbox_ignore')) {
    list.push({
      id: 'nsbox_ignore',
      label: "nsbox spawn(), stdio 'ignore'",
      command: "nsbox spawn({ rootfs, command: ['/bin/true'], stdio: 'ignore' }).wait()",
      run: async () => {
        const r = await nsbox.spawn({ rootfs, command: ['/bin/true'], stdio: 'ignore' }).wait();
        if (r.exitCode !== 0) throw new Error(`nsbox exit ${r.exitCode ?? r.signal}`);
      },
    });
  }

  const add = (id, label, bin, argvFor, extra = {}) => {
    if (!want(id)) return;
    const exe = which(bin);
    if (!exe) {
      list.push({ id, label, skip: `${bin} not installed (bench/setup.sh installs it)` });
      return;
    }
    const c = { id, label, exe, argvFor, run: (slot) => spawnWait(argvFor(exe, slot)), ...extra };
    c.command = extra.command || argvFor(exe, 0).map((a) => (a.includes(' ') ? `'${a}'` : a)).join(' ');
    list.push(c);
  };

  add('bwrap', 'bwrap', 'bwrap', (exe) => [exe, '--unshare-all', '--ro-bind', rootfs, '/', '--proc', '/proc', '--dev', '/dev', '/bin/true']);

  const bundle = path.join(workDir, 'oci-bundle');
  // crun refuses a hybrid host ("cgroups in hybrid mode not supported"): it runs in a private mount
  // namespace in which the v2 hierarchy at /sys/fs/cgroup/unified is unmounted (the host's mount is
  // untouched), and with --cgroup-manager=disabled.
  const hybrid = hybridUnifiedMounted();
  const unshare = which('unshare');
  const crunWrap = (inner) =>
    hybrid && unshare
      ? [unshare, '-m', '--propagation', 'private', 'sh', '-c', `umount ${V2_UNIFIED_HYBRID} && exec "$@"`, 'sh', ...inner]
      : inner;
  add('crun', 'crun', 'crun', (exe) => crunWrap([exe, '--cgroup-manager=disabled', 'run', '--bundle', bundle, `${tag}-c${seq++}`]), {
    prepare: () => writeOciBundle(bundle, rootfs),
    note: hybrid
      ? `hybrid host: each crun runs as \`unshare -m --propagation private sh -c 'umount ${V2_UNIFIED_HYBRID} && exec crun ...'\`; the "unshare+umount wrapper" row is that wrapper around /bin/true alone`
      : undefined,
  });
  if (hybrid && unshare && want('crun') && which('crun')) {
    list.push({
      id: 'crun_wrapper',
      label: 'unshare+umount wrapper alone (crun overhead on hybrid)',
      command: `unshare -m --propagation private sh -c 'umount ${V2_UNIFIED_HYBRID} && exec /bin/true'`,
      run: () => spawnWait(crunWrap(['/bin/true'])),
      reference: true,
    });
  }
  // runc has no switch to turn cgroups off; with no `resources` it creates (and removes) an empty
  // cgroup per container with its cgroupfs driver. It works on the hybrid host as it is.
  add('runc', 'runc', 'runc', (exe) => [exe, 'run', '--bundle', bundle, `${tag}-r${seq++}`], {
    prepare: () => writeOciBundle(bundle, rootfs),
  });

  const slots = new NspawnSlots(`${tag}-nspawn`);
  const nspawnArgs = (exe, slot) => [
    exe, '-D', rootfs, '--quiet', '--register=no', '--keep-unit', '--read-only', '--private-network',
    '--timezone=off', '--resolv-conf=off', '--link-journal=no', `--machine=${tag}-${slot}`, '/bin/true',
  ];
  add(
    'nspawn',
    'systemd-nspawn',
    'systemd-nspawn',
    (exe, slot) => {
      const dirs = slots.ensure(slot);
      const moves = dirs.map((d) => `echo 0 > ${d}/cgroup.procs`).join(' && ');
      return ['/bin/sh', '-c', `${moves} && exec "$@"`, 'sh', ...nspawnArgs(exe, slot)];
    },
    {
      command: `systemd-nspawn ${nspawnArgs('', 'S').slice(1).join(' ')}`,
      note:
        'systemd-nspawn (no systemd as PID 1 here: --register=no --keep-unit) leaves `payload`/`supervisor` cgroups under its own cgroup; each concurrency slot therefore gets a cgroup of the bench (`sh -c \'echo 0 > …/cgroup.procs && exec systemd-nspawn …\'`, ≈ one sh exec of overhead), removed at the end',
      cleanup: () => slots.cleanup(),
    },
  );
  return list;
}

module.exports = { contenders, spawnWait, preflight, which, hybridUnifiedMounted, mounts, NspawnSlots, V2_UNIFIED_HYBRID };
