// errors.ts: the two kinds of failure a caller sees.
//  - Bad options: TypeError / RangeError with Node's own codes, thrown before anything starts.
//  - Everything else: NsboxError, carrying errno name, number, syscall, the setup step and a path.
import { constants } from 'node:os';

const ERRNO_NAMES: Map<number, string> = new Map();
for (const [name, num] of Object.entries(constants.errno)) {
  if (!ERRNO_NAMES.has(num)) ERRNO_NAMES.set(num, name);
}
// os.constants.errno lists ENOTSUP and EOPNOTSUPP with one value on Linux; prefer the name the
// contract uses for missing host features.
ERRNO_NAMES.set(constants.errno.ENOTSUP, 'ENOTSUP');

/** The errno name for a number (`'ENOENT'`), or `'E<n>'` when unknown. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

/**
 * The errno names nsbox reports (README "Errors", docs/errors.md): the ones it raises itself and
 * the kernel's answers its documented steps meet. Any other errno name can still come through
 * (NsboxErrorCode's `string` fallback).
 */
export type NsboxErrnoCode =
  | 'E2BIG' | 'EACCES' | 'EADDRINUSE' | 'EADDRNOTAVAIL' | 'EAFNOSUPPORT' | 'EAGAIN' | 'EBUSY'
  | 'ECONNREFUSED' | 'ECONNRESET' | 'EDOM' | 'EDQUOT' | 'EEXIST' | 'EINVAL' | 'EIO' | 'ELOOP' | 'EMFILE'
  | 'ENOENT' | 'ENOSPC' | 'ENOSYS' | 'ENOTDIR' | 'ENOTEMPTY' | 'ENOTSUP' | 'ENOTTY' | 'EOPNOTSUPP'
  | 'EOVERFLOW' | 'EPERM' | 'EPIPE' | 'EPROTO' | 'EROFS' | 'ESHUTDOWN' | 'ESRCH' | 'ESTALE' | 'ETIMEDOUT'
  | 'EXDEV';

/** The image functions' own codes (docs/images.md, "Errors"). */
export type NsboxImageErrorCode =
  | 'ERR_IMAGE_UNKNOWN' | 'ERR_IMAGE_TAG_UNKNOWN' | 'ERR_IMAGE_BLOB_UNKNOWN' | 'ERR_IMAGE_AUTH'
  | 'ERR_IMAGE_RATE_LIMITED' | 'ERR_IMAGE_DIGEST_MISMATCH' | 'ERR_IMAGE_MEDIA_TYPE' | 'ERR_IMAGE_PLATFORM'
  | 'ERR_IMAGE_TOO_LARGE' | 'ERR_IMAGE_LAYER_UNSAFE' | 'ERR_IMAGE_LAYER_INVALID' | 'ERR_IMAGE_LAYER_UNSUPPORTED'
  | 'ERR_IMAGE_REGISTRY';

/**
 * `NsboxError['code']`: the documented codes as literals (editors complete them, a `switch` over them
 * is checked), `'ERR_NSBOX_ADDON'` (the native addon or nsbox-init is missing, for another arch, or
 * does not load: the message says what to run), and any other string, since an errno name nsbox does not list (or `E<n>` for an
 * unnamed errno) can come from the kernel. `(string & {})` keeps the literals from being absorbed
 * into `string`; a plain string is still assignable, and the code still is one.
 */
export type NsboxErrorCode = NsboxErrnoCode | NsboxImageErrorCode | 'ERR_NSBOX_ADDON' | (string & {});

export interface NsboxErrorFields {
  code: NsboxErrorCode;
  errno?: number;
  syscall?: string;
  step: string;
  path?: string;
  message?: string;
}

/** Any failure after the options were accepted: a kernel refusal, a missing host feature, ... */
export class NsboxError extends Error {
  /**
   * errno name such as `'ENOENT'`, `'ENOTSUP'` for a missing kernel or host feature, or an image
   * error's `'ERR_IMAGE_*'` (NsboxErrorCode lists the documented ones).
   */
  readonly code: NsboxErrorCode;
  /** The (positive) errno number. */
  readonly errno: number;
  /** The system call that failed, where there was one. */
  readonly syscall: string | undefined;
  /** Which part of the setup failed, e.g. `'rootfs.pivot'`, `'cgroup.limits'`, `'exec'`. */
  readonly step: string;
  /** The path involved, where there is one. */
  readonly path: string | undefined;

  constructor(f: NsboxErrorFields) {
    const errno = f.errno ?? (constants.errno as Record<string, number>)[f.code] ?? 0;
    const head = f.syscall ? (f.path !== undefined ? `${f.syscall} '${f.path}'` : f.syscall) : f.path ?? '';
    super(f.message ?? `${head ? head + ': ' : ''}${f.code} (step ${f.step})`);
    this.name = 'NsboxError';
    this.code = f.code;
    this.errno = errno;
    this.syscall = f.syscall;
    this.step = f.step;
    this.path = f.path;
  }
}

/** A host that cannot give what was asked for: never a silent downgrade. */
export function notSupported(step: string, what: string, path?: string): NsboxError {
  return new NsboxError({ code: 'ENOTSUP', step, path, message: `${what} (step ${step})` });
}

/** An NsboxError from a Node fs/child error (which carries code/errno/syscall/path). */
export function fromSystemError(e: unknown, step: string, path?: string): NsboxError {
  const se = e as NodeJS.ErrnoException;
  const errno = typeof se.errno === 'number' ? Math.abs(se.errno) : 0;
  const code = se.code ?? errnoName(errno);
  return new NsboxError({ code, errno, syscall: se.syscall, step, path: path ?? se.path });
}

type Ctor = new (message: string) => Error;
function coded(C: Ctor, code: string, message: string): Error {
  const e = new C(message) as Error & { code: string };
  e.code = code;
  return e;
}

export function invalidType(name: string, expected: string, actual: unknown): TypeError {
  return coded(
    TypeError,
    'ERR_INVALID_ARG_TYPE',
    `The "${name}" option must be ${expected}. Received ${describe(actual)}`,
  ) as TypeError;
}

export function invalidValue(name: string, actual: unknown, reason: string): TypeError {
  return coded(
    TypeError,
    'ERR_INVALID_ARG_VALUE',
    `The "${name}" option ${reason}. Received ${describe(actual)}`,
  ) as TypeError;
}

export function outOfRange(name: string, range: string, actual: unknown): RangeError {
  return coded(
    RangeError,
    'ERR_OUT_OF_RANGE',
    `The value of "${name}" is out of range. It must be ${range}. Received ${describe(actual)}`,
  ) as RangeError;
}

export function badRangeValue(name: string, actual: unknown, reason: string): RangeError {
  return coded(
    RangeError,
    'ERR_INVALID_ARG_VALUE',
    `The "${name}" option ${reason}. Received ${describe(actual)}`,
  ) as RangeError;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return `'${v.length > 60 ? v.slice(0, 57) + '...' : v}'`;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return `${typeof v} (${String(v)})`;
  if (typeof v === 'function') return 'function';
  if (Array.isArray(v)) return 'an array';
  return `an instance of ${(v as object).constructor?.name ?? 'Object'}`;
}
