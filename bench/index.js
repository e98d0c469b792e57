#!/usr/bin/env node
// The nsbox benchmark suite: nsbox beside child_process (the floor) and its peers (bwrap, crun,
// runc, systemd-nspawn), all measured in the same run, with warm-ups, p50/p90/p99 and ratios.
// Absolute times depend on the machine; the ratios from one run are what hold.
//
//   node bench/index.js            full run (3–5 min on a 2-core host; must stay under 15)
//   node bench/index.js --quick    smoke run (under a minute; must stay under 2)
//
// Options (each overrides the full/quick default):
//   --n N                 round trips per peer (bwrap, crun, runc, nspawn), sequential (200; quick 30)
//   --n-fast N            round trips of nsbox, child_process and the kernel floor (1000; quick 30)
//   --warmup N            warm-up round trips per contender (20; quick 5)
//   --total N             containers per throughput run (2000; quick 160)
//   --concurrency N       throughput concurrency (16)
//   --rounds N            throughput chunks per contender, contenders taking turns (4; quick 2)
//   --starts N            machine starts for start→first exec (30; quick 5)
//   --exec-n N            exec round trips into a running machine (200; quick 30)
//   --idle 0,100,500      idle machine counts for the growth test (quick 0,10,50)
//   --mem-machines N      idle machines the memory figure is taken from (200; quick 20; 0 = skip)
//   --mounts 1,10,100     bind-mount counts for the growth test
//   --growth-n N          round trips per growth level (200; quick 30)
//   --boots N             systemd boots (to ready, plus stop) per contender, nsbox and nspawn (5; quick 1)
//   --sections a,b        any of roundtrip,throughput,machine,systemd,growth,images (default all)
//   --peers a,b           any of child_process,nsbox,nsbox_init,nsbox_host,nsbox_pool,nsbox_pool_ready,child_process_ignore,nsbox_ignore,floor,
//                         bwrap,crun,runc,nspawn (default: all)
//   --out FILE            JSON output (default bench/results/bench-<date>.json; a .md is written beside it)
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { setTimeout: sleep } = require('node:timers/promises');

const { f1, table, now } = require('./lib/stats');
const { busyboxRootfs, signature, benchDir } = require('./lib/rootfs');
const { contenders, preflight, hybridUnifiedMounted, V2_UNIFIED_HYBRID } = require('./lib/peers');
const { cpuAccount, settle } = require('./lib/measure');
const { cleanups, cleanupAll, cleanupOnSignals } = require('./lib/cleanup');
const { hostInfo, leftovers } = require('./lib/host');
const { targets } = require('./sections/targets');

// ---------------------------------------------------------------------------------------------
// Options

