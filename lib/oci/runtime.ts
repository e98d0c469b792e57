// oci/runtime.ts: `nsbox-runtime`, an OCI runtime with runc's command line (the subset in
// docs/oci.md), as containerd's runc shim and `ctr run --runc-binary` call it. A container is an app
// container (lib/app.ts launchGated, the library's own plan builder and start sequence) made by
// `create` and left waiting for its command on a FIFO of its state directory (the warm pool's last
// stretch: the init binary in pool mode, set up and blocked before the command's execve); `start`
// writes the command there. It outlives the process that made it (no parent-death signal), and a
// later invocation finds it by <root>/<id>/state.json: its pid, trusted only while that pid's start
// time (/proc/PID/stat) is the one recorded, and signalled only through a pidfd opened and then checked.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { constants as osConstants } from 'node:os';

import { launchGated } from './gated';
import { detectCgroupHost, killAndRemove } from '../cgroup';
import { NsboxError, errnoName, fromSystemError } from '../errors';
import { startTimeOf, withLockAsync } from '../lease';
import { writeAtomic } from '../machine-state';
import { native, type NativeProcess } from '../native';
import { resolveAppOptions } from '../options';
import { closeQuiet } from '../runtime';
import { CAPABILITY_NAMES } from '../caps';
import { convertConfig, readBundle } from './config';

const OCI_VERSION = '1.0.2';
const DEFAULT_ROOT = '/run/nsbox-runtime';
const FIFO = 'exec.fifo';
/** The root's lock file (lease.ts withLock); ids never start with a dot. */
const LOCK = '.lock';
const STATE = 'state.json';
const ID_RE = /^[A-Za-z0-9_+\-.]+$/;

/** The state file: what a later invocation knows of a container. */
interface StateFile {
  id: string;
  bundle: string;
  /** 0 until the clone has happened (a `create` that died before that left only this). */
  pid: number;
  /** /proc/PID/stat field 22 of `pid` at create. */
  startTime: string;
  /** The container's cgroup (absolute), or null on a host where nsbox makes none. */
  cgroup: string | null;
  /** The command `start` writes to the FIFO. */
  command: string[];
  annotations: Record<string, string>;
  created: string;
}

/**
 * Output by write(2) on fds 1 and 2 as they are: never through process.stdout/stderr, whose pipes
 * libuv turns non-blocking (a flag of the open file, which the container shares: it gets these fds).
 */
function writeOut(fd: 1 | 2, text: string): void {
  try {
    fs.writeSync(fd, text);
  } catch {
    /* a closed stdout or stderr is not the command's failure */
  }
}

/** A usage error (exit 1 with one line), as runc's. */
class UsageError extends Error {}

interface Globals {
  root: string;
  log: string | null;
  logFormat: 'text' | 'json';
  debug: boolean;
}

let logTarget: Globals = { root: DEFAULT_ROOT, log: null, logFormat: 'text', debug: false };

/** One line to --log (text or json, as runc writes them); debug lines only with --debug. */
function log(level: 'debug' | 'info' | 'warning' | 'error', msg: string): void {
  const g = logTarget;
  if (level === 'debug' && !g.debug) return;
  if (!g.log) {
    if (level !== 'error' && g.debug) writeOut(2, `nsbox-runtime: ${level}: ${msg}\n`);
    return;
  }
  const time = new Date().toISOString();
  const line = g.logFormat === 'json' ? JSON.stringify({ level, msg, time }) : `time="${time}" level=${level} msg=${JSON.stringify(msg)}`;
  try {
    fs.appendFileSync(g.log, line + '\n', { mode: 0o600 });
  } catch {
    /* a log that cannot be written is not the command's failure */
  }
}

/** The cgroup name of a container: the root's real path hashed, and the id (found again from both). */
function cgroupName(root: string, id: string): string {
  let real = root;
  try {
    real = fs.realpathSync(root);
  } catch {
    /* not there yet */
  }
  return `oci-${createHash('sha256').update(real).digest('hex').slice(0, 8)}-${id}`;
}

function checkId(id: string | undefined): string {
  if (id === undefined) throw new UsageError('a container id is required');
  if (!ID_RE.test(id) || id.startsWith('.')) throw new UsageError(`invalid container id '${id}'`);
  return id;
}

