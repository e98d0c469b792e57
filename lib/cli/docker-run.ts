// cli/docker-run.ts: what `nsbox run` does for docker's flags beyond mapping them to options:
// -u NAME looked up in the root's /etc/passwd (the library's own lookup for an image's User), the
// exit status of a failed start (126/127 as docker), and --json (the result as one JSON object).
import { run } from '../index';
import type { AppOptions, User } from '../index';
import { NsboxError } from '../errors';
import { imageRoot } from '../images';
import { imageUser } from '../images/config';
import type { LayerStack } from '../images/merged';
import { UsageError } from './flags';
import { EXIT_NSBOX, exitStatus } from './output';

/** docker's statuses for a command that could not be run. */
export const EXIT_NOT_EXECUTABLE = 126;
export const EXIT_NOT_FOUND = 127;

/**
 * The root whose /etc/passwd a -u NAME is looked up in: the image's layers, the --rootfs
 * directory, or (the default rootfs, which binds the host's /etc/passwd and /etc/group) '/'.
 */
function rootStack(o: AppOptions): { stack: LayerStack; where: string } {
  if (o.image !== undefined) {
    const r = imageRoot(o.image, { storeDir: o.storeDir });
    return { stack: { top: [...r.layers].reverse(), xattrs: r.xattrs }, where: `the image ${o.image}'s` };
  }
  if (o.rootfs !== undefined) return { stack: { top: [o.rootfs], xattrs: 'trusted' }, where: `${o.rootfs}'s` };
  return { stack: { top: ['/'], xattrs: 'trusted' }, where: "the default rootfs's (the host's)" };
}

/**
 * -u SPEC in docker's forms: the uid, its primary gid (unless given), the groups that list the user
 * as a member, and its home (as HOME unless --env gave one), as the library resolves an image's
 * User (lib/images/config.ts imageUser: runc's GetExecUser). An unknown name is a UsageError.
 */
export function resolveUser(spec: string, o: AppOptions): { user: User; home: string | undefined } {
  const { stack, where } = rootStack(o);
  try {
    const u = imageUser({ User: spec }, stack);
    return { user: { uid: u.uid, gid: u.gid, groups: u.groups }, home: u.home };
  } catch (e) {
    if (e instanceof NsboxError && e.step === 'image.user') {
      const file = e.path ?? '/etc/passwd';
      throw new UsageError(`--user '${spec}': no such ${file === '/etc/group' ? 'group' : 'user'} in ${where} ${file}`);
    }
    throw e;
  }
}

/**
 * The status for a start that failed: 127 when the command was not found, 126 when it was found
 * but could not be executed (docker's), 125 for everything else nsbox failed at.
 */
export function startFailureStatus(e: unknown): number {
  if (!(e instanceof NsboxError) || e.step !== 'exec') return EXIT_NSBOX;
  if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return EXIT_NOT_FOUND;
  if (e.code === 'EACCES' || e.code === 'ENOEXEC' || e.code === 'EPERM' || e.code === 'EISDIR' || e.code === 'ETXTBSY') return EXIT_NOT_EXECUTABLE;
  return EXIT_NSBOX;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/**
 * --json: runs to the end with the output captured, prints the result (RunResult, stdout and
 * stderr as UTF-8 strings, plus name and status) as one JSON object, and resolves with the status.
 * With -i, nsbox's stdin is read to its end and given as the input; without, stdin is empty.
 */
export async function runJson(options: AppOptions, name: string | undefined, interactive: boolean, write: (s: string) => void): Promise<number> {
  const input = interactive ? await readStdin() : undefined;
  const r = await run({ ...options, ...(input !== undefined ? { input } : {}), encoding: 'utf8' });
  const status = exitStatus(r);
  write(JSON.stringify({ ...(name !== undefined ? { name } : {}), status, ...r }) + '\n');
  return status;
}
