// cli/detached.ts: `nsbox run -d` and the docker-shaped commands that find its container again by
// name: `nsbox ps`, `nsbox stop`, `nsbox rm`, `nsbox logs`. A detached container is a machine
// (lib/machine.ts) whose builtin init runs the one command (MachineOptions.command): it has its own
// PID 1, outlives nsbox, keeps its state and console log in the state directory, and stops when the
// command exits, with the command's exit status kept for `ps`. There is no second start path.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Machine, NsboxError } from '../index';
import type { AppOptions, MachineInfo, MachineOptions } from '../index';
import { DEFAULT_CAPS, MACHINE_CAPS } from '../caps';
import { NAME_RE } from '../machine-options';
import { applyFlag, FlagState, optionsOf, renderFlags, tokenize, UsageError, type CommandSpec } from './flags';
import { EXIT_NSBOX, formatError, io, signalStatus } from './output';
import { DETACHED_CMD } from './table';
import { resolveUser, startFailureStatus } from './docker-run';
import { ensureImage } from './image-commands';
import { imageRoot } from '../images';
import { imageCommand, imageUser, imageWorkdir, runConfig } from '../images/config';
import { FORWARDED_SIGNALS } from './signals';

/** What `nsbox run` parsed, as far as -d needs it. */
export interface DetachRequest {
  options: AppOptions;
  name: string | undefined;
  stateDir: string | undefined;
  json: boolean;
  /** --rm: removed once its command has ended and a later nsbox command sees it (autoRemove). */
  rm?: boolean;
  origin: Map<string, string>;
  /** -u NAME (or UID alone, NAME:GROUP): resolved in the root's /etc/passwd as for nsbox run. */
  userSpec?: string;
  /** The run flags given that a detached container cannot honour (their flag names). */
  refused: string[];
}

/**
 * The machine options for a detached `nsbox run`: the app container's options where a machine has
 * the same, with the app profile's capabilities (not a machine's wider set) and a writable root
 * whose writes are thrown away (an ephemeral overlay), unless --rw writes to the rootfs itself.
 */
export function detachedOptions(r: DetachRequest): MachineOptions {
  if (r.refused.length) {
    throw new UsageError(`${r.refused.join(', ')} cannot be used with -d (a detached container is a machine: see 'nsbox run --help')`);
  }
  const o = r.options as AppOptions & Record<string, unknown>;
  if (o.rootfs === undefined && o.image === undefined) {
    throw new UsageError("-d needs --rootfs DIR or an IMAGE (the built-in rootfs is made for one foreground run)");
  }
  if (o.readonly === true) throw new UsageError('--read-only cannot be used with -d: a detached container has a writable root (an overlay whose writes are thrown away; --rw writes to the rootfs)');
  const name = r.name ?? randomBytes(6).toString('hex');
  if (!NAME_RE.test(name)) throw new UsageError(`--name '${name}': with -d the name must match [a-z0-9][a-z0-9_.-]{0,62} (it names the container's state and cgroup)`);
  const caps = (o.capabilities ?? {}) as { add?: string[]; drop?: string[] };
  const norm = (c: string): string => (c.toUpperCase().startsWith('CAP_') ? c.toUpperCase() : `CAP_${c.toUpperCase()}`);
  const added = new Set((caps.add ?? []).map(norm));
  const all = added.has('CAP_ALL');
  const drop = all ? [] : MACHINE_CAPS.filter((c) => !(DEFAULT_CAPS as readonly string[]).includes(c) && !added.has(c));
  const m: MachineOptions = {
    name,
    command: o.command,
    ephemeral: o.readonly !== false,
    capabilities: { add: caps.add ?? [], drop: [...drop, ...(caps.drop ?? [])] },
  } as MachineOptions;
  const same = ['rootfs', 'image', 'pull', 'storeDir', 'mounts', 'env', 'user', 'cwd', 'hostname', 'network', 'limits', 'rlimits', 'hosts', 'etcFiles', 'devices', 'seccomp', 'userns'] as const;
  for (const k of same) if (o[k] !== undefined) (m as unknown as Record<string, unknown>)[k] = o[k];
  if (r.stateDir !== undefined) m.stateDir = r.stateDir;
  if (r.rm === true) m.autoRemove = true;
  return m;
}

