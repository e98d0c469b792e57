// cli.ts: the `nsbox` command (bin/nsbox.js calls main()). Parses argv into AppOptions, runs the
// container on the terminal's stdio (relayed, see lib/stdio.ts) and turns its end into an exit status:
//   the container's exit code, 128+n when it was killed by signal n, 125 when nsbox itself failed.
// The parts live in lib/cli/: the flag table (table.ts) and the one tokenizer it drives (flags.ts),
// the value parsers (values.ts), run and doctor (app-commands.ts), the machine commands
// (machine-commands.ts, with tty.ts for exec -t), and what is printed (output.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';

import { cmdDoctor, cmdRun } from './cli/app-commands';
import { unknownFlag, nearest } from './cli/flags';
import { cmdMachine } from './cli/machine-commands';
import { cmdImage } from './cli/image-commands';
import { cmdCompletion } from './cli/completion';
import { unsupportedReason } from './platform';
import { cmdDetached } from './cli/detached';
import { EXIT_NSBOX, formatError, io } from './cli/output';

export { parseRun } from './cli/app-commands';
export { parseMachineStart } from './cli/machine-commands';
export { EXIT_NSBOX, exitStatus, formatError, formatMachineTable, formatReport, signalStatus } from './cli/output';

function version(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const USAGE = `Usage:
  nsbox run [flags] -- CMD ARGS...   run one command in a new container
  nsbox run [flags] IMAGE [COMMAND...]
                                     run an image's command (pulled when missing)
  nsbox run -d [flags] --rootfs DIR -- CMD ARGS...
                                     start it in the background; prints its name
  nsbox ps [-a] [--json]             the detached containers: NAME PID STATUS COMMAND
  nsbox logs [-f] NAME               the output of a detached container
  nsbox stop NAME... | rm [-f] NAME...
                                     stop (SIGTERM, then SIGKILL) / remove a detached container
  nsbox pull REF                     pull an image into the store
  nsbox images [--json]              the images in the store
  nsbox rmi REF                      remove an image
  nsbox image prune                  remove layers and blobs no image uses
  nsbox image import FILE [--tag REF]
                                     import an OCI layout, OCI archive or docker save archive
  nsbox doctor [--json]              report what this host supports
  nsbox completion bash|zsh|fish     print a shell completion script
  nsbox machine start NAME --rootfs DIR [flags]
                                     start a long-lived machine with its own PID 1
  nsbox machine exec NAME [-t] -- CMD ARGS...
                                     run a command inside a running machine
  nsbox machine stop|kill|freeze|thaw|stats|destroy NAME
  nsbox machine list [--json]        the machines and their state
  nsbox machine status NAME [--json] state, pid, uptime, addresses, cgroup
  nsbox machine shell NAME           a login shell on a pty inside the machine
  nsbox machine logs [-f] NAME       the console (PID 1's stdout and stderr)
  nsbox --help | --version

Run 'nsbox run --help' for the flags of nsbox run, 'nsbox machine --help' for the machine commands.
`;

/** The commands main() knows (test/cli-completion.test.js checks that the completion offers each). */
export const COMMANDS = ['run', 'doctor', 'machine', 'pull', 'images', 'rmi', 'image', 'completion', 'ps', 'stop', 'rm', 'logs'] as const;

/** Runs the CLI on `argv` (without node and the script) and resolves with the exit status. */
export async function main(argv: string[]): Promise<number> {
  // One container (or machine) per command: namespaces made ahead would only be made and thrown
  // away at exit. (A value the caller set wins.)
  process.env.NSBOX_NETNS_RESERVE ??= '0';
  process.env.NSBOX_IPCNS_RESERVE ??= '0';
  const [cmd, ...rest] = argv;
  // Off Linux (lib/platform.ts) only the help, the version and the completion scripts work: every
  // other command says why in one line.
  const unsupported = unsupportedReason();
  if (unsupported !== null && COMMANDS.includes(cmd as (typeof COMMANDS)[number]) && cmd !== 'completion') {
    io.err(`nsbox: ${unsupported.replace(/^nsbox /, '')}\n`);
    return EXIT_NSBOX;
  }
  switch (cmd) {
    case undefined:
      io.err(USAGE);
      return EXIT_NSBOX;
    case '--help':
    case '-h':
    case 'help':
      io.out(USAGE);
      return 0;
    case '--version':
    case '-v':
    case 'version':
      io.out(`nsbox ${version()}\n`);
      return 0;
    case 'completion':
      return cmdCompletion(rest);
    case 'run':
      return cmdRun(rest);
    case 'doctor':
      return cmdDoctor(rest);
    case 'ps':
    case 'stop':
    case 'rm':
    case 'logs':
      return cmdDetached(cmd, rest);
    case 'machine':
      return cmdMachine(rest);
    case 'pull':
    case 'images':
    case 'rmi':
      return cmdImage(cmd, rest);
    case 'image': {
      const [sub, ...more] = rest;
      if (sub === 'prune' || sub === 'import') return cmdImage(sub, more);
      if (sub === 'ls') return cmdImage('images', more);
      if (sub === 'rm') return cmdImage('rmi', more);
      if (sub === 'pull') return cmdImage('pull', more);
      io.err(`nsbox: unknown image command '${sub ?? ''}' (nsbox image prune|import|ls|rm|pull)\n`);
      return EXIT_NSBOX;
    }
    default: {
      if (cmd.startsWith('-')) {
        io.err(formatError(unknownFlag(cmd.split('=')[0]!, 'nsbox', ['--help', '-h', '--version', '-v'])) + '\n');
        return EXIT_NSBOX;
      }
      const near = nearest(cmd, COMMANDS);
      io.err(`nsbox: unknown command '${cmd}'${near ? `; did you mean '${near}'?` : ''} (see 'nsbox --help')\n`);
      return EXIT_NSBOX;
    }
  }
}
