// stdio: 'inherit' must not hand the container the host inode behind Node's fd 0, 1 or 2. Each case
// runs a Node process whose stdin/stdout is a given host file (a regular file, a /dev/null node, a
// directory), which starts a container with stdio: 'inherit'; root in the container attacks that
// inode through /proc/self/fd/N, and the test checks the inode from the host afterwards.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn: spawnChild, spawnSync } = require('node:child_process');
const { busyboxRootfs, isRoot, machineStateDir } = require('../helpers');

const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
const skip = noBusybox || (!isRoot() && 'the attacks need root in the container without a user namespace');
// NSBOX_TEST_LIB: the nsbox checkout the child processes load (to show a build without the fix fail).
const lib = process.env.NSBOX_TEST_LIB || path.join(__dirname, '..', '..');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-stdio-inherit-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

const OLD = new Date('2001-02-03T04:05:06Z');

/**
 * Runs `script` with sh in a container started by a fresh Node process whose fds 0, 1, 2 are
 * `stdio` (as for child_process.spawn), with stdio: 'inherit'. `machine`: in a machine, by exec.
 * Resolves with the child's exit status and what it printed on its own stderr.
 */
function inChild(script, stdio, { machine = false, timeout = 30000 } = {}) {
  const stateDir = machine ? fs.mkdtempSync(path.join(work, 'state-')) : null;
  const code = machine
    ? `const { Machine } = require(${JSON.stringify(lib)});
       (async () => {
         const m = await Machine.start({ name: 'inh', rootfs: ${JSON.stringify(bb)}, ephemeral: true, stateDir: ${JSON.stringify(stateDir)} });
         try { await m.exec(['/bin/sh', '-c', ${JSON.stringify(script)}], { stdio: 'inherit' }).wait(); }
         finally { await m.stop({ timeout: 5000 }); await m.destroy(); }
       })().catch((e) => { process.stderr.write('CHILD-ERROR ' + e.stack + '\\n'); process.exitCode = 99; });`
    : `const { spawn } = require(${JSON.stringify(lib)});
       spawn({ rootfs: ${JSON.stringify(bb)}, command: ['/bin/sh', '-c', ${JSON.stringify(script)}], stdio: 'inherit' })
         .wait().then((i) => { process.exitCode = i.exitCode ?? 98; },
                      (e) => { process.stderr.write('CHILD-ERROR ' + e.stack + '\\n'); process.exitCode = 99; });`;
  return new Promise((resolve, reject) => {
    const c = spawnChild(process.execPath, ['-e', code], { stdio });
    const timer = setTimeout(() => c.kill('SIGKILL'), timeout);
    let err = '';
    if (c.stderr) c.stderr.on('data', (d) => (err += d));
    c.on('error', reject);
    c.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, err });
    });
  });
}

/** A host file with known content, mode, owner and times. */
function hostFile(name, content = 'host data\n', mode = 0o644) {
  const f = path.join(work, name);
  fs.writeFileSync(f, content);
  fs.chmodSync(f, mode);
  fs.chownSync(f, 0, 0);
  return f;
}

function inode(f) {
  const s = fs.statSync(f);
  return { mode: s.mode, uid: s.uid, gid: s.gid };
}

t.test('container root cannot chmod the host file behind an inherited stdout', { skip }, async (t) => {
  const f = hostFile('out-chmod');
  const before = inode(f);
  const fd = fs.openSync(f, 'a');
  const r = await inChild('chmod 6777 /proc/self/fd/1; chmod 6777 /proc/self/fd/2; echo done', ['ignore', fd, fd]);
  fs.closeSync(fd);
  t.equal(r.status, 0, r.err);
  t.same(inode(f), before, 'mode of the host file unchanged');
  t.match(fs.readFileSync(f, 'utf8'), /^host data\ndone\n$/, 'the output still reached the file');
});

t.test('container root cannot chown or touch the host file behind an inherited stdout', { skip }, async (t) => {
  const f = hostFile('out-chown');
  fs.utimesSync(f, OLD, OLD);
  const before = inode(f);
  const fd = fs.openSync(f, 'a');
  const r = await inChild('chown 4321:4321 /proc/self/fd/1; touch -a -d "2030-01-01 00:00:00" /proc/self/fd/1; true', ['ignore', fd, 'pipe']);
  fs.closeSync(fd);
  t.equal(r.status, 0, r.err);
  t.same(inode(f), before, 'owner of the host file unchanged');
  t.equal(fs.statSync(f).atime.getTime(), OLD.getTime(), 'access time of the host file unchanged');
});

t.test('container root cannot truncate the host log file behind an inherited stdout', { skip }, async (t) => {
  const f = hostFile('out-trunc', 'earlier log lines\n');
  const fd = fs.openSync(f, 'a');
  const r = await inChild(': > /proc/self/fd/1; echo new', ['ignore', fd, 'pipe']);
  fs.closeSync(fd);
  t.equal(r.status, 0, r.err);
  t.equal(fs.readFileSync(f, 'utf8'), 'earlier log lines\nnew\n', 'the earlier content is still there, the output appended');
});

