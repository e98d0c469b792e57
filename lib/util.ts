// util.ts: small helpers shared by the option checks, the CLI and the seccomp compiler.

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
