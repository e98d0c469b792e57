// cli.ts: the `nsbox` command (bin/nsbox.js calls main()). Parses argv into AppOptions, runs the
// container on the terminal's stdio (relayed, see lib/stdio.ts) and turns its end into an exit status:
//   the container's exit code, 128+n when it was killed by signal n, 125 when nsbox itself failed.
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';

import { spawn, probe, Machine, NsboxError } from './index';
import type { AppOptions, Container, ExitInfo, HostReport, Limits, MachineExecOptions, MachineInfo, MachineOptions, Mount, NetworkOptions, PortMapping } from './index';
import { editDistance } from './util';

/** Exit status for any failure of nsbox itself (bad usage, bad options, setup errors), as docker run. */
export const EXIT_NSBOX = 125;

const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** A mistake on the command line: printed as one line, exit 125. */
class UsageError extends Error {
  override name = 'UsageError';
}

interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

const io: Io = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
};

function version(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const USAGE = `Usage:
  nsbox run [flags] -- CMD ARGS...   run one command in a new container
  nsbox doctor [--json]              report what this host supports
  nsbox machine start NAME --rootfs DIR [flags]
                                     start a long-lived machine with its own PID 1
  nsbox machine exec NAME [-t] -- CMD ARGS...
                                     run a command inside a running machine
  nsbox machine stop|kill|freeze|thaw|stats|destroy NAME
  nsbox machine list [--json]        the machines and their state
  nsbox --help | --version

Run 'nsbox run --help' for the flags of nsbox run, 'nsbox machine --help' for the machine commands.
`;

const RUN_USAGE = `Usage: nsbox run [flags] -- CMD ARGS...

Runs CMD in new namespaces with its own cgroup. Its stdin, stdout and stderr are relayed to and
from nsbox's own through pipes (CMD sees no terminal).
Every flag also takes the --flag=value form.

  --rootfs DIR          directory to use as / (default: the host's /usr, /bin, /lib* and a safe
                        /etc, read-only, on a fresh tmpfs)
  --rw                  make the rootfs writable (default read-only)
  --bind SRC:DST[:ro]   bind-mount host SRC at DST (repeatable; SRC alone mounts it at the same path)
  --tmpfs DST[:size=64M,mode=1777]
                        mount a fresh tmpfs at DST (repeatable; /tmp has one by default)
  --env K=V             set a variable (repeatable); the environment is only PATH, HOME and these.
                        --env K copies K from nsbox's own environment, if set
  --cwd DIR             working directory inside (default /)
  --hostname H          UTS host name (default nsbox)
  --user UID:GID        numeric credentials inside (default 0:0)
  --network MODE        none | loopback (default, lo up) | host | bridge (root: a veth on nsbox's
                        bridge nsbox0, an address from 10.88.0.0/16, a default route via 10.88.0.1)
  --publish [ADDR:]HOST:CONTAINER
                        forward TCP connections to host port HOST (on ADDR, default 127.0.0.1) to
                        the container's port CONTAINER (repeatable; implies --network bridge)
  --allow ADDR[/LEN][:PORT[-PORT]]
                        egress allow-list: only these destinations are reachable, anything else is
                        refused at once (repeatable; implies --network bridge)
  --init                run a tiny init as PID 1 that reaps orphans and forwards signals
  --timeout MS          kill the container after MS milliseconds (also 10s, 2m, 1h); exit 137
  --memory SIZE         memory limit, e.g. 256M (K, M, G, T suffixes)
  --swap SIZE           swap limit
  --pids N              maximum number of processes
  --cpu CORES           CPU quota in cores, e.g. 0.5
  --cpuset LIST         CPUs to run on, e.g. 0-1 or 0,2
  --cpu-weight N        relative CPU weight, 1-10000
  --io-weight N         relative I/O weight, 1-10000
  -h, --help            this help

Exit status: the command's; 128+n if it was killed by signal n; 125 if nsbox failed.
SIGINT, SIGTERM and SIGHUP are forwarded to the container's PID 1 (which ignores signals it has no
handler for unless --init is given); a second one kills the container.
`;

// ---------------------------------------------------------------------------------------------
// Argument parsing

type FlagKind = 'value' | 'bool';
const RUN_FLAGS: Record<string, FlagKind> = {
  '--rootfs': 'value',
  '--rw': 'bool',
  '--bind': 'value',
  '--tmpfs': 'value',
  '--env': 'value',
  '--cwd': 'value',
  '--hostname': 'value',
  '--user': 'value',
  '--network': 'value',
  '--publish': 'value',
  '--allow': 'value',
  '--init': 'bool',
  '--timeout': 'value',
  '--memory': 'value',
  '--swap': 'value',
  '--pids': 'value',
  '--cpu': 'value',
  '--cpuset': 'value',
  '--cpu-weight': 'value',
  '--io-weight': 'value',
  '--help': 'bool',
};


/** The known name nearest to `name` (a prefix match, else a small edit distance), if any is near. */
function nearest(name: string, known: readonly string[]): string | undefined {
  const bare = name.replace(/^-+/, '');
  const prefixed = known.filter((k) => bare.length >= 2 && k.replace(/^-+/, '').startsWith(bare));
  if (prefixed.length === 1) return prefixed[0];
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(bare, k.replace(/^-+/, ''));
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(bare.length / 3)) ? best : undefined;
}

function unknownFlag(flag: string, cmd: string, known: readonly string[]): UsageError {
  const near = nearest(flag, known);
  const hint = near ? `; did you mean ${near}?` : '';
  return new UsageError(`unknown flag ${flag} for '${cmd}'${hint} (see '${cmd} --help')`);
}

interface ParsedRun {
  help: boolean;
  options: AppOptions;
  /** Option path prefix ('limits.memory', 'mounts[2]') -> the flag that set it, for error messages. */
  origin: Map<string, string>;
}

const DURATION_UNITS: Record<string, number> = { '': 1, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function parseDuration(flag: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v.trim());
  if (!m) throw new UsageError(`${flag} must be a number of milliseconds (or with a unit: 10s, 2m, 1h), got '${v}'`);
  return Number(m[1]) * DURATION_UNITS[m[2] ?? '']!;
}

