#!/usr/bin/env node
// host-mounts.js: how the round trip grows with the number of mounts the host has, with the mount
// namespace template (the default for containers without a user namespace: native/core/child.cc,
// mount_in_template) and without it (CLONE_NEWNS, which copies every host mount, and pivot_root,
// which detaches them all again), beside child_process and bwrap (which copies them too).
//
//   node bench/host-mounts.js [--n 400] [--extra 0,200,1000] [--opts JSON]
//
// --opts is merged into nsbox's run() options (e.g. '{"network":"host"}'; '{"rootfs":null}' for the
// default rootfs, '{"mounts":[...]}'); child_process and bwrap do not change with it.
//
// For each count it re-runs itself in a private mount namespace of its own (`unshare -m
// --propagation private`, root) where it first mounts that many small tmpfs on a scratch
// directory: the host's own mount table is not touched. In each run the contenders take turns, one
// round trip each (the two nsbox modes in the same process, the plan of every other run told not
// to use the template), so drift hits them alike. Prints a Markdown table of p50s and ratios.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { summarize, f2, fx, table } = require('./lib/stats');
const { busyboxRootfs } = require('./lib/rootfs');
const { spawnWait, which } = require('./lib/peers');

const args = process.argv.slice(2);
const opt = (name, d) => (args.includes(name) ? args[args.indexOf(name) + 1] : d);
const N = Number(opt('--n', 400));
const EXTRA = String(opt('--extra', '0,200,1000')).split(',').map(Number);
const OPTS = JSON.parse(opt('--opts', '{}'));

async function inner(extra) {
  const { native } = require('../dist/native');
  const nsbox = require('..');
  const { rootfs, reason } = busyboxRootfs();
  if (!rootfs) throw new Error(reason);
  const scratch = process.env.NSBOX_HM_DIR;
  for (let i = 0; i < extra; i++) {
    const d = path.join(scratch, String(i));
    fs.mkdirSync(d);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4k', 'nsbox-hm', d]);
  }
  const hostMounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n').length;
  const b = native();
  let template = true;
  for (const fn of ['spawn', 'spawnAsync']) {
    const orig = b[fn];
    b[fn] = function (plan, ...a) {
      return orig.call(this, template ? plan : { ...plan, mntTemplate: false }, ...a);
    };
  }
  const bwrap = which('bwrap');
  const o = { rootfs, command: ['/bin/true'], ...OPTS };
  if (o.rootfs === null) delete o.rootfs;
  const contenders = [
    ['nsbox run(), mount template', () => ((template = true), nsbox.run(o))],
    ['nsbox run(), CLONE_NEWNS + pivot_root', () => ((template = false), nsbox.run(o))],
    ['child_process.spawn (no isolation)', () => spawnWait(['/bin/true'])],
  ];
  if (bwrap) contenders.push(['bwrap --unshare-all', () => spawnWait([bwrap, '--unshare-all', '--ro-bind', rootfs, '/', '--proc', '/proc', '--dev', '/dev', '/bin/true'])]);
  const t = contenders.map(() => []);
  for (let i = 0; i < N + 20; i++) {
    const order = i % 2 ? [...contenders.keys()].reverse() : [...contenders.keys()];
    for (const k of order) {
      const a = performance.now();
      await contenders[k][1]();
      if (i >= 20) t[k].push(performance.now() - a);
    }
  }
  const st = b.mntTemplateState();
  return { extra, hostMounts, templateFd: st.fd, rows: contenders.map(([name], k) => ({ name, ...summarize(t[k]) })) };
}

async function main() {
  if (process.env.NSBOX_HM_INNER) {
    const r = await inner(Number(process.env.NSBOX_HM_INNER));
    process.stdout.write(JSON.stringify(r) + '\n');
    return;
  }
  if (process.getuid() !== 0) throw new Error('host-mounts.js: needs root (a private mount namespace with extra mounts)');
  const shown = args.includes('--opts') ? ` --opts '${JSON.stringify(OPTS)}'` : '';
  console.log(`Command: \`node bench/host-mounts.js --n ${N} --extra ${EXTRA.join(',')}${shown}\` — ${new Date().toISOString()}\n`);
  const rows = [];
  for (const extra of EXTRA) {
    // The mount points live on the host's /tmp; the mounts only in the child's private namespace.
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-hm-'));
    let out;
    try {
      out = execFileSync('unshare', ['-m', '--propagation', 'private', process.execPath, __filename, ...args], {
        env: { ...process.env, NSBOX_HM_INNER: String(extra), NSBOX_HM_DIR: scratch },
        maxBuffer: 1 << 24,
      }).toString();
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
    const r = JSON.parse(out.trim().split('\n').pop());
    if (r.templateFd < 0) throw new Error('the mount template was not available: the comparison would be meaningless');
    const base = r.rows[2].p50;
    for (const row of r.rows) rows.push([String(r.hostMounts), row.name, String(row.n), f2(row.p50), f2(row.p90), fx(row.p50 / base)]);
  }
  console.log(table(['host mounts', 'runtime', 'n', 'p50 ms', 'p90 ms', 'p50 ÷ child_process p50'], rows));
}

main().catch((e) => {
  console.error(e.stack || e);
  process.exit(1);
});
