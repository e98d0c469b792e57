// cli/flags.ts: the command line's one tokenizer and what it is driven by. A command is a list of
// flag definitions (cli/table.ts); the tokenizer splits argv into flags, positional arguments and
// the command after `--`, refusing unknown flags and missing values; applyFlag puts a flag's value
// where its definition says; renderFlags writes the flag lines of a usage text from the same list.
import type { AppOptions, Limits, MachineExecOptions, MachineOptions } from '../index';
import { editDistance } from '../util';

/** A mistake on the command line: printed as one line, exit 125. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The known name nearest to `name` (a prefix match, else a small edit distance), if any is near. */
export function nearest(name: string, known: readonly string[]): string | undefined {
  const bare = name.replace(/^-+/, '');
  const prefixed = known.filter((k) => bare.length >= 2 && k.replace(/^-+/, '').startsWith(bare));
  if (prefixed.length === 1) return prefixed[0];
  // --mem: --memory and --memory-high both match; the one the others extend is meant.
  const stem = prefixed.find((k) => prefixed.every((o) => o.startsWith(k)));
  if (stem) return stem;
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(bare, k.replace(/^-+/, ''));
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(bare.length / 3)) ? best : undefined;
}

export function unknownFlag(flag: string, cmd: string, known: readonly string[]): UsageError {
  // A known switch given a value ('--help=1', '-h=x') is not an unknown flag.
  if (known.includes(flag)) return new UsageError(`flag ${flag} for '${cmd}' takes no value (see '${cmd} --help')`);
  // One letter is too little to guess from (-q is not "--rw").
  const near = /^-[^-]$/.test(flag) ? undefined : nearest(flag, known);
  const hint = near ? `; did you mean ${near}?` : '';
  return new UsageError(`unknown flag ${flag} for '${cmd}'${hint} (see '${cmd} --help')`);
}

/**
 * Where a flag's value goes, which is also the key that names the flag in error messages (the
 * library names the option it rejects, such as "limits.memory"): an option ('rootfs'), a field of
 * one ('limits.memory'), a list each use appends to ('mounts[]'; the key is 'mounts[2]'), or a map
 * each use adds an entry to ('env{}'; the key is 'env', and the message shows the flag alone, not
 * the values, which may be secrets).
 */
export type Target =
  | keyof AppOptions
  | keyof MachineOptions
  | keyof MachineExecOptions
  /** The CLI's own switches. */
  | 'help'
  | 'force'
  | 'json'
  | 'tag'
  | 'all'
  | 'follow'
  | `limits.${keyof Limits & string}`
  | 'mounts[]'
  | 'capabilities.add[]'
  | 'capabilities.drop[]'
  /** Docker's --security-opt, --name and -i: read by `nsbox run` itself, not library options. */
  | 'securityOpt[]'
  | 'name'
  | 'interactive'
  | 'rm'
  | 'detach'
  | 'network.ports[]'
  | 'network.allow[]'
  | 'devices[]'
  | 'env{}'
  | 'hosts{}'
  /** --ulimit: one resource of `rlimits` per use ([name, { soft, hard }]). */
  | 'rlimits{}';

export interface FlagDef {
  /** The long name: '--memory'. */
  name: string;
  /** A one-letter alias: '-t'. */
  short?: string;
  /** The value's name in the help ('SIZE'). A flag without one is a switch and takes no value. */
  arg?: string;
  to: Target;
  /** The given string to the option's value (default: the string itself); throws a UsageError. */
  parse?: (v: string, flag: string) => unknown;
  /** What a switch sets (default true). */
  value?: unknown;
  /** The help text of the flag's line; `\n` starts a continuation line. */
  help?: string;
  /** Not in the flag lines (the usage text's prose covers it). */
  hidden?: boolean;
  /** Shown on the line of the flag before it, whose help text covers both. */
  joined?: boolean;
  /**
   * Known (docker has it) but not supported: giving it is a UsageError with this reason, never a
   * silent no-op.
   */
  unsupported?: string;
}

export interface CommandSpec {
  /** As the user types it, for messages: 'nsbox machine exec'. */
  command: string;
  /** Its flags, in the order its help lists them (and "did you mean" prefers). */
  flags: readonly FlagDef[];
  /** Whether `--` starts the command to run; otherwise what follows it are positional arguments. */
  takesCommand: boolean;
}