function parseWhole(flag: string, v: string): number {
  if (!/^\d+$/.test(v.trim())) throw new UsageError(`${flag} must be a whole number, got '${v}'`);
  return Number(v);
}

function parseDecimal(flag: string, v: string): number {
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(v.trim())) throw new UsageError(`${flag} must be a number such as 0.5, got '${v}'`);
  return Number(v);
}

function parseUser(v: string): { uid: number; gid: number; groups?: number[] } {
  const m = /^(\d+):(\d+)(?::(\d+(?:,\d+)*))?$/.exec(v);
  if (!m) throw new UsageError(`--user must be UID:GID with numeric ids (such as 1000:1000), got '${v}'`);
  const u: { uid: number; gid: number; groups?: number[] } = { uid: Number(m[1]), gid: Number(m[2]) };
  if (m[3]) u.groups = m[3].split(',').map(Number);
  return u;
}

function parseBind(v: string): Mount {
  const parts = v.split(':');
  let readonly = false;
  const last = parts[parts.length - 1];
  if (parts.length >= 2 && (last === 'ro' || last === 'rw')) {
    readonly = last === 'ro';
    parts.pop();
  }
  if (parts.length > 2 || parts.some((p) => p === '')) {
    throw new UsageError(`--bind must be SRC:DST, SRC:DST:ro or SRC:DST:rw (paths without ':'), got '${v}'`);
  }
  const source = path.resolve(parts[0]!);
  const target = parts[1] ?? source;
  return { type: 'bind', source, target, readonly };
}

function parseTmpfs(v: string): Mount {
  const colon = v.indexOf(':');
  const target = colon < 0 ? v : v.slice(0, colon);
  const m: Mount = { type: 'tmpfs', target };
  if (target === '') throw new UsageError(`--tmpfs needs a target path, got '${v}'`);
  if (colon >= 0) {
    for (const opt of v.slice(colon + 1).split(',')) {
      const [k, val] = opt.split('=', 2) as [string, string | undefined];
      if (k === 'size' && val) m.size = val;
      else if (k === 'mode' && val && /^[0-7]{1,4}$/.test(val)) m.mode = parseInt(val, 8);
      else throw new UsageError(`--tmpfs options are size=SIZE and mode=OCTAL, got '${opt}' in '${v}'`);
    }
  }
  return m;
}

function parseEnvArg(v: string, env: Record<string, string>): void {
  const eq = v.indexOf('=');
  if (eq === 0 || v === '') throw new UsageError(`--env must be K=V (or K to copy it from nsbox's environment), got '${v}'`);
  if (eq > 0) {
    env[v.slice(0, eq)] = v.slice(eq + 1);
  } else {
    const host = process.env[v];
    if (host !== undefined) env[v] = host;
  }
}

/** What `run` and `machine start` parse alike: mounts, env, hostname, network and the limits. */
interface SharedFlags {
  origin: Map<string, string>;
  limits: Limits;
  mounts: Mount[];
  env: Record<string, string>;
  envGiven: boolean;
  hostname?: string;
  network?: AppOptions['network'];
  /** --publish and --allow: they make the network a bridge. */
  ports: PortMapping[];
  allow: string[];
}

function newShared(origin: Map<string, string>): SharedFlags {
  return { origin, limits: {}, mounts: [], env: {}, envGiven: false, ports: [], allow: [] };
}

/** --publish [ADDR:]HOST:CONTAINER */
function parsePublish(v: string): PortMapping {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d+):(\d+)$/.exec(v);
  if (!m) throw new UsageError(`--publish must be HOST:CONTAINER or ADDR:HOST:CONTAINER with numeric ports (such as 8080:80), got '${v}'`);
  const p: PortMapping = { host: Number(m[2]), container: Number(m[3]) };
  if (m[1] !== undefined) p.hostAddress = m[1];
  return p;
}

/** Applies one of the shared value flags; false when `flag` is not one of them. */
function applySharedFlag(flag: string, value: string, acc: SharedFlags): boolean {
  const { origin, limits, mounts } = acc;
  const label = `${flag} '${value}'`;
  switch (flag) {
    case '--bind':
    case '--tmpfs':
      mounts.push(flag === '--bind' ? parseBind(value) : parseTmpfs(value));
      origin.set(`mounts[${mounts.length - 1}]`, label);
      return true;
    case '--env':
      parseEnvArg(value, acc.env);
      acc.envGiven = true;
      origin.set('env', '--env');
      return true;
    case '--hostname':
      acc.hostname = value;
      origin.set('hostname', label);
      return true;
    case '--network':
      acc.network = value as AppOptions['network'];
      origin.set('network', label);
      return true;
    case '--publish':
      acc.ports.push(parsePublish(value));
      origin.set(`network.ports[${acc.ports.length - 1}]`, label);
      return true;
    case '--allow':
      acc.allow.push(value);
      origin.set(`network.allow[${acc.allow.length - 1}]`, label);
      return true;
    case '--memory':
      limits.memory = value;
      origin.set('limits.memory', label);
      return true;
    case '--swap':
      limits.swap = value;
      origin.set('limits.swap', label);
      return true;
    case '--pids':
      limits.pids = parseWhole(flag, value);
      origin.set('limits.pids', label);
      return true;
    case '--cpu':
      limits.cpu = parseDecimal(flag, value);
      origin.set('limits.cpu', label);
      return true;
    case '--cpuset':
      limits.cpuset = value;
      origin.set('limits.cpuset', label);
      return true;
    case '--cpu-weight':
      limits.cpuWeight = parseWhole(flag, value);
      origin.set('limits.cpuWeight', label);
      return true;
    case '--io-weight':
      limits.ioWeight = parseWhole(flag, value);
      origin.set('limits.ioWeight', label);
      return true;
    default:
      return false;
  }
}