t.test('container root cannot open the read-only host file behind an inherited stdin for writing', { skip }, async (t) => {
  const f = hostFile('in-ro', 'secret input\n', 0o400);
  const fd = fs.openSync(f, 'r');
  const r = await inChild('echo overwritten > /proc/self/fd/0; echo more >> /proc/self/fd/0; cat', [fd, 'pipe', 'pipe']);
  fs.closeSync(fd);
  t.equal(r.status, 0, r.err);
  t.equal(fs.readFileSync(f, 'utf8'), 'secret input\n', 'the host file is unchanged');
  t.equal(inode(f).mode & 0o7777, 0o400);
});

t.test('container root cannot chmod or chown a host /dev/null behind an inherited stdin', { skip }, async (t) => {
  // A node of its own (char 1:3, as /dev/null), so that a failure does not change the host's.
  const dn = path.join(work, 'null');
  spawnSync('mknod', ['-m', '666', dn, 'c', '1', '3']);
  t.ok(fs.statSync(dn).isCharacterDevice(), 'made a 1:3 node');
  const before = inode(dn);
  const fd = fs.openSync(dn, 'r');
  const r = await inChild('chmod 600 /proc/self/fd/0; chown 4321:4321 /proc/self/fd/0; true', [fd, 'pipe', 'pipe']);
  fs.closeSync(fd);
  t.equal(r.status, 0, r.err);
  t.same(inode(dn), before, 'mode and owner of the 1:3 node unchanged');
});

t.test('container root cannot chmod or write into the host directory behind an inherited stdout', { skip }, async (t) => {
  const dir = path.join(work, 'dir-out');
  fs.mkdirSync(dir, { mode: 0o755 });
  const before = inode(dir);
  const fd = fs.openSync(dir, 'r'); // O_RDONLY | O_DIRECTORY, as a leaked directory fd would be
  const r = await inChild('chmod 777 /proc/self/fd/1; echo planted > /proc/self/fd/1/planted; true', ['ignore', fd, 'pipe']);
  fs.closeSync(fd);
  t.equal(r.status, 0, r.err);
  t.same(inode(dir), before, 'mode of the host directory unchanged');
  t.same(fs.readdirSync(dir), [], 'nothing was created in the host directory');
});

t.test('container root in a machine exec cannot chmod the host file behind an inherited stdout', { skip }, async (t) => {
  const f = hostFile('machine-out');
  const before = inode(f);
  const fd = fs.openSync(f, 'a');
  const r = await inChild('chmod 6777 /proc/self/fd/1; chown 4321:4321 /proc/self/fd/1; : > /proc/self/fd/1; echo done', ['ignore', fd, 'pipe'], { machine: true });
  fs.closeSync(fd);
  t.equal(r.status, 0, r.err);
  t.same(inode(f), before, 'mode and owner of the host file unchanged');
  t.equal(fs.readFileSync(f, 'utf8'), 'host data\ndone\n', 'not truncated; the output appended');
});

