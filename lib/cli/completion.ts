// cli/completion.ts: `nsbox completion bash|zsh|fish`, a shell completion script generated from the
// flag table (cli/table.ts): the commands, their subcommands and each one's flags. Nothing here is
// written by hand per flag: a new row in the table is completed once it is in a command's list.
//
// Every script works the same way: it walks the words before the cursor, following subcommands
// ("machine", then "start") and skipping the value of each flag that takes one, to find the level
// the cursor is at; then it offers that level's flags (after "-"), its subcommands, or files.
// After "--" (the container's command) only files are offered.
import type { FlagDef } from './flags';
import { SPECS } from './image-commands';
import { EXIT_NSBOX, io } from './output';
import { DETACHED_CMD, FLAGS, MACHINE, MACHINE_LEADING, MACHINE_SUBCOMMANDS, RUN, type MachineSubcommand } from './table';

/** One level of the command line: its flags and the subcommands that lead further. */
interface Level {
  flags: readonly FlagDef[];
  /** Top level only: the switches main() handles itself (not in the table). */
  switches?: readonly string[];
  subs?: Record<string, { help: string; level: Level }>;
}

const MACHINE_HELP: Record<MachineSubcommand, string> = {
  start: 'start a long-lived machine with its own PID 1',
  exec: 'run a command inside a running machine',
  stop: 'stop a machine (a graceful halt, then kill)',
  kill: 'send a signal to a machine',
  freeze: 'freeze every process of a machine',
  thaw: 'thaw a frozen machine',
  stats: "a machine's resource use",
  destroy: "remove a stopped machine's state",
  list: 'the machines and their state',
  status: "a machine's state, pid, uptime, addresses and cgroup",
  shell: 'a login shell on a pty inside a machine',
  logs: "a machine's console (PID 1's output)",
};

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
type Shell = (typeof SHELLS)[number];

/** The command tree, from the table's command specs. */
function tree(): Level {
  const none: Level = { flags: [] };
  return {
    flags: [],
    switches: ['--help', '-h', '--version', '-v'],
    subs: {
      run: { help: 'run one command (or an image) in a new container', level: RUN },
      pull: { help: 'pull an image into the store', level: SPECS.pull },
      images: { help: 'the images in the store', level: SPECS.images },
      rmi: { help: 'remove an image', level: SPECS.rmi },
      image: {
        help: 'image store commands (prune, import, ls, rm, pull)',
        level: {
          flags: [],
          subs: {
            prune: { help: 'remove layers and blobs no image uses', level: SPECS.prune },
            import: { help: 'import an OCI layout, OCI archive or docker save archive', level: SPECS.import },
            ls: { help: 'the images in the store', level: SPECS.images },
            rm: { help: 'remove an image', level: SPECS.rmi },
            pull: { help: 'pull an image into the store', level: SPECS.pull },
          },
        },
      },
      doctor: { help: 'report what this host supports', level: { flags: [FLAGS.json, FLAGS.help] } },
      ps: { help: 'the detached containers (nsbox run -d)', level: DETACHED_CMD.ps },
      logs: { help: "a detached container's output", level: DETACHED_CMD.logs },
      stop: { help: 'stop a detached container (SIGTERM, then SIGKILL)', level: DETACHED_CMD.stop },
      rm: { help: 'remove a stopped detached container', level: DETACHED_CMD.rm },
      machine: {
        help: 'long-lived machines (start, exec, stop, list, ...)',
        level: {
          flags: MACHINE_LEADING,
          subs: Object.fromEntries(MACHINE_SUBCOMMANDS.map((s) => [s, { help: MACHINE_HELP[s], level: MACHINE[s] }])),
        },
      },
      completion: {
        help: 'print a shell completion script (bash, zsh or fish)',
        level: { flags: [], subs: Object.fromEntries(SHELLS.map((s) => [s, { help: `the ${s} script`, level: none }])) },
      },
      help: { help: 'this help', level: none },
      version: { help: "nsbox's version", level: none },
    },
  };
}

/** A level as flat data: its path ("machine start"), its flags with help and value kinds, its subcommands. */
interface Flat {
  path: string;
  /** [word, help, value] per flag word (long and short); value: what its value is, null for a switch. */
  flags: Array<{ word: string; help: string; value: null | 'file' | 'dir' | 'other'; choices: string[] }>;
  subs: Array<{ word: string; help: string }>;
}

function firstLine(s: string | undefined): string {
  return (s ?? '').split('\n')[0]!.trim();
}

