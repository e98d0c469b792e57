// network.ts: bridged networking (network: 'bridge' or { bridge, subnet, address, ports, allow, dns }).
//
// Before the clone, on the JS thread: the options are checked (checkNetwork, pure), then
// setupNetwork() makes sure nsbox's bridge exists in Node's own network namespace (rtnetlink from
// the addon), takes an address lease (a file per address under /run/nsbox/net/<bridge>/, made under
// an flock so several Node processes never collide, stale ones reclaimed), binds the published ports and opens a NETLINK_ROUTE socket. The
// child then makes the veth pair over that socket, and sets its address, default route and egress
// rules in its own namespace (native/core/netlink.cc). See docs/network.md.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

import { createLease, leaseLive, ownedBy, ownerOf, readLease, startTimeOf, writeLeaseAtomic, type LeaseOwner, withLock } from './lease';
import { NsboxError, errnoName, notSupported } from './errors';
import { privileged } from './runtime';
import { native, type NativeNet, type NativeRule } from './native';
import { checkNetwork, formatIPv4, mask, parseIPv4, VETH_RE, type ResolvedBridge } from './network-options';

export { VETH_RE };
import type { NetworkReport } from './types';
import { requireSupportedPlatform } from './platform';

export const NET_DIR = '/run/nsbox/net';
const PEER_IF = 'eth0';
const RULE_BASE = 100;

// ---- egress rules ----

/** The FIB rules the child installs in its netns (docs/network.md, "Egress policy"). */
export function policyRules(b: ResolvedBridge): NativeRule[] {
  if (!b.allow) return [];
  const rules: NativeRule[] = [];
  let prio = RULE_BASE;
  const add = (r: Omit<NativeRule, 'priority' | 'family'>): void => {
    rules.push({ family: 4, priority: prio++, ...r });
  };
  for (const a of b.allow) {
    const dst = a.len ? formatIPv4(a.net) : null;
    if (a.ports) {
      for (const proto of [6, 17]) add({ dst, dstLen: a.len, proto, dport: a.ports, sport: null, prohibit: false });
    } else {
      add({ dst, dstLen: a.len, proto: 0, dport: null, sport: null, prohibit: false });
    }
  }
  // No rule for published ports: the forwarder connects from inside the container's namespace (over
  // its loopback, which `lookup local` at priority 0 always allows), so the server's replies never
  // leave it. A rule letting `sport P` out to the bridge address, as before, let any process that
  // bound P as its source port reach every TCP port of the host's bridge address.
  rules.push({ family: 4, priority: 32000 - 1, dst: null, dstLen: 0, proto: 0, dport: null, sport: null, prohibit: true });
  if (ipv6Enabled()) rules.push({ family: 6, priority: 32000 - 1, dst: null, dstLen: 0, proto: 0, dport: null, sport: null, prohibit: true });
  return rules;
}

function ipv6Enabled(): boolean {
  return fs.existsSync('/proc/net/if_inet6');
}

// ---- leases ----

interface LeaseFile extends LeaseOwner {
  hostIf: string;
}

export function bridgeDir(bridge: string): string {
  return path.join(NET_DIR, bridge);
}

function leasePath(bridge: string, address: string): string {
  return path.join(bridgeDir(bridge), 'leases', address);
}

export function hostIfFor(address: string): string {
  return 'nsb' + (parseIPv4(address)! >>> 0).toString(16).padStart(8, '0');
}

/** Deterministic MAC for an address (as Docker does): a reused address never meets a stale ARP entry. */
function macFor(address: string): string {
  return '0a58' + (parseIPv4(address)! >>> 0).toString(16).padStart(8, '0');
}

function netError(step: string, errno: number, syscall: string, p?: string, message?: string): NsboxError {
  return new NsboxError({ code: errnoName(errno), errno, syscall, step, path: p, message });
}

type Link = { name: string; kind: string; index: number; master: number; up: boolean };

