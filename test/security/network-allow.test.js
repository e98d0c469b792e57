// Ways around the egress allow-list (network.allow), one test per attack (security review finding 5
// and its siblings; docs/security.md, "Egress").
//
// As test/90-network.test.js does, everything runs inside a network namespace this file makes for
// itself (`unshare --net`, the test's own "host"): the bridge, the veths, the host services the
// attacks aim at and all traffic live there and go with it. The containers run test/security/nettry.c
// (built static here, bind-mounted read-only at /x) to make one attempt each and say what happened;
// the host-side services count what actually arrived.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');

const inside = process.env.NSBOX_NETSEC_TEST_HOST === '1';
const toolEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(LD_PRELOAD|ASAN_OPTIONS|UBSAN_OPTIONS|LSAN_OPTIONS)$/.test(k)));
const which = (cmd) => ['/usr/bin/', '/bin/', '/usr/sbin/', '/sbin/'].map((d) => d + cmd).find((p) => fs.existsSync(p));

if (!inside) outer();
else inner();

function outer() {
  const skip = process.getuid() !== 0
    ? 'bridged networking needs root'
    : !which('unshare') || !which('ip')
      ? 'needs unshare(1) and ip(8) (util-linux, iproute2) to make the test its own network namespace'
      : false;
  t.test("a failure of the allow-list's nf_tables layer is reported at step network.policy", async (t) => {
    const { networkStep } = require('../../dist/network');
    t.same(networkStep(-4), { step: 'network.policy', syscall: 'socket' }, 'no NETLINK_NETFILTER (a kernel without nf_tables)');
    t.same(networkStep(-5), { step: 'network.policy', syscall: 'NFT_MSG_NEWRULE' }, 'the batch refused');
  });

  t.test('allow-list attacks, inside a network namespace made for the test', { skip }, (t) => {
    return t.spawn('unshare', ['--net', '--', process.execPath, __filename], { env: { ...process.env, NSBOX_NETSEC_TEST_HOST: '1' } });
  });
}

