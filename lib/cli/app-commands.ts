// cli/app-commands.ts: `nsbox run` (one command in a new container, on nsbox's own stdio) and
// `nsbox doctor` (what this host supports).
import { spawn, probe, NsboxError } from '../index';
import { ensureImage } from './image-commands';
import type { AppOptions, Container, ExitInfo, HostReport } from '../index';
import { applyFlag, FlagState, optionsOf, renderFlags, tokenize, unknownFlag, UsageError } from './flags';
import { EXIT_NSBOX, exitStatus, formatError, formatReport, io } from './output';
import { resolveUser, runJson, startFailureStatus } from './docker-run';
import { forwardSignals } from './signals';
import { bridgeTty } from './tty';
import { runDetached } from './detached';
import { RUN } from './table';

export const RUN_USAGE = `Usage: nsbox run [flags] -- CMD ARGS...
       nsbox run [flags] IMAGE [COMMAND...]

Runs CMD in new namespaces with its own cgroup, on the built-in default rootfs (or --rootfs DIR);
or an image's command (its Entrypoint and Cmd, or COMMAND), with the image as the root: pulled
first when the store lacks it (--pull). Flags after IMAGE belong to COMMAND. Its stdin, stdout and stderr are relayed to and
from nsbox's own through pipes (CMD sees no terminal); with -t CMD gets a pty of its own (-it: typed
into from nsbox's terminal, which must be one).
Every flag also takes the --flag=value form.

${renderFlags(RUN.flags)}
Exit status: the command's; 128+n if it was killed by signal n; 125 if nsbox failed; 126 if the
command could not be executed; 127 if it was not found. See docs/cli.md for docker's flags.
SIGINT, SIGTERM and SIGHUP are forwarded to the container's PID 1 (which ignores signals it has no
handler for unless --init is given); a second one kills the container.
`;

export interface ParsedRun {
  help: boolean;
  options: AppOptions;
  /** -u NAME (or UID alone, NAME:GROUP, ...): looked up in the root's /etc/passwd before the start. */
  userSpec?: string;
  /** --name (docker's), --json, -i: what nsbox run does with them itself. */
  name?: string;
  json: boolean;
  interactive: boolean;
  /** -d: start it as a detached container (cli/detached.ts); --state-dir goes with it. */
  detach: boolean;
  stateDir?: string;
  /** --rm: with -d, the container is removed once seen exited (MachineOptions.autoRemove). */
  rm: boolean;
  /** The flags given that -d cannot honour. */
  notDetachable: string[];
  /** Option path prefix ('limits.memory', 'mounts[2]') -> the flag that set it, for error messages. */
  origin: Map<string, string>;
}

/** argv after `run`. Each flag is applied as it comes, so the first mistake is the one reported. */
export function parseRun(argv: string[]): ParsedRun {
  const st = new FlagState();
  let command: string[] | undefined;
  let image: string | undefined;
  for (const t of tokenize(argv, RUN)) {
    if (t.kind === 'flag') applyFlag(st, t.def, t.value);
    else if (t.kind === 'command') command = t.argv;
    else if (!st.values.has('rootfs') && t.value !== '-' && t.index !== undefined) {
      // docker's shape: IMAGE, and everything after it (flags too) is its command.
      image = t.value;
      const rest = argv.slice(t.index + 1);
      if (rest[0] === '--') rest.shift();
      if (rest.length) command = rest;
      break;
    } else {
      throw new UsageError(`put '--' before the command: nsbox run [flags] -- ${t.value}${t.more ? ' ...' : ''}`);
    }
  }
  const { help, json, name, interactive, rm, detach, stateDir, securityOpt, user, ...set } = optionsOf(st);
  if (stateDir !== undefined && detach !== true && help !== true) throw new UsageError('--state-dir is for -d (a detached container keeps its state there)');
  // What a detached container (a machine running the command) cannot do, named for the error.
  const notDetachable: string[] = [];
  const given = (to: string): boolean => st.values.has(to) || st.lists.has(to);
  if (given('timeout')) notDetachable.push('--timeout');
  if (interactive === true) notDetachable.push('-i');
  if (given('tty')) notDetachable.push('-t');
  if (given('network.ports')) notDetachable.push('--publish (forwarded by a foreground nsbox process)');
  if (given('network.allow')) notDetachable.push('--allow');
  const own = {
    help: help === true,
    json: json === true,
    interactive: interactive === true,
    detach: detach === true,
    rm: rm === true,
    notDetachable,
    ...(stateDir !== undefined ? { stateDir: stateDir as string } : {}),
    origin: st.origin,
    ...(name !== undefined ? { name: name as string } : {}),
    ...(typeof user === 'string' ? { userSpec: user } : {}),
  };
  if (user !== undefined && typeof user !== 'string') set.user = user;
  // --security-opt: seccomp=unconfined turns the filter off; no-new-privileges asks for nothing more.
  if ((securityOpt as Array<{ seccomp?: string }> | undefined)?.some((o) => o.seccomp === 'none')) {
    if (set.seccomp !== undefined) throw new UsageError('--security-opt seccomp=unconfined was given with another seccomp setting');
    set.seccomp = 'none';
  }
  if (image !== undefined) {
    const options = { image, ...(command ? { command } : {}), ...set } as AppOptions;
    return { ...own, options };
  }
  const options = { command: command ?? [], ...set } as AppOptions;
  if (help !== true) {
    if (command === undefined) throw new UsageError("missing '-- CMD' (or an IMAGE): nsbox run [flags] -- CMD ARGS... or nsbox run [flags] IMAGE [COMMAND...]");
    if (command.length === 0) throw new UsageError("missing the command after '--': nsbox run [flags] -- CMD ARGS...");
  }
  return { ...own, options };
}

