// ref.ts: image references by docker's rules (distribution/reference's normalize): `busybox` is
// docker.io/library/busybox:latest, `user/app` is docker.io/user/app:latest, and the first
// component is a registry only when it holds a `.` or a `:` or is `localhost`.
import { invalidType, invalidValue } from '../errors';

export interface ImageRef {
  /** The registry as written (docker.io for the default). */
  registry: string;
  /** The repository path (library/busybox). */
  repository: string;
  tag: string | null;
  digest: string | null;
  /** The normalized form: docker.io/library/busybox:latest (and @sha256:... when pinned). */
  canonical: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const DOMAIN = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::\d{1,5})?$/;

export function parseRef(ref: string, name = 'ref'): ImageRef {
  if (ref.length === 0 || ref.length > 4096) throw invalidValue(name, ref, 'must be an image reference such as "busybox" or "registry:5000/app:1.0"');
  let rest = ref;
  let digest: string | null = null;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw invalidValue(name, ref, 'has a digest that is not sha256:<64 hex digits>');
  }
  let tag: string | null = null;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalidValue(name, ref, 'has an invalid tag');
  }
  const parts = rest.split('/');
  let registry = 'docker.io';
  if (parts.length > 1 && (parts[0]!.includes('.') || parts[0]!.includes(':') || parts[0] === 'localhost')) {
    registry = parts.shift()!;
    if (!DOMAIN.test(registry)) throw invalidValue(name, ref, 'has an invalid registry name');
  }
  if (registry === 'index.docker.io') registry = 'docker.io';
  if (registry === 'docker.io' && parts.length === 1) parts.unshift('library');
  for (const p of parts) {
    if (!COMPONENT.test(p)) throw invalidValue(name, ref, `has an invalid repository component "${p}" (lower case letters, digits, separators)`);
  }
  const repository = parts.join('/');
  if (!tag && !digest) tag = 'latest';
  const canonical = `${registry}/${repository}${tag ? ':' + tag : ''}${digest ? '@' + digest : ''}`;
  return { registry, repository, tag, digest, canonical };
}

/**
 * The `insecureRegistries` option: registries as written in references (`host`, `host:port`,
 * `[v6]:port`). A URL (`http://host:5000/`) or an empty string would never match a reference's
 * registry, so the pull would silently go over TLS: refused before anything starts.
 */
export function checkRegistryHosts(name: string, v: unknown): string[] {
  if (!Array.isArray(v)) throw invalidType(name, 'an array of strings', v);
  return v.map((r: unknown, i) => {
    if (typeof r !== 'string') throw invalidType(`${name}[${i}]`, 'of type string', r);
    if (!DOMAIN.test(r) || r.length > 255) throw invalidValue(`${name}[${i}]`, r, "must be a registry host as in a reference ('host', 'host:port' or '[::1]:port'), without a scheme or path");
    return r;
  });
}

/** The host to talk to for a registry (docker.io's API lives on registry-1.docker.io). */
export function registryHost(registry: string): string {
  return registry === 'docker.io' ? 'registry-1.docker.io' : registry;
}

/** Plain HTTP is used for localhost, 127.0.0.0/8, ::1 and the registries the caller lists. */
export function plainHttp(registry: string, insecure: readonly string[]): boolean {
  if (insecure.includes(registry)) return true;
  const host = registry.replace(/:\d+$/, '');
  return host === 'localhost' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host === '[::1]';
}