export type Token =
  /** value: the string given, undefined for a switch. */
  | { kind: 'flag'; def: FlagDef; value: string | undefined }
  /** more: whether anything follows it on the command line. */
  | { kind: 'positional'; value: string; more: boolean; index?: number }
  | { kind: 'command'; argv: string[] };

/**
 * The tokens of `argv` for `spec`, one at a time, so that a caller applying each as it comes reports
 * the first mistake on the command line first. A flag's value is `--flag=value` or the next
 * argument (which may not be `--`); a short alias stands for its flag. Short aliases combine as
 * docker's (pflag's) do: `-it` is `-i -t`, and a short flag that takes a value takes the rest of
 * its word (`-vA:B`, `-e=K=V`) or else the next argument (`-iv A:B`).
 */
export function* tokenize(argv: readonly string[], spec: CommandSpec): Generator<Token, void, undefined> {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      if (spec.takesCommand) yield { kind: 'command', argv: argv.slice(i + 1) };
      else for (let j = i + 1; j < argv.length; j++) yield { kind: 'positional', value: argv[j]!, more: j + 1 < argv.length };
      return;
    }
    if (!a.startsWith('-') || a === '-') {
      // index: where it is in argv (`nsbox run IMAGE COMMAND...` takes the rest as the command).
      yield { kind: 'positional', value: a, more: i + 1 < argv.length, index: i };
      continue;
    }
    let name: string;
    let inline: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      name = eq > 0 ? a.slice(0, eq) : a;
      inline = eq > 0 ? a.slice(eq + 1) : undefined;
    } else {
      // -x, -x=V, -xV, -xyz: letters are switches until one takes a value (the rest of the word).
      const shortDef = (c: string): FlagDef | undefined => spec.flags.find((f) => f.short === `-${c}`);
      if (a.length > 2 && !shortDef(a[1]!)) throw unknownFlag(a.split('=')[0]!, spec.command, spec.flags.map((f) => f.name));
      let j = 1;
      for (; j < a.length - 1; j++) {
        const d = shortDef(a[j]!);
        if (!d) throw unknownFlag(`-${a[j]!}`, spec.command, spec.flags.map((f) => f.name));
        if (d.arg !== undefined) break;
        yield { kind: 'flag', def: d, value: undefined };
      }
      name = `-${a[j]!}`;
      const rest = a.slice(j + 1);
      inline = rest === '' ? undefined : rest.startsWith('=') ? rest.slice(1) : rest;
    }
    const def = spec.flags.find((f) => f.name === name || f.short === name);
    if (!def) throw unknownFlag(name, spec.command, spec.flags.map((f) => f.name));
    if (def.arg === undefined) {
      if (inline !== undefined) throw new UsageError(`${def.name} takes no value, got '${a}'`);
      yield { kind: 'flag', def, value: undefined };
      continue;
    }
    let value = inline;
    if (value === undefined) {
      value = argv[i + 1];
      if (value === undefined || value === '--') throw new UsageError(`${def.name} needs a value`);
      i++;
    }
    yield { kind: 'flag', def, value };
  }
}

/** A whole command line, tokenized. */
export interface Tokens {
  flags: Array<{ def: FlagDef; value: string | undefined }>;
  positionals: string[];
  /** What follows `--`, or undefined when there was no `--`. */
  command: string[] | undefined;
}

export function tokenizeAll(argv: readonly string[], spec: CommandSpec): Tokens {
  const out: Tokens = { flags: [], positionals: [], command: undefined };
  for (const t of tokenize(argv, spec)) {
    if (t.kind === 'flag') out.flags.push({ def: t.def, value: t.value });
    else if (t.kind === 'positional') out.positionals.push(t.value);
    else out.command = t.argv;
  }
  return out;
}

/** Whether `def` was given. Flags are told apart by name: a command may list a copy of a definition (cli/table.ts). */
export function hasFlag(t: Tokens, def: FlagDef): boolean {
  return t.flags.some((f) => f.def.name === def.name);
}

/** The value of the last `def` given, parsed; undefined if none was. */
export function lastValue(t: Tokens, def: FlagDef): unknown {
  const raw = lastRaw(t, def);
  return raw === undefined || !def.parse ? raw : def.parse(raw, def.name);
}

/** The string given to the last `def`, unparsed. */
export function lastRaw(t: Tokens, def: FlagDef): string | undefined {
  let v: string | undefined;
  for (const f of t.flags) if (f.def.name === def.name) v = f.value;
  return v;
}

