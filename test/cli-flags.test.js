// The CLI's flag table and its one tokenizer (lib/cli/flags.ts, lib/cli/table.ts), without
// starting anything: tokens, their errors, where each flag's value goes, and the help's layout.
'use strict';
const t = require('tap');
const { Machine, spawn } = require('..');
const { tokenize, tokenizeAll, FlagState, applyFlag, optionsOf, renderFlags, lastValue, hasFlag } = require('../dist/cli/flags');
const { FLAGS, RUN, MACHINE, MACHINE_SUBCOMMANDS } = require('../dist/cli/table');
const { parseRun, parseMachineStart } = require('../dist/cli');

/** The tokens as plain data: ['flag', '--memory', '1M'], ['positional', 'x', more], ['command', [...]]. */
function plain(tokens) {
  return [...tokens].map((k) => (k.kind === 'flag' ? ['flag', k.def.name, k.value] : k.kind === 'positional' ? ['positional', k.value, k.more] : ['command', k.argv]));
}

t.test('tokens: values inline or next, aliases, positionals and the command after --', async (t) => {
  t.same(plain(tokenize(['--memory=1M', '-h', '--bind', 'a:/b', '--env=A=1=2', '--', 'x', '--y'], RUN)), [
    ['flag', '--memory', '1M'],
    ['flag', '--help', undefined],
    ['flag', '--bind', 'a:/b'],
    ['flag', '--env', 'A=1=2'],
    ['command', ['x', '--y']],
  ]);
  t.same(plain(tokenize(['a', '-', '--env='], RUN)), [
    ['positional', 'a', true],
    ['positional', '-', true],
    ['flag', '--env', ''],
  ], "'-' is an argument; --flag= is an empty value");
  t.same(plain(tokenize(['-t', 'm', '--', 'ls'], MACHINE.exec)), [['flag', '--tty', undefined], ['positional', 'm', true], ['command', ['ls']]]);
  t.same(plain(tokenize(['--force', '--', '-x', 'y'], MACHINE.destroy)), [['flag', '--force', undefined], ['positional', '-x', true], ['positional', 'y', false]], 'without a command, what follows -- are arguments');
  t.same(tokenizeAll(['m', '-s', 'term', '--signal=9', '--state-dir', '/s'], MACHINE.kill).positionals, ['m']);
});

t.test('token errors: unknown flags (with a hint), missing values, values for switches', async (t) => {
  const err = (argv, spec) => {
    try {
      tokenizeAll(argv, spec);
    } catch (e) {
      return `${e.name}: ${e.message}`;
    }
    return 'no error';
  };
  t.equal(err(['--memroy', '1M'], RUN), "UsageError: unknown flag --memroy for 'nsbox run'; did you mean --memory? (see 'nsbox run --help')");
  t.equal(err(['--cpu-w=1'], RUN), "UsageError: unknown flag --cpu-w for 'nsbox run'; did you mean --cpu-weight? (see 'nsbox run --help')", 'a unique prefix is the hint');
  t.equal(err(['--zzzzzzzz'], RUN), "UsageError: unknown flag --zzzzzzzz for 'nsbox run' (see 'nsbox run --help')", 'nothing near: no hint');
  t.equal(err(['--memory'], RUN), 'UsageError: --memory needs a value');
  t.equal(err(['--memory', '--', 'x'], RUN), 'UsageError: --memory needs a value', '-- is not a value');
  t.equal(err(['--rw=yes'], RUN), "UsageError: --rw takes no value, got '--rw=yes'");
  t.equal(err(['-t', 'm'], MACHINE.kill), "UsageError: unknown flag -t for 'nsbox machine kill' (see 'nsbox machine kill --help')", 'an alias only where its flag is');
  t.equal(err(['-q'], RUN), "UsageError: unknown flag -q for 'nsbox run' (see 'nsbox run --help')", 'an unknown short flag');
  t.equal(err(['-rootfs', '/'], RUN), "UsageError: unknown flag -rootfs for 'nsbox run'; did you mean --rootfs? (see 'nsbox run --help')", 'a long name with one dash: the nearest long name');
  t.equal(err(['-iq'], RUN), "UsageError: unknown flag -q for 'nsbox run' (see 'nsbox run --help')", 'an unknown letter in a combined word');
  t.equal(err(['m', '--tty'], MACHINE.exec), 'no error');
});

