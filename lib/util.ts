// util.ts: small helpers shared by the option checks, the CLI and the seccomp compiler.
import { constants as osConstants } from 'node:os';

import { invalidType, invalidValue } from './errors';

/** Levenshtein distance, for "did you mean" hints. */
export function editDistance(a: string, b: string, ignoreCase = false): number {
  if (ignoreCase) {
    a = a.toLowerCase();
    b = b.toLowerCase();
  }
  const dp: number[] = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}

/**
 * The elements of a user array, each read exactly once by index (a getter cannot change a value
 * between its check and its use), with holes refused: what is returned is what was checked.
 */
export function arrayElements(name: string, v: unknown, expected: string): unknown[] {
  if (!Array.isArray(v)) throw invalidType(name, expected, v);
  const n = v.length;
  const out: unknown[] = new Array(n);
  for (let i = 0; i < n; i++) {
    if (!(i in v)) throw invalidValue(name, v, `must not have holes (index ${i} is empty)`);
    out[i] = v[i];
  }
  return out;
}

/** Throws on any key not in `known`, suggesting the nearest known name. */
export function rejectUnknownKeys(obj: object, known: readonly string[], where: string): void {
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue;
    let best: string | undefined;
    let bestD = Infinity;
    for (const k of known) {
      const d = editDistance(key, k, true);
      if (d < bestD) {
        bestD = d;
        best = k;
      }
    }
    const hint = best && bestD <= Math.max(2, Math.floor(key.length / 3)) ? `; did you mean "${where}${best}"?` : '';
    throw invalidValue(`${where}${key}`, (obj as Record<string, unknown>)[key], `is not a known option${hint}`);
  }
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export const SIGNAL_NAMES = new Map<number, string>(Object.entries(osConstants.signals).map(([k, v]) => [v, k]));

export function signalNumber(sig: string | number, name = 'signal'): number {
  if (typeof sig === 'number' && Number.isInteger(sig) && sig > 0 && sig < 65) return sig;
  if (typeof sig === 'string') {
    const n = (osConstants.signals as Record<string, number>)[sig.startsWith('SIG') ? sig : 'SIG' + sig];
    if (n !== undefined) return n;
  }
  throw invalidValue(name, sig, "must be a signal name such as 'SIGTERM' or a signal number");
}

export function abortError(signal: AbortSignal): Error {
  const e = new Error('The operation was aborted', { cause: signal.reason }) as Error & { code: string };
  e.name = 'AbortError';
  e.code = 'ABORT_ERR';
  return e;
}