function finishShared(acc: SharedFlags, into: { mounts?: Mount[]; env?: Record<string, string>; limits?: Limits; hostname?: string; network?: AppOptions['network'] }): void {
  if (acc.mounts.length) into.mounts = acc.mounts;
  if (acc.envGiven) into.env = acc.env;
  if (Object.keys(acc.limits).length) into.limits = acc.limits;
  if (acc.hostname !== undefined) into.hostname = acc.hostname;
  if (acc.network !== undefined) into.network = acc.network;
  if (acc.ports.length || acc.allow.length) {
    if (acc.network !== undefined && acc.network !== 'bridge') {
      throw new UsageError(`--publish and --allow need --network bridge, not --network ${String(acc.network)}`);
    }
    const n: NetworkOptions = {};
    if (acc.ports.length) n.ports = acc.ports;
    if (acc.allow.length) n.allow = acc.allow;
    into.network = n;
  }
}

/** argv after `run`. */
export function parseRun(argv: string[]): ParsedRun {
  const options: AppOptions = { command: [] };
  const origin = new Map<string, string>();
  const shared = newShared(origin);
  let sawSeparator = false;
  let help = false;

  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      sawSeparator = true;
      options.command = argv.slice(i + 1);
      break;
    }
    if (a === '-h') {
      help = true;
      continue;
    }
    if (!a.startsWith('-') || a === '-') {
      throw new UsageError(`put '--' before the command: nsbox run [flags] -- ${a}${i + 1 < argv.length ? ' ...' : ''}`);
    }
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const inline = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : undefined;
    const kind = RUN_FLAGS[flag];
    if (!kind) throw unknownFlag(flag, 'nsbox run', Object.keys(RUN_FLAGS));
    if (kind === 'bool') {
      if (inline !== undefined) throw new UsageError(`${flag} takes no value, got '${a}'`);
      if (flag === '--help') help = true;
      else if (flag === '--init') options.init = true;
      else if (flag === '--rw') options.readonly = false;
      continue;
    }
    let value: string;
    if (inline !== undefined) {
      value = inline;
    } else {
      const next = argv[i + 1];
      if (next === undefined || next === '--') throw new UsageError(`${flag} needs a value`);
      value = next;
      i++;
    }
    const label = `${flag} '${value}'`;
    if (applySharedFlag(flag, value, shared)) continue;
    switch (flag) {
      case '--rootfs':
        options.rootfs = path.resolve(value);
        origin.set('rootfs', label);
        break;
      case '--cwd':
        options.cwd = value;
        origin.set('cwd', label);
        break;
      case '--user':
        options.user = parseUser(value);
        origin.set('user', label);
        break;
      case '--timeout':
        options.timeout = parseDuration(flag, value);
        origin.set('timeout', label);
        break;
    }
  }
  finishShared(shared, options);
  if (!help) {
    if (!sawSeparator) throw new UsageError("missing '-- CMD': nsbox run [flags] -- CMD ARGS...");
    if (options.command.length === 0) throw new UsageError("missing the command after '--': nsbox run [flags] -- CMD ARGS...");
  }
  return { help, options, origin };
}

// ---------------------------------------------------------------------------------------------
// Errors and exit status

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

function isNsboxError(e: unknown): e is NsboxError {
  return e instanceof NsboxError || (e instanceof Error && e.name === 'NsboxError' && typeof (e as NsboxError).step === 'string');
}

/** The one line printed for a failure (without the trailing newline). */
export function formatError(e: unknown, origin?: Map<string, string>): string {
  if (e instanceof UsageError) return `nsbox: ${oneLine(e.message)}`;
  if (isNsboxError(e)) {
    const suffix = ` (step ${e.step})`;
    const msg = e.message.endsWith(suffix) ? e.message.slice(0, -suffix.length) : e.message;
    return `nsbox: ${oneLine(msg)} [code ${e.code}, step ${e.step}]`;
  }
  if ((e instanceof TypeError || e instanceof RangeError) && typeof (e as { code?: unknown }).code === 'string') {
    // Name the flag behind the option the library rejected: "limits.memory" -> --memory '12Q'.
    let from = '';
    const opt = /"([^"]+)"/.exec(e.message)?.[1];
    if (opt && origin) {
      for (const [prefix, label] of origin) {
        if (opt === prefix || opt.startsWith(prefix + '.') || opt.startsWith(prefix + '[') || opt.startsWith(prefix + ' ')) from = `${label}: `;
      }
      if (!from && opt.startsWith('command')) from = 'command: ';
    }
    return `nsbox: ${from}${oneLine(e.message)}`;
  }
  const err = e as Error;
  return `nsbox: internal error: ${oneLine(String(err?.stack?.split('\n')[0] ?? err))}`;
}

/** 128+n for a signal name such as 'SIGKILL' (or 'SIG40'). */
export function signalStatus(sig: string): number {
  const n = (osConstants.signals as Record<string, number>)[sig] ?? Number(/^SIG(\d+)$/.exec(sig)?.[1]);
  return Number.isInteger(n) && n > 0 ? 128 + n : EXIT_NSBOX;
}

export function exitStatus(info: ExitInfo): number {
  if (info.exitCode !== null) return info.exitCode;
  if (info.signal !== null) return signalStatus(info.signal);
  return EXIT_NSBOX;
}

// ---------------------------------------------------------------------------------------------
// Commands

async function cmdRun(argv: string[]): Promise<number> {
  let parsed: ParsedRun;
  try {
    parsed = parseRun(argv);
  } catch (e) {
    io.err(formatError(e) + '\n');
    return EXIT_NSBOX;
  }
  if (parsed.help) {
    io.out(RUN_USAGE);
    return 0;
  }
  const { options, origin } = parsed;

  let c: Container;
  try {
    c = spawn({ ...options, stdio: 'inherit' });
  } catch (e) {
    io.err(formatError(e, origin) + '\n');
    return EXIT_NSBOX;
  }

  // Signals: the first one is forwarded; a second means "stop now". If this process is going away
  // regardless (uncaught error, process.exit), the container goes along.
  const unforward = forwardSignals(c);

  let info: ExitInfo;
  try {
    info = await c.wait();
  } catch (e) {
    io.err(formatError(e, origin) + '\n');
    return EXIT_NSBOX;
  } finally {
    unforward();
  }

  if (info.timedOut) io.err(`nsbox: timed out after ${options.timeout} ms\n`);
  if (info.oomKilled) {
    const mem = options.limits?.memory;
    io.err(`nsbox: the container ran out of memory${mem !== undefined ? ` (--memory ${mem})` : ''} and was OOM-killed\n`);
  }
  return exitStatus(info);
}

