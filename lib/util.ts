// util.ts: small helpers shared by the option checks, the CLI and the seccomp compiler.
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
