// trace.ts: NSBOX_DEBUG=1 (or DEBUG naming nsbox, as the debug package reads it; lib/env.ts): each
// step of a start on stderr, with the milliseconds since that start began. One line per step:
//   nsbox[<node pid>] <kind>#<n> +<ms>ms <step>
// kind is run, spawn, pool.run, pool.fill, machine.start or machine.exec; n counts the starts of
// this process, so that the lines of starts running at once can be told apart.
// Off (the default), nothing is built: every caller tests TRACE (a constant) before it makes a
// Trace or a line, and a start's Trace is undefined.
import { debugTrace } from './env';

/** Whether starts are traced: read once, when nsbox is loaded. */
export const TRACE: boolean = debugTrace;

let seq = 0;

export class Trace {
  readonly t0 = performance.now();
  readonly #id: string;

  constructor(kind: string) {
    this.#id = `${kind}#${++seq}`;
  }

  /** One line: this start's id, the ms since it began, and `what`. */
  step(what: string): void {
    process.stderr.write(`nsbox[${process.pid}] ${this.#id} +${(performance.now() - this.t0).toFixed(2)}ms ${what}\n`);
  }
}

/** The trace of the start an options object belongs to (the resolved options, which every step is handed). */
const byOptions = new WeakMap<object, Trace>();

/** Ties `t` to `o`, the options each step of the start is handed. */
export function setTrace(o: object, t: Trace): void {
  byOptions.set(o, t);
}

/**
 * The trace of the start `o` belongs to. Options shared by many starts (a pool's: setTrace with
 * a Trace of kind 'pool') get a new trace for each (`pool.fill`).
 */
export function traceOf(o: object): Trace | undefined {
  return pools.has(o) ? new Trace('pool.fill') : byOptions.get(o);
}

const pools = new WeakSet<object>();

/** Marks a pool's options: each launch from them is a start of its own (traceOf). */
export function tracePool(o: object): void {
  pools.add(o);
}