function readState(g: Globals, id: string): StateFile {
  const file = path.join(g.root, id, STATE);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as StateFile;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new NsboxError({ code: 'ENOENT', step: 'oci.state', path: file, message: `container '${id}' does not exist (step oci.state)` });
    }
    throw fromSystemError(e, 'oci.state', file);
  }
}

/** The recorded process, if it is still that one: a pidfd opened first, the start time checked second. */
function openLive(s: StateFile): NativeProcess | null {
  if (!s.pid) return null;
  const p = native().pidfdOpen(s.pid);
  if (typeof p === 'number') return null;
  if (startTimeOf(s.pid) !== s.startTime || p.exited()) {
    p.unref();
    return null;
  }
  return p;
}

type Status = 'creating' | 'created' | 'running' | 'stopped';

function statusOf(g: Globals, s: StateFile, proc: NativeProcess | null): Status {
  if (!s.pid) return 'creating';
  if (!proc) return 'stopped';
  return fs.existsSync(path.join(g.root, s.id, FIFO)) ? 'created' : 'running';
}

function ociState(g: Globals, s: StateFile): Record<string, unknown> {
  const proc = openLive(s);
  const status = statusOf(g, s, proc);
  proc?.unref();
  return {
    ociVersion: OCI_VERSION,
    id: s.id,
    status,
    pid: status === 'stopped' || status === 'creating' ? 0 : s.pid,
    bundle: s.bundle,
    annotations: s.annotations,
    ...(s.cgroup ? { 'org.nsbox.cgroup': s.cgroup } : {}),
  };
}

/** Signal numbers by name ('KILL', 'SIGKILL') or number ('9'). */
function signalOf(v: string | undefined): number {
  if (v === undefined) return osConstants.signals.SIGTERM;
  if (/^\d+$/.test(v)) {
    const n = Number(v);
    if (n < 1 || n > 64) throw new UsageError(`invalid signal '${v}'`);
    return n;
  }
  const name = (v.toUpperCase().startsWith('SIG') ? v.toUpperCase() : 'SIG' + v.toUpperCase()) as keyof typeof osConstants.signals;
  const n = osConstants.signals[name];
  if (n === undefined) throw new UsageError(`invalid signal '${v}'`);
  return n;
}

/** Flags of a command: `--name value`, `--name=value`, booleans; anything else an error naming it. */
function parseFlags(args: string[], valued: readonly string[], bools: readonly string[]): { flags: Record<string, string | true>; rest: string[] } {
  const flags: Record<string, string | true> = {};
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      rest.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      rest.push(a);
      continue;
    }
    const m = /^--?([^=]+)(?:=(.*))?$/.exec(a)!;
    const name = m[1]!;
    if (valued.includes(name)) {
      const v = m[2] ?? args[++i];
      if (v === undefined) throw new UsageError(`flag --${name} needs a value`);
      flags[name] = v;
    } else if (bools.includes(name)) {
      if (m[2] !== undefined && m[2] !== 'true' && m[2] !== 'false') throw new UsageError(`flag --${name} is a boolean`);
      if (m[2] !== 'false') flags[name] = true;
    } else {
      throw new UsageError(`flag '${a}' is not supported by nsbox-runtime`);
    }
  }
  return { flags, rest };
}

/** Kills whatever runs in the container (its cgroup, else its process) and removes the cgroup. */
async function killAll(s: StateFile, cgroup: string | null): Promise<void> {
  const proc = openLive(s);
  if (proc) {
    proc.signal(osConstants.signals.SIGKILL);
    proc.unref();
  }
  if (cgroup && fs.existsSync(cgroup)) {
    if (!(await killAndRemove(cgroup))) throw new NsboxError({ code: 'EBUSY', step: 'oci.delete', path: cgroup, message: `the cgroup ${cgroup} did not empty (step oci.delete)` });
  }
}

/** The container's cgroup: as recorded, else (a create that died before writing it) by its name. */
function cgroupOf(g: Globals, s: StateFile | null, id: string): string | null {
  if (s?.cgroup) return s.cgroup;
  const base = detectCgroupHost().base;
  return base ? path.join(base, cgroupName(g.root, id)) : null;
}

/** `run` in the foreground: the container this process made (its child), waited for by waitRun. */
let foreground: NativeProcess | null = null;

