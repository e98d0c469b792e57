'use strict';
// Cleanup on every path: what a section leaves running (machines, cgroups, peers' state) registers
// an undo here; the benchmark runs them all at its end, on a signal, or after a crash.
const os = require('node:os');

const cleanups = [];
let cleaning = null;
function cleanupAll() {
  cleaning ??= (async () => {
    const notes = [];
    for (const fn of cleanups.splice(0).reverse()) {
      try {
        const r = await fn();
        if (Array.isArray(r) && r.length) notes.push(...r);
      } catch (e) {
        notes.push(`cleanup failed: ${e.message}`);
      }
    }
    return notes;
  })();
  return cleaning;
}

/** On SIGINT, SIGTERM or SIGHUP: clean up, then exit as killed by it. */
function cleanupOnSignals(log) {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      log(`${sig}: cleaning up (machines, cgroups) before exiting`);
      cleanupAll().finally(() => process.exit(128 + os.constants.signals[sig]));
    });
  }
}

module.exports = { cleanups, cleanupAll, cleanupOnSignals };