function links(): Link[] {
  const l = native().netList();
  if (typeof l === 'number') throw netError('network.bridge', l, 'RTM_GETLINK');
  return l;
}

/** Makes sure the bridge exists, has its address and is up. Returns its ifindex. */
function ensureBridge(b: ResolvedBridge): number {
  const n = native();
  let br = links().find((l) => l.name === b.bridge);
  if (br && br.kind !== 'bridge') {
    throw new NsboxError({ code: 'EEXIST', step: 'network.bridge', path: b.bridge, message: `interface '${b.bridge}' exists and is not a bridge (step network.bridge)` });
  }
  const addrs = n.netAddrs();
  if (typeof addrs === 'number') throw netError('network.bridge', addrs, 'RTM_GETADDR', b.bridge);
  const has = !!br && addrs.some((a) => a.index === br!.index && a.address === b.gateway && a.prefix === b.prefix);
  if (!has) {
    // Checked before anything is made. The subnet must be ours alone: an overlap with another
    // interface's (podman's cni-podman0 also defaults to 10.88.0.0/16) would make routing to one of
    // them silently wrong.
    const gw = parseIPv4(b.gateway)!;
    for (const a of addrs) {
      if (br && a.index === br.index) continue;
      const len = Math.min(a.prefix, b.prefix);
      if (((parseIPv4(a.address)! ^ gw) & mask(len)) >>> 0 === 0) {
        const other = links().find((l) => l.index === a.index)?.name ?? `#${a.index}`;
        throw new NsboxError({
          code: 'EADDRINUSE', step: 'network.bridge', path: `${b.gateway}/${b.prefix}`,
          message: `subnet ${b.gateway}/${b.prefix} overlaps ${a.address}/${a.prefix} on ${other}; choose another network.subnet (step network.bridge)`,
        });
      }
    }
  }
  if (!br) {
    const rc = n.netAddBridge(b.bridge);
    if (rc !== 0 && rc !== 17 /* EEXIST: another process made it */) {
      throw netError('network.bridge', rc, 'RTM_NEWLINK', b.bridge, rc === 95 || rc === 93 ? `the kernel has no bridge driver: RTM_NEWLINK '${b.bridge}': ${errnoName(rc)} (step network.bridge)` : undefined);
    }
    br = links().find((l) => l.name === b.bridge);
    if (!br || br.kind !== 'bridge') throw netError('network.bridge', 2, 'RTM_GETLINK', b.bridge);
  }
  if (!has) {
    const rc = n.netAddAddr(br.index, b.gateway, b.prefix);
    if (rc !== 0 && rc !== 17) throw netError('network.bridge', rc, 'RTM_NEWADDR', `${b.bridge} ${b.gateway}/${b.prefix}`);
  }
  if (!br.up) {
    const rc = n.netLinkUp(br.index);
    if (rc !== 0) throw netError('network.bridge', rc, 'RTM_NEWLINK', b.bridge);
  }
  return br.index;
}

/**
 * Reclaims leases whose owner is gone, and deletes host ends of veth pairs (nsb<hex>) on this bridge
 * whose lease is gone: what a crash leaves. Call with the lock held.
 */
function reclaimStale(b: ResolvedBridge, brIndex: number): Set<string> {
  const dir = path.join(bridgeDir(b.bridge), 'leases');
  const live = new Set<string>();
  const names = fs.readdirSync(dir);
  for (const name of names) {
    if (parseIPv4(name) === null) continue;
    if (leaseLive(readLease<LeaseFile>(path.join(dir, name)))) live.add(name);
    else fs.rmSync(path.join(dir, name), { force: true });
  }
  // Companions (<addr>.hosts, <addr>.resolv) of a lease that is gone; temporaries of a dead writer.
  for (const name of names) {
    const m = /^(\d+\.\d+\.\d+\.\d+)\.(hosts|resolv|tmp-(\d+))$/.exec(name);
    if (!m) continue;
    if (m[3] ? startTimeOf(Number(m[3])) === null : !live.has(m[1]!)) fs.rmSync(path.join(dir, name), { force: true });
  }
  for (const l of links()) {
    if (!VETH_RE.test(l.name) || l.master !== brIndex) continue;
    const addr = formatIPv4(parseInt(l.name.slice(3), 16));
    if (!live.has(addr)) native().netDelLink(l.name);
  }
  return live;
}

