#!/usr/bin/env node
// Puts the target verdicts of several result files side by side, to see how far ratios move from
// run to run on this host. Usage: node bench/compare.js [bench/results/bench-*.json ...]
// (default: every full run with all four sections in bench/results).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { table } = require('./lib/stats');

let files = process.argv.slice(2);
if (files.length === 0) {
  const dir = path.join(__dirname, 'results');
  files = fs
    .readdirSync(dir)
    .filter((f) => /^bench-.*\.json$/.test(f) && !f.includes('-quick'))
    .sort()
    .map((f) => path.join(dir, f));
}
const runs = files.map((f) => ({ f, R: JSON.parse(fs.readFileSync(f, 'utf8')) })).filter(({ R }) => R.targets && (process.argv.length > 2 || R.options.sections.length === 4));
if (runs.length === 0) {
  console.error('no result files with targets');
  process.exit(1);
}
const names = [...new Set(runs.flatMap(({ R }) => R.targets.map((t) => t.target.replace(/\d+ idle machines/, 'N idle machines'))))];
const rows = names.map((n) => [
  n,
  ...runs.map(({ R }) => {
    const t = R.targets.find((x) => x.target.replace(/\d+ idle machines/, 'N idle machines') === n);
    if (!t) return '—';
    const m = /^[^ ]+/.exec(t.measured);
    return `${m ? m[0] : t.measured} ${t.met === 'met' ? '✓' : t.met === 'missed' ? '✗' : ''}`.trim();
  }),
]);
console.log(table(['target', ...runs.map(({ R }) => `${R.host.date.slice(0, 16)} (${R.host.commit}, addon ${R.host.build?.addon?.slice(11, 19) ?? '?'})`)], rows));