function yesNo(b: boolean): string {
  return b ? 'yes' : 'no';
}

export function formatReport(r: HostReport): string {
  const cg = r.cgroup;
  const lines: string[] = [];
  lines.push(`kernel        ${r.kernel} (${r.arch})`);
  lines.push(`running as    ${r.root ? (r.userns.rootless ? 'root in a user namespace (rootless)' : 'root') : `uid ${process.getuid?.() ?? '?'} (rootless)`}`);
  lines.push(`cgroup mode   ${cg.mode}`);
  lines.push(`cgroup v2     ${cg.mountPoint ?? 'not mounted'}${cg.self ? ` (this process: ${cg.self})` : ''}`);
  lines.push(`controllers   ${cg.controllers.length ? cg.controllers.join(' ') : 'none'}`);
  lines.push(`writable      ${yesNo(cg.writable)}`);
  lines.push(`delegated     ${yesNo(cg.delegated)}`);
  lines.push('features');
  const names: Record<keyof HostReport['features'], string> = {
    clone3: 'clone3',
    pidfd: 'pidfd',
    cloneIntoCgroup: 'CLONE_INTO_CGROUP',
    cgroupKill: 'cgroup.kill',
    cgroupFreeze: 'cgroup.freeze',
    newMountApi: 'new mount API',
    openat2: 'openat2',
    closeRange: 'close_range',
    idmappedMounts: 'idmapped mounts',
    overlayfs: 'overlayfs',
    userNamespaces: 'user namespaces',
    unprivilegedUserNamespaces: 'unprivileged user namespaces',
    devicePolicy: 'device allow-list (cgroup BPF)',
  };
  for (const [k, v] of Object.entries(r.features) as [keyof HostReport['features'], boolean][]) {
    lines.push(`  ${(names[k] ?? k).padEnd(30)}${yesNo(v)}`);
  }
  const u = r.userns;
  const ranges = (l: Array<{ start: number; count: number }>): string => (l.length ? l.map((x) => `${x.start}+${x.count}`).join(' ') : 'none');
  lines.push('user namespaces');
  lines.push(`  ${'rootless'.padEnd(30)}${yesNo(u.rootless)}`);
  lines.push(`  ${'blocked by'.padEnd(30)}${u.blockedBy ?? 'nothing'}`);
  lines.push(`  ${'newuidmap/newgidmap'.padEnd(30)}${yesNo(u.idmapHelpers)}`);
  lines.push(`  ${'subordinate uids / gids'.padEnd(30)}${ranges(u.subuid)} / ${ranges(u.subgid)}`);
  lines.push(`  ${'default map written by'.padEnd(30)}${u.defaultMap === 'none' ? 'no user namespace by default' : u.defaultMap}`);
  if (r.network) {
    lines.push('networking (--network bridge)');
    lines.push(`  ${'root'.padEnd(30)}${yesNo(r.network.root)}`);
    lines.push(`  ${'bridge driver'.padEnd(30)}${yesNo(r.network.bridge)}`);
    lines.push(`  ${'veth driver'.padEnd(30)}${yesNo(r.network.veth)}`);
    lines.push(`  ${'policy rules with ports'.padEnd(30)}${yesNo(r.network.policyRules)}`);
    lines.push(`  ${'nf_tables (allow-list)'.padEnd(30)}${yesNo(r.network.nftables)}`);
    lines.push(`  ${'IPv6'.padEnd(30)}${yesNo(r.network.ipv6)}`);
  }
  if (r.notes.length) {
    lines.push('notes');
    for (const n of r.notes) lines.push(`  - ${n}`);
  }
  return lines.join('\n') + '\n';
}