function allocate(b: ResolvedBridge, live: Set<string>): string {
  const gw = parseIPv4(b.gateway)!;
  const netAddr = (gw & mask(b.prefix)) >>> 0;
  const size = 2 ** (32 - b.prefix);
  if (b.address) {
    if (live.has(b.address)) {
      throw new NsboxError({ code: 'EADDRINUSE', step: 'network.lease', path: b.address, message: `address ${b.address} is leased to a running container (step network.lease)` });
    }
    return b.address;
  }
  // Round robin from the last address handed out: a just-released address is not reused at once.
  const nextFile = path.join(bridgeDir(b.bridge), 'next');
  let start = 2;
  try {
    start = Number(fs.readFileSync(nextFile, 'utf8')) || 2;
  } catch {
    /* first */
  }
  for (let k = 0; k < size; k++) {
    const off = ((start - 1 + k) % (size - 2)) + 1;  // 1 .. size-2: no network, no broadcast
    const a = (netAddr + off) >>> 0;
    if (a === gw) continue;
    const s = formatIPv4(a);
    if (live.has(s)) continue;
    fs.writeFileSync(nextFile, String(off + 1));
    return s;
  }
  throw new NsboxError({ code: 'EADDRNOTAVAIL', step: 'network.lease', path: `${formatIPv4(netAddr)}/${b.prefix}`, message: `no free address left in ${formatIPv4(netAddr)}/${b.prefix} on ${b.bridge} (step network.lease)` });
}

/** What setupNetwork() made; release() undoes all of it. */
export interface NetworkSetup {
  plan: NativeNet;
  address: string;
  gateway: string;
  bridge: string;
  hostIf: string;
  lease: string;
  /** After the clone: the lease now belongs to the container's (or machine's) PID 1. */
  adopt(pid: number): void;
  /** Closes the netlink socket given to the child (after the spawn, whatever its outcome). */
  closeSocket(): void;
  /** Starts forwarding the published ports (they are bound already). */
  forward(unref: boolean): void;
  /** Stops forwarding, closes everything, releases the lease. Idempotent. */
  release(): void;
}

/** Everything of the bridged network that exists before the clone. Root only (for now). */
export function setupNetwork(b: ResolvedBridge): NetworkSetup {
  if (!privileged()) {
    throw notSupported('network', 'bridged networking needs root (the bridge, the veth pair and the address lease are made with CAP_NET_ADMIN in the host network namespace); rootless bridging is not supported yet');
  }
  const dir = bridgeDir(b.bridge);
  try {
    fs.mkdirSync(path.join(dir, 'leases'), { recursive: true, mode: 0o700 });
  } catch (e) {
    throw netError('network.lease', Math.abs((e as NodeJS.ErrnoException).errno ?? 5), 'mkdir', dir);
  }
  const listeners: number[] = [];
  let sock = -1;
  let lease = '';
  let address = '';
  try {
    let brIndex = 0;
    withLock(dir, 'network.lease', () => {
      brIndex = ensureBridge(b);
      const live = reclaimStale(b, brIndex);
      address = allocate(b, live);
      lease = leasePath(b.bridge, address);
      createLease(lease, { ...ownerOf(process.pid), hostIf: hostIfFor(address) } as LeaseFile);
      // A host end with this name is left from a container whose lease is gone (a crash, or a
      // namespace the kernel is still tearing down): ours now.
      if (links().some((l) => l.name === hostIfFor(address))) native().netDelLink(hostIfFor(address));
    });
    for (const p of b.ports) {
      const fd = native().tcpListen(p.hostAddress, p.host);
      if (fd < 0) throw netError('network.publish', -fd, 'bind', `${p.hostAddress}:${p.host}`);
      listeners.push(fd);
    }
    sock = native().netSocket();
    if (sock < 0) throw netError('network', -sock, 'socket');
    return makeSetup(b, brIndex, address, lease, sock, listeners);
  } catch (e) {
    for (const fd of listeners) fs.closeSync(fd);
    if (sock >= 0) fs.closeSync(sock);
    if (lease) releaseLease(lease, ownerOf(process.pid));
    throw e;
  }
}

