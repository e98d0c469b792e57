// One Node process of test/34-kill-every-step.test.js (issue #17): started fresh for each case, so
// that the process the fault kills is never the test's own.
//
//   node runner.js kill '<json>'  finds the first profile (of json.where) in which the fault point
//       (json.name, json.index) is reached (with EDOM, as test 33 forces it), prints {"profile"}, then
//       runs that profile again with NSBOX_TEST_FAULT=<name>:<index>:SIGKILL: this process dies by
//       SIGKILL there (in Node's own steps it kills itself; in the child's, the test kills it when it
//       sees the child waiting at the point). Exit 3: no profile reaches it; 4: it survived the kill.
//   node runner.js next '<json>'  the next start after a kill, in a fresh process: a plain run(),
//       Machine.list() of the state directory, and a start of the killed profile's kind (json.again).
//       Prints {"ok"} or {"error"}.
//
// json: { name, index, where, stateDir, execMachine, usernsMachine, bridge, rawStaging, rawCgroup, again }
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const lib = path.join(__dirname, '..', '..');
const { run, createPool, Machine } = require(lib);
const { busyboxRootfs } = require('../helpers');
const { rawSpawn, startProfiles } = require('../fault-table');

const [mode, json] = process.argv.slice(2);
const o = JSON.parse(json);
const bb = busyboxRootfs().rootfs;
const EDOM = os.constants.errno.EDOM;
const say = (x) => fs.writeSync(1, `${JSON.stringify(x)}\n`);
// The mark the test finds this run's processes by (also given to each container's own command).
const env = { NSBOX_KILLRUN: process.env.NSBOX_KILLRUN ?? '' };
// What the kill mode starts lives on if its start got through (a container whose Node is gone, or the
// killed start reported as survived): something that would still be there when the test looks.
const long = () => mode === 'kill' && process.env.NSBOX_TEST_FAULT?.endsWith(':SIGKILL');
const cmd = () => (long() ? ['/bin/sleep', '1000'] : ['/bin/true']);

// The kill mode's long command, once it runs, means the start got through without reaching the
// fault point (a start that does not take the same path twice, e.g. a namespace from a reserve the
// first start filled): it is stopped (the abort) and reported, instead of waiting for it.
let abort = null;
function watchLongCommand() {
  const ac = new AbortController();
  const timer = setInterval(() => {
    for (const e of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
        if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== process.pid) continue;
        if (fs.readFileSync(`/proc/${e}/cmdline`, 'utf8') === '/bin/sleep\u00001000\u0000') ac.abort();
      } catch {
        /* gone */
      }
    }
  }, 5);
  return { signal: ac.signal, stop: () => clearInterval(timer) };
}

let n = 0;
const { app, profiles: shared } = startProfiles({
  rootfs: bb, stateDir: o.stateDir, machineName: () => `kill-${process.pid}-${n++}`, command: cmd, env, signal: () => abort?.signal,
});
const execIn = (name, opts) => async () => {
  const m = await Machine.get(name, { stateDir: o.stateDir });
  if (!m) throw new Error(`no machine ${name}`);
  await m.run(cmd(), { env, ...opts });
};
const PROFILES = {
  ...shared,
  machineExec: execIn(o.execMachine),
  machineExecUserns: execIn(o.usernsMachine),
  machineExecTty: execIn(o.execMachine, { tty: true, columns: 80, rows: 24 }),
  raw: (name, index) => rawSpawn(name, index, require(path.join(lib, 'dist', 'env')).testFault().errno, o.rawStaging, o.rawCgroup),
  bridged: app({ network: { bridge: o.bridge, dns: ['10.88.0.1'], allow: ['10.88.0.5:80'] } }),
};

async function attempt(profile, errno) {
  // network.setns joins a namespace from the reserve: on a busy host the maker may not have one
  // ready yet (the clone then makes its own and never reaches the step). Wait for one.
  if (o.name === 'network.setns') {
    const { native } = require(path.join(lib, 'dist', 'native'));
    for (let i = 0; i < 500 && native().netnsReserveState().fds.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  }
  process.env.NSBOX_TEST_FAULT = `${o.name}:${o.index}:${errno}`;
  try {
    await PROFILES[profile](o.name, o.index);
    return null;
  } catch (e) {
    return e;
  } finally {
    delete process.env.NSBOX_TEST_FAULT;
  }
}

async function kill() {
  const misses = [];
  for (const profile of o.where) {
    const e = await attempt(profile, 'EDOM');
    if (!e || e.errno !== EDOM) {
      misses.push(`${profile}: ${e ? `${e.code} ${e.step} ${e.message}` : 'started'}`);
      continue;
    }
    say({ profile });
    abort = watchLongCommand();
    const k = await attempt(profile, 'SIGKILL');
    abort.stop();
    say({ survived: k ? `${k.code} ${k.step} ${k.message}` : 'started' });
    process.exit(4);
  }
  say({ notReached: misses });
  process.exit(3);
}

async function next() {
  try {
    await run({ command: ['/bin/true'], rootfs: bb });
    const machines = (await Machine.list({ stateDir: o.stateDir })).map((m) => `${m.name} ${m.state}`);
    if (o.again && o.again !== 'raw') await PROFILES[o.again](o.name, o.index);
    say({ ok: true, machines });
  } catch (e) {
    say({ error: `${e.code} ${e.step} ${e.message}` });
    process.exitCode = 1;
  }
}

(mode === 'kill' ? kill() : next()).catch((e) => {
  say({ error: String(e && e.stack) });
  process.exit(1);
});
