// cli/table.ts: every flag of the nsbox command, declared once (name, alias, value, where it goes,
// help text), and the commands as lists of them. A command whose help says it in other words, or
// shows the flag differently, lists a copy with just that changed: the parsing stays the one here.
import type { CommandSpec, FlagDef } from './flags';
import {
  parseAddHost,
  parseBind,
  parseDevice,
  parseDecimal,
  parseDuration,
  parseEnv,
  parseHostPath,
  parseMachineInit,
  parsePublish,
  parseSignal,
  parseTmpfs,
  parseUser,
  parseWhole,
} from './values';
import {
  parseCpus,
  parseDockerPublish,
  parseEnvFile,
  parseMount,
  parseName,
  parsePidsLimit,
  parseSecurityOpt,
  parseUlimit,
  parseUserSpec,
  parseUserns,
  parseVolume,
} from './docker-values';

export const FLAGS = {
  rootfs: {
    name: '--rootfs',
    arg: 'DIR',
    to: 'rootfs',
    parse: parseHostPath,
    help: "directory to use as / (default: the host's /usr, /bin, /lib* and a safe\n/etc, read-only, on a fresh tmpfs)",
  },
  rw: { name: '--rw', to: 'readonly', value: false, help: 'make the rootfs writable (default read-only)' },
  bind: {
    name: '--bind',
    arg: 'SRC:DST[:ro]',
    to: 'mounts[]',
    parse: parseBind,
    help: 'bind-mount host SRC at DST (repeatable; SRC alone mounts it at the same path)',
  },
  tmpfs: {
    name: '--tmpfs',
    arg: 'DST[:size=64M,mode=1777]',
    to: 'mounts[]',
    parse: parseTmpfs,
    help: 'mount a fresh tmpfs at DST (repeatable; /tmp has one by default)',
  },
  env: {
    name: '--env',
    short: '-e',
    arg: 'K=V',
    to: 'env{}',
    parse: parseEnv,
    help: "set a variable (repeatable); the environment is only PATH, HOME and these.\n--env K copies K from nsbox's own environment, if set",
  },
  cwd: { name: '--cwd', arg: 'DIR', to: 'cwd', help: 'working directory inside (default /)' },
  hostname: { name: '--hostname', arg: 'H', to: 'hostname', help: 'UTS host name (default nsbox)' },
  user: { name: '--user', arg: 'UID:GID', to: 'user', parse: parseUser, help: 'numeric credentials inside (default 0:0)' },
  network: {
    name: '--network',
    arg: 'MODE',
    to: 'network',
    help: "none | loopback (default, lo up) | host | bridge (root: a veth on nsbox's\nbridge nsbox0, an address from 10.88.0.0/16, a default route via 10.88.0.1)",
  },
  proc: {
    name: '--proc',
    arg: 'MODE',
    to: 'proc',
    help: "fresh (default: a new procfs) | none (no procfs, /proc empty and read-only:\nfor a rootless start behind a masked /proc; no ps, no /proc/self)",
  },
  publish: {
    name: '--publish',
    arg: '[ADDR:]HOST:CONTAINER',
    to: 'network.ports[]',
    parse: parsePublish,
    help: "forward TCP connections to host port HOST (on ADDR, default 127.0.0.1) to\nthe container's port CONTAINER (repeatable; implies --network bridge)",
  },
  allow: {
    name: '--allow',
    arg: 'ADDR[/LEN][:PORT[-PORT]]',
    to: 'network.allow[]',
    help: 'egress allow-list: only these destinations are reachable, anything else is\nrefused at once (repeatable; implies --network bridge)',
  },
  addHost: {
    name: '--add-host',
    arg: 'NAME:ADDR',
    to: 'hosts{}',
    parse: parseAddHost,
    help: 'an /etc/hosts entry (repeatable)',
  },
  noEtcFiles: {
    name: '--no-etc-files',
    to: 'etcFiles',
    value: false,
    help: 'do not bind the generated /etc/hosts, /etc/hostname, /etc/resolv.conf',
  },
  device: {
    name: '--device',
    arg: 'PATH[:DST[:rwm]]',
    to: 'devices[]',
    parse: parseDevice,
    help: 'a host device in /dev (repeatable; DST below /dev, default PATH)',
  },
  init: { name: '--init', to: 'init', help: 'run a tiny init as PID 1 that reaps orphans and forwards signals' },
  timeout: {
    name: '--timeout',
    arg: 'MS',
    to: 'timeout',
    parse: parseDuration,
    help: 'kill the container after MS milliseconds (also 10s, 2m, 1h); exit 137',
  },
  memory: { name: '--memory', short: '-m', arg: 'SIZE', to: 'limits.memory', help: 'memory limit, e.g. 256M (K, M, G, T suffixes)' },
  memoryHigh: {
    name: '--memory-high',
    arg: 'SIZE',
    to: 'limits.memoryHigh',
    help: 'throttle (reclaim hard) above SIZE, at most --memory; off by default',
  },
  swap: { name: '--swap', arg: 'SIZE', to: 'limits.swap', help: 'swap limit' },
  pids: { name: '--pids', arg: 'N', to: 'limits.pids', parse: parseWhole, help: 'maximum number of processes' },
  cpu: { name: '--cpu', arg: 'CORES', to: 'limits.cpu', parse: parseDecimal, help: 'CPU quota in cores, e.g. 0.5' },
  cpuset: { name: '--cpuset', arg: 'LIST', to: 'limits.cpuset', help: 'CPUs to run on, e.g. 0-1 or 0,2' },
  cpuWeight: { name: '--cpu-weight', arg: 'N', to: 'limits.cpuWeight', parse: parseWhole, help: 'relative CPU weight, 1-10000' },
  ioWeight: { name: '--io-weight', arg: 'N', to: 'limits.ioWeight', parse: parseWhole, help: 'relative I/O weight, 1-10000' },
  help: { name: '--help', short: '-h', to: 'help', help: 'this help' },

  // nsbox machine
  stateDir: {
    name: '--state-dir',
    arg: 'DIR',
    to: 'stateDir',
    parse: parseHostPath,
    help: 'where machine state lives (default /run/nsbox for\nroot; for other users $XDG_RUNTIME_DIR/nsbox, or /tmp/nsbox-UID)',
  },
  machineInit: {
    name: '--init',
    arg: 'builtin|PATH',
    to: 'init',
    parse: parseMachineInit,
    help: "PID 1: builtin (nsbox's tiny init, the default) or a path inside the\nrootfs such as /sbin/init (the distribution's init, systemd included)",
  },
  ephemeral: { name: '--ephemeral', to: 'ephemeral', help: 'writes go to a throw-away overlay; the rootfs is never modified' },
  waitReady: { name: '--wait-ready', to: 'waitReady', help: 'with systemd as init: return once it has booted (running or degraded)' },
  tty: {
    name: '--tty',
    short: '-t',
    to: 'tty',
    help: "a terminal: CMD gets a pty of the machine; nsbox's terminal is put in raw\nmode (Ctrl-C goes to CMD) and resizes are passed on",
  },
  startTimeout: {
    name: '--start-timeout',
    arg: 'MS',
    to: 'startTimeout',
    parse: parseDuration,
    help: 'fail if CMD has not started (exec) within MS (default 10s)',
  },
  signal: { name: '--signal', short: '-s', arg: 'SIG', to: 'signal', parse: parseSignal },
  force: { name: '--force', short: '-f', to: 'force' },
  pull: { name: '--pull', arg: 'WHEN', to: 'pull', help: "with IMAGE: missing (default), always or never" },
  entrypoint: { name: '--entrypoint', arg: 'CMD', to: 'entrypoint', parse: (v: string) => [v], help: "with IMAGE: run CMD instead of the image's Entrypoint (and Cmd)" },
  store: { name: '--store', arg: 'DIR', to: 'storeDir', parse: parseHostPath, help: 'the image store (default /var/lib/nsbox/images as root)' },
  tag: { name: '--tag', arg: 'REF', to: 'tag', help: 'the reference to store the image under' },
  json: { name: '--json', to: 'json' },
} satisfies Record<string, FlagDef>;