async function create(g: Globals, args: string[], startAfter = false): Promise<number> {
  const { flags, rest } = parseFlags(args, ['bundle', 'b', 'pid-file', 'console-socket', 'preserve-fds'], ['no-pivot', 'no-new-keyring', 'detach', 'd', 'keep']);
  if (flags['console-socket'] !== undefined) throw new NsboxError({ code: 'ENOTSUP', step: 'oci.create', message: '--console-socket: a terminal is not supported by nsbox-runtime yet (step oci.create)' });
  if (flags['preserve-fds'] !== undefined && flags['preserve-fds'] !== '0') throw new NsboxError({ code: 'ENOTSUP', step: 'oci.create', message: '--preserve-fds is not supported by nsbox-runtime yet (step oci.create)' });
  if (flags['no-pivot']) throw new NsboxError({ code: 'ENOTSUP', step: 'oci.create', message: '--no-pivot is not supported (nsbox always pivots) (step oci.create)' });
  if (flags.keep) throw new NsboxError({ code: 'ENOTSUP', step: 'oci.run', message: '--keep is not supported by nsbox-runtime yet (step oci.run)' });
  if (flags['no-new-keyring']) log('info', '--no-new-keyring: nsbox gives every container a new session keyring');
  const id = checkId(rest[0]);
  if (rest.length > 1) throw new UsageError(`unexpected arguments: ${rest.slice(1).join(' ')}`);
  const bundle = path.resolve(String(flags.bundle ?? flags.b ?? '.'));
  // Everything the config asks is judged before anything is made.
  const cfg = readBundle(bundle);
  for (const n of cfg.notes) log('info', n);
  const o = resolveAppOptions({ ...cfg.options, stdio: 'ignore' });
  o.sysfs = cfg.sysfs;
  o.mqueue = cfg.mqueue;
  if (!cfg.tmp) o.mounts = o.mounts.filter((m) => !(m.type === 'tmpfs' && m.target === '/tmp'));
  fs.mkdirSync(g.root, { recursive: true, mode: 0o700 });
  const dir = path.join(g.root, id);
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new NsboxError({ code: 'EEXIST', step: 'oci.create', path: dir, message: `container '${id}' exists already (step oci.create)` });
    throw fromSystemError(e, 'oci.create', dir);
  }
  const cgName = cgroupName(g.root, id);
  const state: StateFile = {
    id, bundle, pid: 0, startTime: '', cgroup: null, command: o.command, annotations: cfg.annotations, created: new Date().toISOString(),
  };
  let fifo = -1;
  let made: { pid: number; process: NativeProcess; cgroup: string | null; errFd: number } | null = null;
  try {
    // The state first (pid 0: "creating"): a create killed from here on leaves a directory that
    // `delete --force` finds, and with it the cgroup's name.
    writeAtomic(path.join(dir, STATE), JSON.stringify(state));
    const fsat = (native() as unknown as { fsat: { mknodat(dirfd: number, name: string, mode: number, major: number, minor: number): number } }).fsat;
    const rc = fsat.mknodat(-100 /* AT_FDCWD */, path.join(dir, FIFO), fs.constants.S_IFIFO | 0o600, 0, 0);
    if (rc < 0) throw new NsboxError({ code: errnoName(-rc), errno: -rc, syscall: 'mknodat', step: 'oci.create', path: path.join(dir, FIFO) });
    // Read and write: the container holds a writer itself, so that no end-of-file comes when this
    // process exits; the init reads up to the command's end (native/init/init.c, pool mode).
    fifo = fs.openSync(path.join(dir, FIFO), fs.constants.O_RDWR);
    made = launchGated(o, {
      cmdFd: fifo,
      cgroupName: cgName,
      adjust: (plan) => {
        plan.noNewPrivs = cfg.noNewPrivileges;
      },
    });
    closeQuiet(fifo);
    fifo = -1;
    // Its failures after this (the command not found at start) have nobody to read them.
    closeQuiet(made.errFd);
    if (cfg.oomScoreAdj !== undefined) fs.writeFileSync(`/proc/${made.pid}/oom_score_adj`, String(cfg.oomScoreAdj));
    state.pid = made.pid;
    state.startTime = startTimeOf(made.pid) ?? '';
    state.cgroup = made.cgroup;
    writeAtomic(path.join(dir, STATE), JSON.stringify(state));
    if (flags['pid-file'] !== undefined) writeAtomic(path.resolve(String(flags['pid-file'])), String(made.pid));
    log('debug', `created ${id}: pid ${made.pid}, cgroup ${made.cgroup ?? 'none'}`);
  } catch (e) {
    if (fifo >= 0) closeQuiet(fifo);
    if (made) {
      made.process.signal(osConstants.signals.SIGKILL);
      made.process.unref();
    }
    try {
      await killAll(state, made?.cgroup ?? null);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    throw e;
  }
  if (!startAfter) {
    made.process.unref();
    return 0;
  }
  start(g, [id]);
  if (flags.detach || flags.d) {
    made.process.unref();
    return 0;
  }
  // `run` in the foreground: the container is this process's child; its end is this command's.
  foreground = made.process;
  return -1;
}