function inner() {
  const { run, spawn, removeBridge } = require('../..');
  const { busyboxRootfs } = require('../helpers');
  const net = require('node:net');
  const dgram = require('node:dgram');

  const ip = (...a) => execFileSync('ip', a, { env: toolEnv }).toString();
  ip('link', 'set', 'lo', 'up');

  const { rootfs: bb, reason: noBusybox } = busyboxRootfs();
  // Unique per run: the lease directory (/run/nsbox/net/<bridge>) is on the shared filesystem.
  const BR = `nsbs${process.pid % 100000}`;
  const GW = '10.89.0.1';
  const SUBNET = `${GW}/16`;
  const BCAST = '10.89.255.255';
  const OTHER = '192.0.2.1'; // another address of the (test's) host, on an interface of its own
  const PUBLISHED = 8080; // the container port the attacks borrow as their source port
  const HOST_TCP = 2222; // a host service nobody listed
  const HOST_UDP = 5353;
  const DNS = [GW];

  // The attacker's tool.
  const toolDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-nettry-'));
  const cc = which('gcc') || which('cc');
  const built = cc && spawnSync(cc, ['-O2', '-static', '-o', path.join(toolDir, 'nettry'), path.join(__dirname, 'nettry.c')], { env: toolEnv });
  const noTool = !cc ? 'needs a C compiler to build test/security/nettry.c' : built.status !== 0 ? `cannot build nettry statically: ${built.stderr}` : null;
  const skip = noBusybox || noTool || false;

  // Host services in the test's namespace, listening on every address: what they receive is the proof.
  const seen = { tcp: [], udp: [], local: [] };
  const tcpSrv = net.createServer((c) => {
    seen.tcp.push(c.remoteAddress);
    c.on('error', () => {});
    c.end('HOSTSVC');
  });
  const localSrv = net.createServer((c) => {
    seen.local.push(c.remoteAddress);
    c.on('error', () => {});
    c.end('LOCALSVC');
  });
  const udpSrv = dgram.createSocket('udp4');
  udpSrv.on('message', (m, r) => seen.udp.push(`${r.address}:${r.port} ${m}`));
  const reset = () => {
    seen.tcp.length = 0;
    seen.udp.length = 0;
    seen.local.length = 0;
  };

  t.before(async () => {
    await new Promise((r) => tcpSrv.listen(HOST_TCP, '0.0.0.0', r));
    await new Promise((r) => localSrv.listen(HOST_TCP + 1, '127.0.0.1', r));
    await new Promise((r) => udpSrv.bind(HOST_UDP, '0.0.0.0', r));
    // Another address of the host, not in the bridge's subnet (a veth pair: no dummy driver needed).
    ip('link', 'add', 'nsbsx0', 'type', 'veth', 'peer', 'name', 'nsbsx1');
    ip('addr', 'add', `${OTHER}/24`, 'dev', 'nsbsx0');
    ip('link', 'set', 'nsbsx0', 'up');
    ip('link', 'set', 'nsbsx1', 'up');
    if (!skip) await run({ command: ['true'], rootfs: bb, network: { bridge: BR, subnet: SUBNET, dns: DNS } });
  });
  t.teardown(async () => {
    tcpSrv.close();
    localSrv.close();
    udpSrv.close();
    try {
      ip('link', 'del', 'nsbsx0');
    } catch {
      /* gone with the namespace anyway */
    }
    if (!skip) await removeBridge({ bridge: BR }).catch(() => {});
    fs.rmSync(`/run/nsbox/net/${BR}`, { recursive: true, force: true });
    fs.rmSync(toolDir, { recursive: true, force: true });
  });

  const mounts = [{ type: 'bind', source: toolDir, target: '/x', readonly: true }];
  /** One attempt by a container with `network` (merged into the bridge settings); its JSON answer. */
  async function attempt(network, ...args) {
    const r = await run({ rootfs: bb, mounts, network: { bridge: BR, subnet: SUBNET, dns: DNS, ...network }, command: ['/x/nettry', ...args] });
    const line = r.stdout.toString().trim();
    try {
      return JSON.parse(line);
    } catch {
      return { unparsable: line, stderr: r.stderr.toString(), exitCode: r.exitCode };
    }
  }
  // An allow-list that lists nothing on the host, and a published port whose number the attacks borrow.
  const guarded = { allow: ['198.51.100.0/24:443'], ports: [{ host: 18090, container: PUBLISHED }] };
  const settle = () => new Promise((r) => setTimeout(r, 200));

  t.test("a container binding a published port's number as source port cannot reach an unlisted host port", { skip }, async (t) => {
    reset();
    const r = await attempt(guarded, 'tcp', GW, String(HOST_TCP), '--sport', String(PUBLISHED));
    await settle();
    t.match(r, { ok: false, code: 'EACCES', at: 'connect' }, 'connect() from the published port to the bridge address is refused at once');
    t.same(seen.tcp, [], 'the host service saw no connection');
  });

  t.test("a container binding a published port's number as source port cannot reach the host's other addresses", { skip }, async (t) => {
    reset();
    const r = await attempt(guarded, 'tcp', OTHER, String(HOST_TCP), '--sport', String(PUBLISHED));
    await settle();
    t.match(r, { ok: false, code: 'EACCES' });
    t.same(seen.tcp, [], 'the host service saw no connection');
  });

  t.test("a container binding a published port's number as source port cannot reach another container on the bridge", { skip }, async (t) => {
    const peer = spawn({ rootfs: bb, network: { bridge: BR, subnet: SUBNET, dns: DNS }, command: ['sh', '-c', 'while :; do nc -l -p 7000 -e echo PEERSVC; done'] });
    t.teardown(async () => {
      peer.kill();
      await peer.wait().catch(() => {});
    });
    // The peer listens once its nc is up: wait until a policy-free container can reach it.
    await settle();
    const r = await attempt(guarded, 'tcp', peer.network.address, '7000', '--sport', String(PUBLISHED));
    t.match(r, { ok: false, code: 'EACCES' }, 'refused: the peer is not listed');
    const ok = await attempt({}, 'tcp', peer.network.address, '7000');
    t.match(ok, { ok: true, data: 'PEERSVC' }, 'control: without a policy the peer answers (the attack had a target)');
  });

  t.test("UDP from a published port's number is refused like any other UDP", { skip }, async (t) => {
    reset();
    const r = await attempt(guarded, 'udp', GW, String(HOST_UDP), '--sport', String(PUBLISHED));
    await settle();
    t.match(r, { ok: false, code: 'EACCES', at: 'send' });
    t.same(seen.udp, [], 'the host service received nothing');
  });

  t.test("the host's 127.0.0.1 services are out of reach: a container's 127.0.0.1 is its own loopback", { skip }, async (t) => {
    reset();
    const r = await attempt(guarded, 'tcp', '127.0.0.1', String(HOST_TCP + 1));
    const viaEth0 = await attempt(guarded, 'tcp', '127.0.0.1', String(HOST_TCP + 1), '--bindtodev', 'eth0');
    await settle();
    t.match(r, { ok: false, code: 'ECONNREFUSED' }, "the container's own loopback answers: nobody listens there");
    t.equal(viaEth0.ok, false, 'bound to eth0, a loopback destination is not routed out');
    t.same(seen.local, [], "the host's loopback service saw no connection");
  });

  t.test("IPv6 to the bridge's link-local address is refused, also from a published port's number", { skip: skip || (!fs.existsSync('/proc/net/if_inet6') && 'the host has no IPv6') }, async (t) => {
    const ll = ip('-6', '-o', 'addr', 'show', 'dev', BR, 'scope', 'link').match(/inet6 (fe80::[0-9a-f:]+)/)?.[1];
    if (!ll) return t.skip('the bridge has no IPv6 link-local address yet');
    const v6 = net.createServer((c) => c.end('V6SVC')).listen(HOST_TCP + 2, '::');
    await new Promise((r) => v6.once('listening', r));
    t.teardown(() => v6.close());
    const r = await attempt(guarded, 'tcp', `${ll}%eth0`, String(HOST_TCP + 2), '--sport', String(PUBLISHED));
    t.match(r, { ok: false, code: 'EACCES' });
  });

  // Route lookups that do not end at the rules. With an output interface given (SO_BINDTODEVICE,
  // which needs no capability since Linux 5.7; IP_UNICAST_IF; IP_PKTINFO on sendmsg) the kernel
  // takes a refused lookup as "the routing table is wrong, the destination is on link" and sends
  // anyway; broadcasts are routed by the local table (priority 0) or not looked up at all.
  // Refused by the rules: EACCES at once; by the second layer (nf_tables, after routing): EPERM from
  // sendmsg(), and for TCP a SYN that never leaves (connect() runs into nettry's 3 s timeout).
  const refused = (t, r, what) => t.ok(r.ok === false && ['EPERM', 'EACCES', 'ETIMEDOUT'].includes(r.code), `${what}: refused (${JSON.stringify(r)})`);

  t.test('a container binding its socket to eth0 (SO_BINDTODEVICE) cannot reach an unlisted host port', { skip }, async (t) => {
    reset();
    const r = await attempt(guarded, 'tcp', GW, String(HOST_TCP), '--bindtodev', 'eth0');
    const other = await attempt(guarded, 'tcp', OTHER, String(HOST_TCP), '--bindtodev', 'eth0');
    await settle();
    refused(t, r, 'TCP to the bridge address');
    refused(t, other, "TCP to the host's other address");
    refused(t, await attempt(guarded, 'tcp', GW, String(HOST_TCP), '--dontroute'), 'SO_DONTROUTE (on-link only)');
    t.same(seen.tcp, [], 'the host service saw no connection');
  });

  t.test('a container binding its socket to eth0 (SO_BINDTODEVICE) cannot reach another container on the bridge', { skip }, async (t) => {
    const peer = spawn({ rootfs: bb, network: { bridge: BR, subnet: SUBNET, dns: DNS }, command: ['sh', '-c', 'while :; do nc -l -p 7001 -e echo PEERSVC; done'] });
    t.teardown(async () => {
      peer.kill();
      await peer.wait().catch(() => {});
    });
    await settle();
    refused(t, await attempt(guarded, 'tcp', peer.network.address, '7001', '--bindtodev', 'eth0'), 'TCP to the peer');
    t.match(await attempt({}, 'tcp', peer.network.address, '7001'), { ok: true, data: 'PEERSVC' }, 'control: without a policy the peer answers');
  });

  t.test('UDP naming eth0 (IP_PKTINFO, IP_UNICAST_IF, SO_BINDTODEVICE) cannot reach an unlisted host port', { skip }, async (t) => {
    reset();
    refused(t, await attempt(guarded, 'udp', GW, String(HOST_UDP), '--pktinfo', 'eth0'), 'IP_PKTINFO');
    refused(t, await attempt(guarded, 'udp', GW, String(HOST_UDP), '--unicast-if', 'eth0'), 'IP_UNICAST_IF');
    refused(t, await attempt(guarded, 'udp', GW, String(HOST_UDP), '--bindtodev', 'eth0'), 'SO_BINDTODEVICE');
    refused(t, await attempt(guarded, 'udp', '224.0.0.251', String(HOST_UDP), '--bindtodev', 'eth0'), 'link-local multicast (mDNS) on eth0');
    await settle();
    t.same(seen.udp, [], 'the host service received nothing');
  });

  t.test('UDP broadcasts (the subnet broadcast, 255.255.255.255) do not reach the host', { skip }, async (t) => {
    reset();
    refused(t, await attempt(guarded, 'udp', BCAST, String(HOST_UDP), '--broadcast'), 'the subnet broadcast');
    const self = await attempt({ ...guarded, address: '10.89.0.200' }, 'udp', '255.255.255.255', String(HOST_UDP), '--broadcast', '--src', '10.89.0.200');
    refused(t, self, '255.255.255.255 from the container\'s own address');
    await settle();
    t.same(seen.udp, [], 'the host service received nothing');
    // Control: without a policy the same broadcast arrives (the attack had a target).
    reset();
    await attempt({}, 'udp', BCAST, String(HOST_UDP), '--broadcast');
    await settle();
    t.equal(seen.udp.length, 1, 'control: without a policy the broadcast reaches the host');
  });

  t.test("IPv6 to the bridge's link-local address bound to eth0 (SO_BINDTODEVICE) is refused", { skip: skip || (!fs.existsSync('/proc/net/if_inet6') && 'the host has no IPv6') }, async (t) => {
    const ll = ip('-6', '-o', 'addr', 'show', 'dev', BR, 'scope', 'link').match(/inet6 (fe80::[0-9a-f:]+)/)?.[1];
    if (!ll) return t.skip('the bridge has no IPv6 link-local address yet');
    const v6 = net.createServer((c) => c.end('V6SVC')).listen(HOST_TCP + 3, '::');
    await new Promise((r) => v6.once('listening', r));
    t.teardown(() => v6.close());
    refused(t, await attempt(guarded, 'tcp', `${ll}%eth0`, String(HOST_TCP + 3), '--bindtodev', 'eth0'), 'TCP over IPv6 link-local');
  });

  t.test('an allow-list still allows what it lists, through the second layer too', { skip }, async (t) => {
    reset();
    const listed = { allow: [`${GW}:${HOST_TCP}`, `${GW}:${HOST_UDP}`] };
    t.match(await attempt(listed, 'tcp', GW, String(HOST_TCP)), { ok: true, data: 'HOSTSVC' }, 'a listed address and port');
    t.match(await attempt(listed, 'tcp', GW, String(HOST_TCP), '--bindtodev', 'eth0'), { ok: true, data: 'HOSTSVC' }, 'also from a socket bound to eth0');
    t.match(await attempt({ allow: ['10.89.0.0/16:2000-3000'] }, 'tcp', GW, String(HOST_TCP)), { ok: true, data: 'HOSTSVC' }, 'a CIDR with a port range');
    t.match(await attempt({ allow: ['10.89.0.0/24'] }, 'tcp', GW, String(HOST_TCP)), { ok: true, data: 'HOSTSVC' }, 'a CIDR without ports');
    refused(t, await attempt({ allow: ['10.89.1.0/24'] }, 'tcp', GW, String(HOST_TCP), '--bindtodev', 'eth0'), 'outside the CIDR');
    refused(t, await attempt({ allow: [`${GW}:2223-3000`] }, 'tcp', GW, String(HOST_TCP), '--bindtodev', 'eth0'), 'outside the port range');
    t.match(await attempt(listed, 'udp', GW, String(HOST_UDP)), { ok: true }, 'UDP to a listed port');
    refused(t, await attempt({ allow: [`${GW}:${HOST_UDP}`] }, 'tcp', GW, String(HOST_TCP), '--bindtodev', 'eth0'), 'TCP to an address listed only for another port');
    // The largest allow-list (256 entries with ports: 512 rules in each layer, several nf_tables batches).
    const big = Array.from({ length: 255 }, (_, i) => `10.${i}.0.0/16:${1000 + i}-${2000 + i}`);
    t.match(await attempt({ allow: [...big, `${GW}:${HOST_TCP}`] }, 'tcp', GW, String(HOST_TCP), '--bindtodev', 'eth0'), { ok: true, data: 'HOSTSVC' }, '256 entries: the last one allows');
    refused(t, await attempt({ allow: [...big, `${GW}:${HOST_UDP}`] }, 'tcp', GW, String(HOST_TCP), '--bindtodev', 'eth0'), '256 entries: what none lists');
    await settle();
    t.equal(seen.tcp.length, 5, 'the host service saw the five allowed connections');
    t.equal(seen.udp.length, 1, 'and the one allowed datagram');
  });

  t.test('ICMP to an unlisted host: a container with an allow-list has neither a raw nor a ping socket', { skip }, async (t) => {
    const r = await run({ rootfs: bb, network: { bridge: BR, subnet: SUBNET, dns: DNS, ...guarded }, command: ['sh', '-c', `cat /proc/sys/net/ipv4/ping_group_range; ping -c 1 -W 1 ${GW} 2>&1; echo rc=$?`] });
    const out = r.stdout.toString();
    t.match(out, /^1\s+0\n/, 'ping sockets are off in the new namespace (net.ipv4.ping_group_range 1 0)');
    t.match(out, /rc=[1-9]/, 'ping fails');
    t.notMatch(out, /bytes from/, 'no echo reply');
  });

  /** Connects from the test's host to addr:port until an answer or `ms` pass; what was read, or null. */
  async function knock(addr, port, ms) {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      const got = await new Promise((resolve) => {
        const s = net.connect({ host: addr, port, timeout: 700 });
        let d = '';
        s.on('data', (x) => (d += x)).on('close', () => resolve(d || null)).on('error', () => resolve(null));
        s.on('timeout', () => s.destroy());
      });
      if (got) return got;
      await new Promise((r) => setTimeout(r, 100));
    }
    return null;
  }

  t.test('a container listening on a socket bound to eth0 cannot accept a connection from an unlisted peer', { skip }, async (t) => {
    const listen = (network, port) => spawn({ rootfs: bb, mounts, network: { bridge: BR, subnet: SUBNET, dns: DNS, ...network }, command: ['/x/nettry', 'listen', String(port), '--bindtodev', 'eth0'] });
    const c = listen(guarded, 7100);
    t.teardown(async () => {
      c.kill();
      await c.wait().catch(() => {});
    });
    // The SYN-ACK goes back to the host's bridge address, which the allow-list does not list.
    t.equal(await knock(c.network.address, 7100, 3000), null, 'the connection from the host never completes');
    // Control: the same server with the host listed is reachable (the knock works).
    const ok = listen({ allow: [`${GW}/32`] }, 7101);
    t.teardown(async () => {
      ok.kill();
      await ok.wait().catch(() => {});
    });
    t.equal(await knock(ok.network.address, 7101, 3000), 'GUARDED', 'control: with the host listed it answers');
  });

  t.test("a published port with an allow-list still works, and the container's replies stay inside it", { skip }, async (t) => {
    const c = spawn({
      rootfs: bb,
      network: { bridge: BR, subnet: SUBNET, dns: DNS, allow: [], ports: [{ host: 18091, container: PUBLISHED }] },
      // Each connection is answered by netstat: the server's own view of where it comes from.
      command: ['nc', '-l', '-p', String(PUBLISHED), '-e', 'netstat', '-tn'],
    });
    t.teardown(async () => {
      c.kill();
      await c.wait().catch(() => {});
    });
    let got = '';
    for (let i = 0; i < 100 && !got; i++) {
      got = await new Promise((resolve) => {
        const s = net.connect(18091, '127.0.0.1');
        let d = '';
        s.on('data', (x) => (d += x)).on('close', () => resolve(d)).on('error', () => resolve(''));
      });
      if (!got) await new Promise((r) => setTimeout(r, 50));
    }
    // The server's side of the connection: local address ADDR:PUBLISHED, then the peer's.
    const conn = got.split('\n').map((l) => l.trim().split(/\s+/)).find((f) => f[0]?.startsWith('tcp') && f[3]?.endsWith(`:${PUBLISHED}`) && f[5] === 'ESTABLISHED');
    t.ok(conn, `the published port answers through the forwarder despite allow: [] (netstat: ${JSON.stringify(got)})`);
    const peer = (conn?.[4] ?? '').replace(/^::ffff:/, '').replace(/:\d+$/, '');
    t.equal(peer, c.network.address, "the server's peer is the container's own address (the forwarder connects inside its namespace), not the bridge address");
  });
}
