// Images: Bearer token auth against a real registry (Debian's docker-registry with `auth: token`,
// issue #19). The token service is this test's own (test/images/servers.js: JWTs signed with a
// self-signed certificate that is the registry's rootcertbundle); the registry checks every token
// itself. Anonymous tokens for a public repository, basic credentials sent to the realm for a
// private one, refusals typed with the token service's message, the scope asked for, and no
// credentials in the clear to a realm that is neither loopback nor listed in insecureRegistries.
'use strict';
const t = require('tap');
const dns = require('node:dns');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { pull } = require('..');
const h = require('./images/helpers');
const { startTokenServer } = require('./images/servers');

const skip = h.missingTools() || (!h.have('openssl') && 'openssl is missing (apt-get install openssl)') || false;

let scratch;
let tokens;
let reg;
let layer;
let image;
const USERS = { alice: 's3cret' };
const savedDockerConfig = process.env.DOCKER_CONFIG;

t.before(async () => {
  if (skip) return;
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'nsbox-regtoken-'));
  // No ~/.docker/config.json credentials in these tests: only what each one gives.
  process.env.DOCKER_CONFIG = fs.mkdtempSync(path.join(scratch, 'docker-'));
  // Anonymous clients may pull pub/*; alice may pull anything.
  tokens = await startTokenServer(scratch, { users: USERS, grant: (user, name, action) => action === 'pull' && (user === 'alice' || name.startsWith('pub/')) });
  reg = await h.startRegistry({ token: tokens.registryAuth });
  layer = await h.craftLayer([[{ name: 'hello', mode: 0o644 }, 'hello from a token-protected registry\n']]);
  image = h.craftImage([layer]);
  for (const name of ['pub/app', 'priv/app']) await h.pushRaw(reg.url, name, 'v1', [layer], image, { token: tokens.token(`repository:${name}:pull,push`, 'pusher') });
});

t.teardown(async () => {
  if (reg) await reg.stop();
  if (tokens) await tokens.close();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  if (savedDockerConfig === undefined) delete process.env.DOCKER_CONFIG;
  else process.env.DOCKER_CONFIG = savedDockerConfig;
});

const storeDir = () => fs.mkdtempSync(path.join(scratch, 'store-'));

t.test('the registry really asks for a token: a plain request is a 401 with a Bearer challenge', { skip }, async (t) => {
  const r = await fetch(`${reg.url}/v2/pub/app/manifests/v1`);
  t.equal(r.status, 401);
  t.match(r.headers.get('www-authenticate'), new RegExp(`^Bearer realm="${tokens.realm}",service="nsbox-test-registry",scope="repository:pub/app:pull"`));
});

t.test('anonymous pull of a public repository: a token for repository:NAME:pull, then the image', { skip }, async (t) => {
  tokens.requests.length = 0;
  const store = storeDir();
  const info = await pull(`${reg.host}/pub/app:v1`, { storeDir: store });
  t.equal(info.layers[0].digest, layer.digest);
  t.ok(tokens.requests.length >= 1, 'the token service was asked');
  t.same([...new Set(tokens.requests.map((r) => r.scope))], ['repository:pub/app:pull'], 'the scope is pull on that repository only');
  t.ok(tokens.requests.every((r) => r.service === 'nsbox-test-registry'), 'the service from the challenge');
  t.ok(tokens.requests.every((r) => r.authorization === null), 'no credentials were sent');
  t.same(h.leftovers(store), []);
});

t.test('a private repository: basic credentials go to the realm and the token works', { skip }, async (t) => {
  tokens.requests.length = 0;
  const info = await pull(`${reg.host}/priv/app:v1`, { storeDir: storeDir(), auth: { username: 'alice', password: 's3cret' } });
  t.equal(info.layers.length, 1);
  t.ok(tokens.requests.length >= 1);
  t.ok(tokens.requests.every((r) => r.authorization === `Basic ${Buffer.from('alice:s3cret').toString('base64')}`), 'alice\'s credentials, to the realm');
  t.same([...new Set(tokens.requests.map((r) => r.scope))], ['repository:priv/app:pull']);
  // The same credentials from $DOCKER_CONFIG/config.json.
  fs.writeFileSync(path.join(process.env.DOCKER_CONFIG, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('alice:s3cret').toString('base64') } } }));
  t.teardown(() => fs.rmSync(path.join(process.env.DOCKER_CONFIG, 'config.json'), { force: true }));
  t.equal((await pull(`${reg.host}/priv/app:v1`, { storeDir: storeDir() })).digest, info.digest, 'credentials from the docker config');
});