function start(g: Globals, args: string[]): number {
  const { rest } = parseFlags(args, [], []);
  const id = checkId(rest[0]);
  const s = readState(g, id);
  const proc = openLive(s);
  const status = statusOf(g, s, proc);
  proc?.unref();
  if (status !== 'created') throw new NsboxError({ code: 'EINVAL', step: 'oci.start', message: `container '${id}' is ${status}, not created (step oci.start)` });
  const file = path.join(g.root, id, FIFO);
  let fd: number;
  try {
    // Non-blocking: with no reader left (the container gone, or started already) this fails (ENXIO).
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    throw fromSystemError(e, 'oci.start', file);
  }
  try {
    const cmd = Buffer.from(s.command.map((a) => a + '\0').join('') + '\0');
    if (fs.writeSync(fd, cmd) !== cmd.length) throw new NsboxError({ code: 'EIO', step: 'oci.start', path: file, message: 'short write of the command (step oci.start)' });
  } finally {
    fs.closeSync(fd);
  }
  fs.rmSync(file, { force: true });
  log('debug', `started ${id}`);
  return 0;
}

/**
 * `kill --all`: every process of the container's cgroup and of the cgroups below it. SIGKILL is
 * the kernel's cgroup.kill (nothing can slip out meanwhile). Any other signal goes through a pidfd
 * to each pid listed, and only after the pidfd (which pins the pid) shows it still in the
 * container's subtree: a listed process that exited and whose pid a host process took since is
 * left alone (attack review).
 */
function signalCgroup(cgroup: string, pid1: number, sig: number): void {
  if (sig === osConstants.signals.SIGKILL) {
    try {
      fs.writeFileSync(path.join(cgroup, 'cgroup.kill'), '1');
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(e, 'oci.kill', cgroup);
    }
  }
  const mount = detectCgroupHost().mountPoint;
  const rel = mount ? '/' + path.relative(mount, cgroup) : null;
  const walk = (dir: string): void => {
    let pids: number[] = [];
    let subs: fs.Dirent[] = [];
    try {
      pids = fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
      subs = fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory());
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw fromSystemError(e, 'oci.kill', dir);
    }
    for (const pid of pids) {
      if (pid === pid1) continue;
      const p = native().pidfdOpen(pid);
      if (typeof p === 'number') continue;
      try {
        let where = '';
        try {
          where = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').match(/^0::(.*)$/m)?.[1] ?? '';
        } catch {
          /* gone */
        }
        if (rel !== null && (where === rel || where.startsWith(rel + '/'))) p.signal(sig);
      } finally {
        p.unref();
      }
    }
    for (const d of subs) walk(path.join(dir, d.name));
  };
  walk(cgroup);
}

function kill(g: Globals, args: string[]): number {
  const { flags, rest } = parseFlags(args, [], ['all', 'a']);
  const id = checkId(rest[0]);
  const sig = signalOf(rest[1]);
  const s = readState(g, id);
  const proc = openLive(s);
  if (!proc) throw new NsboxError({ code: 'ESRCH', step: 'oci.kill', message: `container '${id}' is not running (step oci.kill)` });
  try {
    // PID 1 first (its error is the command's), then, with --all, the rest of its cgroup.
    const rc = proc.signal(sig);
    if (rc !== 0) throw new NsboxError({ code: rc === 3 ? 'ESRCH' : 'EPERM', errno: rc, syscall: 'pidfd_send_signal', step: 'oci.kill' });
    if ((flags.all || flags.a) && s.cgroup) signalCgroup(s.cgroup, s.pid, sig);
  } finally {
    proc.unref();
  }
  return 0;
}