/** `nsbox run -d`: starts the container as a machine with the command and prints its name. */
export async function runDetached(r: DetachRequest): Promise<number> {
  let m: Machine;
  try {
    const opts = detachedOptions(r);
    if (opts.image !== undefined) Object.assign(opts, await imageCommandFor(r.options, r.userSpec === undefined));
    if (r.userSpec !== undefined) {
      // The same lookup as nsbox run -u (cli/docker-run.ts resolveUser), in the same root.
      const { user, home } = resolveUser(r.userSpec, r.options);
      opts.user = user;
      r.origin.set('user', `--user '${r.userSpec}'`);
      if (home !== undefined && opts.env?.HOME === undefined) opts.env = { ...opts.env, HOME: home };
    }
    m = await Machine.start(opts);
  } catch (e) {
    io.err(formatError(e, r.origin) + '\n');
    return e instanceof UsageError ? EXIT_NSBOX : startFailureStatus(e);
  }
  io.out(r.json ? JSON.stringify({ name: m.name, pid: m.pid, stateDir: m.stateDir }) + '\n' : `${m.name}\n`);
  return 0;
}

/**
 * -d IMAGE: the image made present (pulled as `nsbox run` does), and the command docker's rule
 * gives (Entrypoint and Cmd, COMMAND, --entrypoint), run as the image's User (unless -u, or
 * `imageUserWanted` false) in its WorkingDir (unless -w), as `nsbox run IMAGE` does.
 */
async function imageCommandFor(o: AppOptions, imageUserWanted: boolean): Promise<Pick<MachineOptions, 'command' | 'user' | 'cwd' | 'env'>> {
  const ref = o.image!;
  await ensureImage(ref, o.pull ?? 'missing', o.storeDir, io.err);
  const root = imageRoot(ref, { storeDir: o.storeDir });
  const c = runConfig(root.config);
  const argv = imageCommand(c, o.entrypoint, o.command);
  if (argv.length === 0 || argv[0] === '') throw new UsageError(`the image ${ref} has no Entrypoint or Cmd: give the command after IMAGE`);
  const out: Pick<MachineOptions, 'command' | 'user' | 'cwd' | 'env'> = { command: argv };
  if (o.cwd === undefined && imageWorkdir(c) !== '/') out.cwd = imageWorkdir(c);
  const spec = typeof c.User === 'string' ? c.User : '';
  if (imageUserWanted && o.user === undefined && spec !== '') {
    const u = imageUser(c, { top: [...root.layers].reverse(), xattrs: root.xattrs });
    out.user = { uid: u.uid, gid: u.gid, groups: u.groups };
    if (u.home !== undefined && o.env?.HOME === undefined) out.env = { ...o.env, HOME: u.home };
  }
  return out;
}

