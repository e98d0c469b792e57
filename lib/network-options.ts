// network-options.ts: the `network` option (a mode, or a bridge with subnet, address, ports, allow,
// dns) checked and resolved, pure: a bad value is a TypeError or RangeError before anything exists.
// network.ts makes what a resolved bridge describes.
import { invalidType, invalidValue, outOfRange } from './errors';
import type { NetworkMode } from './types';
import { arrayElements, isPlainObject, rejectUnknownKeys } from './util';

/** Host ends of nsbox's veth pairs: `nsb` + the container's IPv4 address in hex (unique per lease). */
export const VETH_RE = /^nsb[0-9a-f]{8}$/;
export const DEFAULT_BRIDGE = 'nsbox0';
export const DEFAULT_SUBNET = '10.88.0.1/16';
const BRIDGE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

export interface ResolvedPort {
  host: number;
  container: number;
  hostAddress: string;
}

export interface ResolvedAllow {
  /** Network address (host order) and prefix length. */
  net: number;
  len: number;
  /** Destination port range, or null for every port and protocol. */
  ports: [number, number] | null;
  text: string;
}

export interface ResolvedBridge {
  bridge: string;
  gateway: string;
  prefix: number;
  address: string | undefined;
  ports: ResolvedPort[];
  allow: ResolvedAllow[] | null;
  dns: string[] | undefined;
}

// ---- addresses ----

