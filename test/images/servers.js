'use strict';
// Servers in front of (or beside) the real registry, for the registry client's failure tests: a
// token service as docker-registry's `auth: token` expects (JWTs signed RS256 with a self-signed
// certificate sent in the `x5c` header, the certificate being the registry's rootcertbundle), and
// an HTTP proxy that passes requests to the registry, records them, and on request cuts, stalls or
// answers in its place.
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const b64url = (b) => Buffer.from(b).toString('base64url');

/** A key and a self-signed certificate made with openssl in dir: { key, certFile, der }. */
function tokenCert(dir) {
  const keyFile = path.join(dir, 'token.key');
  const certFile = path.join(dir, 'token.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=nsbox-test-token', '-days', '2', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
  const der = new crypto.X509Certificate(fs.readFileSync(certFile)).raw;
  return { key: crypto.createPrivateKey(fs.readFileSync(keyFile)), certFile, der };
}

/** A JWT as distribution's registry/auth/token verifies it (header x5c chain, RS256). */
function signToken({ key, der }, { issuer, service, subject = '', access }) {
  const now = Math.floor(Date.now() / 1000);
  const header = { typ: 'JWT', alg: 'RS256', x5c: [der.toString('base64')] };
  const claims = { iss: issuer, sub: subject, aud: service, exp: now + 600, nbf: now - 10, iat: now, jti: crypto.randomBytes(8).toString('hex'), access };
  const body = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${body}.${b64url(crypto.sign('sha256', Buffer.from(body), key))}`;
}

/**
 * A token service on 127.0.0.1. `grant(user, scope)` says which actions a (basic-authenticated, or
 * anonymous: user null) client gets on a `repository:NAME:ACTIONS` scope; `users` maps names to
 * passwords (a wrong password is a 401 with a registry-style error body). Every request is
 * recorded in `requests` ({ url, scope, authorization }).
 */
async function startTokenServer(dir, { users = {}, grant, issuer = 'nsbox-test-issuer', service = 'nsbox-test-registry' } = {}) {
  const cert = tokenCert(dir);
  const requests = [];
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    const scope = u.searchParams.get('scope') ?? '';
    requests.push({ url: req.url, scope, service: u.searchParams.get('service'), authorization: req.headers.authorization ?? null });
    let user = null;
    const m = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
    if (m) {
      const [name, ...rest] = Buffer.from(m[1], 'base64').toString().split(':');
      if (users[name] === undefined || users[name] !== rest.join(':')) {
        res.writeHead(401, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: `token service: wrong password for ${name}` }] }));
      }
      user = name;
    }
    const access = [];
    for (const s of scope.split(' ').filter(Boolean)) {
      const [type, name, actions] = s.split(':');
      const ok = (actions ?? '').split(',').filter((a) => grant(user, name, a));
      if (type === 'repository' && ok.length) access.push({ type, name, actions: ok });
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: signToken(cert, { issuer, service, subject: user ?? '', access }), expires_in: 600 }));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const realm = `http://127.0.0.1:${server.address().port}/token`;
  return {
    realm,
    requests,
    /** The `auth: token:` settings of the registry's config. */
    registryAuth: { realm, service, issuer, rootcertbundle: cert.certFile },
    /** A token for `scope` as `user` would get it (for pushing test images). */
    token: (scope, user = null) => {
      const [type, name, actions] = scope.split(':');
      return signToken(cert, { issuer, service, subject: user ?? '', access: [{ type, name, actions: actions.split(',') }] });
    },
    close: () => closeServer(server),
  };
}

function closeServer(server) {
  server.closeAllConnections();
  return new Promise((r) => server.close(r));
}

/**
 * An HTTP proxy on 127.0.0.1 in front of `target` (http://host:port). Each request is recorded in
 * `log` ({ method, url, range, status, bytes: body bytes sent to the client }); `rule(req, n)` (n:
 * how many requests for this url came before) decides what happens to it:
 *   undefined                  passed on whole
 *   { cutAfter: N }            passed on, the connection destroyed after N bytes of the body
 *   { stallAfter: N }          passed on, then nothing more after N bytes (the connection kept open)
 *   { dropRange: true }        passed on without its Range header (the registry sends it whole)
 *   { status, headers, body }  answered by the proxy instead of the registry
 */
async function startProxy(target) {
  const log = [];
  const seen = new Map();
  const held = new Set();
  let rule = () => undefined;
  const server = http.createServer((req, res) => {
    const n = seen.get(req.url) ?? 0;
    seen.set(req.url, n + 1);
    const entry = { method: req.method, url: req.url, range: req.headers.range ?? null, status: 0, bytes: 0 };
    log.push(entry);
    const r = rule(req, n) ?? {};
    if (r.status) {
      entry.status = r.status;
      res.writeHead(r.status, r.headers ?? {});
      entry.bytes = Buffer.byteLength(r.body ?? '');
      return res.end(r.body ?? '');
    }
    if (r.stallBeforeHeaders) {
      held.add(res);
      return;
    }
    const headers = { ...req.headers };
    if (r.dropRange) delete headers.range;
    const up = http.request(new URL(req.url, target), { method: req.method, headers }, (ur) => {
      entry.status = ur.statusCode;
      res.writeHead(ur.statusCode, ur.headers);
      const limit = r.cutAfter ?? r.stallAfter ?? Infinity;
      ur.on('data', (chunk) => {
        if (entry.bytes >= limit) return;
        const part = chunk.subarray(0, Math.min(chunk.length, limit - entry.bytes));
        entry.bytes += part.length;
        res.write(part);
        if (entry.bytes < limit) return;
        if (r.cutAfter !== undefined) {
          // Let the bytes go out, then drop the connection mid-body.
          res.socket?.end(() => res.socket?.destroy());
          ur.destroy();
        } else {
          held.add(res);
          ur.destroy();
        }
      });
      ur.on('end', () => {
        if (entry.bytes < limit) res.end();
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${server.address().port}`,
    log,
    setRule(fn) {
      rule = fn;
      seen.clear();
      log.length = 0;
    },
    close: () => {
      for (const res of held) res.destroy();
      return closeServer(server);
    },
  };
}

module.exports = { startTokenServer, startProxy, signToken };