t.test('tokens come one at a time: the first mistake on the line is the one reported', async (t) => {
  const it = tokenize(['--pids', 'x', '--bogus'], RUN);
  t.same(plain([it.next().value]), [['flag', '--pids', 'x']], 'the flag before the unknown one comes out first');
  t.throws(() => it.next(), /unknown flag --bogus/);
  t.throws(() => parseRun(['--pids', 'x', '--bogus']), /--pids must be a whole number/, 'run applies each flag as it comes');
  t.throws(() => parseMachineStart(['m', '--pids', 'x', '--bogus']), /unknown flag --bogus/, 'machine start reads the whole line first');
});

t.test('the table: within a command, names and aliases are unique, and every flag can be given', async (t) => {
  const specs = { run: RUN, ...Object.fromEntries(MACHINE_SUBCOMMANDS.map((s) => [`machine ${s}`, MACHINE[s]])) };
  const withFlagLines = [RUN, MACHINE.start, MACHINE.exec]; // the others are one line of the machine usage
  t.same(Object.keys(MACHINE).sort(), [...MACHINE_SUBCOMMANDS].sort(), 'a spec for every machine subcommand');
  for (const [cmd, spec] of Object.entries(specs)) {
    const names = spec.flags.flatMap((f) => [f.name, ...(f.short ? [f.short] : [])]);
    t.same(names.filter((n, i) => names.indexOf(n) !== i), [], `${cmd}: no name or alias twice`);
    for (const f of spec.flags) {
      t.match(f.name, /^--[a-z][a-z-]*$/, `${cmd}: ${f.name} is a long name`);
      if (f.short) t.match(f.short, /^-[a-z]$/, `${cmd}: ${f.short} is a one-letter alias`);
      if (!f.hidden && withFlagLines.includes(spec)) t.ok(f.help, `${cmd}: ${f.name} has a help text`);
      const argv = f.arg ? [`${f.name}=${sample[f.name] ?? 'x'}`] : [f.name];
      const tokens = tokenizeAll(argv, spec);
      t.equal(tokens.flags[0]?.def.name, f.name, `${cmd}: ${argv[0]} is read as ${f.name}`);
    }
  }
  t.ok(hasFlag(tokenizeAll(['m', '-h'], MACHINE.stats), FLAGS.help), 'every machine subcommand takes -h');
  t.equal(lastValue(tokenizeAll(['m', '--state-dir', 'a', '--state-dir=/b'], MACHINE.stats), FLAGS.stateDir), '/b', 'the last one given wins');
  t.equal(lastValue(tokenizeAll(['m', '-s', 'term'], MACHINE.kill), FLAGS.signal), 'TERM');
  t.equal(lastValue(tokenizeAll(['m', '-s', '9'], MACHINE.kill), FLAGS.signal), 9);
});

/** A valid value for each flag that takes one. */
const sample = {
  '--rootfs': '/',
  '--bind': '/tmp:/mnt:ro',
  '--tmpfs': '/scratch:size=1M',
  '--env': 'A=1',
  '--cwd': '/',
  '--hostname': 'h',
  '--user': '1:1',
  '--network': 'bridge',
  '--publish': '8080:80',
  '--allow': '10.0.0.0/8',
  '--timeout': '10s',
  '--memory': '64M',
  '--memory-high': '48M',
  '--start-timeout': '5s',
  '--swap': '0',
  '--pids': '10',
  '--cpu': '0.5',
  '--cpuset': '0',
  '--cpu-weight': '100',
  '--io-weight': '100',
  '--state-dir': '/tmp/nsbox-flags-test',
  '--init': 'builtin',
  '--signal': 'TERM',
  '--pull': 'never',
  '--entrypoint': '/bin/sh',
  '--store': '/tmp/nsbox-flags-store',
  '--add-host': 'db:10.0.0.5',
  '--proc': 'none',
  '--device': '/dev/loop0:/dev/disk0:rw',
  '--volume': '/tmp:/mnt:ro',
  '--mount': 'type=tmpfs,target=/scratch',
  '--env-file': '/dev/null',
  '--workdir': '/',
  '--cpus': '1.5',
  '--pids-limit': '64',
  '--cap-add': 'NET_ADMIN',
  '--cap-drop': 'MKNOD',
  '--security-opt': 'seccomp=unconfined',
  '--userns': 'private',
  '--name': 'web-1',
  '--ulimit': 'nofile=1024',
};

/** Every flag of `spec` once (but --help), with a valid value. */
function everyFlag(spec) {
  return spec.flags.filter((f) => f.name !== '--help' && !f.unsupported).flatMap((f) => (f.arg ? [f.name, sample[f.name]] : [f.name]));
}