export function parseIPv4(s: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const b = m.slice(1).map(Number);
  if (b.some((x) => x > 255) || m.slice(1).some((x) => x.length > 1 && x.startsWith('0'))) return null;
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function mask(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

// ---- options ----

function list(name: string, v: unknown, max: number): unknown[] {
  const items = arrayElements(name, v, 'an array');
  if (items.length > max) throw outOfRange(name, `at most ${max} entries`, items.length);
  return items;
}

function checkPort(name: string, v: unknown): number {
  if (typeof v !== 'number') throw invalidType(name, 'of type number', v);
  if (!Number.isInteger(v) || v < 1 || v > 65535) throw outOfRange(name, 'an integer from 1 to 65535', v);
  return v;
}

function checkAddress(name: string, v: unknown): number {
  if (typeof v !== 'string') throw invalidType(name, 'of type string', v);
  const a = parseIPv4(v);
  if (a === null) throw invalidValue(name, v, 'must be an IPv4 address such as 10.88.0.5');
  return a;
}

/** An allow-list entry: `ADDR`, `ADDR/LEN`, each optionally followed by `:PORT` or `:LO-HI`. */
function checkAllow(name: string, v: unknown): ResolvedAllow {
  if (typeof v !== 'string') throw invalidType(name, 'of type string', v);
  const m = /^([0-9.]+)(?:\/(\d{1,2}))?(?::(\d{1,5})(?:-(\d{1,5}))?)?$/.exec(v);
  if (!m) {
    const hint = /[a-z]/i.test(v) ? ' (host names are not supported: give an address or CIDR)' : '';
    throw invalidValue(name, v, `must be an IPv4 address or CIDR with an optional :PORT or :LO-HI${hint}`);
  }
  const addr = parseIPv4(m[1]!);
  if (addr === null) throw invalidValue(name, v, 'must start with a valid IPv4 address');
  const len = m[2] === undefined ? 32 : Number(m[2]);
  if (len > 32) throw outOfRange(name, 'a prefix length from 0 to 32', v);
  if ((addr & ~mask(len)) >>> 0 !== 0) throw invalidValue(name, v, `has host bits set (the network is ${formatIPv4((addr & mask(len)) >>> 0)}/${len})`);
  let ports: [number, number] | null = null;
  if (m[3] !== undefined) {
    const lo = Number(m[3]);
    const hi = m[4] === undefined ? lo : Number(m[4]);
    if (lo < 1 || hi > 65535 || lo > 65535) throw outOfRange(name, 'ports from 1 to 65535', v);
    if (hi < lo) throw badRange(name, v);
    ports = [lo, hi];
  }
  return { net: addr, len, ports, text: v };
}

function badRange(name: string, v: unknown): RangeError {
  return outOfRange(name, 'a port range whose end is not below its start', v);
}

/**
 * network option -> the mode the namespace code knows ('bridge' for both bridge forms) and, for a
 * bridge, everything resolved. Throws TypeError/RangeError with Node-style codes; pure.
 */
export function checkNetwork(name: string, v: unknown): { mode: NetworkMode; bridge: ResolvedBridge | undefined } {
  if (v === undefined) return { mode: 'loopback', bridge: undefined };
  if (typeof v === 'string') {
    if (!['none', 'loopback', 'host', 'bridge'].includes(v)) {
      throw invalidValue(name, v, "must be one of 'none', 'loopback', 'host', 'bridge' or a bridge options object");
    }
    if (v !== 'bridge') return { mode: v as NetworkMode, bridge: undefined };
    return { mode: 'bridge', bridge: checkNetwork(name, {}).bridge };
  }
  if (!isPlainObject(v)) throw invalidType(name, "one of 'none', 'loopback', 'host', 'bridge' or an object", v);
  rejectUnknownKeys(v, ['bridge', 'subnet', 'address', 'ports', 'allow', 'dns'], `${name}.`);
  // Each property is read once: what is checked is what is used, whatever a getter does.
  const { bridge: vBridge, subnet: vSubnet, address: vAddress, ports: vPorts, allow: vAllow, dns: vDns } = v;
  let bridge = DEFAULT_BRIDGE;
  if (vBridge !== undefined) {
    if (typeof vBridge !== 'string') throw invalidType(`${name}.bridge`, 'of type string', vBridge);
    if (!BRIDGE_RE.test(vBridge) || VETH_RE.test(vBridge) || vBridge === 'lo') {
      throw invalidValue(`${name}.bridge`, vBridge, 'must be an interface name of 1-15 letters, digits, _ . - (not lo, not nsb + 8 hex digits)');
    }
    bridge = vBridge;
  }
  const subnetText = vSubnet === undefined ? DEFAULT_SUBNET : vSubnet;
  if (typeof subnetText !== 'string') throw invalidType(`${name}.subnet`, 'of type string', subnetText);
  const sm = /^([0-9.]+)\/(\d{1,2})$/.exec(subnetText);
  const gw = sm ? parseIPv4(sm[1]!) : null;
  if (!sm || gw === null) throw invalidValue(`${name}.subnet`, subnetText, "must be the bridge's address and prefix length, such as '10.88.0.1/16'");
  const prefix = Number(sm[2]);
  if (prefix < 8 || prefix > 30) throw outOfRange(`${name}.subnet`, 'a prefix length from 8 to 30', subnetText);
  const netAddr = (gw & mask(prefix)) >>> 0;
  const bcast = (netAddr | ~mask(prefix)) >>> 0;
  if (gw === netAddr || gw === bcast) throw invalidValue(`${name}.subnet`, subnetText, 'must name a host address of the subnet (not its network or broadcast address)');
  if (gw >>> 24 === 127 || gw >>> 28 >= 14) throw invalidValue(`${name}.subnet`, subnetText, 'must not be a loopback, multicast or reserved range');
  let address: string | undefined;
  if (vAddress !== undefined) {
    const a = checkAddress(`${name}.address`, vAddress);
    if (((a & mask(prefix)) >>> 0) !== netAddr || a === netAddr || a === bcast || a === gw) {
      throw invalidValue(`${name}.address`, vAddress, `must be a free host address in ${formatIPv4(netAddr)}/${prefix} other than the bridge's ${formatIPv4(gw)}`);
    }
    address = formatIPv4(a);
  }
  const ports: ResolvedPort[] = [];
  if (vPorts !== undefined) {
    list(`${name}.ports`, vPorts, 64).forEach((p, i) => {
      const n = `${name}.ports[${i}]`;
      if (!isPlainObject(p)) throw invalidType(n, 'of type object', p);
      rejectUnknownKeys(p, ['host', 'container', 'hostAddress'], `${n}.`);
      const { host: pHost, container: pContainer, hostAddress: pAddr } = p;
      const r = {
        host: checkPort(`${n}.host`, pHost),
        container: checkPort(`${n}.container`, pContainer),
        hostAddress: pAddr === undefined ? '127.0.0.1' : formatIPv4(checkAddress(`${n}.hostAddress`, pAddr)),
      };
      if (ports.some((q) => q.host === r.host && (q.hostAddress === r.hostAddress || q.hostAddress === '0.0.0.0' || r.hostAddress === '0.0.0.0'))) {
        throw invalidValue(`${n}.host`, r.host, 'is published twice');
      }
      ports.push(r);
    });
  }
  let allow: ResolvedAllow[] | null = null;
  if (vAllow !== undefined) allow = list(`${name}.allow`, vAllow, 256).map((a, i) => checkAllow(`${name}.allow[${i}]`, a));
  let dns: string[] | undefined;
  if (vDns !== undefined) dns = list(`${name}.dns`, vDns, 3).map((d, i) => formatIPv4(checkAddress(`${name}.dns[${i}]`, d)));
  return { mode: 'bridge', bridge: { bridge, gateway: formatIPv4(gw), prefix, address, ports, allow, dns } };
}

/**
 * The allow-list is enforced by routing (FIB rules). A process with CAP_NET_RAW can send frames on
 * a packet socket, which never consults routing, and one with CAP_NET_ADMIN can change the rules:
 * with either capability the policy would be a pretence, so the combination is refused.
 */
export function checkPolicyCaps(name: string, b: ResolvedBridge | undefined, base: readonly string[], caps: { add: string[]; drop: string[] }): void {
  if (!b?.allow || caps.drop.includes('ALL')) return;
  for (const cap of ['CAP_NET_RAW', 'CAP_NET_ADMIN']) {
    const kept = (base.includes(cap) || caps.add.includes(cap) || caps.add.includes('ALL')) && !caps.drop.includes(cap);
    if (kept) {
      throw invalidValue(`${name}.allow`, b.allow.map((a) => a.text), `cannot be enforced while the container holds ${cap} (${cap === 'CAP_NET_RAW' ? 'packet sockets bypass routing' : 'it could change the rules'}); drop it with capabilities: { drop: ['${cap.slice(4)}'] }`);
    }
  }
}
