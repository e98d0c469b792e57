// cli.ts: the `nsbox` command (bin/nsbox.js calls main()). Parses argv into AppOptions, runs the
// container on the terminal's own stdio and turns its end into an exit status:
//   the container's exit code, 128+n when it was killed by signal n, 125 when nsbox itself failed.
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';

import { spawn, probe, NsboxError } from './index';
import type { AppOptions, Container, ExitInfo, HostReport, Limits, Mount } from './index';

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
  nsbox machine ...                  (not available in this version yet)
  nsbox --help | --version

Run 'nsbox run --help' for the flags of nsbox run.
`;

const RUN_USAGE = `Usage: nsbox run [flags] -- CMD ARGS...

Runs CMD in new namespaces with its own cgroup. Its stdin, stdout and stderr are the terminal's.
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
  --network MODE        none | loopback (default, lo up) | host
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

function editDistance(a: string, b: string): number {
  const dp: number[] = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}

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

/** argv after `run`. */
export function parseRun(argv: string[]): ParsedRun {
  const options: AppOptions = { command: [] };
  const origin = new Map<string, string>();
  const limits: Limits = {};
  const mounts: Mount[] = [];
  const env: Record<string, string> = {};
  let envGiven = false;
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
    switch (flag) {
      case '--rootfs':
        options.rootfs = path.resolve(value);
        origin.set('rootfs', label);
        break;
      case '--bind':
      case '--tmpfs':
        mounts.push(flag === '--bind' ? parseBind(value) : parseTmpfs(value));
        origin.set(`mounts[${mounts.length - 1}]`, label);
        break;
      case '--env':
        parseEnvArg(value, env);
        envGiven = true;
        origin.set('env', '--env');
        break;
      case '--cwd':
        options.cwd = value;
        origin.set('cwd', label);
        break;
      case '--hostname':
        options.hostname = value;
        origin.set('hostname', label);
        break;
      case '--user':
        options.user = parseUser(value);
        origin.set('user', label);
        break;
      case '--network':
        options.network = value as AppOptions['network'];
        origin.set('network', label);
        break;
      case '--timeout':
        options.timeout = parseDuration(flag, value);
        origin.set('timeout', label);
        break;
      case '--memory':
        limits.memory = value;
        origin.set('limits.memory', label);
        break;
      case '--swap':
        limits.swap = value;
        origin.set('limits.swap', label);
        break;
      case '--pids':
        limits.pids = parseWhole(flag, value);
        origin.set('limits.pids', label);
        break;
      case '--cpu':
        limits.cpu = parseDecimal(flag, value);
        origin.set('limits.cpu', label);
        break;
      case '--cpuset':
        limits.cpuset = value;
        origin.set('limits.cpuset', label);
        break;
      case '--cpu-weight':
        limits.cpuWeight = parseWhole(flag, value);
        origin.set('limits.cpuWeight', label);
        break;
      case '--io-weight':
        limits.ioWeight = parseWhole(flag, value);
        origin.set('limits.ioWeight', label);
        break;
    }
  }
  if (mounts.length) options.mounts = mounts;
  if (envGiven) options.env = env;
  if (Object.keys(limits).length) options.limits = limits;
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

  // Signals: the first one is forwarded; a second means "stop now".
  let received = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    received++;
    try {
      if (received === 1) c.kill(sig);
      else {
        io.err(`nsbox: ${sig} again, killing the container\n`);
        c.kill('SIGKILL');
      }
    } catch {
      /* gone meanwhile */
    }
  };
  // If this process is going away regardless (uncaught error, process.exit), take the container along.
  const onExit = (): void => {
    if (!c.exited) c.kill('SIGKILL');
  };
  for (const s of FORWARDED_SIGNALS) process.on(s, onSignal);
  process.on('exit', onExit);

  let info: ExitInfo;
  try {
    info = await c.wait();
  } catch (e) {
    io.err(formatError(e, origin) + '\n');
    return EXIT_NSBOX;
  } finally {
    for (const s of FORWARDED_SIGNALS) process.off(s, onSignal);
    process.off('exit', onExit);
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
  lines.push(`running as    ${r.root ? 'root' : `uid ${process.getuid?.() ?? '?'}`}`);
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
  };
  for (const [k, v] of Object.entries(r.features) as [keyof HostReport['features'], boolean][]) {
    lines.push(`  ${(names[k] ?? k).padEnd(30)}${yesNo(v)}`);
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

const COMMANDS = ['run', 'doctor', 'machine'] as const;

/** Runs the CLI on `argv` (without node and the script) and resolves with the exit status. */
export async function main(argv: string[]): Promise<number> {
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
      io.err('nsbox: machine containers are not available in this version yet\n');
      return EXIT_NSBOX;
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