/**
 * The flags of `nsbox run` in docker's shape (issue #21; docs/cli.md has the docker-to-nsbox
 * table). Those nsbox cannot honour are listed with the reason they are refused.
 */
export const DOCKER = {
  volume: {
    name: '--volume',
    short: '-v',
    arg: 'SRC:DST[:ro|rw]',
    to: 'mounts[]',
    parse: parseVolume,
    help: 'docker\'s bind mount of host path SRC at DST (repeatable; no named volumes)',
  },
  mount: {
    name: '--mount',
    arg: 'type=bind|tmpfs,...',
    to: 'mounts[]',
    parse: parseMount,
    help: "docker's --mount: type=bind,source=S,target=T[,readonly] or\ntype=tmpfs,target=T[,tmpfs-size=N,tmpfs-mode=1777] (repeatable)",
  },
  envFile: { name: '--env-file', arg: 'FILE', to: 'env{}', parse: parseEnvFile, help: 'variables from FILE: K=V or K lines, # comments (repeatable)' },
  workdir: { name: '--workdir', short: '-w', arg: 'DIR', to: 'cwd', help: 'working directory inside (docker\'s name for --cwd)' },
  user: {
    name: '--user',
    short: '-u',
    arg: 'UID[:GID]|NAME',
    to: 'user',
    parse: parseUserSpec,
    help: "credentials inside (default 0:0, or the image's User): UID:GID as given;\nUID, NAME or NAME:GROUP looked up in the root's /etc/passwd and /etc/group",
  },
  readOnly: { name: '--read-only', to: 'readonly', value: true, help: 'read-only rootfs (nsbox\'s default; --rw makes it writable)' },
  cpus: { name: '--cpus', arg: 'CORES', to: 'limits.cpu', parse: parseCpus, help: 'CPU quota in cores (docker\'s name for --cpu)' },
  pidsLimit: { name: '--pids-limit', arg: 'N', to: 'limits.pids', parse: parsePidsLimit, help: 'maximum number of processes (-1: no limit)' },
  capAdd: { name: '--cap-add', arg: 'CAP', to: 'capabilities.add[]', help: 'add a capability (NET_ADMIN, CAP_SYS_PTRACE, ALL; repeatable)' },
  capDrop: { name: '--cap-drop', arg: 'CAP', to: 'capabilities.drop[]', help: 'drop a capability (or ALL; repeatable)' },
  securityOpt: {
    name: '--security-opt',
    arg: 'OPT',
    to: 'securityOpt[]',
    parse: parseSecurityOpt,
    help: 'seccomp=unconfined (no system call filter), or no-new-privileges\n(always set in nsbox app containers); profile files are not supported',
  },
  userns: { name: '--userns', arg: 'host|private', to: 'userns', parse: parseUserns, help: 'host: no user namespace (root only); private: a new one' },
  publish: { ...FLAGS.publish, short: '-p', parse: parseDockerPublish },
  rm: { name: '--rm', to: 'rm', help: 'an nsbox container is always removed when it exits; with -d, by the\nfirst nsbox command that sees it exited (no daemon removes it at once)' },
  name: { name: '--name', arg: 'NAME', to: 'name', parse: parseName, help: 'a name for this run, shown in --json output (nothing looks it up)' },
  interactive: { name: '--interactive', short: '-i', to: 'interactive', help: "accepted: nsbox's stdin is always passed to the command; with --json,\n-i reads stdin to its end first and gives it as the command's input" },
  tty: { name: '--tty', short: '-t', to: 'tty', help: "a terminal: CMD gets a pty of the container's own devpts; with -i nsbox's\nterminal is put in raw mode (Ctrl-C goes to CMD), resizes are passed on\n(-it needs a terminal on stdin, as docker)" },
  detach: {
    name: '--detach',
    short: '-d',
    to: 'detach',
    help: "start the container in the background and print its name; it runs on\nafter nsbox exits (nsbox ps, logs, stop, rm NAME). Needs --rootfs or IMAGE",
  },
  ulimit: {
    name: '--ulimit',
    arg: 'NAME=SOFT[:HARD]',
    to: 'rlimits{}',
    parse: parseUlimit,
    help: 'a resource limit (setrlimit) such as nofile=1024:4096 (repeatable; -1 or\nunlimited: none; names as docker: nofile, nproc, core, stack, as, ...)',
  },
  json: { name: '--json', to: 'json', help: 'print the result (exit code, signal, output, stats) as JSON on stdout;\nthe command\'s output is captured into it' },
} satisfies Record<string, FlagDef>;