async function del(g: Globals, args: string[]): Promise<number> {
  const { flags, rest } = parseFlags(args, [], ['force', 'f']);
  const id = checkId(rest[0]);
  const force = !!(flags.force || flags.f);
  const dir = path.join(g.root, id);
  let s: StateFile | null = null;
  try {
    s = readState(g, id);
  } catch (e) {
    // A create killed before its first state write leaves a bare directory: --force removes it.
    if (!(force && fs.existsSync(dir))) throw e;
  }
  if (s) {
    const proc = openLive(s);
    const status = statusOf(g, s, proc);
    proc?.unref();
    if ((status === 'running' || status === 'creating') && !force) {
      throw new NsboxError({ code: 'EBUSY', step: 'oci.delete', message: `container '${id}' is ${status}; stop it or use --force (step oci.delete)` });
    }
  }
  await killAll(s ?? { id, bundle: '', pid: 0, startTime: '', cgroup: null, command: [], annotations: {}, created: '' }, cgroupOf(g, s, id));
  fs.rmSync(dir, { recursive: true, force: true });
  log('debug', `deleted ${id}`);
  return 0;
}

function list(g: Globals, args: string[]): number {
  const { flags } = parseFlags(args, ['format', 'f'], ['quiet', 'q']);
  let ids: string[] = [];
  try {
    ids = fs.readdirSync(g.root).filter((n) => ID_RE.test(n) && !n.startsWith('.')).sort();
  } catch {
    /* no root: nothing */
  }
  const states = ids.flatMap((id) => {
    try {
      return [ociState(g, readState(g, id))];
    } catch {
      return [];
    }
  });
  const format = String(flags.format ?? flags.f ?? 'table');
  if (flags.quiet || flags.q) writeOut(1, states.map((s) => s.id + '\n').join(''));
  else if (format === 'json') writeOut(1, JSON.stringify(states) + '\n');
  else if (format === 'table') {
    writeOut(1, 'ID\tPID\tSTATUS\tBUNDLE\n' + states.map((s) => `${String(s.id)}\t${String(s.pid)}\t${String(s.status)}\t${String(s.bundle)}\n`).join(''));
  } else throw new UsageError(`invalid format '${format}'`);
  return 0;
}

function features(): number {
  const f = {
    ociVersionMin: '1.0.0',
    ociVersionMax: OCI_VERSION,
    hooks: [],
    mountOptions: ['bind', 'rbind', 'ro', 'rw', 'nosuid', 'nodev', 'noexec', 'private', 'rprivate', 'strictatime', 'relatime'],
    linux: {
      namespaces: ['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup'],
      capabilities: CAPABILITY_NAMES.map((n) => 'CAP_' + n),
      cgroup: { v1: false, v2: true, systemd: false, systemdUser: false },
      seccomp: { enabled: false },
      apparmor: { enabled: false },
      selinux: { enabled: false },
    },
    annotations: { 'org.nsbox.runtime': 'nsbox-runtime' },
  };
  writeOut(1, JSON.stringify(f, null, 2) + '\n');
  return 0;
}

/** `spec`: a config.json that nsbox-runtime runs as it is (runc's, without a terminal). */
function spec(args: string[]): number {
  const { flags } = parseFlags(args, ['bundle', 'b'], ['rootless']);
  if (flags.rootless) throw new NsboxError({ code: 'ENOTSUP', step: 'oci.spec', message: '--rootless: user namespaces from config.json are not supported yet (step oci.spec)' });
  const bundle = path.resolve(String(flags.bundle ?? flags.b ?? '.'));
  const file = path.join(bundle, 'config.json');
  const caps = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
  const config = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: false, user: { uid: 0, gid: 0 }, args: ['sh'],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'], cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }], noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'nsbox',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }],
    },
  };
  try {
    fs.writeFileSync(file, JSON.stringify(config, null, '\t') + '\n', { flag: 'wx' });
  } catch (e) {
    throw fromSystemError(e, 'oci.spec', file);
  }
  // What it writes, it runs: checked with the same converter.
  convertConfig(config as unknown as Record<string, unknown>, bundle);
  return 0;
}

/** Commands of runc's surface this runtime does not have yet (each an error naming it). */
const NOT_YET = ['exec', 'pause', 'resume', 'ps', 'events', 'update', 'checkpoint', 'restore'];

const USAGE = `usage: nsbox-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND ...
commands: create, start, state, kill, delete, run, list, features, spec (docs/oci.md)
`;