function flatten(level: Level, path = '', out: Flat[] = []): Flat[] {
  const flags: Flat['flags'] = [];
  const seen = new Set<string>();
  for (const w of level.switches ?? []) flags.push({ word: w, help: w.startsWith('--h') || w === '-h' ? 'this help' : 'the version', value: null, choices: [] });
  for (const f of level.flags) {
    // Refused flags (a docker flag listed with the reason nsbox refuses it) are not offered.
    if (f.unsupported) continue;
    const arg = f.arg;
    const value = arg === undefined ? null : /\bDIR\b/.test(arg) ? 'dir' : /FILE|PATH|SRC/.test(arg) ? 'file' : 'other';
    const choices = arg ? arg.split('|').filter((c) => /^[a-z]+$/.test(c)) : [];
    for (const w of [f.name, f.short]) {
      if (w === undefined || seen.has(w)) continue;
      seen.add(w);
      flags.push({ word: w, help: firstLine(f.help) || (arg ? `${f.name} ${arg}` : f.name), value, choices });
    }
  }
  const subs = Object.entries(level.subs ?? {}).map(([word, s]) => ({ word, help: s.help }));
  out.push({ path, flags, subs });
  for (const [word, s] of Object.entries(level.subs ?? {})) flatten(s.level, path ? `${path} ${word}` : word, out);
  return out;
}

/** For a single-quoted string in sh, zsh and fish alike ('...'\''...'). */
function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function words(ws: string[]): string {
  return ws.join(' ');
}

function bash(levels: Flat[]): string {
  const cases = (pick: (l: Flat) => string[]): string =>
    levels.map((l) => `    ${sq(l.path)}) echo ${sq(words(pick(l)))} ;;`).join('\n');
  const valueCases = levels
    .flatMap((l) => l.flags.filter((f) => f.value !== null).map((f) => `    ${sq(`${l.path}|${f.word}`)}) echo ${sq(`${f.value} ${words(f.choices)}`.trim())} ;;`));
  return `# bash completion for nsbox (generated by 'nsbox completion bash' from lib/cli/table.ts)
# Load it with: source <(nsbox completion bash)

_nsbox_flags() {
  case "$1" in
${cases((l) => l.flags.map((f) => f.word))}
  esac
}

_nsbox_subs() {
  case "$1" in
${cases((l) => l.subs.map((s) => s.word))}
  esac
}

# "<kind> [choices...]" for a flag that takes a value (kind: file, dir or other); nothing for a switch.
_nsbox_value() {
  case "$1|$2" in
${valueCases.join('\n')}
  esac
}

_nsbox() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" level="" w i skip=0 done=0 prevkind=""
  COMPREPLY=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    if ((skip)); then skip=0; prevkind=""; continue; fi
    if [[ $w == -- ]]; then
      COMPREPLY=($(compgen -f -- "$cur"))
      return 0
    fi
    if [[ $w == -* ]]; then
      if [[ $w != *=* ]]; then
        prevkind="$(_nsbox_value "$level" "$w")"
        [[ -n $prevkind ]] && skip=1
      fi
      continue
    fi
    if ((!done)) && [[ " $(_nsbox_subs "$level") " == *" $w "* ]]; then
      level="\${level:+$level }$w"
    else
      done=1
    fi
  done
  if ((skip)); then
    local kind="\${prevkind%% *}" choices=""
    [[ $prevkind == *" "* ]] && choices="\${prevkind#* }"
    case "$kind" in
      dir) COMPREPLY=($(compgen -d -- "$cur")) ;;
      file) COMPREPLY=($(compgen -W "$choices" -- "$cur") $(compgen -f -- "$cur")) ;;
      *) [[ -n $choices ]] && COMPREPLY=($(compgen -W "$choices" -- "$cur")) ;;
    esac
    return 0
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_nsbox_flags "$level")" -- "$cur"))
    return 0
  fi
  local subs="$(_nsbox_subs "$level")"
  if ((!done)) && [[ -n $subs ]]; then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    return 0
  fi
  COMPREPLY=($(compgen -f -- "$cur"))
}

complete -o filenames -F _nsbox nsbox
`;
}

/** zsh's _describe entries: "word:help", colons in the word escaped. */
function described(items: Array<{ word: string; help: string }>): string {
  return items.map((i) => sq(`${i.word.replace(/:/g, '\\:')}:${i.help}`)).join(' ');
}

function zsh(levels: Flat[]): string {
  const cases = levels
    .map((l) => {
      const valued = l.flags.filter((f) => f.value !== null);
      return [
        `    ${sq(l.path)})`,
        `      flags=(${described(l.flags)})`,
        `      subs=(${described(l.subs)})`,
        `      valued=(${valued.map((f) => sq(`${f.word}=${f.value}${f.choices.length ? ':' + f.choices.join(' ') : ''}`)).join(' ')})`,
        '      ;;',
      ].join('\n');
    })
    .join('\n');
  return `#compdef nsbox
# zsh completion for nsbox (generated by 'nsbox completion zsh' from lib/cli/table.ts)
# Load it with: source <(nsbox completion zsh), or save it as _nsbox in a directory of $fpath.

_nsbox_level() {
  flags=() subs=() valued=()
  case "$1" in
${cases}
  esac
}

_nsbox() {
  local level="" w v kind="" i skip=0 done=0
  local -a flags subs valued
  for ((i = 2; i < CURRENT; i++)); do
    w="\${words[i]}"
    if ((skip)); then skip=0; kind=""; continue; fi
    if [[ $w == -- ]]; then _files; return; fi
    if [[ $w == -* ]]; then
      if [[ $w != *=* ]]; then
        _nsbox_level "$level"
        kind="" v=""
        for v in $valued; do [[ \${v%%=*} == "$w" ]] && kind="\${v#*=}"; done
        [[ -n $kind ]] && skip=1
      fi
      continue
    fi
    _nsbox_level "$level"
    if ((!done)) && (( \${subs[(I)$w:*]} )); then
      level="\${level:+$level }$w"
    else
      done=1
    fi
  done
  _nsbox_level "$level"
  if ((skip)); then
    case "\${kind%%:*}" in
      dir) _files -/ ;;
      file) _files ;;
      *) [[ $kind == *:* ]] && compadd -- \${=kind#*:} ;;
    esac
    return
  fi
  if [[ \${words[CURRENT]} == -* ]]; then
    _describe -t flags 'flag' flags
  elif ((!done)) && (( \${#subs} )); then
    _describe -t commands 'command' subs
  else
    _files
  fi
}

if [[ \${zsh_eval_context[-1]} == loadautofunc ]]; then
  _nsbox "$@"
else
  compdef _nsbox nsbox
fi
`;
}