/** Short, for the lists below. */
const F = FLAGS;
const D = DOCKER;

/** The cgroup v2 limits, alike in `run` and `machine start`. */
const LIMITS = [F.memory, F.memoryHigh, F.swap, F.pids, F.cpu, F.cpuset, F.cpuWeight, F.ioWeight];

export const RUN: CommandSpec = {
  command: 'nsbox run',
  takesCommand: true,
  flags: [
    F.rootfs, F.rw, D.readOnly, F.bind, D.volume, D.mount, F.tmpfs, F.env, D.envFile, F.cwd, D.workdir, F.hostname, D.user,
    F.network, F.proc, D.publish, F.allow, F.addHost, F.noEtcFiles, F.device, F.init, F.timeout, ...LIMITS, D.cpus, D.pidsLimit,
    D.capAdd, D.capDrop, D.securityOpt, D.userns, F.pull, F.entrypoint, F.store, D.name, D.rm, D.interactive, D.tty,
    D.detach, D.ulimit, D.json, { ...F.stateDir, help: 'with -d: where its state and log live (as for nsbox machine)' }, F.help,
  ],
};

/** `nsbox ps|stop|rm|logs`: detached containers (and machines), by name. */
export const DETACHED = {
  all: { name: '--all', short: '-a', to: 'all', help: 'also those that have stopped' },
  follow: { name: '--follow', short: '-f', to: 'follow', help: 'keep printing what is written until it stops (or Ctrl-C)' },
} satisfies Record<string, FlagDef>;