/** The whole command line; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  const g: Globals = { root: DEFAULT_ROOT, log: null, logFormat: 'text', debug: false };
  logTarget = g;
  let i = 0;
  try {
    // Global flags, before the command (as runc takes them).
    for (; i < argv.length && argv[i]!.startsWith('-'); i++) {
      const a = argv[i]!;
      const m = /^--?([^=]+)(?:=(.*))?$/.exec(a);
      const name = m?.[1] ?? a;
      const value = (): string => {
        const v = m?.[2] ?? argv[++i];
        if (v === undefined) throw new UsageError(`flag --${name} needs a value`);
        return v;
      };
      if (name === 'root') g.root = path.resolve(value());
      else if (name === 'log') g.log = path.resolve(value());
      else if (name === 'log-format') {
        const v = value();
        if (v !== 'text' && v !== 'json') throw new UsageError(`invalid --log-format '${v}' (text or json)`);
        g.logFormat = v;
      } else if (name === 'debug') g.debug = true;
      else if (name === 'systemd-cgroup') {
        throw new NsboxError({ code: 'ENOTSUP', step: 'oci', message: "--systemd-cgroup is not supported: nsbox makes the container's cgroups itself (configure the runtime without SystemdCgroup) (step oci)" });
      } else if (name === 'help' || name === 'h') {
        writeOut(1, USAGE);
        return 0;
      } else if (name === 'version' || name === 'v') {
        writeOut(1, `nsbox-runtime version ${(require('../../package.json') as { version: string }).version}\nspec: ${OCI_VERSION}\n`);
        return 0;
      } else throw new UsageError(`global flag '${a}' is not supported by nsbox-runtime`);
    }
    const cmd = argv[i];
    const args = argv.slice(i + 1);
    log('debug', `argv: ${JSON.stringify(argv)}`);
    // create, start, kill and delete hold the root's lock: a delete --force never runs in the middle
    // of a create of the same container (nor a start in the middle of a delete).
    const locked = (fn: () => number | Promise<number>): Promise<number> => {
      fs.mkdirSync(g.root, { recursive: true, mode: 0o700 });
      return withLockAsync(g.root, `oci.${cmd ?? ''}`, async () => fn(), LOCK);
    };
    switch (cmd) {
      case 'create':
        return await locked(() => create(g, args));
      case 'run': {
        const code = await locked(() => create(g, args, true));
        if (code >= 0) return code;
        return await waitRun(g, args);
      }
      case 'start':
        return await locked(() => start(g, args));
      case 'state': {
        const id = checkId(parseFlags(args, [], []).rest[0]);
        writeOut(1, JSON.stringify(ociState(g, readState(g, id)), null, 2) + '\n');
        return 0;
      }
      case 'kill':
        return await locked(() => kill(g, args));
      case 'delete':
        return await locked(() => del(g, args));
      case 'list':
        return list(g, args);
      case 'features':
        return features();
      case 'spec':
        return spec(args);
      case undefined:
        throw new UsageError('a command is required');
      default:
        if (NOT_YET.includes(cmd)) throw new NsboxError({ code: 'ENOTSUP', step: 'oci', message: `command '${cmd}' is not supported by nsbox-runtime yet (step oci)` });
        throw new UsageError(`unknown command '${cmd}'`);
    }
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    log('error', msg);
    writeOut(2, `nsbox-runtime: ${msg}\n`);
    if (e instanceof UsageError) writeOut(2, USAGE);
    return 1;
  }
}

/** `run` in the foreground: waits for the container (a child of this process), deletes it, exits with its status. */
async function waitRun(g: Globals, args: string[]): Promise<number> {
  const id = checkId(parseFlags(args, ['bundle', 'b', 'pid-file', 'console-socket', 'preserve-fds'], ['no-pivot', 'no-new-keyring', 'detach', 'd', 'keep']).rest[0]);
  const proc = foreground;
  let code = 0;
  if (proc) {
    // Signals to this process go on to the container (as runc forwards them).
    const fwd = (sig: NodeJS.Signals): void => void proc.signal(osConstants.signals[sig]);
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, fwd);
    code = await new Promise<number>((resolve) => proc.watch((exitCode, signal) => resolve(exitCode ?? 128 + (signal ?? 0))));
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.off(sig, fwd);
  }
  await withLockAsync(g.root, 'oci.run', () => del(g, ['--force', id]), LOCK);
  return code;
}