async function cmdDoctor(argv: string[]): Promise<number> {
  let json = false;
  for (const a of argv) {
    if (a === '--json') json = true;
    else if (a === '--help' || a === '-h') {
      io.out('Usage: nsbox doctor [--json]\n\nReports the kernel, the cgroup setup and the kernel features nsbox can use.\n');
      return 0;
    } else if (a.startsWith('-')) {
      io.err(formatError(unknownFlag(a.split('=')[0]!, 'nsbox doctor', ['--json'])) + '\n');
      return EXIT_NSBOX;
    } else {
      io.err(`nsbox: 'nsbox doctor' takes no arguments, got '${a}'\n`);
      return EXIT_NSBOX;
    }
  }
  let report: HostReport;
  try {
    report = await probe();
  } catch (e) {
    io.err(formatError(e) + '\n');
    return EXIT_NSBOX;
  }
  io.out(json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
  return 0;
}

// ---------------------------------------------------------------------------------------------
// nsbox machine: long-lived containers with their own PID 1, found again by name

const MACHINE_USAGE = `Usage:
  nsbox machine start NAME --rootfs DIR [flags]   start a machine; prints the host pid of its PID 1
  nsbox machine exec NAME [flags] -- CMD ARGS...   run CMD inside a running machine
  nsbox machine stop NAME [--timeout MS]           halt it (the init's halt signal), then kill
  nsbox machine kill NAME [--signal SIG]           SIGKILL every process (default), or signal PID 1
  nsbox machine freeze NAME | thaw NAME            stop / resume all of its processes
  nsbox machine stats NAME                         resource usage as JSON
  nsbox machine destroy NAME [--force]             remove a stopped machine (--force: kill it first)
  nsbox machine list [--json]                      all machines: NAME PID STATE INIT ROOTFS

Every machine subcommand takes --state-dir DIR: where machine state lives (default /run/nsbox for
root; for other users $XDG_RUNTIME_DIR/nsbox, or /tmp/nsbox-UID).
The console (stdout and stderr of PID 1) is written to <state-dir>/<NAME>/console.log.
Every flag also takes the --flag=value form.

nsbox machine start NAME --rootfs DIR [flags]
  --rootfs DIR          the machine's root filesystem (required; written to unless --ephemeral)
  --init builtin|PATH   PID 1: builtin (nsbox's tiny init, the default) or a path inside the
                        rootfs such as /sbin/init (the distribution's init, systemd included)
  --ephemeral           writes go to a throw-away overlay; the rootfs is never modified
  --hostname H          UTS host name (default NAME)
  --env K=V             environment of PID 1 (repeatable; --env K copies K from nsbox's own)
  --bind SRC:DST[:ro]   bind-mount host SRC at DST (repeatable)
  --tmpfs DST[:size=64M,mode=1777]
                        mount a fresh tmpfs at DST (repeatable)
  --network MODE        none | loopback (default, lo up) | host | bridge
  --publish [ADDR:]HOST:CONTAINER, --allow ADDR[/LEN][:PORT]
                        as for nsbox run (imply --network bridge). Published ports are forwarded
                        by this nsbox process: with --publish, machine start stays in the foreground
                        forwarding until the machine stops (Ctrl-C stops forwarding only)
  --memory SIZE, --swap SIZE, --pids N, --cpu CORES, --cpuset LIST, --cpu-weight N, --io-weight N
                        cgroup v2 limits, as for nsbox run
  --wait-ready          with systemd as init: return once it has booted (running or degraded)

nsbox machine exec NAME [flags] -- CMD ARGS...
  -t, --tty             a terminal: CMD gets a pty of the machine; nsbox's terminal is put in raw
                        mode (Ctrl-C goes to CMD) and resizes are passed on
  --env K=V             set a variable (repeatable); the environment is PATH, HOME=/root (TERM
                        with -t) and these
  --cwd DIR             working directory inside (default /)
  --user UID:GID        numeric credentials inside (default 0:0)
  --timeout MS          kill CMD after MS milliseconds (also 10s, 2m, 1h); exit 137

Exit status: 0 on success; for exec, CMD's own (128+n if it was killed by signal n); 125 if nsbox
failed (including an unknown NAME).
`;

const MACHINE_SUBCOMMANDS = ['start', 'exec', 'stop', 'kill', 'freeze', 'thaw', 'stats', 'destroy', 'list'] as const;
type MachineSubcommand = (typeof MACHINE_SUBCOMMANDS)[number];

const STATE_DIR_FLAG: Record<string, FlagKind> = { '--state-dir': 'value', '--help': 'bool' };

const MACHINE_FLAGS: Record<MachineSubcommand, Record<string, FlagKind>> = {
  start: {
    ...STATE_DIR_FLAG,
    '--rootfs': 'value',
    '--init': 'value',
    '--ephemeral': 'bool',
    '--hostname': 'value',
    '--env': 'value',
    '--bind': 'value',
    '--tmpfs': 'value',
    '--network': 'value',
    '--publish': 'value',
    '--allow': 'value',
    '--memory': 'value',
    '--swap': 'value',
    '--pids': 'value',
    '--cpu': 'value',
    '--cpuset': 'value',
    '--cpu-weight': 'value',
    '--io-weight': 'value',
    '--wait-ready': 'bool',
  },
  exec: { ...STATE_DIR_FLAG, '--tty': 'bool', '--env': 'value', '--cwd': 'value', '--user': 'value', '--timeout': 'value' },
  stop: { ...STATE_DIR_FLAG, '--timeout': 'value' },
  kill: { ...STATE_DIR_FLAG, '--signal': 'value' },
  freeze: { ...STATE_DIR_FLAG },
  thaw: { ...STATE_DIR_FLAG },
  stats: { ...STATE_DIR_FLAG },
  destroy: { ...STATE_DIR_FLAG, '--force': 'bool' },
  list: { ...STATE_DIR_FLAG, '--json': 'bool' },
};

const SHORT_FLAGS: Record<string, string> = { '-h': '--help', '-t': '--tty', '-f': '--force', '-s': '--signal' };

interface ParsedFlags {
  /** Each flag given, in order, with its value ('' for a bool flag). */
  flags: [string, string][];
  positionals: string[];
  /** What follows `--`, or undefined when there was no `--`. */
  command: string[] | undefined;
}

/**
 * The flags and positional arguments of `nsbox machine SUB ...`. With `takesCommand`, `--` ends the
 * flags and what follows is the command.
 */
function parseFlags(argv: string[], known: Record<string, FlagKind>, cmd: string, takesCommand: boolean): ParsedFlags {
  const out: ParsedFlags = { flags: [], positionals: [], command: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      if (!takesCommand) {
        out.positionals.push(...argv.slice(i + 1));
        break;
      }
      out.command = argv.slice(i + 1);
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      out.positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    let flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const inline = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : undefined;
    const short = SHORT_FLAGS[flag];
    if (short !== undefined && known[short]) flag = short;
    const kind = known[flag];
    if (!kind) throw unknownFlag(flag, cmd, Object.keys(known));
    if (kind === 'bool') {
      if (inline !== undefined) throw new UsageError(`${flag} takes no value, got '${a}'`);
      out.flags.push([flag, '']);
      continue;
    }
    let value: string;
    if (inline !== undefined) {
      value = inline;
    } else {
      const next = argv[i + 1];
      if (next === undefined || next === '--') throw new UsageError(`${flag} needs a value`);
      value = next;
      i++;
    }
    out.flags.push([flag, value]);
  }
  return out;
}

function lastFlag(p: ParsedFlags, flag: string): string | undefined {
  let v: string | undefined;
  for (const [f, val] of p.flags) if (f === flag) v = val;
  return v;
}

function hasFlag(p: ParsedFlags, flag: string): boolean {
  return p.flags.some(([f]) => f === flag);
}

/** The one NAME a subcommand takes. */
function machineName(p: ParsedFlags, sub: string): string {
  const [name, extra] = p.positionals;
  if (name === undefined) throw new UsageError(`missing the machine name: nsbox machine ${sub} NAME${sub === 'exec' ? ' -- CMD ARGS...' : ''}`);
  if (extra !== undefined) {
    if (sub === 'exec') throw new UsageError(`put '--' before the command: nsbox machine exec ${name} [flags] -- ${extra} ...`);
    throw new UsageError(`'nsbox machine ${sub}' takes one machine name, got '${name}' and '${extra}'`);
  }
  return name;
}

/** Parsed `machine start`: the options for Machine.start and which flag set each. */
export function parseMachineStart(argv: string[]): { help: boolean; options: MachineOptions; origin: Map<string, string> } {
  const p = parseFlags(argv, MACHINE_FLAGS.start, 'nsbox machine start', false);
  const origin = new Map<string, string>();
  if (hasFlag(p, '--help')) return { help: true, options: { name: '', rootfs: '' }, origin };
  const name = machineName(p, 'start');
  origin.set('name', `machine name '${name}'`);
  const shared = newShared(origin);
  const options: MachineOptions = { name, rootfs: '' };
  let rootfs: string | undefined;
  for (const [flag, value] of p.flags) {
    const label = `${flag} '${value}'`;
    if (applySharedFlag(flag, value, shared)) continue;
    switch (flag) {
      case '--state-dir':
        options.stateDir = path.resolve(value);
        origin.set('stateDir', label);
        break;
      case '--rootfs':
        rootfs = path.resolve(value);
        origin.set('rootfs', label);
        break;
      case '--init':
        if (value === 'builtin') options.init = 'builtin';
        else if (value.startsWith('/')) options.init = [value];
        else throw new UsageError(`--init must be 'builtin' or an absolute path inside the rootfs such as /sbin/init, got '${value}'`);
        origin.set('init', label);
        break;
      case '--ephemeral':
        options.ephemeral = true;
        break;
      case '--wait-ready':
        options.waitReady = true;
        break;
    }
  }
  if (rootfs === undefined) throw new UsageError(`missing --rootfs DIR: nsbox machine start ${name} --rootfs DIR [flags]`);
  options.rootfs = rootfs;
  finishShared(shared, options);
  return { help: false, options, origin };
}

function stateDirOf(p: ParsedFlags, fallback: string | undefined): string | undefined {
  const v = lastFlag(p, '--state-dir');
  return v !== undefined ? path.resolve(v) : fallback;
}

/** The machine `name`, or a one-line "no machine named" error. */
async function findMachine(name: string, stateDir: string | undefined): Promise<Machine> {
  const m = await Machine.get(name, stateDir === undefined ? {} : { stateDir });
  if (!m) throw new UsageError(`no machine named '${name}'`);
  return m;
}

/**
 * Passes SIGINT, SIGTERM and SIGHUP that nsbox receives on to `c`; a second one kills it. Should
 * nsbox exit regardless, `c` goes too. Returns the function that undoes all of it.
 */
function forwardSignals(c: Container, what = 'the container'): () => void {
  let received = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    received++;
    try {
      if (received === 1) c.kill(sig);
      else {
        io.err(`nsbox: ${sig} again, killing ${what}\n`);
        c.kill('SIGKILL');
      }
    } catch {
      /* gone meanwhile */
    }
  };
  const onExit = (): void => {
    if (!c.exited) c.kill('SIGKILL');
  };
  for (const s of FORWARDED_SIGNALS) process.on(s, onSignal);
  process.on('exit', onExit);
  return () => {
    for (const s of FORWARDED_SIGNALS) process.off(s, onSignal);
    process.off('exit', onExit);
  };
}