const stateDirFlag = { ...F.stateDir, help: 'where the state lives (as for nsbox machine)' };
export const DETACHED_CMD = {
  ps: { command: 'nsbox ps', takesCommand: false, flags: [DETACHED.all, { ...F.json, help: 'the list as one JSON array' }, stateDirFlag, F.help] },
  stop: { command: 'nsbox stop', takesCommand: false, flags: [{ ...F.timeout, help: 'SIGKILL after MS milliseconds (default 10s)' }, stateDirFlag, F.help] },
  rm: { command: 'nsbox rm', takesCommand: false, flags: [{ ...F.force, help: 'kill it first if it runs' }, stateDirFlag, F.help] },
  logs: { command: 'nsbox logs', takesCommand: false, flags: [DETACHED.follow, stateDirFlag, F.help] },
} satisfies Record<string, CommandSpec>;

/** `nsbox pull|images|rmi|image ...`: the store flag (and --json, --tag where they apply). */
export const IMAGE_CMD = (command: string, extra: FlagDef[] = []): CommandSpec => ({ command, takesCommand: false, flags: [F.store, ...extra, F.help] });

export const MACHINE_SUBCOMMANDS = ['start', 'exec', 'stop', 'kill', 'freeze', 'thaw', 'stats', 'destroy', 'list', 'status', 'shell', 'logs'] as const;
export type MachineSubcommand = (typeof MACHINE_SUBCOMMANDS)[number];

/** What `nsbox machine` takes before its subcommand. */
export const MACHINE_LEADING: readonly FlagDef[] = [F.stateDir, F.help];

/** Every subcommand takes --state-dir and --help (described in the usage's prose). */
const common = MACHINE_LEADING.map((f) => ({ ...f, hidden: true }));

function machineSpec(sub: MachineSubcommand, flags: FlagDef[]): CommandSpec {
  return { command: `nsbox machine ${sub}`, takesCommand: sub === 'exec', flags: [...common, ...flags] };
}

export const MACHINE: Record<MachineSubcommand, CommandSpec> = {
  start: machineSpec('start', [
    { ...F.rootfs, help: "the machine's root filesystem (required; written to unless --ephemeral)" },
    F.machineInit,
    F.ephemeral,
    { ...F.hostname, help: 'UTS host name (default NAME)' },
    { ...F.env, help: "environment of PID 1 (repeatable; --env K copies K from nsbox's own)" },
    { ...F.bind, help: 'bind-mount host SRC at DST (repeatable)' },
    { ...F.tmpfs, help: 'mount a fresh tmpfs at DST (repeatable)' },
    { ...F.network, help: 'none | loopback (default, lo up) | host | bridge' },
    F.proc,
    {
      ...F.publish,
      help: 'as for nsbox run (imply --network bridge). Published ports are forwarded\nby this nsbox process: with --publish, machine start stays in the foreground\nforwarding until the machine stops (Ctrl-C stops forwarding only)',
    },
    { ...F.allow, arg: 'ADDR[/LEN][:PORT]', joined: true },
    F.addHost,
    F.noEtcFiles,
    F.device,
    // One line for all the limits: the first carries the help text, the others join it.
    { ...F.memory, help: 'cgroup v2 limits, as for nsbox run' },
    ...LIMITS.slice(1).map((f) => ({ ...f, joined: true })),
    { ...D.ulimit, help: "a resource limit of PID 1 (and so of what it starts) and of every exec,\nas for nsbox run (repeatable)" },
    F.waitReady,
  ]),
  exec: machineSpec('exec', [
    F.tty,
    { ...F.env, help: 'set a variable (repeatable); the environment is PATH, HOME=/root (TERM\nwith -t) and these' },
    F.cwd,
    F.user,
    { ...D.ulimit, help: "a resource limit of CMD, over the machine's (repeatable)" },
    { ...F.timeout, help: 'kill CMD after MS milliseconds (also 10s, 2m, 1h); exit 137' },
    F.startTimeout,
  ]),
  stop: machineSpec('stop', [F.timeout]),
  kill: machineSpec('kill', [F.signal]),
  freeze: machineSpec('freeze', []),
  thaw: machineSpec('thaw', []),
  stats: machineSpec('stats', []),
  destroy: machineSpec('destroy', [F.force]),
  list: machineSpec('list', [F.json]),
  status: machineSpec('status', [F.json]),
  shell: machineSpec('shell', [{ ...F.user, help: 'numeric credentials of the shell (default 0:0); its shell and HOME come\nfrom the machine\'s /etc/passwd' }]),
  logs: machineSpec('logs', [DETACHED.follow]),
};
