// cli/machine-commands.ts: `nsbox machine ...`: long-lived containers with their own PID 1, found
// again by name.
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';

import { Machine, NsboxError } from '../index';
import type { Container, ExitInfo, MachineExecOptions, MachineOptions } from '../index';
import { applyFlag, FlagState, hasFlag, lastRaw, lastValue, nearest, optionsOf, renderFlags, tokenizeAll, unknownFlag, UsageError } from './flags';
import type { Tokens } from './flags';
import { EXIT_NSBOX, exitStatus, formatError, formatMachineTable, io } from './output';
import { FORWARDED_SIGNALS, forwardSignals } from './signals';
import { DETACHED, FLAGS, MACHINE, MACHINE_LEADING, MACHINE_SUBCOMMANDS } from './table';
import type { MachineSubcommand } from './table';
import { bridgeTty } from './tty';
import { formatStatus, machineShell, machineStatus } from './machine-extra';
import { printLog } from './detached';

const START_SYNOPSIS = 'nsbox machine start NAME --rootfs DIR [flags]';
const EXEC_SYNOPSIS = 'nsbox machine exec NAME [flags] -- CMD ARGS...';

export const MACHINE_USAGE = `Usage:
  ${START_SYNOPSIS}   start a machine; prints the host pid of its PID 1
  ${EXEC_SYNOPSIS}   run CMD inside a running machine
  nsbox machine stop NAME [--timeout MS]           halt it (the init's halt signal), then kill
  nsbox machine kill NAME [--signal SIG]           SIGKILL every process (default), or signal PID 1
  nsbox machine freeze NAME | thaw NAME            stop / resume all of its processes
  nsbox machine stats NAME                         resource usage as JSON
  nsbox machine destroy NAME [--force]             remove a stopped machine (--force: kill it first)
  nsbox machine list [--json]                      all machines: NAME PID STATE INIT ROOTFS
  nsbox machine status NAME [--json]               state, pid, uptime, addresses, cgroup, usage
  nsbox machine shell NAME [--user UID:GID]        a login shell (the user's shell in the machine's
                                                   /etc/passwd, else /bin/sh; run with -l) on a pty
  nsbox machine logs NAME [-f]                     the console; -f: follow it until the machine stops

Every machine subcommand takes ${FLAGS.stateDir.name} ${FLAGS.stateDir.arg}: ${FLAGS.stateDir.help}.
The console (stdout and stderr of PID 1) is written to <state-dir>/<NAME>/console.log.
Every flag also takes the --flag=value form.

${START_SYNOPSIS}
${renderFlags(MACHINE.start.flags)}
${EXEC_SYNOPSIS}
${renderFlags(MACHINE.exec.flags)}
Exit status: 0 on success; for exec, CMD's own (128+n if it was killed by signal n); 125 if nsbox
failed (including an unknown NAME).
`;

/** The one NAME a subcommand takes. */
function machineName(t: Tokens, sub: string): string {
  const [name, extra] = t.positionals;
  if (name === undefined) throw new UsageError(`missing the machine name: nsbox machine ${sub} NAME${sub === 'exec' ? ' -- CMD ARGS...' : ''}`);
  if (extra !== undefined) {
    if (sub === 'exec') throw new UsageError(`put '--' before the command: nsbox machine exec ${name} [flags] -- ${extra} ...`);
    throw new UsageError(`'nsbox machine ${sub}' takes one machine name, got '${name}' and '${extra}'`);
  }
  return name;
}

/** Parsed `machine start`: the options for Machine.start and which flag set each. */
export function parseMachineStart(argv: string[]): { help: boolean; options: MachineOptions; origin: Map<string, string> } {
  const t = tokenizeAll(argv, MACHINE.start);
  const st = new FlagState();
  if (hasFlag(t, FLAGS.help)) return { help: true, options: { name: '', rootfs: '' }, origin: st.origin };
  const name = machineName(t, 'start');
  st.origin.set('name', `machine name '${name}'`);
  for (const f of t.flags) applyFlag(st, f.def, f.value);
  if (!st.values.has('rootfs')) throw new UsageError(`missing --rootfs DIR: nsbox machine start ${name} --rootfs DIR [flags]`);
  const options = { name, rootfs: '', ...optionsOf(st) } as MachineOptions;
  return { help: false, options, origin: st.origin };
}

/** The --state-dir given after the subcommand, else the one before it. */
function stateDirOf(t: Tokens, fallback: string | undefined): string | undefined {
  return (lastValue(t, FLAGS.stateDir) as string | undefined) ?? fallback;
}

/** The machine `name`, or a one-line "no machine named" error. */
async function findMachine(name: string, stateDir: string | undefined): Promise<Machine> {
  const m = await Machine.get(name, stateDir === undefined ? {} : { stateDir });
  if (!m) throw new UsageError(`no machine named '${name}'`);
  return m;
}

