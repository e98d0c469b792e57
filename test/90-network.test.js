// Bridged networking (network: 'bridge'): veth pairs on nsbox's bridge, address leases, published
// ports, the egress allow-list, teardown and crash recovery.
//
// Every bridge scenario runs inside a network namespace this file makes for itself (`unshare
// --net`, the test's own "host"): the bridge, the veths and all traffic live there, and the
// machine's real interfaces are never touched. The outer run only checks that, and rootless.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');

const inside = process.env.NSBOX_NET_TEST_HOST === '1';
// Host tools run without the sanitizer lane's preload (scripts/asan.sh): their own leaks are not ours.
const toolEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(LD_PRELOAD|ASAN_OPTIONS|UBSAN_OPTIONS|LSAN_OPTIONS)$/.test(k)));
const which = (cmd) => ['/usr/bin/', '/bin/', '/usr/sbin/', '/sbin/'].map((d) => d + cmd).find((p) => fs.existsSync(p));

if (!inside) outer();
else inner();

/** The links of the namespace this process is in, by name. */
function linkNames() {
  return execFileSync('ip', ['-o', 'link', 'show'], { env: toolEnv }).toString().trim().split('\n').map((l) => l.split(': ')[1].split('@')[0]).sort();
}

function outer() {
  const skip = process.getuid() !== 0 ? 'needs root' : !which('unshare') || !which('ip') ? 'needs unshare(1) and ip(8) (util-linux, iproute2)' : false;
  const before = skip ? [] : linkNames();
  t.test('bridged networking, inside a network namespace made for the test', { skip }, (t) => {
    return t.spawn('unshare', ['--net', '--', process.execPath, __filename], { env: { ...process.env, NSBOX_NET_TEST_HOST: '1' } });
  });
  t.test("the machine's own network namespace is left as it was", { skip }, async (t) => {
    t.same(linkNames(), before, 'the same links as before the test');
    t.notOk(linkNames().some((n) => /^nsb/.test(n)), 'no nsbox link in this namespace');
  });

  t.test('CLI: --network bridge, --publish and --allow become the network option; conflicts are usage errors', async (t) => {
    const { parseRun, parseMachineStart } = require('../dist/cli');
    t.same(parseRun(['--network', 'bridge', '--', 'true']).options.network, 'bridge');
    t.same(parseRun(['--publish', '8080:80', '--publish=127.0.0.2:8443:443', '--allow', '10.88.0.5:80', '--', 'true']).options.network, {
      ports: [{ host: 8080, container: 80 }, { host: 8443, container: 443, hostAddress: '127.0.0.2' }],
      allow: ['10.88.0.5:80'],
    });
    t.same(parseMachineStart(['web', '--rootfs', '/srv', '--network', 'bridge', '--publish', '8080:80']).options.network, { ports: [{ host: 8080, container: 80 }] });
    t.throws(() => parseRun(['--publish', '80', '--', 'true']), { message: /--publish must be HOST:CONTAINER/ });
    t.throws(() => parseRun(['--network', 'none', '--allow', '10.0.0.1', '--', 'true']), { message: /need --network bridge/ });
  });

  const setpriv = which('setpriv');
  t.test('bridged networking as a non-root user is ENOTSUP naming root, before anything starts', { skip: skip || (!setpriv && 'needs setpriv(1)') }, async (t) => {
    const script = `
      const { run } = require(${JSON.stringify(path.join(__dirname, '..'))});
      run({ command: ['/bin/true'], network: 'bridge' }).then(
        () => console.log(JSON.stringify({ ok: true })),
        (e) => console.log(JSON.stringify({ name: e.name, code: e.code, step: e.step, message: e.message })));`;
    // A plain environment: tap's loader hooks (NODE_OPTIONS) write where nobody may.
    const r = spawnSync(setpriv, ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', script], { timeout: 30000, env: { PATH: process.env.PATH } });
    const out = JSON.parse(r.stdout.toString().trim().split('\n').pop() || '{}');
    t.equal(out.name, 'NsboxError', r.stderr.toString());
    t.equal(out.code, 'ENOTSUP');
    t.equal(out.step, 'network');
    t.match(out.message, /needs root/);
  });
}

function inner() {
  const { run, spawn, Machine, NsboxError, probe, removeBridge } = require('..');
  const { busyboxRootfs, warmUp, snapshot, assertNoLeaks, machineStateDir } = require('./helpers');
  const http = require('node:http');
  const net = require('node:net');

  const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
  // Unique per run: the lease directory (/run/nsbox/net/<bridge>) is on the shared filesystem.
  const BR = `nsbt${process.pid % 100000}`;
  const leaseDir = `/run/nsbox/net/${BR}/leases`;
  const stateDir = machineStateDir(t, 'nsbox-net-machines-');
  const DNS = ['10.88.0.1'];
  execFileSync('ip', ['link', 'set', 'lo', 'up'], { env: toolEnv });

  t.teardown(async () => {
    await removeBridge({ bridge: BR }).catch(() => {});
    fs.rmSync(`/run/nsbox/net/${BR}`, { recursive: true, force: true });
  });

  const leases = () => (fs.existsSync(leaseDir) ? fs.readdirSync(leaseDir).sort() : []);
  const ip = (...a) => execFileSync('ip', a, { env: toolEnv }).toString();
  const netState = () => ({
    links: linkNames(),
    // Device and address only: flags such as IPv6 DAD's "tentative" change by themselves.
    addresses: ip('-o', 'addr', 'show').trim().split('\n').map((l) => l.split(/\s+/).slice(1, 4).join(' ')).sort(),
    rules: ip('rule', 'show'),
    leases: leases(),
  });
  /** Waits (bounded) until the host ends of exited containers are gone: netns teardown is asynchronous. */
  async function settled(want) {
    for (let i = 0; i < 100; i++) {
      const now = netState();
      if (JSON.stringify(now) === JSON.stringify(want)) return now;
      await new Promise((r) => setTimeout(r, 50));
    }
    return netState();
  }
  const GET = `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10`;
  function httpGet(url) {
    return new Promise((resolve, reject) => {
      const req = http.get(url, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      });
      req.setTimeout(10000, () => req.destroy(new Error('no answer within 10 s')));
      req.on('error', reject);
    });
  }
  async function webMachine(name, network = {}) {
    const m = await Machine.start({ name, rootfs: bb, ephemeral: true, stateDir, network: { bridge: BR, dns: DNS, ...network } });
    const r = await m.run(['sh', '-c', `mkdir -p /www && echo hello-from-${name} > /www/index.html && httpd -p 80 -h /www`]);
    if (r.exitCode !== 0) throw new Error(`httpd did not start: ${r.stderr}`);
    return m;
  }
  async function stopAll(...ms) {
    for (const m of ms) {
      await m.stop({ timeout: 2000 });
      await m.destroy();
    }
  }

  let before;
  let netBefore;
  t.before(async () => {
    before = await warmUp();
    // The bridge is made by the first start and stays; take the baseline with it in place.
    if (!noBusybox) await run({ command: ['true'], rootfs: bb, network: { bridge: BR, dns: DNS } });
    // The baseline is taken once that container's veth is gone (the kernel removes it with the
    // namespace, asynchronously).
    for (let i = 0; i < 100 && linkNames().some((n) => /^nsb[0-9a-f]{8}$/.test(n)); i++) await new Promise((r) => setTimeout(r, 50));
    netBefore = netState();
  });

  t.test('two machines on the bridge: one serves httpd, the other fetches from it by address; a published port reaches it from the host', { skip: noBusybox }, async (t) => {
    const web = await webMachine('web', { ports: [{ host: 18080, container: 80 }] });
    const client = await Machine.start({ name: 'client', rootfs: bb, ephemeral: true, stateDir, network: { bridge: BR, dns: DNS } });
    t.match(web.network, { bridge: BR, gateway: '10.88.0.1', address: /^10\.88\.\d+\.\d+$/, hostIf: /^nsb[0-9a-f]{8}$/ });
    t.not(web.network.address, client.network.address, 'each machine has its own address');

    const got = await client.run(['sh', '-c', `${GET} ${web.network.address} 80`]);
    t.equal(got.exitCode, 0, got.stderr.toString());
    t.match(got.stdout.toString(), /^HTTP\/1\.[01] 200/, 'an HTTP answer over the bridge');
    t.match(got.stdout.toString(), /hello-from-web/, "the other machine's page, fetched by address");

    const ifs = await client.run(['sh', '-c', 'ip -o -4 addr show dev eth0; ip route; cat /etc/hosts /etc/resolv.conf']);
    const out = ifs.stdout.toString();
    t.match(out, new RegExp(`inet ${client.network.address.replace(/\./g, '\\.')}/16`), 'eth0 has the leased address');
    t.match(out, /default via 10\.88\.0\.1 dev eth0/, 'the default route goes via the bridge');
    t.match(out, new RegExp(`${client.network.address.replace(/\./g, '\\.')}\\s+client`), '/etc/hosts names the machine');
    t.match(out, /nameserver 10\.88\.0\.1/, '/etc/resolv.conf has the given nameserver');

    const page = await httpGet('http://127.0.0.1:18080/');
    t.equal(page.status, 200);
    t.match(page.body, /hello-from-web/, 'the published port reaches httpd from the (test) host');
    const host = linkNames();
    t.ok(host.includes(web.network.hostIf) && host.includes(client.network.hostIf), 'the host ends are on the host side');
    t.same(leases().filter((n) => !n.includes('.h') && !n.includes('.r')), [client.network.address, web.network.address].sort(), 'one lease per machine');

    await stopAll(web, client);
    t.same(leases(), netBefore.leases, 'stopping releases the leases');
    await t.rejects(httpGet('http://127.0.0.1:18080/'), { code: 'ECONNREFUSED' }, 'the published port is closed with the machine');
    t.same((await settled(netBefore)).links, netBefore.links, 'their veths are gone with their namespaces');
  });

  const python = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => fs.existsSync(p));
  t.test("bridged, default rootfs: localhost and the container's own name resolve (glibc, python3); /etc files read-only", { skip: !python && 'no python3 on the host' }, async (t) => {
    const c = spawn({
      network: { bridge: BR, dns: DNS }, hostname: 'bridged',
      command: [python, '-c', 'import socket, os; print(socket.gethostbyname("localhost"), socket.gethostbyname("bridged"), socket.gethostbyname("nsbox-host")); print(open("/etc/resolv.conf").read().strip()); print(os.access("/etc/hosts", os.W_OK))'],
    });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    const info = await c.wait();
    t.equal(info.exitCode, 0);
    t.equal(out, `127.0.0.1 ${c.network.address} 10.88.0.1\nnameserver 10.88.0.1\nFalse\n`, 'localhost, its address, the bridge; the given nameserver; not writable');
  });

  t.test('an app container with an allow-list reaches the allowed address and port and is refused at once elsewhere', { skip: noBusybox }, async (t) => {
    const web = await webMachine('policy-web');
    t.teardown(() => stopAll(web));
    const a = web.network.address;
    // nc -w 10: a dropped packet would end in a timeout message; a refusal by the policy is an
    // immediate "Permission denied" (EACCES from connect()).
    const script = [
      `${GET} ${a} 80; echo "rc=$?"`,
      `echo | nc -w 10 ${a} 8081 2>&1; echo "rc=$?"`,
      `echo | nc -w 10 10.88.0.1 80 2>&1; echo "rc=$?"`,
      `echo | nc -w 10 10.88.0.1 18080 2>&1; echo "rc=$?"`,
      `ip rule del pref 31999 2>&1; echo "rc=$?"`,
      `ip rule add pref 1 lookup main 2>&1; echo "rc=$?"`,
      `echo | nc -w 10 127.0.0.1 80 2>&1; echo "rc=$?"`,
    ].join('\n');
    const r = await run({ rootfs: bb, network: { bridge: BR, dns: DNS, allow: [`${a}:80`] }, command: ['sh', '-c', script] });
    const out = r.stdout.toString();
    const parts = out.split(/^rc=(\d+)$/m);
    t.match(parts[0], /hello-from-policy-web/, 'the allowed address and port answers');
    t.equal(parts[1], '0');
    t.match(parts[2], /can't connect to remote host \([\d.]+\): Permission denied/, 'another port of the same address: EACCES at once');
    t.match(parts[4], /Permission denied/, 'the bridge address (the host): EACCES at once');
    t.match(parts[6], /Permission denied/, 'a port the host publishes: EACCES at once');
    t.match(parts[8], /Operation not permitted/, 'the container cannot delete the catch-all rule (no CAP_NET_ADMIN)');
    t.match(parts[10], /Operation not permitted/, 'nor add one in front of it');
    t.match(parts[12], /Connection refused/, 'loopback is not subject to the policy');
    t.notMatch(out, /timed out/i, 'nothing waited for the tool timeout');

    // The errno a client inside sees, from the probe: TCP and UDP, allowed and refused.
    const probe = async (network, ...targets) => {
      const cmd = targets.map(([proto, addr, port]) => `/probe connect ${proto} ${addr} ${port}`).join('; ');
      const res = await run({ rootfs: bb, network: { bridge: BR, dns: DNS, ...network }, command: ['sh', '-c', cmd] });
      return res.stdout.toString().trim().split('\n').map((l) => JSON.parse(l));
    };
    const [tcpOk, tcpOther, udpOk, udpOther, udpDns] = await probe({ allow: [`${a}:80`] }, ['tcp', a, 80], ['tcp', a, 8081], ['udp', a, 80], ['udp', a, 81], ['udp', '10.88.0.1', 53]);
    t.same(tcpOk, { ok: true }, 'TCP to the allowed address and port connects');
    t.same(tcpOther, { ok: false, errno: 13, code: 'EACCES' }, 'TCP to another port: connect() fails with EACCES');
    t.same(udpOk, { ok: true }, 'UDP to the allowed address and port is sent');
    t.same(udpOther, { ok: false, errno: 13, code: 'EACCES' }, 'UDP to another port: EACCES');
    t.same(udpDns, { ok: false, errno: 13, code: 'EACCES' }, 'DNS on the bridge address is not exempt');
    const [plain] = await probe({}, ['tcp', a, 8081]);
    t.same(plain, { ok: false, errno: 111, code: 'ECONNREFUSED' }, 'without a policy the same port is a plain ECONNREFUSED from the server');

    // A machine with an allow-list (its CAP_NET_RAW dropped, as required): the same policy, for
    // PID 1 and every exec.
    const guarded = await Machine.start({ name: 'guarded', rootfs: bb, ephemeral: true, stateDir, capabilities: { drop: ['NET_RAW'] }, network: { bridge: BR, dns: DNS, allow: [`${a}:80`] } });
    const g1 = await guarded.run(['/probe', 'connect', 'tcp', a, '80']);
    const g2 = await guarded.run(['/probe', 'connect', 'tcp', a, '8081']);
    t.same(JSON.parse(g1.stdout.toString()), { ok: true }, 'machine: the allowed port connects');
    t.same(JSON.parse(g2.stdout.toString()), { ok: false, errno: 13, code: 'EACCES' }, 'machine: another port is EACCES');
    await stopAll(guarded);

    const control = await run({ rootfs: bb, network: { bridge: BR, dns: DNS }, command: ['sh', '-c', `echo | nc -w 10 ${a} 8081 2>&1`] });
    t.match(control.stdout.toString(), /Connection refused/, 'without an allow-list the same port answers with a plain refusal');

    const none = await run({ rootfs: bb, network: { bridge: BR, dns: DNS, allow: [] }, command: ['sh', '-c', `echo | nc -w 10 ${a} 80 2>&1`] });
    t.match(none.stdout.toString(), /Permission denied/, 'an empty allow-list refuses everything');

    const cidr = await run({ rootfs: bb, network: { bridge: BR, dns: DNS, allow: ['10.88.0.0/16:79-81'] }, command: ['sh', '-c', `${GET} ${a} 80 2>&1`] });
    t.match(cidr.stdout.toString(), /hello-from-policy-web/, 'a CIDR with a port range allows what is inside it');
  });

  t.test('a published port of an app container with an allow-list: the forwarder is answered, nothing else', { skip: noBusybox }, async (t) => {
    const c = spawn({
      rootfs: bb,
      network: { bridge: BR, dns: DNS, allow: [], ports: [{ host: 18081, container: 8000 }] },
      command: ['sh', '-c', 'mkdir -p /tmp/w && echo app-page > /tmp/w/index.html && exec httpd -f -p 8000 -h /tmp/w'],
      readonly: true,
    });
    t.match(c.network, { bridge: BR, address: /^10\.88\./ });
    let page;
    for (let i = 0; i < 100 && !page; i++) {
      page = await httpGet('http://127.0.0.1:18081/').catch(() => new Promise((r) => setTimeout(r, 50)));
    }
    t.equal(page?.status, 200);
    t.match(page?.body, /app-page/, "the server's replies reach the forwarder despite allow: []");
    const hostIf = c.network.hostIf;
    t.ok(linkNames().includes(hostIf), 'its host end is in the bridge');
    c.kill();
    await c.wait();
    t.same(leases(), netBefore.leases, 'the lease is released once the container is waited for');
    t.notOk(linkNames().includes(hostIf), 'and its host end is gone by then');
    await t.rejects(httpGet('http://127.0.0.1:18081/'), { code: 'ECONNREFUSED' }, 'the forwarder is closed');
  });

  t.test('concurrent starts from several Node processes never get the same address', { skip: noBusybox }, async (t) => {
    const cp = require('node:child_process');
    const script = `
      const { spawn } = require(${JSON.stringify(path.join(__dirname, '..'))});
      const cs = [];
      for (let i = 0; i < 8; i++) cs.push(spawn({ command: ['sleep', '60'], rootfs: ${JSON.stringify(bb)}, stdio: 'ignore', network: { bridge: ${JSON.stringify(BR)}, dns: ${JSON.stringify(DNS)} } }));
      console.log(JSON.stringify(cs.map((c) => c.network.address)));
      process.stdin.on('end', async () => {
        for (const c of cs) c.kill();
        await Promise.all(cs.map((c) => c.wait()));
        // No process.exit(): the sanitizer lane's LeakSanitizer would report V8's live heap.
      }).resume();`;
    const procs = [0, 1, 2].map(() => cp.spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] }));
    const lists = await Promise.all(procs.map((p) => new Promise((resolve) => {
      let out = '';
      const timer = setTimeout(() => resolve([]), 60000);
      p.stdout.on('data', (d) => {
        out += d;
        if (out.includes('\n')) {
          clearTimeout(timer);
          resolve(JSON.parse(out.split('\n')[0]));
        }
      });
    })));
    const all = lists.flat();
    t.equal(all.length, 24, '3 processes x 8 containers started');
    t.equal(new Set(all).size, all.length, 'every address is different');
    t.equal(leases().filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n)).length, 24, 'one lease each');
    await Promise.all(procs.map((p) => new Promise((resolve) => {
      p.on('exit', resolve);
      p.stdin.end();
    })));
    t.same(await settled(netBefore), netBefore, 'all released, all veths gone');
  });

  t.test('100 start/stop cycles with networking leave links, addresses, leases and rules where they started', { skip: noBusybox }, async (t) => {
    const start = await settled(netBefore);
    for (let i = 0; i < 100; i++) {
      const r = await run({ command: ['true'], rootfs: bb, network: { bridge: BR, dns: DNS, ...(i % 2 ? { allow: ['10.88.0.1:53'] } : {}) } });
      if (r.exitCode !== 0) {
        t.fail(`cycle ${i}: exit ${r.exitCode} ${r.stderr}`);
        break;
      }
    }
    const m = await Machine.start({ name: 'cycled', rootfs: bb, ephemeral: true, stateDir, network: { bridge: BR, dns: DNS } });
    await stopAll(m);
    t.same(await settled(start), start, 'links, addresses, rules and leases as before');
    await assertNoLeaks(t, before, 'after 100 bridged containers');
  });

  t.test('what a crash leaves is cleaned up by the next start: stale leases and stale veths', { skip: noBusybox }, async (t) => {
    // A lease whose owner is gone (a pid that has exited), and a host end nobody leases.
    const dead = spawnSync('true', { env: toolEnv }).pid;
    fs.writeFileSync(path.join(leaseDir, '10.88.200.1'), JSON.stringify({ pid: dead, start: '1', hostIf: 'nsb0a58c801' }));
    fs.writeFileSync(path.join(leaseDir, '10.88.200.1.hosts'), '');
    ip('link', 'add', 'nsb0a58c802', 'type', 'veth', 'peer', 'name', 'nsbtpeer');
    ip('link', 'set', 'nsb0a58c802', 'master', BR);
    // A machine started by another Node process (gone since), whose PID 1 then died without a stop.
    const script = `
      const { Machine } = require(${JSON.stringify(path.join(__dirname, '..'))});
      Machine.start({ name: 'crashed', rootfs: ${JSON.stringify(bb)}, ephemeral: true, stateDir: ${JSON.stringify(stateDir)}, network: { bridge: ${JSON.stringify(BR)}, dns: ${JSON.stringify(DNS)} } })
        .then((m) => console.log(JSON.stringify({ pid: m.pid, address: m.network.address })));`;
    const started = spawnSync(process.execPath, ['-e', script], { timeout: 30000 });
    const { pid, address: addr } = JSON.parse(started.stdout.toString().trim() || '{}');
    t.ok(pid > 0, `the machine started: ${started.stderr}`);
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 250 && fs.existsSync(`/proc/${pid}`); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    t.ok(leases().includes(addr), "the dead machine's lease is still there");

    const r = await run({ command: ['true'], rootfs: bb, network: { bridge: BR, dns: DNS } });
    t.equal(r.exitCode, 0);
    t.notOk(leases().some((n) => n.startsWith('10.88.200.1')), 'the stale lease and its files were reclaimed');
    t.notOk(leases().includes(addr), "the dead machine's lease was reclaimed");
    t.notOk(linkNames().includes('nsb0a58c802'), 'the stale veth was deleted');
    const again = await Machine.get('crashed', { stateDir });
    t.equal(await again.state(), 'stopped');
    await again.destroy();
    t.same(await settled(netBefore), netBefore);
  });

  t.test('failures leave nothing: a taken published port, a taken fixed address', { skip: noBusybox }, async (t) => {
    const blocker = net.createServer().listen(18082, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    const e = await run({ command: ['true'], rootfs: bb, network: { bridge: BR, dns: DNS, ports: [{ host: 18082, container: 80 }] } }).catch((x) => x);
    t.type(e, NsboxError);
    t.match(e, { code: 'EADDRINUSE', step: 'network.publish', syscall: 'bind', path: '127.0.0.1:18082' });
    blocker.close();

    const held = spawn({ command: ['sleep', '30'], rootfs: bb, network: { bridge: BR, dns: DNS, address: '10.88.0.250' } });
    t.equal(held.network.address, '10.88.0.250', 'a fixed address is honoured');
    const e2 = await run({ command: ['true'], rootfs: bb, network: { bridge: BR, dns: DNS, address: '10.88.0.250' } }).catch((x) => x);
    t.match(e2, { name: 'NsboxError', code: 'EADDRINUSE', step: 'network.lease', path: '10.88.0.250' });
    held.kill();
    await held.wait();

    // A start that fails in the child after its veth pair exists (exec of a missing command).
    const e4 = await run({ command: ['/no/such/command'], rootfs: bb, network: { bridge: BR, dns: DNS } }).catch((x) => x);
    t.match(e4, { name: 'NsboxError', code: 'ENOENT', step: 'exec' });
    t.same(netState(), netBefore, 'at once: no veth, lease or address left after the failed exec');

    // A subnet that overlaps another interface's is refused before a bridge is made.
    ip('link', 'add', 'nsbtdummy', 'type', 'bridge');
    ip('addr', 'add', '10.77.3.1/24', 'dev', 'nsbtdummy');
    const e3 = await run({ command: ['true'], rootfs: bb, network: { bridge: 'nsbtover', subnet: '10.77.0.1/16', dns: DNS } }).catch((x) => x);
    t.match(e3, { name: 'NsboxError', code: 'EADDRINUSE', step: 'network.bridge', message: /overlaps 10\.77\.3\.1\/24 on nsbtdummy/ });
    t.notOk(linkNames().includes('nsbtover'), 'no bridge was made for it');
    ip('link', 'del', 'nsbtdummy');
    fs.rmSync('/run/nsbox/net/nsbtover', { recursive: true, force: true });
    t.same(await settled(netBefore), netBefore, 'no link, lease, address or rule left');
    await assertNoLeaks(t, before, 'after the failed starts');
  });

  t.test('bad network options are rejected before anything runs', async (t) => {
    const fresh = 'nsbbad' + (process.pid % 1000);
    const cases = [
      ['an unknown mode', 'bridged', TypeError, 'ERR_INVALID_ARG_VALUE', /"network"/],
      ['a number', 5, TypeError, 'ERR_INVALID_ARG_TYPE', /"network"/],
      ['a misspelled key', { alow: [] }, TypeError, 'ERR_INVALID_ARG_VALUE', /did you mean "network.allow"/],
      ['a bridge name with a slash', { bridge: 'a/b' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"network.bridge"/],
      ['a bridge name over 15 characters', { bridge: 'x'.repeat(16) }, TypeError, 'ERR_INVALID_ARG_VALUE', /"network.bridge"/],
      ['a bridge name shaped like a veth', { bridge: 'nsb0a580001' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"network.bridge"/],
      ['a subnet given as its network address', { bridge: fresh, subnet: '10.88.0.0/16' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"network.subnet"/],
      ['a subnet without a prefix', { bridge: fresh, subnet: '10.88.0.1' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"network.subnet"/],
      ['a /4 subnet', { bridge: fresh, subnet: '10.88.0.1/4' }, RangeError, 'ERR_OUT_OF_RANGE', /"network.subnet"/],
      ['an address outside the subnet', { bridge: fresh, address: '10.99.0.5' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"network.address"/],
      ["the bridge's own address", { bridge: fresh, address: '10.88.0.1' }, TypeError, 'ERR_INVALID_ARG_VALUE', /"network.address"/],
      ['port 0', { bridge: fresh, ports: [{ host: 0, container: 80 }] }, RangeError, 'ERR_OUT_OF_RANGE', /"network.ports\[0\].host"/],
      ['port 70000', { bridge: fresh, ports: [{ host: 8080, container: 70000 }] }, RangeError, 'ERR_OUT_OF_RANGE', /"network.ports\[0\].container"/],
      ['a port as a string', { bridge: fresh, ports: [{ host: '8080', container: 80 }] }, TypeError, 'ERR_INVALID_ARG_TYPE', /"network.ports\[0\].host"/],
      ['a host port published twice', { bridge: fresh, ports: [{ host: 8080, container: 80 }, { host: 8080, container: 81 }] }, TypeError, 'ERR_INVALID_ARG_VALUE', /published twice/],
      ['a host name as hostAddress', { bridge: fresh, ports: [{ host: 8080, container: 80, hostAddress: 'localhost' }] }, TypeError, 'ERR_INVALID_ARG_VALUE', /hostAddress/],
      ['a host name in allow', { bridge: fresh, allow: ['example.com:80'] }, TypeError, 'ERR_INVALID_ARG_VALUE', /host names are not supported/],
      ['a /33 in allow', { bridge: fresh, allow: ['10.0.0.0/33'] }, RangeError, 'ERR_OUT_OF_RANGE', /"network.allow\[0\]"/],
      ['host bits in an allowed CIDR', { bridge: fresh, allow: ['10.0.0.1/8'] }, TypeError, 'ERR_INVALID_ARG_VALUE', /host bits/],
      ['port 0 in allow', { bridge: fresh, allow: ['10.0.0.1:0'] }, RangeError, 'ERR_OUT_OF_RANGE', /"network.allow\[0\]"/],
      ['a reversed port range in allow', { bridge: fresh, allow: ['10.0.0.1:90-80'] }, RangeError, 'ERR_OUT_OF_RANGE', /"network.allow\[0\]"/],
      ['allow as a string', { bridge: fresh, allow: '10.0.0.1' }, TypeError, 'ERR_INVALID_ARG_TYPE', /"network.allow"/],
      ['a dns name', { bridge: fresh, dns: ['dns.example'] }, TypeError, 'ERR_INVALID_ARG_VALUE', /"network.dns\[0\]"/],
    ];
    const snap = snapshot();
    for (const [what, network, Cls, code, msg] of cases) {
      t.throws(() => spawn({ command: ['true'], network }), { constructor: Cls, code, message: msg }, `spawn: ${what}`);
      await t.rejects(run({ command: ['true'], network }), { constructor: Cls, code, message: msg }, `run: ${what}`);
    }
    await t.rejects(Machine.start({ name: 'badnet', rootfs: bb || '/', stateDir, network: { bridge: fresh, ports: [{ host: -1, container: 80 }] } }), { code: 'ERR_OUT_OF_RANGE' }, 'Machine.start: a negative port');
    t.throws(() => spawn({ command: ['true'], network: { bridge: fresh, allow: [] }, capabilities: { add: ['NET_RAW'] } }), { code: 'ERR_INVALID_ARG_VALUE', message: /CAP_NET_RAW \(packet sockets bypass routing\)/ }, 'an allow-list with CAP_NET_RAW');
    await t.rejects(Machine.start({ name: 'badnet', rootfs: bb || '/', stateDir, network: { bridge: fresh, allow: [] } }), { code: 'ERR_INVALID_ARG_VALUE', message: /CAP_NET_RAW/ }, "Machine.start: an allow-list with the machine's CAP_NET_RAW");
    await t.rejects(run({ command: ['true'], rootfs: '/nonexistent-rootfs', network: { bridge: fresh } }), { code: 'ENOENT', step: 'rootfs' }, 'a missing rootfs fails first');
    await t.rejects(Machine.start({ name: 'badnet', rootfs: '/nonexistent-rootfs', stateDir, network: { bridge: fresh } }), { code: 'ENOENT', step: 'rootfs' }, 'Machine.start: a missing rootfs fails first');
    t.notOk(linkNames().includes(fresh), 'no bridge was made');
    t.notOk(fs.existsSync(`/run/nsbox/net/${fresh}`), 'no lease directory was made');
    t.notOk(fs.existsSync(path.join(stateDir, 'badnet')), 'no machine state was made');
    t.same(snapshot(), snap, 'nothing else was left either');
  });

  t.test('probe reports networking', async (t) => {
    const r = await probe();
    t.match(r.network, { root: true, bridge: Boolean, veth: Boolean, policyRules: Boolean, nftables: Boolean, ipv6: Boolean });
    t.equal(r.network.bridge, true, 'this host has the bridge driver (the tests above used it)');
    t.equal(r.network.veth, true);
    t.equal(r.network.policyRules, true);
  });

  t.test('removeBridge removes the bridge once nothing uses it', { skip: noBusybox }, async (t) => {
    const c = spawn({ command: ['sleep', '30'], rootfs: bb, network: { bridge: BR, dns: DNS } });
    t.equal(await removeBridge({ bridge: BR }), false, 'not while a container is on it');
    t.ok(linkNames().includes(BR));
    c.kill();
    await c.wait();
    await settled(netBefore);
    t.equal(await removeBridge({ bridge: BR }), true);
    t.notOk(linkNames().includes(BR), 'the bridge is gone');
  });
}
