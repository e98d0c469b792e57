// platform.ts: where nsbox can run at all. The package installs on any platform (so that a
// cross-platform tool can depend on it), but containers are Linux namespaces and cgroups: anywhere
// else probe() says so (supported: false, with the reason) and every start fails with ENOTSUP
// naming the platform, before the addon is loaded (it is never built there). Imports nothing that
// loads the addon: lib/native.ts calls it too.
import { NsboxError } from './errors';

/** The CPUs nsbox supports on Linux (the seccomp filters, the vfork-style clone, the bundled init). */
const LINUX_CPUS: readonly string[] = ['x64', 'arm64'];

/** Why this process cannot start containers, or null on a supported platform (Linux on x64 or arm64). */
export function unsupportedReason(): string | null {
  // Read on each call: a test can fake another platform by overriding process.platform.
  const { platform, arch } = process;
  if (platform !== 'linux') return `nsbox runs on Linux only (this is ${platform}/${arch}): containers need Linux namespaces and cgroups`;
  if (!LINUX_CPUS.includes(arch)) return `nsbox runs on Linux on ${LINUX_CPUS.join(' and ')} only (this is ${platform}/${arch})`;
  return null;
}

/**
 * Throws NsboxError ENOTSUP (step 'platform', no syscall, no path) where nsbox cannot run. `what`
 * names the call that was refused, e.g. 'run()'.
 */
export function requireSupportedPlatform(what: string): void {
  const reason = unsupportedReason();
  if (reason !== null) throw new NsboxError({ code: 'ENOTSUP', step: 'platform', message: `${what}: ${reason} (step platform)` });
}
