// cli/image-commands.ts: `nsbox pull REF`, `nsbox images [--json]`, `nsbox rmi REF`,
// `nsbox image prune`, `nsbox image import FILE [--tag REF]`, and the pull before `nsbox run IMAGE`.
// Progress: one line per layer that is rewritten in place on a terminal, plain lines otherwise.
import { images, importImage, pruneImages, pull, removeImage } from '../index';
import type { PullProgress } from '../index';
import { imageRoot } from '../images';
import { NsboxError } from '../errors';
import { applyFlag, FlagState, optionsOf, renderFlags, tokenize, UsageError, type CommandSpec } from './flags';
import { EXIT_NSBOX, formatError, io } from './output';
import { FLAGS, IMAGE_CMD } from './table';

export const SPECS = {
  pull: IMAGE_CMD('nsbox pull'),
  images: IMAGE_CMD('nsbox images', [FLAGS.json]),
  rmi: IMAGE_CMD('nsbox rmi'),
  prune: IMAGE_CMD('nsbox image prune'),
  import: IMAGE_CMD('nsbox image import', [FLAGS.tag]),
};

const USAGE: Record<keyof typeof SPECS, string> = {
  pull: 'Usage: nsbox pull [flags] REF\n\nPulls an image into the store (layers it has already are not fetched again).\n',
  images: 'Usage: nsbox images [flags]\n\nLists the images in the store.\n',
  rmi: 'Usage: nsbox rmi [flags] REF\n\nRemoves an image, and the layers no other image and no running container uses.\n',
  prune: 'Usage: nsbox image prune [flags]\n\nRemoves layers and blobs that no image and no running container uses.\n',
  import: 'Usage: nsbox image import [flags] FILE\n\nImports an OCI layout directory, an OCI archive or a docker save archive.\n',
};

/** The flags and positional arguments of one image command (`count`: how many positionals it takes). */
function parse(spec: CommandSpec, argv: string[], count: number): { help: boolean; o: Record<string, unknown>; args: string[] } {
  const st = new FlagState();
  const args: string[] = [];
  for (const t of tokenize(argv, spec)) {
    if (t.kind === 'flag') applyFlag(st, t.def, t.value);
    else if (t.kind === 'positional') args.push(t.value);
  }
  const o = optionsOf(st);
  if (o.help !== true && args.length !== count) throw new UsageError(`'${spec.command}' takes ${count === 0 ? 'no arguments' : count === 1 ? 'one argument' : `${count} arguments`}, got ${args.length}`);
  return { help: o.help === true, o, args };
}

/**
 * Progress of a pull: on a terminal, one line per layer rewritten in place ("downloading 42%",
 * "unpacking", "done"); otherwise one plain line per layer once it is ready.
 */
function progress(write: (s: string) => void, tty: boolean): (e: PullProgress) => void {
  const rows = new Map<string, number>();
  const done = new Set<string>();
  return (e) => {
    const id = e.digest.replace(/^sha256:/, '').slice(0, 12);
    const line = e.phase === 'layer' ? `${id}: done` : e.phase === 'unpack' ? `${id}: unpacking` : `${id}: downloading ${e.total ? `${Math.floor(((e.current ?? 0) / e.total) * 100)}%` : `${e.current ?? 0} bytes`}`;
    if (tty) {
      if (!rows.has(id)) {
        rows.set(id, rows.size);
        write(line + '\n');
        return;
      }
      const up = rows.size - rows.get(id)!;
      write(`\x1b[${up}A\r\x1b[2K${line}\x1b[${up}B\r`);
    } else if (e.phase === 'layer' && !done.has(id)) {
      done.add(id);
      write(line + '\n');
    }
  };
}

/** Pulls `ref` where `pull` says so ('always', or 'missing' and not in the store). */
export async function ensureImage(ref: string, when: string, storeDir: string | undefined, write: (s: string) => void): Promise<void> {
  if (when === 'never') return;
  if (when === 'missing') {
    try {
      imageRoot(ref, { storeDir });
      return;
    } catch (e) {
      if (!(e instanceof NsboxError) || e.code !== 'ERR_IMAGE_UNKNOWN') throw e;
    }
  }
  const info = await pull(ref, { storeDir, onProgress: progress(write, process.stderr.isTTY === true) });
  write(`pulled ${info.ref} ${info.digest}\n`);
}

function size(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i ? n.toFixed(1) : n}${units[i]}`;
}

/** `nsbox pull|images|rmi` and `nsbox image prune|import`. */
export async function cmdImage(which: keyof typeof SPECS, argv: string[]): Promise<number> {
  const count = which === 'images' || which === 'prune' ? 0 : 1;
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(SPECS[which], argv, count);
  } catch (e) {
    io.err(formatError(e) + '\n');
    return EXIT_NSBOX;
  }
  if (parsed.help) {
    io.out(USAGE[which] + '\n' + renderFlags(SPECS[which].flags));
    return 0;
  }
  const storeDir = parsed.o.storeDir as string | undefined;
  const [arg] = parsed.args;
  try {
    switch (which) {
      case 'pull': {
        const info = await pull(arg!, { storeDir, onProgress: progress(io.out, process.stdout.isTTY === true) });
        io.out(`${info.ref} ${info.digest}\n`);
        return 0;
      }
      case 'images': {
        const list = await images({ storeDir });
        if (parsed.o.json === true) {
          io.out(JSON.stringify(list.map(({ ref, digest, platform, size: s, layers }) => ({ ref, digest, platform, size: s, layers: layers.length })), null, 2) + '\n');
          return 0;
        }
        const rows = [['REFERENCE', 'DIGEST', 'PLATFORM', 'LAYERS', 'SIZE'], ...list.map((i) => [i.ref, i.digest.slice(0, 19), i.platform, String(i.layers.length), size(i.size)])];
        const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
        for (const r of rows) io.out(r.map((x, c) => (c === r.length - 1 ? x : x.padEnd(w[c]!))).join('  ') + '\n');
        return 0;
      }
      case 'rmi':
        await removeImage(arg!, { storeDir });
        io.out(`removed ${arg}\n`);
        return 0;
      case 'prune': {
        const r = await pruneImages({ storeDir });
        io.out(`removed ${r.layers} layers and ${r.blobs} blobs\n`);
        return 0;
      }
      case 'import': {
        const tag = parsed.o.tag as string | undefined;
        const info = await importImage(arg!, { storeDir, ...(tag !== undefined ? { tag } : {}) });
        io.out(`${info.ref} ${info.digest}\n`);
        return 0;
      }
    }
  } catch (e) {
    io.err(formatError(e) + '\n');
    return EXIT_NSBOX;
  }
  return EXIT_NSBOX;
}
