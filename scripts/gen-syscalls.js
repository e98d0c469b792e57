#!/usr/bin/env node
// gen-syscalls.js: writes lib/syscalls/<arch>.json (system call name -> number) and the matching
// lib/syscalls/<arch>.ts module (the same table, so that `tsc` carries it into dist/ without
// resolveJsonModule) from the kernel headers of this machine. The output is committed, so users and CI
// never need kernel headers; run this again after a kernel header upgrade and review the diff.
//
//   node scripts/gen-syscalls.js [--check]
//
//   x86_64   /usr/include/x86_64-linux-gnu/asm/unistd_64.h (or /usr/include/asm/unistd_64.h)
//   aarch64  /usr/include/asm-generic/unistd.h, run through the C preprocessor with the macros that
//            arm64's own asm/unistd.h defines (the generic table is shared by arm64, riscv, ...)
//
// Headers lag the running kernel (Debian 12 ships 6.1 headers). System calls added since then are
// listed in NEWER below, with the number from the kernel's own syscall table; a header that has one of
// them must agree, or this script fails. `--check` regenerates in memory and fails if the committed
// files differ (for CI on a machine with headers).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const outDir = path.join(__dirname, '..', 'lib', 'syscalls');
const check = process.argv.includes('--check');

/**
 * System calls newer than Linux 6.1's uapi headers, from arch/x86/entry/syscalls/syscall_64.tbl and
 * include/uapi/asm-generic/unistd.h (numbers >= 424 are the same on every architecture; uretprobe and
 * uprobe are x86_64-only). Checked on a 6.18 kernel: 451..469 and 335/336 exist, 470 does not.
 * Deliberately left out: open_tree_attr (467), file_getattr (468), file_setattr (469): newer than
 * Docker's profile, so, as under runc, they answer ENOSYS and libc falls back.
 */
const NEWER = {
  common: {
    cachestat: 451, // 6.5
    fchmodat2: 452, // 6.6
    map_shadow_stack: 453, // 6.6
    futex_wake: 454, // 6.7
    futex_wait: 455,
    futex_requeue: 456,
    statmount: 457, // 6.8
    listmount: 458,
    lsm_get_self_attr: 459, // 6.8
    lsm_set_self_attr: 460,
    lsm_list_modules: 461,
    mseal: 462, // 6.10
    setxattrat: 463, // 6.13
    getxattrat: 464,
    listxattrat: 465,
    removexattrat: 466,
  },
  x86_64: {
    uretprobe: 335, // 6.11
    uprobe: 336, // 6.16
  },
  aarch64: {},
};