/** How long output may still come from a pty after its command has exited. */
const PTY_DRAIN_MS = 500;

/**
 * With a tty, a Container's stdin and stdout are one socket (the pty master), and the library
 * destroys stdin as soon as the command has exited, which can drop output not yet read (a quick
 * `exec -t m -- ls` printed nothing about half the time). Until the library waits for the pty's end
 * itself, a destroy() without an error is put off until the output has ended (the pty's EIO, or
 * EOF), for PTY_DRAIN_MS at most: a background process inside may hold the pty open.
 */
function keepPtyOutput(sock: import('node:stream').Readable): void {
  const destroy = sock.destroy.bind(sock);
  let deferred = false;
  sock.destroy = (err?: Error): import('node:stream').Readable => {
    if (err || deferred || sock.readableEnded || sock.destroyed) return destroy(err);
    deferred = true;
    const timer = setTimeout(() => destroy(), PTY_DRAIN_MS);
    sock.once('close', () => clearTimeout(timer));
    sock.once('end', () => destroy());
    return sock;
  };
}

/**
 * `exec -t`: bridges nsbox's own stdin/stdout and the pty of `c` until `c` exits. A terminal on
 * stdin goes into raw mode (so Ctrl-C, Ctrl-Z, ... are bytes for the machine's tty) and is restored
 * afterwards; the size of the terminal on stdout is passed on, now and on every resize.
 */