/** What the flags of one command line set, and which flag set what (for error messages). */
export class FlagState {
  /** Option path ('limits.memory', 'mounts[2]') -> the flag that set it: `--memory '12Q'`. */
  readonly origin = new Map<string, string>();
  readonly values = new Map<string, unknown>();
  readonly lists = new Map<string, unknown[]>();
  readonly maps = new Map<string, Record<string, unknown>>();
}

/** Puts the value of one flag (undefined for a switch) where its definition says. */
export function applyFlag(st: FlagState, def: FlagDef, raw: string | undefined): void {
  if (def.unsupported !== undefined) throw new UsageError(`${def.short ? `${def.short}/` : ''}${def.name} is not supported yet: ${def.unsupported}`);
  if (raw === undefined) {
    st.values.set(def.to, def.value ?? true);
    return;
  }
  const value = def.parse ? def.parse(raw, def.name) : raw;
  const label = `${def.name} '${raw}'`;
  if (def.to.endsWith('[]')) {
    const key = def.to.slice(0, -2);
    let list = st.lists.get(key);
    if (!list) st.lists.set(key, (list = []));
    list.push(value);
    st.origin.set(`${key}[${list.length - 1}]`, label);
  } else if (def.to.endsWith('{}')) {
    const key = def.to.slice(0, -2);
    let map = st.maps.get(key);
    if (!map) st.maps.set(key, (map = {}));
    // One pair ([K, V]), or a list of them (--env-file); V undefined adds nothing.
    const pairs = (Array.isArray((value as unknown[])[0]) ? value : [value]) as Array<[string, unknown]>;
    for (const [k, v] of pairs) if (v !== undefined) map[k] = v;
    st.origin.set(key, def.name);
  } else {
    st.values.set(def.to, value);
    st.origin.set(def.to, label);
  }
}

/**
 * The options the flags set, as the library takes them: 'limits.memory' as { limits: { memory } },
 * lists and maps under their names. --publish and --allow (network.ports[], network.allow[]) make
 * the network an object, which is a bridge; they refuse any other --network.
 */
export function optionsOf(st: FlagState): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [to, v] of st.values) {
    if (v === undefined) continue; // a value that means "the default" (--pids-limit -1)
    const dot = to.indexOf('.');
    if (dot < 0) out[to] = v;
    else ((out[to.slice(0, dot)] ??= {}) as Record<string, unknown>)[to.slice(dot + 1)] = v;
  }
  for (const [key, list] of st.lists) {
    if (key.startsWith('network.')) continue;
    const dot = key.indexOf('.');
    if (dot < 0) out[key] = list;
    else ((out[key.slice(0, dot)] ??= {}) as Record<string, unknown>)[key.slice(dot + 1)] = list;
  }
  for (const [key, map] of st.maps) out[key] = map;
  const ports = st.lists.get('network.ports');
  const allow = st.lists.get('network.allow');
  if (ports || allow) {
    if (out.network !== undefined && out.network !== 'bridge') {
      throw new UsageError(`--publish and --allow need --network bridge, not --network ${String(out.network)}`);
    }
    const n: Record<string, unknown> = {};
    if (ports) n.ports = ports;
    if (allow) n.allow = allow;
    out.network = n;
  }
  return out;
}

/** The flag column's width: a longer synopsis puts its help on the next line. */
const FLAG_COLUMN = 20;

function synopsis(def: FlagDef): string {
  return `${def.short ? `${def.short}, ` : ''}${def.name}${def.arg ? ` ${def.arg}` : ''}`;
}

/** The flag lines of a usage text: `  --memory SIZE         memory limit, ...`. */
export function renderFlags(flags: readonly FlagDef[]): string {
  const rows: Array<{ synopsis: string; help: string }> = [];
  for (const def of flags) {
    if (def.hidden) continue;
    const prev = rows[rows.length - 1];
    if (def.joined && prev) prev.synopsis += `, ${synopsis(def)}`;
    else rows.push({ synopsis: synopsis(def), help: def.help ?? '' });
  }
  const indent = ' '.repeat(FLAG_COLUMN + 4);
  return rows
    .map(({ synopsis: s, help }) => {
      const [first, ...more] = help.split('\n');
      const head = s.length <= FLAG_COLUMN ? `  ${s.padEnd(FLAG_COLUMN)}  ${first}` : `  ${s}\n${indent}${first}`;
      return [head, ...more.map((l) => indent + l)].join('\n') + '\n';
    })
    .join('');
}