/** `#define __NR_name 123` lines of a plain (already preprocessed) header. */
function parseDefines(text) {
  const out = {};
  for (const m of text.matchAll(/^#define[ \t]+__NR_([a-z0-9_]+)[ \t]+(\S+)[ \t]*$/gm)) out[m[1]] = m[2];
  return out;
}

/** Resolves `__NR_x 12`, `__NR_x __NR3264_y`, `__NR3264_y 25` chains to numbers. */
function resolveNumbers(macros) {
  const table = {};
  const lookup = (v, depth = 0) => {
    if (/^\d+$/.test(v)) return Number(v);
    if (/^\(?\d+\)?$/.test(v)) return Number(v.replace(/[()]/g, ''));
    if (depth > 8) return undefined;
    const ref = macros[v];
    return ref === undefined ? undefined : lookup(ref, depth + 1);
  };
  for (const [k, v] of Object.entries(macros)) {
    if (!k.startsWith('__NR_')) continue;
    const name = k.slice(5);
    if (name === 'syscalls' || name === 'arch_specific_syscall') continue;
    const n = lookup(v);
    if (n !== undefined) table[name] = n;
  }
  return table;
}

function x86_64() {
  const candidates = ['/usr/include/x86_64-linux-gnu/asm/unistd_64.h', '/usr/include/asm/unistd_64.h'];
  const file = candidates.find((f) => fs.existsSync(f));
  if (!file) throw new Error(`no x86_64 unistd_64.h (looked at ${candidates.join(', ')}); install linux-libc-dev`);
  const defs = parseDefines(fs.readFileSync(file, 'utf8'));
  const table = {};
  for (const [name, v] of Object.entries(defs)) {
    if (!/^\d+$/.test(v)) throw new Error(`${file}: __NR_${name} is not a plain number (${v})`);
    table[name] = Number(v);
  }
  return { table, source: file };
}

function aarch64() {
  const file = '/usr/include/asm-generic/unistd.h';
  if (!fs.existsSync(file)) throw new Error(`no ${file}; install linux-libc-dev`);
  // arm64's uapi asm/unistd.h defines exactly these before including the generic table.
  const wants = [
    '__ARCH_WANT_RENAMEAT', '__ARCH_WANT_NEW_STAT', '__ARCH_WANT_SET_GET_RLIMIT',
    '__ARCH_WANT_TIME32_SYSCALLS', '__ARCH_WANT_SYS_CLONE3', '__ARCH_WANT_MEMFD_SECRET',
  ];
  // The header includes <asm/bitsperlong.h>; give it a 64-bit one instead of this host's.
  const inc = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-gen-'));
  try {
    fs.mkdirSync(path.join(inc, 'asm'));
    fs.writeFileSync(path.join(inc, 'asm', 'bitsperlong.h'), '#define __BITS_PER_LONG 64\n');
    const cc = process.env.CC || 'cc';
    const out = execFileSync(cc, ['-E', '-dM', '-undef', '-nostdinc', '-I', inc, ...wants.map((w) => `-D${w}`), '-x', 'c', file], {
      encoding: 'utf8',
    });
    const macros = {};
    for (const m of out.matchAll(/^#define[ \t]+(\S+)[ \t]+(.+)$/gm)) macros[m[1]] = m[2].trim();
    const table = resolveNumbers(macros);
    // Sanity: numbers every arm64 program (and nsbox's own init, native/init/nolibc.h) relies on.
    const expect = { read: 63, write: 64, ioctl: 29, fcntl: 25, clone: 220, execve: 221, exit_group: 94, newfstatat: 79, clone3: 435 };
    for (const [k, v] of Object.entries(expect)) {
      if (table[k] !== v) throw new Error(`aarch64: ${k} came out as ${table[k]}, expected ${v}`);
    }
    return { table, source: `${file} (cpp -D${wants.join(' -D')}, __BITS_PER_LONG=64)` };
  } finally {
    fs.rmSync(inc, { recursive: true, force: true });
  }
}

function withNewer(arch, { table, source }) {
  const extra = { ...NEWER.common, ...NEWER[arch] };
  for (const [name, n] of Object.entries(extra)) {
    if (table[name] !== undefined && table[name] !== n) {
      throw new Error(`${arch}: the header says ${name} = ${table[name]}, NEWER says ${n}`);
    }
    const clash = Object.entries(table).find(([k, v]) => v === n && k !== name);
    if (clash) throw new Error(`${arch}: NEWER ${name} = ${n} clashes with ${clash[0]}`);
    table[name] = n;
  }
  return { table, source };
}

function render(arch, { table, source }) {
  const sorted = Object.entries(table).sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
  const obj = Object.fromEntries(sorted);
  const json = JSON.stringify(obj, null, 1) + '\n';
  const ts =
    `// Generated by scripts/gen-syscalls.js from ${source}\n` +
    `// plus the newer system calls listed in that script. Do not edit.\n` +
    `const table: Readonly<Record<string, number>> = ${JSON.stringify(obj)};\n` +
    `export default table;\n`;
  return { json, ts };
}

let stale = false;
for (const [arch, make] of [['x86_64', x86_64], ['aarch64', aarch64]]) {
  const { json, ts } = render(arch, withNewer(arch, make()));
  const files = [[path.join(outDir, `${arch}.json`), json], [path.join(outDir, `${arch}.ts`), ts]];
  for (const [f, text] of files) {
    const old = fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : null;
    if (check) {
      if (old !== text) {
        console.error(`${path.relative(process.cwd(), f)} is out of date`);
        stale = true;
      }
    } else if (old !== text) {
      fs.mkdirSync(outDir, { recursive: true });
      fs.writeFileSync(f, text);
      console.log(`wrote ${path.relative(process.cwd(), f)} (${Object.keys(JSON.parse(json)).length} system calls)`);
    }
  }
}
if (stale) process.exit(1);
