// A user's TypeScript against the package's published types (dist/index.d.ts, through the package's
// own "exports"): every line must compile, and every @ts-expect-error must be an error. Compiled by
// test/51-types.test.js; nothing here runs.
import {
  run, spawn, createPool, Machine, NsboxError,
  type AppOptions, type BindMount, type TmpfsMount, type Mount, type CapabilitiesOption, type ContainerEvents,
  type DeviceMapping, type ExitInfo, type IdMapEntry, type ImageRunOptions, type UsernsOption, type User,
  type Limits, type NetworkOptions, type PortMapping, type SeccompOption, type OutputEncoding, type RunOptions,
  type RunResult, type RunResultWithCounts, type MachineOptions, type MachineExecOptions, type MachineRunOptions,
  type PoolOptions, type PoolRunOptions, type NsboxErrorCode, type NsboxErrnoCode, type NsboxImageErrorCode,
  type NsboxErrorFields, type PullOptions, type ImageInfo, type Rlimits, type RlimitName, type RlimitValue, type RlimitAmount, type ProcMode,
} from 'nsbox';

// Option types a user builds up separately and then passes.
const idmap: IdMapEntry[] = [{ containerID: 0, hostID: 100000, size: 65536 }];
const userns: UsernsOption = { uidMap: idmap, gidMap: idmap };
const bind: BindMount = { type: 'bind', source: '/srv', target: '/srv', readonly: true };
const tmp: TmpfsMount = { type: 'tmpfs', target: '/scratch', size: '64M' };
const mounts: Mount[] = [bind, tmp];
const caps: CapabilitiesOption = { drop: ['ALL'] };
const devices: DeviceMapping[] = [{ path: '/dev/fuse' }];
const user: User = { uid: 1000, gid: 1000 };
const limits: Limits = { memory: '256M', pids: 64 };
const net: NetworkOptions = { ports: [{ host: 8080, container: 80 } satisfies PortMapping] };
const seccomp: SeccompOption = 'default';
const img: ImageRunOptions = { image: 'busybox', pull: 'never' };
const unlimited: RlimitAmount = 'unlimited';
const core: RlimitValue = { soft: 0, hard: unlimited };
const which: RlimitName = 'nofile';
const rlimits: Rlimits = { [which]: 4096, core, stack: Infinity };
const opts: AppOptions = { ...img, command: ['true'], userns, mounts, capabilities: caps, devices, user, limits, rlimits, network: net, seccomp };
const mopts: MachineOptions = { name: 'm', rootfs: '/srv/rootfs', userns, mounts, capabilities: caps, rlimits };
const xopts: MachineExecOptions = { rlimits: { nofile: { soft: 10, hard: 20 } } };
// @ts-expect-error an unknown resource
const badRlimit: Rlimits = { nofiles: 10 };
// @ts-expect-error a soft limit alone is not a value (both are given)
const softOnly: RlimitValue = { soft: 10 };
const proc: ProcMode = 'none';
const noProc: AppOptions = { command: ['true'], proc };
const noProcMachine: MachineOptions = { name: 'm', rootfs: '/srv/rootfs', proc: 'fresh' };
// @ts-expect-error proc is 'fresh' or 'none': the host's /proc is never offered
const hostProc: AppOptions = { command: ['true'], proc: 'host' };
// @ts-expect-error a bind mount needs its source
const noSource: BindMount = { type: 'bind', target: '/x' };

