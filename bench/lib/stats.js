// Small statistics and formatting helpers shared by the benchmark sections.
'use strict';

/** Nearest-rank percentile of an ascending array. */
function pct(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** p50/p90/p99 (nearest rank), mean, min and max of samples in ms. */
function summarize(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  return { n: s.length, p50: pct(s, 50), p90: pct(s, 90), p99: pct(s, 99), mean, min: s[0], max: s[s.length - 1] };
}

const f2 = (x) => (x === undefined || x === null || Number.isNaN(x) ? 'n/a' : x.toFixed(2));
const f1 = (x) => (x === undefined || x === null || Number.isNaN(x) ? 'n/a' : x.toFixed(1));
const ratio = (a, b) => (a === undefined || b === undefined || !b ? NaN : a / b);
const fx = (x) => (Number.isNaN(x) || x === undefined ? 'n/a' : `${x.toFixed(2)}×`);

/** A Markdown table from a header row and rows (arrays of cells). */
function table(header, rows) {
  const esc = (c) => String(c).replace(/\|/g, '\\|');
  return [
    `| ${header.map(esc).join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

const now = () => performance.now();

module.exports = { pct, summarize, f1, f2, fx, ratio, table, now };
