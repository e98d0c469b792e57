// config.ts: what an image's config gives a container by default (docs/images.md, "Running an
// image"): the command (Entrypoint + Cmd, or the caller's entrypoint and command), the environment
// (Env under the caller's env), the working directory (WorkingDir) and the user (User: numeric, or a
// name looked up in the image's own /etc/passwd and /etc/group through the merged view). The config
// and those files are the image's: hostile input, checked and bounded here.
import * as path from 'node:path';

import { NsboxError } from '../errors';
import { readMerged, type LayerStack } from './merged';

/** The `config` part of an OCI image config, as far as a run uses it. */
export interface RunConfig {
  Entrypoint?: unknown;
  Cmd?: unknown;
  Env?: unknown;
  WorkingDir?: unknown;
  User?: unknown;
}

const MAX_ID = 2 ** 32 - 2;

function bad(what: string, detail: string): NsboxError {
  return new NsboxError({ code: 'EINVAL', step: 'image.config', message: `the image's ${what} ${detail} (step image.config)` });
}

function strings(v: unknown, what: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x.includes('\0'))) throw bad(what, 'is not a list of strings');
  return v as string[];
}

export function runConfig(config: Record<string, unknown>): RunConfig {
  const c = config.config;
  return c && typeof c === 'object' && !Array.isArray(c) ? (c as RunConfig) : {};
}

/** argv: docker's rule. An entrypoint given by the caller drops the image's Cmd too. */
export function imageCommand(c: RunConfig, entrypoint: string[] | undefined, command: string[] | undefined): string[] {
  const ep = entrypoint ?? strings(c.Entrypoint, 'Entrypoint') ?? [];
  const cmd = command ?? (entrypoint !== undefined ? [] : strings(c.Cmd, 'Cmd') ?? []);
  return [...ep, ...cmd];
}

/** The image's Env as an object (a later duplicate wins, as in docker); entries without '=' are skipped. */
export function imageEnv(c: RunConfig): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of strings(c.Env, 'Env') ?? []) {
    const i = e.indexOf('=');
    if (i <= 0) continue;
    out[e.slice(0, i)] = e.slice(i + 1);
  }
  return out;
}

/** WorkingDir made absolute and clean ('/' when unset), as docker does with a relative one. */
export function imageWorkdir(c: RunConfig): string {
  if (c.WorkingDir === undefined || c.WorkingDir === null || c.WorkingDir === '') return '/';
  if (typeof c.WorkingDir !== 'string' || c.WorkingDir.includes('\0') || c.WorkingDir.length > 4095) throw bad('WorkingDir', 'is not a path');
  return path.posix.resolve('/', c.WorkingDir);
}

interface PasswdEntry { name: string; uid: number; gid: number; home: string }
interface GroupEntry { name: string; gid: number; members: string[] }

const num = (s: string | undefined): number | null => (s !== undefined && /^\d{1,10}$/.test(s) && Number(s) <= MAX_ID ? Number(s) : null);

/** /etc/passwd of the image (bounded: 1 MiB, a regular file, found inside the merged view). */
function passwd(stack: LayerStack): PasswdEntry[] {
  const buf = readMerged(stack, '/etc/passwd');
  if (!buf) return [];
  const out: PasswdEntry[] = [];
  for (const line of buf.toString('utf8').split('\n')) {
    const f = line.split(':');
    const uid = num(f[2]);
    const gid = num(f[3]);
    if (f.length < 7 || !f[0] || uid === null || gid === null) continue;
    out.push({ name: f[0], uid, gid, home: f[5] ?? '' });
  }
  return out;
}

function groups(stack: LayerStack): GroupEntry[] {
  const buf = readMerged(stack, '/etc/group');
  if (!buf) return [];
  const out: GroupEntry[] = [];
  for (const line of buf.toString('utf8').split('\n')) {
    const f = line.split(':');
    const gid = num(f[2]);
    if (f.length < 4 || !f[0] || gid === null) continue;
    out.push({ name: f[0], gid, members: f[3]!.split(',').filter(Boolean) });
  }
  return out;
}

/**
 * User and groups from `User` (docker's forms: 'uid', 'uid:gid', 'name', 'name:group', ...): a
 * name is looked up in the image's /etc/passwd (and a group name in /etc/group); a user found
 * there (by name or uid) gets its primary group unless one is given, the groups of /etc/group that
 * list it as a member as supplementary groups, and its home as HOME (runc's GetExecUser). A name
 * the image does not have is an error (as in docker); a number needs no entry (gid 0 then).
 */
export function imageUser(c: RunConfig, stack: LayerStack): { uid: number; gid: number; groups: number[]; home: string | undefined } {
  const spec = c.User === undefined || c.User === null ? '' : c.User;
  if (typeof spec !== 'string' || spec.includes('\0') || spec.length > 512) throw bad('User', 'is not a string');
  if (spec === '') return { uid: 0, gid: 0, groups: [], home: lookupHome(stack, 0) };
  const [u, g] = spec.split(':', 2) as [string, string | undefined];
  const pw = passwd(stack);
  let uid = num(u);
  let entry: PasswdEntry | undefined;
  if (uid === null) {
    entry = pw.find((e) => e.name === u);
    if (!entry) throw new NsboxError({ code: 'ENOENT', step: 'image.user', path: '/etc/passwd', message: `the image's User '${u}' is not in its /etc/passwd (step image.user)` });
    uid = entry.uid;
  } else {
    entry = pw.find((e) => e.uid === uid);
  }
  let gid: number;
  const gr = (g !== undefined && g !== '' && num(g) === null) || entry ? groups(stack) : [];
  if (g === undefined || g === '') gid = entry?.gid ?? 0;
  else if (num(g) !== null) gid = num(g)!;
  else {
    const hit = gr.find((e) => e.name === g);
    if (!hit) throw new NsboxError({ code: 'ENOENT', step: 'image.user', path: '/etc/group', message: `the image's group '${g}' is not in its /etc/group (step image.user)` });
    gid = hit.gid;
  }
  const extra = entry ? gr.filter((e) => e.members.includes(entry.name) && e.gid !== gid).map((e) => e.gid) : [];
  return { uid, gid, groups: [...new Set(extra)].slice(0, 65536), home: entry?.home && entry.home.startsWith('/') ? entry.home : undefined };
}

function lookupHome(stack: LayerStack, uid: number): string | undefined {
  const e = passwd(stack).find((x) => x.uid === uid);
  return e?.home && e.home.startsWith('/') ? e.home : undefined;
}