export async function outputs(): Promise<void> {
  // run(): Buffers by default, strings with an encoding.
  const b = await run(opts);
  const bufOut: Buffer = b.stdout;
  const s = await run({ ...opts, encoding: 'utf8' });
  const strOut: string = s.stdout;
  const strErr: string = s.stderr;
  const dropped: number = s.stdoutDropped;
  // @ts-expect-error with an encoding the output is a string, not a Buffer
  const notBuf: Buffer = s.stdout;
  const asBuffer: Buffer = (await run({ ...opts, encoding: 'buffer' })).stdout;
  const enc: OutputEncoding = Math.random() > 0.5 ? 'latin1' : 'buffer';
  const either: Buffer | string = (await run({ ...opts, encoding: enc })).stdout;
  const ro: RunOptions = { command: ['true'], encoding: 'hex' };
  // @ts-expect-error not an encoding
  await run({ command: ['true'], encoding: 'utf-9' });
  // @ts-expect-error spawn() hands back streams: encoding belongs to run()
  spawn({ command: ['true'], encoding: 'utf8' });
  const r1: RunResult = b;
  const r2: RunResult<string> = s;
  const r3: RunResultWithCounts<string> = s;

  // pool.run and machine.run follow run().
  const popts: PoolOptions = { size: 2, rootfs: '/srv/rootfs' };
  const pool = createPool(popts);
  const prun = { timeout: 1000 } satisfies PoolRunOptions;
  const pb: Buffer = (await pool.run(['true'], prun)).stdout;
  // Options typed only as PoolRunOptions (encoding: any OutputEncoding) give either.
  const wide: PoolRunOptions = {};
  const pw: Buffer | string = (await pool.run(['true'], wide)).stdout;
  const ps: string = (await pool.run(['true'], { encoding: 'utf8' })).stdout;
  const m = await Machine.start(mopts);
  const eo: MachineExecOptions = { tty: false };
  const mb: Buffer = (await m.run(['true'], eo)).stdout;
  const mr: MachineRunOptions = { encoding: 'utf8' };
  const ms: string | Buffer = (await m.run(['true'], mr)).stdout;
  const ms2: string = (await m.run(['true'], { encoding: 'base64' })).stderr;

  // Disposal: all three have Symbol.asyncDispose.
  await pool[Symbol.asyncDispose]();
  await m[Symbol.asyncDispose]();
  const c = spawn(opts);
  await c[Symbol.asyncDispose]();
  void [pw, bufOut, strOut, strErr, dropped, notBuf, asBuffer, either, ro, r1, r2, r3, pb, ps, mb, ms, ms2, noSource, xopts, badRlimit, softOnly, noProc, noProcMachine, hostProc];
}

export function events(): void {
  const c = spawn({ command: ['sleep', '1'] });
  c.on('exit', (info) => {
    const code: number | null = info.exitCode;
    const oom: boolean = info.oomKilled;
    void [code, oom];
  });
  c.once('oom', ({ count }) => {
    const n: number = count;
    void n;
  });
  const onExit = (info: ExitInfo): void => void info;
  c.off('exit', onExit).removeListener('exit', onExit).addListener('exit', onExit);
  // @ts-expect-error 'exit' hands over an ExitInfo, not a string
  c.on('exit', (info: string) => void info);
  // @ts-expect-error 'oom' hands over { count }
  c.on('oom', (e: { pid: number }) => void e);
  // Other events (EventEmitter's own) still type-check.
  c.on('error', (e: Error) => void e);
  const args: ContainerEvents['exit'] = [{ exitCode: 0, signal: null, timedOut: false, oomKilled: false, durationMs: 1, stats: { cpuUsageUs: 0 } }];
  void args;
}

export function errors(e: unknown): string {
  if (!(e instanceof NsboxError)) return '';
  // The documented codes are literals (a plain string type would make these Extracts never)...
  const enoent: Extract<NsboxErrorCode, 'ENOENT'> = 'ENOENT';
  const auth: Extract<NsboxErrorCode, 'ERR_IMAGE_AUTH'> = 'ERR_IMAGE_AUTH';
  const errno: NsboxErrnoCode = 'ENOTSUP';
  const image: NsboxImageErrorCode = 'ERR_IMAGE_TOO_LARGE';
  // @ts-expect-error not a documented errno name
  const bogus: NsboxErrnoCode = 'ENOPE';
  // ...and any other errno name (or a string from elsewhere) is still a code, both ways.
  const other: NsboxErrorCode = 'EHOSTUNREACH';
  const fromString: NsboxErrorCode = String(e.errno);
  const toString: string = e.code;
  const fields: NsboxErrorFields = { code: 'EPERM', step: 'exec' };
  const made = new NsboxError({ ...fields, code: other });
  void [enoent, auth, errno, image, bogus, fromString, made];
  switch (e.code) {
    case 'ENOENT':
    case 'ERR_IMAGE_UNKNOWN':
      return 'missing';
    default:
      return toString;
  }
}

export async function images(): Promise<void> {
  const po: PullOptions = { platform: 'linux/amd64' };
  const info: ImageInfo = await (await import('nsbox')).pull('busybox', po);
  void info;
}