function fish(levels: Flat[]): string {
  const lines: string[] = [];
  const caseOf = (pick: (l: Flat) => string[]): string =>
    levels.map((l) => `        case ${sq(l.path)}\n            printf '%s\\n' ${pick(l).map(sq).join(' ')}`).join('\n');
  for (const l of levels) {
    for (const s of l.subs) lines.push(`complete -c nsbox -n ${sq(`__nsbox_subs_at ${sq(l.path)}`)} -a ${sq(s.word)} -d ${sq(s.help)}`);
    for (const f of l.flags) {
      const opt = f.word.startsWith('--') ? `-l ${f.word.slice(2)}` : f.word.length === 2 ? `-s ${f.word.slice(1)}` : `-o ${f.word.slice(1)}`;
      const val = f.value === null ? '' : f.value === 'other' ? ` -x${f.choices.length ? ` -a ${sq(words(f.choices))}` : ''}` : ` -r -F${f.choices.length ? ` -a ${sq(words(f.choices))}` : ''}`;
      lines.push(`complete -c nsbox -n ${sq(`__nsbox_at ${sq(l.path)}`)} ${opt}${val} -d ${sq(f.help)}`);
    }
  }
  return `# fish completion for nsbox (generated by 'nsbox completion fish' from lib/cli/table.ts)
# Load it with: nsbox completion fish | source, or save it as ~/.config/fish/completions/nsbox.fish

function __nsbox_subs_of
    switch "$argv[1]"
${caseOf((l) => l.subs.map((s) => s.word))}
    end
end

function __nsbox_valued_of
    switch "$argv[1]"
${caseOf((l) => l.flags.filter((f) => f.value !== null).map((f) => f.word))}
    end
end

# Prints the level the cursor is at ("machine start") and whether a positional argument was seen (1 or 0).
function __nsbox_level
    set -l toks (commandline -opc)
    set -e toks[1]
    set -l level ''
    set -l skip 0
    set -l done 0
    for w in $toks
        if test $skip = 1
            set skip 0
            continue
        end
        if test "$w" = '--'
            printf '%s\\n' '--' 1
            return
        end
        if string match -q -- '-*' $w
            if not string match -q -- '*=*' $w; and contains -- $w (__nsbox_valued_of "$level")
                set skip 1
            end
            continue
        end
        if test $done = 0; and contains -- $w (__nsbox_subs_of "$level")
            set level (string trim -- "$level $w")
        else
            set done 1
        end
    end
    printf '%s\\n' "$level" $done
end

function __nsbox_at
    set -l l (__nsbox_level)
    test "$l[1]" = "$argv[1]"
end

function __nsbox_subs_at
    set -l l (__nsbox_level)
    test "$l[1]" = "$argv[1]"; and test "$l[2]" = 0
end

complete -c nsbox -f
${lines.join('\n')}
`;
}

/** The top-level commands the scripts offer. */
export function completedCommands(): string[] {
  return Object.keys(tree().subs ?? {});
}

/** The script for `shell`. */
export function completionScript(shell: Shell): string {
  const levels = flatten(tree());
  return shell === 'bash' ? bash(levels) : shell === 'zsh' ? zsh(levels) : fish(levels);
}

/** `nsbox completion bash|zsh|fish`. */
export function cmdCompletion(argv: string[]): number {
  const [shell, ...rest] = argv;
  if (shell === '--help' || shell === '-h') {
    io.out('Usage: nsbox completion bash|zsh|fish\n\nPrints a completion script for the shell:\n  source <(nsbox completion bash)\n  source <(nsbox completion zsh)\n  nsbox completion fish | source\n');
    return 0;
  }
  if (!SHELLS.includes(shell as Shell) || rest.length) {
    io.err(`nsbox: 'nsbox completion' takes one of ${SHELLS.join(', ')}${shell === undefined ? '' : `, got '${argv.join(' ')}'`}\n`);
    return EXIT_NSBOX;
  }
  io.out(completionScript(shell as Shell));
  return 0;
}
