// oci/gated.ts: the OCI runtime's start of a container, by the library's own sequence (app.ts
// prepare, launch.ts Launch): the container is set up as a pooled one is (the pool's own last
// stretch: the init binary in pool mode, waiting for its command on `cmdFd`), but it outlives this
// process, is cloned into a cgroup of a known name (so that a later process finds it), and its fds
// 0-2 are this process's own.
import { constants as osConstants } from 'node:os';

import { prepare } from '../app';
import { NsboxError, notSupported } from '../errors';
import type { NativePlan, NativeProcess, SpawnResult } from '../native';
import type { ResolvedAppOptions } from '../options';

export interface Gate {
  /** Where the command comes from (the container's own copy; the caller closes its own). */
  cmdFd: number;
  /** The cgroup's name under nsbox's base. */
  cgroupName: string;
  /** Plan fields the options cannot express (no_new_privs), set after the builder's. */
  adjust?: (plan: NativePlan) => void;
}

/** Starts a gated container (see Gate): returns once it waits for its command; nothing is left behind on failure. */
export function launchGated(o: ResolvedAppOptions, gate: Gate): { pid: number; process: NativeProcess; cgroup: string | null; errFd: number } {
  if (o.tty) throw notSupported('tty', 'a terminal for a gated (OCI) container is not supported yet');
  // 'ignore': no pipes are made for it; the fds are set below.
  const p = prepare({ ...o, stdio: 'ignore' }, false, null, false, gate);
  const { launch } = p;
  let res: SpawnResult;
  try {
    // The caller's own fds 0-2 (the OCI runtime's, which its caller made for the container).
    launch.plan.stdio = [0, 1, 2];
    // It outlives the process that made it (as a machine's PID 1 does).
    launch.plan.pdeathsig = false;
    gate.adjust?.(launch.plan);
    res = launch.spawn(true);
  } catch (e) {
    return launch.abandon(e);
  }
  try {
    const started = launch.settle(res);
    if (started.errFd === undefined) {
      // Exec'd already: the gate was not honoured (cannot happen with a cmdFd).
      started.process.signal(osConstants.signals.SIGKILL);
      started.process.reap();
      throw new NsboxError({ code: 'EPROTO', step: 'spawn', message: 'the gated container did not wait for its command (step spawn)' });
    }
    launch.handOver();
    const cg = launch.cgroup;
    return { pid: started.pid, process: started.process, cgroup: cg ? cg.path : null, errFd: started.errFd };
  } catch (e) {
    return launch.abandon(e);
  }
}