async function bridgeTty(c: Container): Promise<ExitInfo> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  const pty = c.stdout!;
  const ptyIn = c.stdin!;
  const raw = stdin.isTTY === true;
  const wasRaw = raw ? stdin.isRaw : false;
  const restore = (): void => {
    if (raw) {
      try {
        stdin.setRawMode(wasRaw);
      } catch {
        /* the terminal is gone */
      }
    }
  };
  const setSize = (): void => {
    try {
      if (stdout.isTTY && stdout.columns > 0 && stdout.rows > 0) c.resize(stdout.columns, stdout.rows);
    } catch {
      /* exited meanwhile */
    }
  };
  if (stdout.isTTY) setSize();
  else {
    try {
      c.resize(80, 24);
    } catch {
      /* exited meanwhile */
    }
  }
  if (raw) stdin.setRawMode(true);
  process.on('exit', restore);
  stdout.on('resize', setSize);

  // Output: the pty (which is both stdin and stdout of c) to our stdout. EIO is how a pty master
  // reports that the other side is closed: the end of the output, not an error.
  keepPtyOutput(pty);
  const outputDone = new Promise<void>((resolve) => {
    pty.on('data', (d: Buffer) => stdout.write(d));
    pty.once('close', resolve);
  });
  pty.on('error', () => {});
  ptyIn.on('error', () => {});
  // Input: our stdin to the pty. At the end of our input (a pipe, not a terminal), send the
  // terminal's end-of-file character, as script(1) does, so a reading shell or cat ends.
  const onData = (d: Buffer): void => {
    if (!c.exited && !ptyIn.destroyed) ptyIn.write(d);
  };
  const onEnd = (): void => {
    if (!c.exited && !ptyIn.destroyed) ptyIn.write('\x04');
  };
  const onStdinError = (): void => {};
  stdin.on('data', onData);
  stdin.on('end', onEnd);
  stdin.on('error', onStdinError);
  stdin.resume();
  try {
    const info = await c.wait();
    // Let the last output through: the pty reports its end (EIO) once the command's side is closed.
    await Promise.race([outputDone, new Promise((r) => setTimeout(r, PTY_DRAIN_MS + 500).unref())]);
    return info;
  } finally {
    stdin.off('data', onData);
    stdin.off('end', onEnd);
    stdin.off('error', onStdinError);
    stdin.pause();
    stdout.off('resize', setSize);
    restore();
    process.off('exit', restore);
  }
}

async function machineExec(p: ParsedFlags, globalStateDir: string | undefined): Promise<number> {
  const name = machineName(p, 'exec');
  if (p.command === undefined) throw new UsageError(`missing '-- CMD': nsbox machine exec ${name} [flags] -- CMD ARGS...`);
  if (p.command.length === 0) throw new UsageError(`missing the command after '--': nsbox machine exec ${name} [flags] -- CMD ARGS...`);
  const opts: MachineExecOptions = {};
  const origin = new Map<string, string>();
  const env: Record<string, string> = {};
  let envGiven = false;
  let tty = false;
  for (const [flag, value] of p.flags) {
    const label = `${flag} '${value}'`;
    switch (flag) {
      case '--tty':
        tty = true;
        break;
      case '--env':
        parseEnvArg(value, env);
        envGiven = true;
        origin.set('env', '--env');
        break;
      case '--cwd':
        opts.cwd = value;
        origin.set('cwd', label);
        break;
      case '--user':
        opts.user = parseUser(value);
        origin.set('user', label);
        break;
      case '--timeout':
        opts.timeout = parseDuration(flag, value);
        origin.set('timeout', label);
        break;
    }
  }
  if (envGiven) opts.env = env;
  if (tty) opts.tty = true;
  else opts.stdio = 'inherit';
  const m = await findMachine(name, stateDirOf(p, globalStateDir));

  let c: Container;
  try {
    c = m.exec(p.command, opts);
  } catch (e) {
    io.err(formatError(e, origin) + '\n');
    return EXIT_NSBOX;
  }
  const unforward = forwardSignals(c, 'the command');
  let info: ExitInfo;
  try {
    info = tty ? await bridgeTty(c) : await c.wait();
  } catch (e) {
    // The start finishes after exec() returned (Machine.exec): a command that could not be exec'd
    // inside the machine, or a start past its time limit, is reported like a failure of exec().
    if (!(e instanceof NsboxError)) throw e;
    io.err(`${tty ? '\r\n' : ''}${formatError(e, origin)}\n`);
    return EXIT_NSBOX;
  } finally {
    unforward();
  }
  if (info.timedOut) io.err(`${tty ? '\r\n' : ''}nsbox: timed out after ${opts.timeout} ms\n`);
  return exitStatus(info);
}

function initText(init: MachineInfo['init']): string {
  return init === 'builtin' ? 'builtin' : init.join(' ');
}

