// cli/output.ts: what the nsbox command prints and the status it exits with: the one-line error,
// the exit status of a container, the doctor report and the machine table.
import { constants as osConstants } from 'node:os';

import { NsboxError } from '../index';
import type { ExitInfo, HostReport, MachineInfo } from '../index';
import { UsageError } from './flags';

/** Exit status for any failure of nsbox itself (bad usage, bad options, setup errors), as docker run. */
export const EXIT_NSBOX = 125;

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

export const io: Io = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
};

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

function yesNo(b: boolean): string {
  return b ? 'yes' : 'no';
}

export function formatReport(r: HostReport): string {
  const cg = r.cgroup;
  const lines: string[] = [];
  lines.push(`kernel        ${r.kernel} (${r.arch})`);
  const euid = process.geteuid?.();
  lines.push(`running as    ${r.root ? 'root' : euid === 0 ? 'uid 0 in a user namespace or without CAP_SYS_ADMIN (rootless)' : `uid ${euid ?? '?'} (rootless)`}`);
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
  lines.push('tried (in a throwaway child)');
  for (const [k, label] of [['userns', 'a user namespace'], ['procfs', 'a procfs in a container'], ['cgroup', 'a process into a new cgroup']] as const) {
    const x = r.trials[k];
    lines.push(`  ${label.padEnd(30)}${x.ok ? 'yes' : `no: ${x.syscall ?? 'a check'}${x.path ? ` '${x.path}'` : ''} ${x.code}`}`);
  }
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