/**
 * Removes a lease (and its files) if `pid` still owns it, and the host end of its veth pair: the
 * kernel would remove the pair with the dead container's namespace, but asynchronously; deleting it
 * here means nothing is left once a container has been waited for (or a failed start has thrown).
 */
export function releaseLease(lease: string, owner: LeaseOwner): void {
  if (!fs.existsSync(lease)) return;
  // Under the bridge's lock: a lease reclaimed and taken again by another container between the
  // read and the removal is never the one removed.
  withLock(path.dirname(path.dirname(lease)), 'network.lease', () => {
    const l = readLease<LeaseFile>(lease);
    if (l && !ownedBy(l, owner)) return;
    if (l && VETH_RE.test(l.hostIf)) native().netDelLink(l.hostIf);  // ENODEV: already gone
    for (const f of [lease, `${lease}.hosts`, `${lease}.resolv`]) fs.rmSync(f, { force: true });
  });
}

function makeSetup(b: ResolvedBridge, brIndex: number, address: string, lease: string, sock: number, listeners: number[]): NetworkSetup {
  let owner = ownerOf(process.pid);
  // The container's PID 1 (a pidfd: it does not pin the namespace, and is never someone else's).
  let pid1 = -1;
  let pid1fd = -1;
  let released = false;
  const servers: net.Server[] = [];
  const conns = new Set<net.Socket>();
  const hostIf = hostIfFor(address);
  const closeSocket = (): void => {
    if (sock >= 0) fs.closeSync(sock);
    sock = -1;
  };
  return {
    plan: { sock, bridgeIndex: brIndex, hostIf, peerIf: PEER_IF, mac: macFor(address), address, prefix: b.prefix, gateway: b.gateway, rules: policyRules(b) },
    address,
    gateway: b.gateway,
    bridge: b.bridge,
    hostIf,
    lease,
    adopt(pid: number) {
      owner = ownerOf(pid);
      writeLeaseAtomic(lease, { ...owner, hostIf } as LeaseFile);
      if (b.ports.length && pid1fd < 0 && !released) {
        const fd = native().netPidfd(pid);
        if (fd >= 0) {
          pid1 = pid;
          pid1fd = fd;
        }
      }
    },
    closeSocket,
    forward(unref: boolean) {
      b.ports.forEach((p, i) => {
        const server = net.createServer((c) => {
          // The connection to the container is made from a socket of the container's own network
          // namespace (to its own address, over its loopback): the server's replies stay inside, so
          // the egress policy needs no exception for them. Before the container is adopted, or
          // once it is gone, there is nobody to connect to.
          const fd = pid1fd >= 0 ? native().netnsTcpSocket(pid1fd, pid1) : -3;
          if (fd < 0) {
            c.destroy();
            return;
          }
          conns.add(c);
          let up: net.Socket;
          try {
            up = new net.Socket({ fd, readable: true, writable: true });
          } catch {
            fs.closeSync(fd);
            conns.delete(c);
            c.destroy();
            return;
          }
          up.connect({ host: address, port: p.container });
          conns.add(up);
          const done = (): void => {
            c.destroy();
            up.destroy();
            conns.delete(c);
            conns.delete(up);
          };
          c.on('error', done).on('close', done);
          up.on('error', done).on('close', done);
          c.pipe(up);
          up.pipe(c);
        });
        server.on('error', () => {});
        server.listen({ fd: listeners[i]! });
        if (unref) server.unref();
        servers.push(server);
      });
      listeners.length = 0;
    },
    release() {
      if (released) return;
      released = true;
      closeSocket();
      for (const fd of listeners.splice(0)) fs.closeSync(fd);
      for (const s of servers) s.close();
      for (const c of conns) c.destroy();
      conns.clear();
      if (pid1fd >= 0) fs.closeSync(pid1fd);
      pid1fd = -1;
      releaseLease(lease, owner);
    },
  };
}