t.test('refused: wrong credentials (the token service\'s message), none for a private repository (the registry\'s)', { skip }, async (t) => {
  const store = storeDir();
  await t.rejects(pull(`${reg.host}/priv/app:v1`, { storeDir: store, auth: { username: 'alice', password: 'wrong' } }), {
    name: 'NsboxError',
    code: 'ERR_IMAGE_AUTH',
    step: 'image.manifest',
    message: /token service .* refused \(401\).*wrong password for alice/,
  });
  // Anonymous: the token service gives a token without pull access; the registry refuses it.
  await t.rejects(pull(`${reg.host}/priv/app:v1`, { storeDir: store }), { name: 'NsboxError', code: 'ERR_IMAGE_AUTH', message: /refused the credentials \(401\).*UNAUTHORIZED/ });
  t.same(h.leftovers(store), [], 'nothing left');
  t.notOk(fs.existsSync(path.join(store, 'refs.json')) && Object.keys(JSON.parse(fs.readFileSync(path.join(store, 'refs.json')))).length, 'no image recorded');
});

t.test('a plain-HTTP realm on a host that is neither loopback nor listed never gets the credentials', { skip }, async (t) => {
  // The realm's name resolves to 127.0.0.1 in this process only (dns.lookup, which fetch uses):
  // nothing is asked of a real resolver, and to the client it is just some remote host.
  const NAME = 'realm.nsbox.test';
  const lookup = dns.lookup;
  dns.lookup = function (host, opts, cb) {
    if (host !== NAME) return lookup.apply(this, arguments);
    if (typeof opts === 'function') [cb, opts] = [opts, {}];
    return opts?.all ? process.nextTick(cb, null, [{ address: '127.0.0.1', family: 4 }]) : process.nextTick(cb, null, '127.0.0.1', 4);
  };
  t.teardown(() => (dns.lookup = lookup));
  const port = new URL(tokens.realm).port;
  const far = await h.startRegistry({ token: { ...tokens.registryAuth, realm: `http://${NAME}:${port}/token` } });
  t.teardown(() => far.stop());
  await h.pushRaw(far.url, 'priv/app', 'v1', [layer], image, { token: tokens.token('repository:priv/app:pull,push', 'pusher') });
  await h.pushRaw(far.url, 'pub/app', 'v1', [layer], image, { token: tokens.token('repository:pub/app:pull,push', 'pusher') });

  tokens.requests.length = 0;
  await t.rejects(pull(`${far.host}/priv/app:v1`, { storeDir: storeDir(), auth: { username: 'alice', password: 's3cret' } }), {
    name: 'NsboxError',
    code: 'ERR_IMAGE_AUTH',
    message: new RegExp(`http://${NAME}:${port}.*plain HTTP.*insecureRegistries`),
  });
  t.same(tokens.requests.filter((r) => r.authorization), [], 'the credentials were not sent');
  // Without credentials there is nothing to leak: an anonymous token is still asked for.
  t.equal((await pull(`${far.host}/pub/app:v1`, { storeDir: storeDir() })).layers.length, 1, 'anonymous pull through that realm works');
  // Listed in insecureRegistries: the caller said plain HTTP to that host is fine.
  tokens.requests.length = 0;
  const ok = await pull(`${far.host}/priv/app:v1`, { storeDir: storeDir(), auth: { username: 'alice', password: 's3cret' }, insecureRegistries: [`${NAME}:${port}`] });
  t.equal(ok.layers.length, 1);
  t.ok(tokens.requests.some((r) => r.authorization), 'sent once the realm is listed');
});