const haveScript = fs.existsSync('/usr/bin/script') ? false : 'no script(1) (util-linux) to run Node on a pty';
t.test('container root cannot chmod or chown the terminal behind an inherited stdout', { skip: skip || haveScript }, async (t) => {
  // script(1) runs the Node process on a fresh pty: the terminal is that pty's slave (/dev/pts/N).
  const result = path.join(work, 'tty-result.json');
  const js = path.join(work, 'tty-child.js');
  fs.writeFileSync(js, `const fs = require('node:fs');
    const { spawn } = require(${JSON.stringify(lib)});
    const st = (s) => ({ mode: s.mode, uid: s.uid, gid: s.gid, rdev: s.rdev });
    const before = st(fs.fstatSync(1));
    spawn({ rootfs: ${JSON.stringify(bb)}, command: ['/bin/sh', '-c', 'chmod 666 /proc/self/fd/1; chown 4321:4321 /proc/self/fd/1; echo "[$(test -t 1 && echo tty || echo notty)]"'], stdio: 'inherit' })
      .wait().then(() => fs.writeFileSync(${JSON.stringify(result)}, JSON.stringify({ before, after: st(fs.fstatSync(1)), isatty: require('node:tty').isatty(1) })));`);
  const out = await new Promise((resolve) => {
    const c = spawnChild('script', ['-qec', `${process.execPath} ${js}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let o = '';
    c.stdout.on('data', (d) => (o += d));
    c.stderr.on('data', (d) => (o += d));
    const timer = setTimeout(() => c.kill('SIGKILL'), 30000);
    c.on('close', () => {
      clearTimeout(timer);
      resolve(o);
    });
  });
  const r = JSON.parse(fs.readFileSync(result, 'utf8'));
  t.ok(r.isatty, "the Node process's stdout is a terminal");
  t.same(r.after, r.before, 'mode and owner of the terminal unchanged');
  t.match(out, /\[notty\]/, 'the output reached the terminal (through a pipe: the command does not see a tty)');
});

t.test("container root cannot write into Node's own stdin pipe through an inherited stdin", { skip }, async (t) => {
  // An anonymous pipe's inode is harmless to chmod, but /proc/self/fd/0 opens it again the other
  // way round: a shared stdin pipe would take the container's writes as input for Node.
  const result = path.join(work, 'pipe-result.txt');
  const js = path.join(work, 'pipe-child.js');
  fs.writeFileSync(js, `const fs = require('node:fs');
    const { spawn } = require(${JSON.stringify(lib)});
    spawn({ rootfs: ${JSON.stringify(bb)}, command: ['/bin/sh', '-c', 'echo injected > /proc/self/fd/0'], stdio: 'inherit' })
      .wait().then(() => {
        let got = '';
        process.stdin.on('data', (d) => (got += d));
        setTimeout(() => { fs.writeFileSync(${JSON.stringify(result)}, got); process.exit(0); }, 500);
      });`);
  // Node's stdin is a pipe whose writer (sleep) never writes.
  const r = spawnSync('/bin/sh', ['-c', `sleep 3 | ${process.execPath} ${js}`], { encoding: 'utf8', timeout: 30000 });
  t.equal(r.status, 0, r.stderr);
  t.equal(fs.readFileSync(result, 'utf8'), '', 'Node read nothing the container wrote');
});

// What the relay must still do (these pass before the fix as well).

t.test('an inherited stdout gets all of the output before the Node process exits', { skip }, async (t) => {
  const f = hostFile('out-big', '');
  const fd = fs.openSync(f, 'a');
  // 1 MiB through the relay, then a last line: wait() resolves only after it is written out.
  const r = await inChild('dd if=/dev/zero bs=1024 count=1024 2>/dev/null | tr "\\0" x; echo; echo last; echo err >&2', ['ignore', fd, fd]);
  fs.closeSync(fd);
  t.equal(r.status, 0, r.err);
  const out = fs.readFileSync(f, 'utf8');
  t.equal(out.length, 1024 * 1024 + 1 + 5 + 4, 'every byte arrived');
  t.match(out, /\nlast\n/);
  t.match(out, /err\n/);
});

t.test('an inherited stdin (a host file) is read by the container', { skip }, async (t) => {
  const f = hostFile('in-data', 'line one\nline two\n');
  const fd = fs.openSync(f, 'r');
  const out = hostFile('in-data-out', '');
  const ofd = fs.openSync(out, 'a');
  const r = await inChild('cat; echo "[$(test -t 0 && echo tty || echo notty)]"', [fd, ofd, 'pipe']);
  fs.closeSync(fd);
  fs.closeSync(ofd);
  t.equal(r.status, 0, r.err);
  t.equal(fs.readFileSync(out, 'utf8'), 'line one\nline two\n[notty]\n');
});

t.test('many containers inheriting at once share the relays', { skip }, async (t) => {
  const out = hostFile('many-out', '');
  const ofd = fs.openSync(out, 'a');
  const ifd = fs.openSync(hostFile('many-in', 'in\n'), 'r');
  const code = `const { spawn } = require(${JSON.stringify(lib)});
    Promise.all(Array.from({ length: 15 }, (_, i) =>
      spawn({ rootfs: ${JSON.stringify(bb)}, command: ['/bin/sh', '-c', 'cat; echo line ' + i], stdio: 'inherit' }).wait()))
      .then((infos) => { process.exitCode = infos.every((x) => x.exitCode === 0) ? 0 : 1; });`;
  const r = spawnSync(process.execPath, ['-e', code], { stdio: [ifd, ofd, 'pipe'], encoding: 'utf8', timeout: 60000 });
  fs.closeSync(ofd);
  fs.closeSync(ifd);
  t.equal(r.status, 0, r.stderr);
  t.notMatch(r.stderr, /MaxListeners/, 'no listener leak warning');
  const lines = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean).sort();
  const want = Array.from({ length: 15 }, (_, i) => ['in', `line ${i}`]).flat().sort();
  t.same(lines, want, 'each container read all of stdin, and its output arrived');
});

t.test('a stdin relay does not keep Node alive after the container ends', { skip }, async (t) => {
  // Node's stdin is a pipe that nobody ever closes: the child must still exit on its own.
  const out = hostFile('alive-out', '');
  const ofd = fs.openSync(out, 'a');
  const code = `const { spawn } = require(${JSON.stringify(lib)});
    spawn({ rootfs: ${JSON.stringify(bb)}, command: ['/bin/sh', '-c', 'read line; echo "got $line"'], stdio: 'inherit' })
      .wait().then((i) => { process.exitCode = i.exitCode; });`;
  const c = spawnChild(process.execPath, ['-e', code], { stdio: ['pipe', ofd, 'inherit'] });
  c.stdin.write('hello\n');
  const status = await new Promise((resolve) => {
    const timer = setTimeout(() => {
      c.kill('SIGKILL');
      resolve('hung');
    }, 15000);
    c.on('exit', (s) => {
      clearTimeout(timer);
      resolve(s);
    });
  });
  c.stdin.destroy();
  fs.closeSync(ofd);
  t.equal(status, 0, 'the Node process exited by itself');
  t.equal(fs.readFileSync(out, 'utf8'), 'got hello\n');
});