async function machineExec(t: Tokens, globalStateDir: string | undefined): Promise<number> {
  const name = machineName(t, 'exec');
  if (t.command === undefined) throw new UsageError(`missing '-- CMD': nsbox machine exec ${name} [flags] -- CMD ARGS...`);
  if (t.command.length === 0) throw new UsageError(`missing the command after '--': nsbox machine exec ${name} [flags] -- CMD ARGS...`);
  const st = new FlagState();
  for (const f of t.flags) applyFlag(st, f.def, f.value);
  const { stateDir, ...set } = optionsOf(st);
  const opts = set as MachineExecOptions;
  const tty = opts.tty === true;
  if (!tty) opts.stdio = 'inherit';
  const m = await findMachine(name, (stateDir as string | undefined) ?? globalStateDir);

  let c: Container;
  try {
    c = m.exec(t.command, opts);
  } catch (e) {
    io.err(formatError(e, st.origin) + '\n');
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
    io.err(`${tty ? '\r\n' : ''}${formatError(e, st.origin)}\n`);
    return EXIT_NSBOX;
  } finally {
    unforward();
  }
  if (info.timedOut) io.err(`${tty ? '\r\n' : ''}nsbox: timed out after ${opts.timeout} ms\n`);
  return exitStatus(info);
}

async function machineCommand(sub: MachineSubcommand, t: Tokens, globalStateDir: string | undefined): Promise<number> {
  const stateDir = stateDirOf(t, globalStateDir);
  switch (sub) {
    case 'exec':
      return machineExec(t, globalStateDir);
    case 'list': {
      if (t.positionals.length) throw new UsageError(`'nsbox machine list' takes no arguments, got '${t.positionals[0]}'`);
      const list = await Machine.list(stateDir === undefined ? {} : { stateDir });
      io.out(hasFlag(t, FLAGS.json) ? JSON.stringify(list, null, 2) + '\n' : formatMachineTable(list));
      return 0;
    }
    case 'stop': {
      const name = machineName(t, sub);
      const timeout = lastValue(t, FLAGS.timeout) as number | undefined;
      const m = await findMachine(name, stateDir);
      await m.stop(timeout === undefined ? {} : { timeout });
      return 0;
    }
    case 'kill': {
      const name = machineName(t, sub);
      const sig = (lastValue(t, FLAGS.signal) as string | number | undefined) ?? 'SIGKILL';
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
      const m = await findMachine(machineName(t, sub), stateDir);
      await (sub === 'freeze' ? m.freeze() : m.thaw());
      return 0;
    }
    case 'status': {
      const s = await machineStatus(await findMachine(machineName(t, sub), stateDir));
      io.out(hasFlag(t, FLAGS.json) ? JSON.stringify(s, null, 2) + '\n' : formatStatus(s));
      return 0;
    }
    case 'shell': {
      const m = await findMachine(machineName(t, sub), stateDir);
      return machineShell(m, lastValue(t, FLAGS.user) as MachineExecOptions['user']);
    }
    case 'logs': {
      const m = await findMachine(machineName(t, sub), stateDir);
      return printLog(m, hasFlag(t, DETACHED.follow));
    }
    case 'stats': {
      const m = await findMachine(machineName(t, sub), stateDir);
      io.out(JSON.stringify(await m.stats(), null, 2) + '\n');
      return 0;
    }
    case 'destroy': {
      const m = await findMachine(machineName(t, sub), stateDir);
      if (hasFlag(t, FLAGS.force) && (await m.state()) !== 'stopped') {
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

export async function cmdMachine(argv: string[]): Promise<number> {
  // Flags before the subcommand: only --state-dir and --help. Read here, as before the tokenizer
  // existed: its rules differ on odd input (`--state-dir --`, `--help=1`, `-h=x`, `-`).
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
      if (a.startsWith('-')) throw unknownFlag(a.split('=')[0]!, 'nsbox machine', [...MACHINE_LEADING.map((f) => f.name), '-h']);
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
    const t = tokenizeAll(rest, MACHINE[sub as MachineSubcommand]);
    if (hasFlag(t, FLAGS.help)) {
      io.out(MACHINE_USAGE);
      return 0;
    }
    origin = new Map(
      [FLAGS.signal, FLAGS.timeout, FLAGS.stateDir].map((f) => [f.to, `${f.name} '${lastRaw(t, f) ?? ''}'`]),
    );
    if (t.positionals[0] !== undefined) origin.set('name', `machine name '${t.positionals[0]}'`);
    return await machineCommand(sub as MachineSubcommand, t, globalStateDir);
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