t.test("every flag of run and machine start lands in an option the library takes", async (t) => {
  // The library refuses the first key it does not know; with every flag given and one unknown key
  // put last, that key must be the one refused.
  const run = parseRun([...everyFlag(RUN), '--', 'true']);
  t.throws(() => spawn({ ...run.options, zzzUnknown: 1 }), { name: 'TypeError', message: /"zzzUnknown"/ }, 'run');
  const start = parseMachineStart(['m', ...everyFlag(MACHINE.start)]);
  await t.rejects(Machine.start({ ...start.options, zzzUnknown: 1 }), { name: 'TypeError', message: /"zzzUnknown"/ }, 'machine start');
  t.same(Object.keys(run.options.limits).sort(), ['cpu', 'cpuWeight', 'cpuset', 'ioWeight', 'memory', 'memoryHigh', 'pids', 'swap']);
  t.same(run.options.network, { ports: [{ host: 8080, container: 80 }], allow: ['10.0.0.0/8'] }, '--publish and --allow make the bridge an object');
  t.same([run.options.hosts, run.options.devices, run.options.etcFiles], [{ db: '10.0.0.5' }, [{ path: '/dev/loop0', containerPath: '/dev/disk0', permissions: 'rw' }], false], '--add-host, --device, --no-etc-files');
  t.same([run.options.proc, start.options.proc], ['none', 'none'], '--proc, for run and machine start');
});

t.test('where values go, and the flag each option is traced back to', async (t) => {
  const st = new FlagState();
  const give = (argv, spec = RUN) => {
    for (const f of tokenizeAll(argv, spec).flags) applyFlag(st, f.def, f.value);
  };
  process.env.NSBOX_FLAGS_TEST = 'from-host';
  give(['--bind', '/a:/b', '--tmpfs', '/t', '--env', 'SECRET=hunter2', '--env', 'NSBOX_FLAGS_TEST', '--env', 'NSBOX_FLAGS_UNSET', '--memory', '1M', '--pids', '3', '--rw', '--timeout', '2s']);
  t.same(optionsOf(st), {
    mounts: [{ type: 'bind', source: '/a', target: '/b', readonly: false }, { type: 'tmpfs', target: '/t' }],
    env: { SECRET: 'hunter2', NSBOX_FLAGS_TEST: 'from-host' },
    limits: { memory: '1M', pids: 3 },
    readonly: false,
    timeout: 2000,
  });
  t.same([...st.origin], [
    ['mounts[0]', "--bind '/a:/b'"],
    ['mounts[1]', "--tmpfs '/t'"],
    ['env', '--env'],
    ['limits.memory', "--memory '1M'"],
    ['limits.pids', "--pids '3'"],
    ['timeout', "--timeout '2s'"],
  ], 'lists are traced by index; env by the flag alone (no values: they may be secrets); switches not at all');

  const net = new FlagState();
  for (const f of tokenizeAll(['--network', 'host', '--allow', '1.1.1.1'], RUN).flags) applyFlag(net, f.def, f.value);
  t.throws(() => optionsOf(net), { name: 'UsageError', message: '--publish and --allow need --network bridge, not --network host' });
});

t.test('the flag lines of a usage text', async (t) => {
  const lines = renderFlags([
    { name: '--state-dir', arg: 'DIR', to: 'stateDir', help: 'never shown', hidden: true },
    { name: '--tty', short: '-t', to: 'tty', help: 'first line\nsecond line' },
    { name: '--publish', arg: '[ADDR:]HOST:CONTAINER', to: 'network.ports[]', help: 'a synopsis over 20 characters\nputs its help below' },
    { name: '--memory', arg: 'SIZE', to: 'limits.memory', help: 'the limits' },
    { name: '--swap', arg: 'SIZE', to: 'limits.swap', help: 'not shown: joined', joined: true },
  ]);
  t.equal(
    lines,
    [
      '  -t, --tty             first line',
      '                        second line',
      '  --publish [ADDR:]HOST:CONTAINER',
      '                        a synopsis over 20 characters',
      '                        puts its help below',
      '  --memory SIZE, --swap SIZE',
      '                        the limits',
      '',
    ].join('\n'),
  );
  t.equal(renderFlags([{ name: '--abcdefghijklmnopqr', to: 'json', help: 'h' }]), '  --abcdefghijklmnopqr  h\n', 'a synopsis of 20 characters still fits');
});
