// default-root.ts: what of the host goes into the default rootfs (no `rootfs` option): its system
// directories and the parts of its /etc that programs need, looked up once per process. The ops
// that build that root from them are fsops.ts's (buildFsOps).
import * as fs from 'node:fs';

/** Host system directories bound read-only into the default rootfs. */
const SYSTEM_DIRS = ['usr', 'bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];
/** The parts of the host's /etc that programs need and that hold no secrets. */
const SAFE_ETC = [
  'passwd', 'group', 'hosts', 'host.conf', 'nsswitch.conf', 'resolv.conf', 'gai.conf', 'ld.so.cache',
  'ld.so.conf', 'ld.so.conf.d', 'localtime', 'timezone', 'services', 'protocols', 'networks',
  'alternatives', 'os-release', 'debian_version', 'ssl/certs', 'ca-certificates', 'ca-certificates.conf',
  'profile', 'bash.bashrc', 'inputrc', 'mime.types', 'login.defs',
];
type HostEntry = { name: string; kind: 'dir' | 'file' | 'symlink'; source: string; link?: string };

let defaultRootCache: { system: HostEntry[]; etc: HostEntry[] } | undefined;

function lstatOrNull(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p);
  } catch {
    return null;
  }
}

/** What of the host goes into the default rootfs; looked up once per process. */
export function defaultRootEntries(): { system: HostEntry[]; etc: HostEntry[] } {
  if (defaultRootCache) return defaultRootCache;
  const system: HostEntry[] = [];
  for (const name of SYSTEM_DIRS) {
    const p = '/' + name;
    const st = lstatOrNull(p);
    if (!st) continue;
    if (st.isSymbolicLink()) system.push({ name, kind: 'symlink', source: p, link: fs.readlinkSync(p) });
    else if (st.isDirectory()) system.push({ name, kind: 'dir', source: p });
  }
  const etc: HostEntry[] = [];
  for (const name of SAFE_ETC) {
    const p = '/etc/' + name;
    let st = lstatOrNull(p);
    if (!st) continue;
    if (st.isSymbolicLink()) {
      // Keep a link whose target is inside what the container sees (e.g. /usr/share/zoneinfo);
      // bind the resolved file for one that points elsewhere (e.g. /run/systemd/resolve).
      let real: string;
      try {
        real = fs.realpathSync(p);
      } catch {
        continue;
      }
      const top = real.split('/')[1] ?? '';
      if (SYSTEM_DIRS.includes(top)) {
        etc.push({ name, kind: 'symlink', source: p, link: fs.readlinkSync(p) });
        continue;
      }
      try {
        st = fs.statSync(real);
      } catch {
        continue;
      }
      etc.push({ name, kind: st.isDirectory() ? 'dir' : 'file', source: real });
    } else if (st.isDirectory()) etc.push({ name, kind: 'dir', source: p });
    else if (st.isFile()) etc.push({ name, kind: 'file', source: p });
  }
  defaultRootCache = { system, etc };
  return defaultRootCache;
}
