// `nsbox completion bash|zsh|fish`: each script is produced from the flag table (lib/cli/table.ts),
// is valid for its shell, and (bash, zsh where installed) completes commands, subcommands, flags
// and flag values when sourced.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { RUN, MACHINE, MACHINE_SUBCOMMANDS } = require('../dist/cli/table');

const bin = path.join(__dirname, '..', 'bin', 'nsbox.js');

function nsbox(args) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  return r;
}

/** The path of `name` on $PATH, or undefined. */
function which(name) {
  for (const d of (process.env.PATH ?? '').split(':')) {
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {}
  }
  return undefined;
}

/** The script for `shell` in a temporary file (removed at the end of the test). */
function scriptFile(t, shell) {
  const r = nsbox(['completion', shell]);
  t.equal(r.status, 0, `nsbox completion ${shell} exits 0 (stderr: ${r.stderr})`);
  t.equal(r.stderr, '');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-completion-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, `nsbox.${shell}`);
  fs.writeFileSync(file, r.stdout);
  return { file, text: r.stdout };
}

t.test('every shell gets a script naming every command, machine subcommand and run flag', async (t) => {
  for (const shell of ['bash', 'zsh', 'fish']) {
    const { text } = scriptFile(t, shell);
    for (const word of ['run', 'machine', 'doctor', 'pull', 'images', 'completion', ...MACHINE_SUBCOMMANDS]) t.ok(text.includes(word), `${shell}: ${word}`);
    const supported = RUN.flags.filter((f) => !f.unsupported).map((f) => f.name.replace(/^--/, shell === 'fish' ? '-l ' : '--'));
    t.same(supported.filter((w) => !text.includes(w)), [], `${shell}: every supported flag of nsbox run is in it`);
    t.ok(text.includes(shell === 'fish' ? '-l ulimit' : '--ulimit'), `${shell}: --ulimit (supported since the rlimits option) is offered`);
  }
});

t.test("every command nsbox knows is completed (a new command needs its entry in lib/cli/completion.ts's tree)", async (t) => {
  const { COMMANDS } = require('../dist/cli');
  const { completedCommands } = require('../dist/cli/completion');
  t.same(COMMANDS.filter((c) => !completedCommands().includes(c)), []);
});

t.test('a wrong or missing shell is a one-line error, exit 125; --help says how to load it', async (t) => {
  for (const args of [['completion'], ['completion', 'tcsh'], ['completion', 'bash', 'zsh']]) {
    const r = nsbox(args);
    t.equal(r.status, 125, `nsbox ${args.join(' ')}`);
    t.match(r.stderr, /^nsbox: 'nsbox completion' takes one of bash, zsh, fish[^\n]*\n$/);
  }
  const h = nsbox(['completion', '--help']);
  t.equal(h.status, 0);
  t.match(h.stdout, /source <\(nsbox completion bash\)/);
  t.match(nsbox(['--help']).stdout, /nsbox completion bash\|zsh\|fish/, 'the usage lists it');
});

t.test('bash: the script is valid and completes commands, subcommands, flags and values when sourced', async (t) => {
  const bash = which('bash');
  if (!bash) return t.skip('bash is not installed');
  const { file } = scriptFile(t, 'bash');
  const n = spawnSync(bash, ['-n', file], { encoding: 'utf8' });
  t.equal(n.status, 0, `bash -n: ${n.stderr}`);
  // Each case: the words typed (the last is the one being completed) and the words offered.
  const cases = [
    [['nsbox', 'ma'], ['machine']],
    [['nsbox', 'run', '--roo'], ['--rootfs']],
    [['nsbox', 'run', '--memory', '1G', '--memory-h'], ['--memory-high']],
    [['nsbox', 'machine', 'st'], ['start', 'stats', 'status', 'stop']],
    [['nsbox', 'machine', '--state-dir', '/x', 'ex'], ['exec']],
    [['nsbox', 'machine', 'exec', '--t'], ['--timeout', '--tty']],
    [['nsbox', 'machine', 'exec', 'm', '-t', '--st'], ['--start-timeout', '--state-dir']],
    [['nsbox', 'run', '--userns', ''], ['host', 'private']],
    [['nsbox', 'image', 'i'], ['import']],
    [['nsbox', 'completion', ''], ['bash', 'fish', 'zsh']],
    [['nsbox', 'run', '--', '--roo'], []],
  ];
  const lines = cases
    .map(([words]) => `COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _nsbox; printf '%s\\n' "$(printf '%s\\n' "\${COMPREPLY[@]}" | sort | tr '\\n' ' ')"`)
    .join('\n');
  // cwd: an empty directory, so that file completion (the last case) offers nothing.
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-completion-cwd-'));
  t.teardown(() => fs.rmSync(empty, { recursive: true, force: true }));
  const r = spawnSync(bash, ['-c', `source '${file}'\n${lines}`], { encoding: 'utf8', cwd: empty });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr, '');
  const got = r.stdout.split('\n').slice(0, cases.length).map((l) => l.trim().split(' ').filter(Boolean));
  for (const [i, [words, want]] of cases.entries()) t.same(got[i], want, `${words.join(' ')}<TAB>`);
  t.match(spawnSync(bash, ['-c', `source '${file}'; complete -p nsbox`], { encoding: 'utf8' }).stdout, /-F _nsbox nsbox/, 'registered for nsbox');
});

