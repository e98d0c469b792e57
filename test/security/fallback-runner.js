// Runs the path and privilege attack files inside a process whose seccomp filter makes openat2 and
// the new mount API answer ENOSYS, as on kernels (or under container runtimes) that lack them, so
// nsbox's fallbacks face the same attacks. Started by fallback.test.js; not a test file itself.
'use strict';
const { native } = require('../../dist/native');

const ENOSYS = 38;
const hidden = { openat2: 437, open_tree: 428, move_mount: 429, fsopen: 430, fsconfig: 431, fsmount: 432, fspick: 433, mount_setattr: 442 };
// ld [nr]; for each hidden: jeq nr -> ret ERRNO(ENOSYS); ret ALLOW.
const insns = [[0x20, 0, 0, 0]];
for (const nr of Object.values(hidden)) insns.push([0x15, 0, 1, nr], [0x06, 0, 0, 0x00050000 | ENOSYS]);
insns.push([0x06, 0, 0, 0x7fff0000]);
const prog = Buffer.alloc(insns.length * 8);
insns.forEach(([code, jt, jf, k], i) => {
  prog.writeUInt16LE(code, i * 8);
  prog.writeUInt8(jt, i * 8 + 2);
  prog.writeUInt8(jf, i * 8 + 3);
  prog.writeUInt32LE(k >>> 0, i * 8 + 4);
});
const rc = native().testFilterProcess(prog);
if (rc !== 0) throw new Error(`could not install the test filter: errno ${rc}`);
const seen = native().probe();
if (seen.openat2 || seen.newMountApi) throw new Error('the test filter did not hide openat2 / the new mount API');
process.stdout.write('# fallback harness: openat2 and the new mount API answer ENOSYS\n');
require('./paths.test.js');
require('./privileges.test.js');
require('./escapes.test.js');