export function formatMachineTable(list: MachineInfo[]): string {
  const rows = [['NAME', 'PID', 'STATE', 'INIT', 'ROOTFS']];
  for (const m of list) {
    rows.push([m.name, m.state === 'stopped' ? '-' : String(m.pid), m.state, initText(m.init), m.rootfs + (m.ephemeral ? ' (ephemeral)' : '')]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

async function machineCommand(sub: MachineSubcommand, p: ParsedFlags, globalStateDir: string | undefined): Promise<number> {
  const stateDir = stateDirOf(p, globalStateDir);
  switch (sub) {
    case 'exec':
      return machineExec(p, globalStateDir);
    case 'list': {
      if (p.positionals.length) throw new UsageError(`'nsbox machine list' takes no arguments, got '${p.positionals[0]}'`);
      const list = await Machine.list(stateDir === undefined ? {} : { stateDir });
      io.out(hasFlag(p, '--json') ? JSON.stringify(list, null, 2) + '\n' : formatMachineTable(list));
      return 0;
    }
    case 'stop': {
      const name = machineName(p, sub);
      const t = lastFlag(p, '--timeout');
      const timeout = t === undefined ? undefined : parseDuration('--timeout', t);
      const m = await findMachine(name, stateDir);
      await m.stop(timeout === undefined ? {} : { timeout });
      return 0;
    }
    case 'kill': {
      const name = machineName(p, sub);
      const s = lastFlag(p, '--signal') ?? 'SIGKILL';
      const sig: string | number = /^\d+$/.test(s) ? Number(s) : s.toUpperCase();
      const m = await findMachine(name, stateDir);
      if ((await m.state()) === 'stopped') {
        throw new NsboxError({ code: 'ESRCH', step: 'kill', message: `machine '${name}' is not running (step kill)` });
      }
      m.kill(sig);
      // SIGKILL ends the machine: wait until PID 1 is gone and record it as stopped.
      if (sig === 'SIGKILL' || sig === 'KILL' || sig === osConstants.signals.SIGKILL) await m.stop();
      return 0;
    }
    case 'freeze':
    case 'thaw': {
      const m = await findMachine(machineName(p, sub), stateDir);
      await (sub === 'freeze' ? m.freeze() : m.thaw());
      return 0;
    }
    case 'stats': {
      const m = await findMachine(machineName(p, sub), stateDir);
      io.out(JSON.stringify(await m.stats(), null, 2) + '\n');
      return 0;
    }
    case 'destroy': {
      const m = await findMachine(machineName(p, sub), stateDir);
      if (hasFlag(p, '--force') && (await m.state()) !== 'stopped') {
        m.kill('SIGKILL');
        await m.stop();
      }
      await m.destroy();
      return 0;
    }
    case 'start': {
      // Parsed on its own (parseMachineStart); never reached.
      return EXIT_NSBOX;
    }
  }
}

async function cmdMachine(argv: string[]): Promise<number> {
  // Flags before the subcommand: only --state-dir and --help.
  let globalStateDir: string | undefined;
  let i = 0;
  let origin: Map<string, string> | undefined;
  try {
    for (; i < argv.length; i++) {
      const a = argv[i]!;
      if (a === '--help' || a === '-h') {
        io.out(MACHINE_USAGE);
        return 0;
      }
      if (a === '--state-dir' || a.startsWith('--state-dir=')) {
        const v = a === '--state-dir' ? argv[++i] : a.slice('--state-dir='.length);
        if (v === undefined) throw new UsageError('--state-dir needs a value');
        globalStateDir = path.resolve(v);
        continue;
      }
      if (a.startsWith('-')) throw unknownFlag(a.split('=')[0]!, 'nsbox machine', ['--state-dir', '--help']);
      break;
    }
    const sub = argv[i];
    if (sub === undefined) {
      io.err(MACHINE_USAGE);
      return EXIT_NSBOX;
    }
    if (sub === 'help') {
      io.out(MACHINE_USAGE);
      return 0;
    }
    if (!(MACHINE_SUBCOMMANDS as readonly string[]).includes(sub)) {
      const near = nearest(sub, MACHINE_SUBCOMMANDS);
      throw new UsageError(`unknown machine command '${sub}'${near ? `; did you mean '${near}'?` : ''} (see 'nsbox machine --help')`);
    }
    const rest = argv.slice(i + 1);
    if (sub === 'start') {
      const parsed = parseMachineStart(rest);
      if (parsed.help) {
        io.out(MACHINE_USAGE);
        return 0;
      }
      origin = parsed.origin;
      const options = parsed.options;
      if (options.stateDir === undefined && globalStateDir !== undefined) options.stateDir = globalStateDir;
      const m = await Machine.start(options);
      io.out(`${m.pid}\n`);
      if (typeof options.network === 'object' && options.network.ports?.length) await forwardUntilStopped(m);
      return 0;
    }
    const p = parseFlags(rest, MACHINE_FLAGS[sub as MachineSubcommand], `nsbox machine ${sub}`, sub === 'exec');
    if (hasFlag(p, '--help')) {
      io.out(MACHINE_USAGE);
      return 0;
    }
    origin = new Map([
      ['signal', `--signal '${lastFlag(p, '--signal') ?? ''}'`],
      ['timeout', `--timeout '${lastFlag(p, '--timeout') ?? ''}'`],
      ['stateDir', `--state-dir '${lastFlag(p, '--state-dir') ?? ''}'`],
    ]);
    if (p.positionals[0] !== undefined) origin.set('name', `machine name '${p.positionals[0]}'`);
    return await machineCommand(sub as MachineSubcommand, p, globalStateDir);
  } catch (e) {
    io.err(formatError(e, origin) + '\n');
    return EXIT_NSBOX;
  } finally {
    // A machine handle watches its PID 1; should that have exited already (a zombie its reaper has
    // not collected yet), let the watch fire now, while JavaScript can still run, rather than
    // during Node's exit, where the addon cannot call back into JavaScript.
    await new Promise((r) => setImmediate(r));
  }
}

/**
 * `machine start --publish`: the ports are forwarded by this process, so it stays until the machine
 * stops (polled once a second) or until SIGINT/SIGTERM/SIGHUP, which end the forwarding only.
 */
async function forwardUntilStopped(m: Machine): Promise<void> {
  io.err(`nsbox: forwarding the published ports of '${m.name}' until it stops (Ctrl-C stops forwarding; the machine keeps running)\n`);
  await new Promise<void>((resolve) => {
    const done = (): void => {
      clearInterval(timer);
      for (const sig of FORWARDED_SIGNALS) process.off(sig, done);
      resolve();
    };
    const timer = setInterval(() => {
      m.state().then((st) => st === 'stopped' && done(), done);
    }, 1000);
    for (const sig of FORWARDED_SIGNALS) process.on(sig, done);
  });
}

const COMMANDS = ['run', 'doctor', 'machine'] as const;

/** Runs the CLI on `argv` (without node and the script) and resolves with the exit status. */
export async function main(argv: string[]): Promise<number> {
  // One container (or machine) per command: namespaces made ahead would only be made and thrown
  // away at exit. (A value the caller set wins.)
  process.env.NSBOX_NETNS_RESERVE ??= '0';
  process.env.NSBOX_IPCNS_RESERVE ??= '0';
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
      io.err(USAGE);
      return EXIT_NSBOX;
    case '--help':
    case '-h':
    case 'help':
      io.out(USAGE);
      return 0;
    case '--version':
    case '-v':
    case 'version':
      io.out(`nsbox ${version()}\n`);
      return 0;
    case 'run':
      return cmdRun(rest);
    case 'doctor':
      return cmdDoctor(rest);
    case 'machine':
      return cmdMachine(rest);
    default: {
      if (cmd.startsWith('-')) {
        io.err(formatError(unknownFlag(cmd.split('=')[0]!, 'nsbox', ['--help', '--version'])) + '\n');
        return EXIT_NSBOX;
      }
      const near = nearest(cmd, COMMANDS);
      io.err(`nsbox: unknown command '${cmd}'${near ? `; did you mean '${near}'?` : ''} (see 'nsbox --help')\n`);
      return EXIT_NSBOX;
    }
  }
}
