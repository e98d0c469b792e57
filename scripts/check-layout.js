#!/usr/bin/env node
// Fails when lib/ has an import cycle (type-only imports aside: they vanish at compile time), or
// when a source file in lib/ or native/ grows past 800 lines (generated tables aside): a cycle hides
// behind lazy require()s and load order, a large file is where copies start. #18 removed both.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const dir = path.join(root, 'lib');
const MAX_LINES = 800;
const GENERATED = new Set(['lib/steps.ts', 'lib/syscalls/x86_64.ts', 'lib/syscalls/aarch64.ts']);
const files = [];
(function walk(d) {
  for (const f of fs.readdirSync(d)) {
    const p = path.join(d, f);
    if (fs.statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.ts')) files.push(p);
  }
})(dir);

const edges = new Map();
const IMPORT = /(?:^|\n)\s*(import|export)\s+(type\s+)?[^;]*?from\s+'(\.[^']+)'|require\('(\.[^']+)'\)|(?:^|\n)\s*import\s+'(\.[^']+)'/g;
for (const f of files) {
  const out = [];
  for (const m of fs.readFileSync(f, 'utf8').matchAll(IMPORT)) {
    if (m[2]) continue;  // import type / export type
    let t = path.join(path.dirname(f), m[3] || m[4] || m[5]);
    if (fs.existsSync(t + '.ts')) t += '.ts';
    else if (fs.existsSync(path.join(t, 'index.ts'))) t = path.join(t, 'index.ts');
    else continue;
    out.push(t);
  }
  edges.set(f, out);
}

const cycles = new Set();
const stack = [];
const onStack = new Set();
const done = new Set();
function visit(n) {
  stack.push(n);
  onStack.add(n);
  for (const m of edges.get(n) || []) {
    if (onStack.has(m)) cycles.add(stack.slice(stack.indexOf(m)).concat(m).map((p) => path.relative(root, p)).join(' -> '));
    else if (!done.has(m)) visit(m);
  }
  stack.pop();
  onStack.delete(n);
  done.add(n);
}
for (const f of files) if (!done.has(f)) visit(f);
const big = [];
const sources = [...files];
(function walk(d) {
  for (const f of fs.readdirSync(d)) {
    const p = path.join(d, f);
    if (fs.statSync(p).isDirectory()) walk(p);
    else if (/\.(cc|h|c)$/.test(p)) sources.push(p);
  }
})(path.join(root, 'native'));
for (const f of sources) {
  const rel = path.relative(root, f);
  const n = fs.readFileSync(f, 'utf8').split('\n').length - 1;
  if (n > MAX_LINES && !GENERATED.has(rel)) big.push(`${rel}: ${n} lines`);
}
let bad = false;
if (cycles.size) {
  console.error(`import cycles in lib/:\n  ${[...cycles].join('\n  ')}`);
  bad = true;
}
if (big.length) {
  console.error(`files over ${MAX_LINES} lines (split them along their seams):\n  ${big.join('\n  ')}`);
  bad = true;
}
if (bad) process.exit(1);
console.log(`lib/ has no import cycle (${files.length} files); no source file in lib/ or native/ is over ${MAX_LINES} lines (${sources.length} files)`);
