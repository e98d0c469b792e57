#!/usr/bin/env node
// etc-files.js: what the generated /etc/hosts, /etc/hostname and /etc/resolv.conf (lib/etc.ts) cost
// a start: run() of /bin/true on the bench's busybox rootfs with them (the default: a shared,
// content-addressed directory written once), with etcFiles: false, and with a directory of the
// container's own (as bridge mode has, or past the per-process limit of shared ones), taking turns
// one round trip each so that drift hits all alike. The per-round differences' medians are the
// costs; the own directory's is mostly writing and removing the three files under the runtime
// directory (/run/nsbox for root), so it depends on that filesystem (tmpfs on most hosts).
//
//   node bench/etc-files.js [--n 300]
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const { summarize, f2, table } = require('./lib/stats');
const { busyboxRootfs } = require('./lib/rootfs');

const args = process.argv.slice(2);
const N = Number(args.includes('--n') ? args[args.indexOf('--n') + 1] : 300);

async function main() {
  const { run } = require('..');
  const { etcBase, setSharedEtcLimit } = require('../dist/etc');
  const { rootfs, reason } = busyboxRootfs();
  if (!rootfs) throw new Error(reason);
  for (const f of ['hosts', 'hostname', 'resolv.conf']) {
    if (!fs.existsSync(`${rootfs}/etc/${f}`)) fs.writeFileSync(`${rootfs}/etc/${f}`, '');
  }
  const times = { on: [], off: [], own: [] };
  const orders = [['off', 'on', 'own'], ['on', 'own', 'off'], ['own', 'off', 'on']];
  for (let i = 0; i < 20 + N; i++) {
    for (const k of orders[i % 3]) {
      setSharedEtcLimit(k === 'own' ? 0 : 64);
      const t0 = performance.now();
      const r = await run({ rootfs, command: ['/bin/true'], ...(k === 'off' ? { etcFiles: false } : {}) });
      const ms = performance.now() - t0;
      if (r.exitCode !== 0) throw new Error(`${k}: exit ${r.exitCode}: ${r.stderr}`);
      if (i >= 20) times[k].push(ms);
    }
  }
  const { on, off, own } = times;
  const diff = on.map((v, i) => v - off[i]);
  const diffOwn = own.map((v, i) => v - off[i]);
  const fsType = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' '))
    .filter((f) => f.length > 4 && etcBase().startsWith(f[4] === '/' ? '/' : f[4] + '/')).sort((a, b) => b[4].length - a[4].length)[0];
  const where = fsType ? fsType[fsType.indexOf('-') + 1] : '?';
  console.log(`run() of /bin/true, ${N} rounds (${process.geteuid() === 0 ? 'root' : 'rootless'}, ${os.cpus().length} CPUs, ${etcBase()} on ${where})\n`);
  console.log(table(['case', 'p50 ms', 'p90 ms'], [
    ['etcFiles: false', f2(summarize(off).p50), f2(summarize(off).p90)],
    ['generated /etc files, shared (default)', f2(summarize(on).p50), f2(summarize(on).p90)],
    ['generated /etc files, own directory', f2(summarize(own).p50), f2(summarize(own).p90)],
    ['difference: shared - false', f2(summarize(diff).p50), f2(summarize(diff).p90)],
    ['difference: own - false', f2(summarize(diffOwn).p50), f2(summarize(diffOwn).p90)],
  ]));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
