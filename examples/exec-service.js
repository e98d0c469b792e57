#!/usr/bin/env node
// An HTTP code-execution service: POST a shell script, get back what it did, as JSON. Each request
// runs in its own container taken from a warm pool (set up ahead of time, so a request pays only
// for its command), with no network, a read-only root, an unprivileged user, a time limit and a
// memory limit.
//
//   node examples/exec-service.js --rootfs /srv/rootfs/busybox --port 8080
//   curl --data-binary 'echo hi; uname -n' http://127.0.0.1:8080/run
//   {"exitCode":0,"signal":null,"stdout":"hi\nnsbox\n","stderr":"","timedOut":false,"oomKilled":false,...}
//
// stdout carries one JSON line per event: {"event":"listening","port":8080,...} once the port is
// open, {"event":"closed"} after a graceful shutdown (SIGTERM or SIGINT: no new connections,
// requests in flight are answered, then the pool's waiting containers are removed).
//
// The memory limit needs the cgroup v2 memory controller. A service that runs other people's code
// must not pretend to limit memory, so on a host without it (hybrid cgroups) the service refuses to
// start unless --allow-no-memory-limit is given; then every answer says "memoryLimit": null.
'use strict';

const http = require('node:http');
const { parseArgs } = require('node:util');
const { createPool, probe, NsboxError } = require('nsbox');

const MAX_SCRIPT = 64 * 1024;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** Reads the request body, at most `max` bytes (null if it is longer). */
async function readBody(req, max) {
  const chunks = [];
  let n = 0;
  for await (const chunk of req) {
    n += chunk.length;
    if (n > max) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function reply(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body) + '\n');
}

async function main() {
  const { values } = parseArgs({
    options: {
      rootfs: { type: 'string' },
      image: { type: 'string' }, // must be in the store already: `npx nsbox pull busybox`
      store: { type: 'string' }, // with --image: the image store (default: nsbox's)
      port: { type: 'string', default: '0' }, // 0: any free port (printed in the "listening" line)
      host: { type: 'string', default: '127.0.0.1' },
      size: { type: 'string', default: '2' }, // containers kept warm
      timeout: { type: 'string', default: '2000' }, // ms per request, then the container is killed
      memory: { type: 'string', default: '64M' },
      'allow-no-memory-limit': { type: 'boolean', default: false },
    },
  });
  if (!values.rootfs === !values.image) throw new Error('usage: exec-service.js (--rootfs DIR | --image REF [--store DIR]) [--port N] [--size N] [--timeout MS] [--memory SIZE] [--allow-no-memory-limit]');

  // Can this host enforce the memory limit? (probe() says which cgroup v2 controllers nsbox can use.)
  const host = await probe();
  let limits = { memory: values.memory };
  if (!host.cgroup.controllers.includes('memory')) {
    const reason = `no memory limit on this host: the memory cgroup v2 controller is not available (cgroups: ${host.cgroup.mode})`;
    if (!values['allow-no-memory-limit']) throw new Error(`${reason}; refusing to serve (--allow-no-memory-limit to serve anyway)`);
    emit({ event: 'warning', message: reason });
    limits = {};
  }
  const memoryLimit = limits.memory ?? null;

  // Every container of the pool gets these options; each request gets a container of its own, so
  // the memory limit holds per request. Only the command, its input and its timeout vary.
  const pool = createPool({
    size: Number(values.size),
    ...(values.rootfs ? { rootfs: values.rootfs } : { image: values.image, storeDir: values.store }),
    network: 'none',
    user: { uid: 65534, gid: 65534 },
    mounts: [{ type: 'tmpfs', target: '/tmp', size: '16M' }],
    limits,
  });

  const server = http.createServer(async (req, res) => {
    if (req.method !== 'POST' || req.url !== '/run') return reply(res, 404, { error: 'POST /run with the script as the body' });
    const script = await readBody(req, MAX_SCRIPT);
    if (script === null) return reply(res, 413, { error: `the script is longer than ${MAX_SCRIPT} bytes` });
    // A client that goes away takes its container with it.
    const ac = new AbortController();
    res.on('close', () => ac.abort());
    try {
      const r = await pool.run(['sh', '-c', script], {
        timeout: Number(values.timeout),
        maxOutput: 64 * 1024,
        encoding: 'utf8',
        signal: ac.signal,
      });
      reply(res, 200, {
        exitCode: r.exitCode,
        signal: r.signal,
        stdout: r.stdout,
        stderr: r.stderr,
        timedOut: r.timedOut,
        oomKilled: r.oomKilled,
        outputTruncated: r.stdoutDropped + r.stderrDropped > 0,
        memoryLimit,
      });
    } catch (e) {
      if (e.name === 'AbortError') return; // nobody is listening any more
      reply(res, 500, { error: e.message, code: e instanceof NsboxError ? e.code : undefined });
    }
  });
  server.requestTimeout = Number(values.timeout) + 10_000; // a slow upload cannot hold a connection forever

  try {
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(Number(values.port), values.host, resolve);
    });
  } catch (e) {
    await pool.close(); // e.g. EADDRINUSE: nothing may stay behind
    throw e;
  }
  emit({ event: 'listening', host: values.host, port: server.address().port, poolSize: Number(values.size), timeoutMs: Number(values.timeout), memoryLimit });

  // Graceful shutdown: stop accepting, let the requests in flight finish (close() also drops idle
  // keep-alive connections), then remove the pool's waiting containers. A second signal cuts the
  // open connections short.
  let stopping = false;
  const shutdown = async (sig) => {
    if (stopping) return server.closeAllConnections();
    stopping = true;
    emit({ event: 'shutdown', signal: sig });
    await new Promise((resolve) => server.close(resolve));
    await pool.close();
    emit({ event: 'closed' });
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((e) => {
  emit({ event: 'error', message: e.message, code: e instanceof NsboxError ? e.code : undefined });
  process.exitCode = 2;
});