t.test('zsh: the script is valid (zsh -n) and offers the right words at each level', async (t) => {
  const zsh = which('zsh');
  if (!zsh) return t.skip('zsh is not installed on this host');
  const { file } = scriptFile(t, 'zsh');
  const n = spawnSync(zsh, ['-n', file], { encoding: 'utf8' });
  t.equal(n.status, 0, `zsh -n: ${n.stderr}`);
  // Outside a completion widget: compsys's _describe, compadd and _files stubbed to print what
  // they were given (zsh itself filters by the typed prefix, so each level's whole list is shown).
  const stubs = [
    'compdef() { :; }',
    '_describe() { local -a a; a=("${(@P)${@[-1]}}"); print -rl -- ${a%%:*}; }',
    'compadd() { [[ $1 == -- ]] && shift; print -rl -- "$@"; }',
    '_files() { print -r -- "<files$*>"; }',
  ].join('\n');
  const cases = [
    [['nsbox', 'ma'], ['completion', 'doctor', 'help', 'image', 'images', 'logs', 'machine', 'ps', 'pull', 'rm', 'rmi', 'run', 'stop', 'version']],
    [['nsbox', 'machine', '--state-dir', '/x', 'st'], [...MACHINE_SUBCOMMANDS].sort()],
    [['nsbox', 'run', '--userns', ''], ['host', 'private']],
    [['nsbox', 'run', '--rootfs', ''], ['<files-/>']],
    [['nsbox', 'run', '--', 'x'], ['<files>']],
  ];
  const lines = cases.map(([words]) => `words=(${words.map((w) => `'${w}'`).join(' ')}); CURRENT=${words.length}; print -r -- "$(_nsbox | sort | tr '\\n' ' ')"`).join('\n');
  const r = spawnSync(zsh, ['-f', '-c', `${stubs}\nsource '${file}'\n${lines}`], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const got = r.stdout.split('\n').slice(0, cases.length).map((l) => l.trim().split(' ').filter(Boolean));
  for (const [i, [words, want]] of cases.entries()) t.same(got[i], want, `${words.join(' ')}<TAB>`);
  const flags = spawnSync(zsh, ['-f', '-c', `${stubs}\nsource '${file}'\nwords=(nsbox machine exec --t); CURRENT=4; _nsbox`], { encoding: 'utf8' }).stdout.split('\n');
  t.same(MACHINE.exec.flags.filter((f) => !flags.includes(f.name)), [], 'every flag of machine exec is offered after -');
});

t.test('fish: the script is valid (fish -n) and completes (complete -C) when sourced', async (t) => {
  const fish = which('fish');
  if (!fish) return t.skip('fish is not installed on this host');
  const { file } = scriptFile(t, 'fish');
  const n = spawnSync(fish, ['-n', file], { encoding: 'utf8' });
  t.equal(n.status, 0, `fish -n: ${n.stderr}`);
  const cases = [
    ['nsbox ma', ['machine']],
    ['nsbox machine --state-dir /x st', ['start', 'stats', 'status', 'stop']],
    ['nsbox run --roo', ['--rootfs']],
    ['nsbox machine exec --t', ['--timeout', '--tty']],
    ['nsbox run --userns ', ['host', 'private']],
    ['nsbox completion ', ['bash', 'fish', 'zsh']],
  ];
  for (const [line, want] of cases) {
    const r = spawnSync(fish, ['--no-config', '-c', `source '${file}'; complete -C '${line}'`], { encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    t.same(r.stdout.split('\n').filter(Boolean).map((l) => l.split('\t')[0]).sort(), want, `${line}<TAB>`);
  }
});