export async function cmdRun(argv: string[]): Promise<number> {
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
  if (parsed.detach) {
    return runDetached({ options, name: parsed.name, stateDir: parsed.stateDir, json: parsed.json, rm: parsed.rm, origin, refused: parsed.notDetachable, ...(parsed.userSpec !== undefined ? { userSpec: parsed.userSpec } : {}) });
  }
  // -t: a pty of the container's own. With -i it is typed into from nsbox's terminal, so that must
  // be a terminal (docker: "the input device is not a TTY"), checked before anything (a pull)
  // starts; -t alone passes no input, as docker.
  const tty = options.tty === true;
  if (tty && parsed.interactive && !process.stdin.isTTY) {
    io.err('nsbox: the input device is not a TTY: -it (--tty with --interactive) needs a terminal on stdin; without -t, stdin is piped to the command\n');
    return EXIT_NSBOX;
  }

  if (options.image !== undefined) {
    // spawn() does not pull: the image is made present first (progress on stderr).
    try {
      await ensureImage(options.image, options.pull ?? 'missing', options.storeDir, io.err);
    } catch (e) {
      let msg = formatError(e, origin);
      // A bare word that no registry has is most likely a command for the built-in rootfs.
      if (e instanceof NsboxError && !options.image.includes('/')) msg += ` (to run a command on the built-in rootfs, put '--' before the command: nsbox run [flags] -- ${options.image}${options.command ? ' ...' : ''})`;
      io.err(msg + '\n');
      return EXIT_NSBOX;
    }
  }

  if (parsed.userSpec !== undefined) {
    try {
      const { user, home } = resolveUser(parsed.userSpec, options);
      options.user = user;
      origin.set('user', `--user '${parsed.userSpec}'`);
      // docker: HOME is the user's home unless -e HOME gave one.
      if (home !== undefined && options.env?.HOME === undefined) options.env = { ...options.env, HOME: home };
    } catch (e) {
      io.err(formatError(e, origin) + '\n');
      return EXIT_NSBOX;
    }
  }

  if (parsed.json) {
    try {
      return await runJson({ ...options, ...(options.image !== undefined ? { pull: 'missing' as const } : {}) }, parsed.name, parsed.interactive, io.out);
    } catch (e) {
      io.err(formatError(e, origin) + '\n');
      return startFailureStatus(e);
    }
  }

  const size = tty && process.stdout.isTTY && process.stdout.columns > 0 && process.stdout.rows > 0 ? { columns: process.stdout.columns, rows: process.stdout.rows } : {};
  let c: Container;
  try {
    c = spawn({ ...options, ...(options.image !== undefined ? { pull: 'missing' as const } : {}), ...(tty ? size : { stdio: 'inherit' as const }) });
  } catch (e) {
    io.err(formatError(e, origin) + '\n');
    return startFailureStatus(e);
  }

  // Signals: the first one is forwarded; a second means "stop now". If this process is going away
  // regardless (uncaught error, process.exit), the container goes along.
  const unforward = forwardSignals(c);

  let info: ExitInfo;
  try {
    info = tty ? await bridgeTty(c, { input: parsed.interactive }) : await c.wait();
  } catch (e) {
    io.err(`${tty ? '\r\n' : ''}${formatError(e, origin)}\n`);
    return startFailureStatus(e);
  } finally {
    unforward();
  }

  if (info.timedOut) io.err(`${tty ? '\r\n' : ''}nsbox: timed out after ${options.timeout} ms\n`);
  if (info.oomKilled) {
    const mem = options.limits?.memory;
    io.err(`nsbox: the container ran out of memory${mem !== undefined ? ` (--memory ${mem})` : ''} and was OOM-killed\n`);
  }
  return exitStatus(info);
}

/**
 * `nsbox doctor [--json]`. Its words are read here, as before the tokenizer existed: the tokenizer's
 * rules differ on odd input (`--json=1`, `--`, `-`), and would change what those print.
 */
export async function cmdDoctor(argv: string[]): Promise<number> {
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