const argv = process.argv.slice(2);
const has = (f) => argv.includes(f);
const val = (f) => {
  const i = argv.indexOf(f);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${f} needs a value`);
  return v;
};
const num = (f, d) => {
  const v = val(f);
  if (v === undefined) return d;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${f}: not a whole number: ${v}`);
  return n;
};
const list = (f, d) => {
  const v = val(f);
  return v === undefined ? d : v.split(',').map((s) => s.trim()).filter(Boolean);
};
const KNOWN = ['--quick', '--help', '-h', '--n', '--n-fast', '--warmup', '--total', '--concurrency', '--rounds', '--starts', '--exec-n', '--idle', '--mem-machines', '--mounts', '--growth-n', '--boots', '--sections', '--peers', '--out'];
for (let i = 0; i < argv.length; i++) {
  if (!argv[i].startsWith('-')) continue;
  if (!KNOWN.includes(argv[i])) {
    console.error(`unknown option ${argv[i]} (see --help)`);
    process.exit(2);
  }
}
if (has('--help') || has('-h')) {
  const src = fs.readFileSync(__filename, 'utf8').split('\n');
  console.log(src.slice(1, src.findIndex((l) => l.startsWith("'use strict'"))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
  process.exit(0);
}
const quick = has('--quick');
const O = {
  quick,
  n: num('--n', quick ? 30 : 200),
  // nsbox, child_process and the kernel floor take 1 to 3 ms a round trip: more of them makes the
  // headline ratio's p50s tighter (about ±3% each at 200 on this 2-CPU host, ±1.5% at 1000).
  nFast: num('--n-fast', quick ? 30 : 1000),
  warmup: num('--warmup', quick ? 5 : 20),
  total: num('--total', quick ? 160 : 2000),
  concurrency: num('--concurrency', 16),
  rounds: num('--rounds', quick ? 2 : 4),
  starts: num('--starts', quick ? 5 : 30),
  execN: num('--exec-n', quick ? 30 : 200),
  idle: list('--idle', quick ? ['0', '10', '50'] : ['0', '100', '500']).map(Number),
  memMachines: num('--mem-machines', quick ? 20 : 200),
  mounts: list('--mounts', ['1', '10', '100']).map(Number),
  growthN: num('--growth-n', quick ? 30 : 200),
  boots: num('--boots', quick ? 1 : 5),
  sections: list('--sections', ['roundtrip', 'throughput', 'machine', 'systemd', 'growth', 'images']),
  peers: list('--peers', undefined),
  out: val('--out'),
};
if (!O.idle.includes(0)) O.idle.unshift(0);
O.idle.sort((a, b) => a - b);

const log = (...a) => console.error('[bench]', ...a);
cleanupOnSignals(log);

// The sections, one file each, in the order they run: 1, 3, 5, 6, 4, then 2. Thousands of containers
// leave the kernel tearing network namespaces down for a while afterwards; throughput goes last so
// it cannot slow the others.
const SECTIONS = ['roundtrip', 'machine', 'systemd', 'images', 'growth', 'throughput'].map((k) => require(`./sections/${k}`));

// ---------------------------------------------------------------------------------------------

async function main() {
  const t0 = now();
  let nsbox;
  try {
    nsbox = require('..');
  } catch (e) {
    console.error(`cannot load nsbox (${e.message}); build it first: npm install (or npm run build)`);
    process.exit(1);
  }
  if (process.getuid() !== 0) console.error('note: nsbox and the peers need root; expect failures');
  const { rootfs, reason } = busyboxRootfs();
  if (!rootfs) {
    console.error(`cannot build the benchmark rootfs: ${reason}`);
    process.exit(1);
  }
  const workDir = path.join(benchDir, '.work');
  fs.mkdirSync(workDir, { recursive: true });
  const rootfsSig = signature(rootfs);
  const mountLinesBefore = fs.readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n').length;
  const hybridBefore = hybridUnifiedMounted();
  const tag = `nsb-${process.pid}`;

  const host = await hostInfo(nsbox);
  if (os.loadavg()[0] > 0.5 * host.nproc) {
    console.error(`warning: load average ${os.loadavg()[0].toFixed(2)} on ${host.nproc} CPUs: something else is running; absolute times will be noisy (ratios from the interleaved sections hold better)`);
  }
  const R = { options: O, host };
  const md = [];
  const cmd = `node bench/index.js${argv.length ? ' ' + argv.join(' ') : ''}`;
  md.push(`# nsbox benchmark${O.quick ? ' (quick)' : ''}\n`);
  md.push(`Command: \`${cmd}\` — ${host.date}\n`);
  md.push(
    table(
      ['machine', ''],
      [
        ['CPU', `${host.cpuModel} × ${host.nproc}`],
        ['kernel', host.kernel],
        ['node', host.node],
        ['memory', `${host.memTotalMiB} MiB`],
        ['cgroups', host.cgroup ?? 'n/a'],
        ['load average at start', host.loadavg],
        ['nsbox commit', `${host.commit} (dirty: ${host.dirty})`],
        ['nsbox build', `addon built ${host.build.addon}, dist ${host.build.dist}${host.build.forkClone ? ', NSBOX_FORK_CLONE set' : ''}`],
        ...Object.entries(host.peers).map(([k, v]) => [k, v ?? 'not installed']),
      ],
    ),
  );

  // The contenders and their preflight: a peer that cannot run here is skipped, with the reason.
  let cs = contenders({ nsbox, rootfs, workDir, only: O.peers, poolSize: O.concurrency });
  const notes = [];
  for (const c of cs) {
    if (c.cleanup) cleanups.push(c.cleanup);
    if (c.skip) continue;
    if (c.prepare) c.prepare();
    if (c.argvFor) {
      const pf = preflight(c.argvFor(c.exe, 0));
      if (!pf.ok) c.skip = `does not run here: ${pf.message}`;
    } else {
      try {
        await c.run(0);
      } catch (e) {
        c.skip = `does not run here: ${e.message}`;
      }
    }
    if (c.note && !c.skip) notes.push(`- ${c.label}: ${c.note}`);
  }
  for (const c of cs.filter((c) => c.skip)) {
    notes.push(`- **${c.label} skipped**: ${c.skip}`);
    console.log(`note: ${c.label} skipped: ${c.skip}`);
  }
  cs = cs.filter((c) => !c.skip);
  R.skipped = notes;

  const ctx = { O, log, settle: (maxMs = O.quick ? 5000 : 60000) => settle(maxMs), nsbox, rootfs, cs, R };
  try {
    const load = async (what) => {
      const q = await ctx.settle();
      const l = os.loadavg().map((x) => x.toFixed(2)).join(' ');
      (R.settle ??= []).push({ what, ...q, loadavg: l, at: new Date().toISOString() });
      return `\n_Before this section: host CPUs busy ${q.busyCpus.toFixed(2)} of ${host.nproc} (over 500 ms, after waiting ${f1(q.waitedMs / 1000)} s for the host to settle${q.quiet ? '' : ' — it did not'}); load average ${l}_\n`;
    };
    const accounted = async (key, fn) => {
      const end = cpuAccount();
      const out = await fn();
      const a = end();
      (R.cpu ??= {})[key] = a;
      return `${out}\n\n_CPU during this section: ${f1(a.busyCpuS)} CPU-s busy in ${f1(a.wallS)} s wall; this process and its children ${f1(a.ownCpuS)} CPU-s; everything else (other processes, and kernel threads, some working for these containers) ${f1(a.otherCpuS)} CPU-s._`;
    };
    // Each section: its heading, how busy the host was before it, its tables and the CPU it took,
    // and its notes; printed in the order of their numbers.
    const parts = [];
    for (const s of SECTIONS) {
      if (!O.sections.includes(s.key)) continue;
      const p = [`\n## ${s.number}. ${s.title(O)}\n`];
      p.push(await load(s.key));
      p.push(await accounted(s.key, () => s.run(ctx)));
      if (s.notes) p.push(s.notes(ctx));
      parts[s.number] = p;
    }
    for (const p of parts) if (p) md.push(...p);
    md.push(`\n_Sections ran in the order ${SECTIONS.map((s) => s.number).join(', ')}: throughput last, so the kernel\'s asynchronous teardown of its thousands of network namespaces cannot slow the others._`);
  } finally {
    const notesLeft = await cleanupAll();
    if (notesLeft.length) R.cleanupNotes = notesLeft;
  }

  // Checks: the fixture was not written, the host's cgroup2 mount is intact, nothing is left.
  const checks = [];
  const rootfsUnchanged = signature(rootfs) === rootfsSig;
  checks.push(`- busybox rootfs tree unchanged by the runs: ${rootfsUnchanged ? 'yes' : '**NO**'}`);
  if (hybridBefore) checks.push(`- host mount ${V2_UNIFIED_HYBRID} still mounted after the crun runs: ${hybridUnifiedMounted() ? 'yes' : '**NO**'}`);
  await sleep(200);
  const left = [...leftovers(tag, mountLinesBefore), ...(R.cleanupNotes || [])];
  checks.push(`- left behind (cgroups, runc/crun state, child processes, mounts): ${left.length ? '**' + left.join('; ') + '**' : 'nothing'}`);
  R.checks = { rootfsUnchanged, hostUnifiedMounted: hybridBefore ? hybridUnifiedMounted() : null, leftovers: left };

  const T = targets(R);
  R.targets = T;
  md.push('\n## Targets\n');
  md.push(table(['target', 'measured (this run)', 'verdict'], T.map((t) => [t.target, t.measured, t.met])));
  if (notes.length) md.push('\n## Notes\n\n' + notes.join('\n'));
  md.push('\n## Checks\n\n' + checks.join('\n'));
  R.elapsedS = (now() - t0) / 1000;
  md.push(`\nTotal time: ${f1(R.elapsedS)} s; load average at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);

  const text = md.join('\n');
  console.log(text);
  const file = O.out ? path.resolve(O.out) : path.join(benchDir, 'results', `bench-${host.date.replace(/[:.]/g, '-')}${O.quick ? '-quick' : ''}.json`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(R, null, 2));
  fs.writeFileSync(file.replace(/\.json$/, '') + '.md', text + '\n');
  console.log(`\nwritten: ${path.relative(process.cwd(), file)} (and .md)`);
}

main().catch(async (e) => {
  console.error(e);
  await cleanupAll();
  process.exit(1);
});
