// cli/signals.ts: the signals nsbox passes on to what it runs in the foreground.
import type { Container } from '../index';
import { io } from './output';

export const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Passes SIGINT, SIGTERM and SIGHUP that nsbox receives on to `c`; a second one kills it. Should
 * nsbox exit regardless, `c` goes too. Returns the function that undoes all of it.
 */
export function forwardSignals(c: Container, what = 'the container'): () => void {
  let received = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    received++;
    try {
      if (received === 1) c.kill(sig);
      else {
        io.err(`nsbox: ${sig} again, killing ${what}\n`);
        c.kill('SIGKILL');
      }
    } catch {
      /* gone meanwhile */
    }
  };
  const onExit = (): void => {
    if (!c.exited) c.kill('SIGKILL');
  };
  for (const s of FORWARDED_SIGNALS) process.on(s, onSignal);
  process.on('exit', onExit);
  return () => {
    for (const s of FORWARDED_SIGNALS) process.off(s, onSignal);
    process.off('exit', onExit);
  };
}
