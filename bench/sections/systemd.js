'use strict';
// Section 5 of the benchmark: a Debian systemd boot to ready plus its stop, nsbox against
// systemd-nspawn -b (the two driven by bench/lib/systemd.js).
const { summarize, f2, fx, ratio, table, now } = require('../lib/stats');
const { which } = require('../lib/peers');
const { cleanups } = require('../lib/cleanup');

async function run({ O, log, nsbox, R }) {
  const { debianRootfs, NspawnBoot, NsboxBoot } = require('../lib/systemd');
  const { rootfs: deb, reason } = debianRootfs();
  const skip = reason ?? (!which('systemd-nspawn') ? 'systemd-nspawn not installed (bench/setup.sh installs it)' : !which('nsenter') ? 'nsenter not installed' : null);
  if (skip) {
    R.systemd = { skip };
    log(`systemd: skipped: ${skip}`);
    return `_Skipped: ${skip}._`;
  }
  const a = new NsboxBoot(nsbox, deb);
  const b = new NspawnBoot(deb, `nsb-${process.pid}`);
  cleanups.push(async () => [...(await a.cleanup()), ...(await b.cleanup())]);
  const res = { nsbox: [], nspawn: [] };
  const warm = 1;
  log(`systemd: ${O.boots} boots to ready plus stop each, nsbox and systemd-nspawn taking turns (after ${warm} warm-up each), rootfs ${deb}`);
  for (let i = 0; i < warm + O.boots; i++) {
    // Alternate who goes first, so a drift of the host affects both alike.
    const order = i % 2 ? [['nspawn', b], ['nsbox', a]] : [['nsbox', a], ['nspawn', b]];
    for (const [k, c] of order) {
      const r = await c.once(now);
      if (i >= warm) res[k].push(r);
    }
  }
  await a.cleanup();
  const notesLeft = await b.cleanup();
  cleanups.pop();
  const sum = (k) => ({
    ready: summarize(res[k].map((r) => r.readyMs)),
    stop: summarize(res[k].map((r) => r.stopMs)),
    total: summarize(res[k].map((r) => r.readyMs + r.stopMs)),
    states: [...new Set(res[k].map((r) => r.state))].join(', '),
  });
  R.systemd = { rootfs: deb, nsbox: sum('nsbox'), nspawn: sum('nspawn'), commands: { nsbox: a.command(), nspawn: b.command() }, left: notesLeft };
  const rows = ['nsbox', 'nspawn'].map((k) => {
    const x = R.systemd[k];
    return [
      k === 'nsbox' ? 'nsbox Machine.start (systemd) → ready, then stop()' : 'systemd-nspawn -b → ready, then SIGRTMIN+3',
      x.total.n,
      f2(x.ready.p50),
      f2(x.stop.p50),
      f2(x.total.p50),
      f2(x.total.p90),
      fx(ratio(x.total.p50, R.systemd.nspawn.total.p50)),
      x.states,
    ];
  });
  return (
    table(['what', 'n', 'boot to ready p50 ms', 'stop p50 ms', 'ready + stop p50 ms', 'ready + stop p90 ms', '÷ systemd-nspawn', 'state reached'], rows) +
    `\n\nCommands (rootfs ${deb}, writes to a throw-away overlay in both, lo only in both):\n\n- nsbox: \`${a.command()}\`\n- systemd-nspawn: \`${b.command()}\`\n\n"Ready" is \`systemctl is-system-running --wait\` answering \`running\` or \`degraded\` inside (nsbox's \`waitReady\` makes the same check). The two take turns, first one then the other.` +
    (notesLeft.length ? `\n\n**Left behind:** ${notesLeft.join('; ')}` : '')
  );
}

module.exports = { key: 'systemd', number: 5, title: () => 'systemd: a Debian boot to ready plus stop, nsbox against systemd-nspawn -b', run };