/** STATUS of `nsbox ps`: running, frozen, exited (CODE), killed (SIG), or stopped (no status known). */
export function psStatus(i: MachineInfo): string {
  if (i.state !== 'stopped') return i.state;
  if (!i.exit) return 'stopped';
  return i.exit.exitCode !== null ? `exited (${i.exit.exitCode})` : `killed (${i.exit.signal})`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

/** The JSON of one detached container in `nsbox ps --json`: MachineInfo plus `status` and `exitStatus`. */
function psJson(i: MachineInfo): Record<string, unknown> {
  const exitStatus = i.exit ? (i.exit.exitCode ?? signalStatus(i.exit.signal ?? '')) : null;
  return { ...i, status: psStatus(i), exitStatus };
}

const USAGE: Record<keyof typeof DETACHED_CMD, string> = {
  ps: 'Usage: nsbox ps [flags]\n\nLists the detached containers (nsbox run -d): NAME PID STATUS COMMAND. STATUS is running, frozen,\nexited (CODE), killed (SIGNAL), or stopped when nothing reported how the command ended.\n',
  stop: 'Usage: nsbox stop [flags] NAME...\n\nSends SIGTERM to the command (through its init), SIGKILL to everything after --timeout.\nPrints each NAME. Works on machines too (as nsbox machine stop).\n',
  rm: 'Usage: nsbox rm [flags] NAME...\n\nRemoves a stopped container: its state directory, log and cgroup. Prints each NAME.\n',
  logs: 'Usage: nsbox logs [flags] NAME\n\nPrints the output (stdout and stderr, as written) of the container\'s command: its console log.\n',
};

function parse(spec: CommandSpec, argv: string[]): { o: Record<string, unknown>; names: string[] } {
  const st = new FlagState();
  const names: string[] = [];
  for (const t of tokenize(argv, spec)) {
    if (t.kind === 'flag') applyFlag(st, t.def, t.value);
    else if (t.kind === 'positional') names.push(t.value);
  }
  return { o: optionsOf(st), names };
}

async function find(name: string, stateDir: string | undefined): Promise<Machine> {
  if (!NAME_RE.test(name)) throw new UsageError(`no container named '${name}'`);
  const m = await Machine.get(name, stateDir === undefined ? {} : { stateDir });
  if (!m) throw new UsageError(`no container named '${name}'`);
  return m;
}

/** `nsbox ps|stop|rm|logs`. */
export async function cmdDetached(which: keyof typeof DETACHED_CMD, argv: string[]): Promise<number> {
  const spec = DETACHED_CMD[which];
  try {
    const { o, names } = parse(spec, argv);
    if (o.help === true) {
      io.out(USAGE[which] + '\n' + renderFlags(spec.flags));
      return 0;
    }
    const stateDir = o.stateDir as string | undefined;
    const sd = stateDir === undefined ? {} : { stateDir };
    if (which === 'ps') {
      if (names.length) throw new UsageError(`'nsbox ps' takes no arguments, got '${names[0]}'`);
      const list = (await Machine.list(sd)).filter((i) => i.command && (o.all === true || i.state !== 'stopped'));
      if (o.json === true) io.out(JSON.stringify(list.map(psJson), null, 2) + '\n');
      else io.out(table([['NAME', 'PID', 'STATUS', 'COMMAND'], ...list.map((i) => [i.name, i.state === 'stopped' ? '-' : String(i.pid), psStatus(i), (i.command ?? []).join(' ')])]));
      return 0;
    }
    if (names.length === 0) throw new UsageError(`missing the container name: ${spec.command} [flags] NAME${which === 'logs' ? '' : '...'}`);
    if (which === 'logs') {
      if (names.length > 1) throw new UsageError(`'nsbox logs' takes one name, got '${names[0]}' and '${names[1]}'`);
      return await printLog(await find(names[0]!, stateDir), o.follow === true);
    }
    for (const name of names) {
      const m = await find(name, stateDir);
      if (which === 'stop') {
        const timeout = o.timeout as number | undefined;
        await m.stop(timeout === undefined ? {} : { timeout });
        // --rm: stopped, so removed now (docker removes it at once too).
        if ((await m.info()).autoRemove) await m.destroy();
      } else {
        if (o.force === true && (await m.state()) !== 'stopped') {
          m.kill('SIGKILL');
          await m.stop();
        }
        await m.destroy();
      }
      io.out(`${name}\n`);
    }
    return 0;
  } catch (e) {
    io.err(formatError(e) + '\n');
    return EXIT_NSBOX;
  } finally {
    await new Promise((r) => setImmediate(r));
  }
}

/** How often a followed log is read again (and the machine's state looked at). */
const FOLLOW_MS = 200;

/**
 * The console log of `m` (<stateDir>/<name>/console.log) to stdout; with `follow`, what is written
 * to it afterwards too, until the machine stops (the rest is printed, status 0) or SIGINT, SIGTERM
 * or SIGHUP (status 0).
 */
export async function printLog(m: Machine, follow: boolean): Promise<number> {
  const file = path.join(m.stateDir, m.name, 'console.log');
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0; // nothing written yet (a start that had not opened it)
    throw new NsboxError({ code: (e as NodeJS.ErrnoException).code ?? 'EIO', syscall: 'open', step: 'logs', path: file, message: `cannot read the log of '${m.name}': ${(e as Error).message} (step logs)` });
  }
  const buf = Buffer.alloc(64 * 1024);
  let pos = 0;
  const drain = (): void => {
    // A log that became shorter than what was read was truncated (or capped): read it again from
    // its start, as tail -F does.
    if (fs.fstatSync(fd).size < pos) pos = 0;
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, pos);
      if (n <= 0) return;
      pos += n;
      process.stdout.write(Buffer.from(buf.subarray(0, n)));
    }
  };
  // With -f, Ctrl-C ends it from the start (before the first line is printed, too).
  let stop: (() => void) | null = null;
  let stopped = false;
  const onSignal = (): void => {
    stopped = true;
    stop?.();
  };
  if (follow) for (const sig of FORWARDED_SIGNALS) process.on(sig, onSignal);
  try {
    drain();
    if (!follow || stopped) return 0;
    await new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout;
      stop = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const tick = (): void => {
        m.state().then((st) => {
          if (stopped) return;
          drain();
          if (st === 'stopped') stop!();
          else timer = setTimeout(tick, FOLLOW_MS);
        }, () => stop!());
      };
      timer = setTimeout(tick, FOLLOW_MS);
    });
    return 0;
  } finally {
    for (const sig of FORWARDED_SIGNALS) process.off(sig, onSignal);
    fs.closeSync(fd);
  }
}
