// cli/machine-extra.ts: `nsbox machine status`, `nsbox machine shell` and `nsbox machine logs`:
// what a machine is doing, a login shell in it, and its console.
import * as fs from 'node:fs';

import { NsboxError } from '../index';
import type { Container, ExitInfo, Machine, MachineInfo, User } from '../index';
import { exitStatus, EXIT_NSBOX, formatError, io } from './output';
import { forwardSignals } from './signals';
import { bridgeTty } from './tty';

export interface MachineStatus extends MachineInfo {
  /** Seconds since the machine started, while it runs; null once stopped. */
  uptimeSeconds: number | null;
  /** The addresses of the machine's network namespace (lo's included), while it runs. */
  addresses: string[];
  /** With --network bridge: the bridge, the gateway and the host side of the veth. */
  bridge: { bridge: string; gateway: string; hostIf: string } | null;
  /** memory.current of its cgroup in bytes, where the host measures it. */
  memoryCurrentBytes: number | null;
  pidsCurrent: number | null;
}

/**
 * The addresses of the network namespace of host pid `pid`, as the kernel lists them: IPv4 from
 * /proc/PID/net/fib_trie (the LOCAL host routes), IPv6 from /proc/PID/net/if_inet6. The
 * host reads these files: nothing of the machine is run.
 */
export function netnsAddresses(pid: number): string[] {
  const out: string[] = [];
  let trie = '';
  try {
    trie = fs.readFileSync(`/proc/${pid}/net/fib_trie`, 'utf8');
  } catch {
    /* gone, or no procfs view */
  }
  let last = '';
  let table = '';
  for (const line of trie.split('\n')) {
    if (/^\S/.test(line)) table = line.trim();
    const leaf = /\|--\s+(\d+\.\d+\.\d+\.\d+)/.exec(line);
    if (leaf) last = leaf[1]!;
    else if (/\/32 host LOCAL/.test(line) && table.startsWith('Local') && !out.includes(last)) out.push(last);
  }
  let inet6 = '';
  try {
    inet6 = fs.readFileSync(`/proc/${pid}/net/if_inet6`, 'utf8');
  } catch {
    /* no IPv6 */
  }
  for (const line of inet6.split('\n')) {
    const hex = line.split(/\s+/)[0];
    if (!hex || hex.length !== 32) continue;
    const a = hex.match(/.{4}/g)!.map((g) => g.replace(/^0+(?=.)/, '')).join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
    if (!out.includes(a)) out.push(a);
  }
  return out;
}

export async function machineStatus(m: Machine): Promise<MachineStatus> {
  const info = await m.info();
  const running = info.state !== 'stopped';
  const stats = running ? await m.stats() : { cpuUsageUs: 0 };
  const n = m.network;
  return {
    ...info,
    uptimeSeconds: running ? Math.max(0, Math.round((Date.now() - Date.parse(info.createdAt)) / 1000)) : null,
    addresses: running ? netnsAddresses(m.pid) : [],
    bridge: n ? { bridge: n.bridge, gateway: n.gateway, hostIf: n.hostIf } : null,
    memoryCurrentBytes: stats.memoryCurrentBytes ?? null,
    pidsCurrent: stats.pidsCurrent ?? null,
  };
}

function uptime(s: number): string {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const min = Math.floor((s % 3600) / 60);
  return `${d ? `${d}d ` : ''}${d || h ? `${h}h ` : ''}${min}m ${s % 60}s`;
}

export function formatStatus(s: MachineStatus): string {
  const rows: Array<[string, string]> = [
    ['name', s.name],
    ['state', s.state],
    ['pid', s.state === 'stopped' ? '-' : String(s.pid)],
    ['uptime', s.uptimeSeconds === null ? '-' : uptime(s.uptimeSeconds)],
    ['started', s.createdAt],
    ['init', s.init === 'builtin' ? 'builtin' : s.init.join(' ')],
  ];
  if (s.command) rows.push(['command', s.command.join(' ')]);
  if (s.exit) rows.push(['exit', s.exit.exitCode !== null ? `exited (${s.exit.exitCode})` : `killed (${s.exit.signal})`]);
  rows.push(['rootfs', s.rootfs + (s.ephemeral ? ' (ephemeral)' : '')]);
  rows.push(['addresses', s.addresses.length ? s.addresses.join(' ') : '-']);
  if (s.bridge) rows.push(['bridge', `${s.bridge.bridge} (gateway ${s.bridge.gateway}, host side ${s.bridge.hostIf})`]);
  rows.push(['cgroup', s.cgroup ?? '-']);
  if (s.memoryCurrentBytes !== null) rows.push(['memory', `${s.memoryCurrentBytes} bytes`]);
  if (s.pidsCurrent !== null) rows.push(['pids', String(s.pidsCurrent)]);
  return rows.map(([k, v]) => `${k.padEnd(10)} ${v}`).join('\n') + '\n';
}

/**
 * The login shell and home of `uid` in the machine's /etc/passwd: the shell if it is an absolute
 * path other than nologin/false, else /bin/sh; the home if absolute, else /. The file is the
 * machine's (hostile): it is read by a `cat` run inside the machine (its links followed in its own
 * root, never on the host; at most 1 MiB, within 5 s), not through /proc/PID/root, where an
 * absolute link (/etc/passwd -> /etc/shadow, -> /dev/watchdog) is followed from the host's root.
 * A machine without `cat`, or one that does not answer, gets the defaults.
 */
export async function passwdShell(m: Machine, uid: number): Promise<{ shell: string; home: string }> {
  let text = '';
  try {
    const r = await m.run(['cat', '/etc/passwd'], { maxOutput: 1 << 20, timeout: 5000, encoding: 'utf8' });
    if (r.exitCode === 0) text = r.stdout;
  } catch {
    /* no passwd (or no cat): the defaults */
  }
  return parsePasswd(text, uid);
}

/** The shell and home of `uid` in passwd(5) text (see passwdShell). */
export function parsePasswd(text: string, uid: number): { shell: string; home: string } {
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || f[2] !== String(uid)) continue;
    const shell = f[6]!.trim();
    const home = f[5]!.trim();
    return {
      shell: shell.startsWith('/') && !/\/(nologin|false)$/.test(shell) ? shell : '/bin/sh',
      home: home.startsWith('/') ? home : '/',
    };
  }
  return { shell: '/bin/sh', home: uid === 0 ? '/root' : '/' };
}

/** `nsbox machine shell NAME [--user UID:GID]`: the user's login shell (`SHELL -l`) on a pty. */
export async function machineShell(m: Machine, user: User | undefined): Promise<number> {
  const uid = user?.uid ?? 0;
  const { shell, home } = await passwdShell(m, uid);
  let c: Container;
  try {
    c = m.exec([shell, '-l'], { tty: true, env: { HOME: home, SHELL: shell }, cwd: '/', ...(user ? { user } : {}) });
  } catch (e) {
    io.err(formatError(e) + '\n');
    return EXIT_NSBOX;
  }
  const unforward = forwardSignals(c, 'the shell');
  let info: ExitInfo;
  try {
    info = await bridgeTty(c);
  } catch (e) {
    if (!(e instanceof NsboxError)) throw e;
    io.err(`\r\n${formatError(e)}\n`);
    return EXIT_NSBOX;
  } finally {
    unforward();
  }
  return exitStatus(info);
}