/** The step name and "system call" for a STEP_NET record's index (see native/core/netlink.h). */
export function networkStep(index: number): { step: string; syscall: string } {
  if (index === -1) return { step: 'network.netns', syscall: 'open' };
  if (index === -2) return { step: 'network.socket', syscall: 'socket' };
  if (index === -3) return { step: 'network.address', syscall: 'ioctl' };
  // The allow-list's nf_tables layer: no NETLINK_NETFILTER (no nf_tables), or the batch refused.
  if (index === -4) return { step: 'network.policy', syscall: 'socket' };
  if (index === -5) return { step: 'network.policy', syscall: 'NFT_MSG_NEWRULE' };
  return [
    { step: 'network.veth', syscall: 'RTM_NEWLINK' },
    { step: 'network.veth', syscall: 'RTM_NEWLINK' },
    { step: 'network.address', syscall: 'RTM_NEWADDR' },
    { step: 'network.route', syscall: 'RTM_NEWROUTE' },
  ][index] ?? { step: 'network.policy', syscall: 'RTM_NEWRULE' };
}

/**
 * Removes a bridge nsbox made, once nothing uses it: no live lease and no nsb veth on it.
 * Resolves false when it is still in use (or does not exist).
 */
export async function removeBridge(opts: { bridge?: string } = {}): Promise<boolean> {
  requireSupportedPlatform('removeBridge()');
  const b = checkNetwork('network', opts.bridge === undefined ? {} : { bridge: opts.bridge }).bridge!;
  if (!privileged()) throw notSupported('network', 'removing a bridge needs root');
  const dir = bridgeDir(b.bridge);
  if (!fs.existsSync(dir)) return false;
  return withLock(dir, 'network.lease', () => {
    const br = links().find((l) => l.name === b.bridge);
    if (!br || br.kind !== 'bridge') return false;
    const live = reclaimStale(b, br.index);
    if (live.size || links().some((l) => l.master === br.index)) return false;
    const rc = native().netDelLink(b.bridge);
    if (rc !== 0) throw netError('network.bridge', rc, 'RTM_DELLINK', b.bridge);
    fs.rmSync(path.join(dir, 'next'), { force: true });
    return true;
  });
}

/** Built in (kallsyms), loaded (/sys/module) or loadable (modules.dep of the running kernel). */
function hasDriver(module: string, symbol: string, syms: { text?: string }): boolean {
  if (fs.existsSync(`/sys/module/${module}`)) return true;
  const rel = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  for (const f of ['modules.builtin', 'modules.dep']) {
    try {
      if (new RegExp(`(^|/)${module}\\.ko`, 'm').test(fs.readFileSync(`/lib/modules/${rel}/${f}`, 'utf8'))) return true;
    } catch {
      /* not there */
    }
  }
  try {
    syms.text ??= fs.readFileSync('/proc/kallsyms', 'utf8');
    return new RegExp(` ${symbol}$`, 'm').test(syms.text);
  } catch {
    return false;
  }
}

/** probe(): what bridged networking this host allows. Looks only; changes nothing. */
export function probeNetwork(kernelAtLeast: (major: number, minor: number) => boolean): NetworkReport {
  const syms: { text?: string } = {};
  return {
    root: privileged(),
    bridge: hasDriver('bridge', 'br_dev_setup', syms),
    veth: hasDriver('veth', 'veth_newlink', syms),
    policyRules: kernelAtLeast(4, 17),
    nftables: hasDriver('nf_tables', 'nft_register_chain_type', syms),
    ipv6: ipv6Enabled(),
  };
}
