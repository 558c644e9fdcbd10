import '../builtins'; // the built-in registries and balancers
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import type { Snapshot } from '../core';
import { waitFor, withTimeout } from '../testkit/process';
import { serveHttp } from './index';
import { fileDiscovery } from './fixtures/support';

/** One request on a fresh keep-alive agent; resolves with status, connection header and body. */
function get(port: number, agent: http.Agent, path = '/') {
  return new Promise<{ status: number; connection?: string; body: string }>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection, body }));
      })
      .on('error', reject);
  });
}

function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

describe('http serveHttp()', function () {
  this.timeout(20_000);
  const cleanups: (() => unknown)[] = [];
  const later = (fn: () => unknown) => cleanups.push(fn);
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  it('listens, registers, and on stop() deregisters, drains with Connection: close, then closes', async () => {
    const { discovery, cleanup } = await fileDiscovery();
    later(cleanup);
    let slow: (() => void) | undefined;
    const server = http.createServer((req, res) => {
      if (req.url === '/slow') slow = () => res.end('slow done');
      else res.end('ok');
    });
    const served = await serveHttp(server, {
      discovery,
      service: 'web',
      host: '127.0.0.1',
      drainMs: 400,
      signals: false,
      weight: 2,
      zone: 'z1',
      metadata: { v: '1' },
    });
    later(() => served.stop({ force: true }));
    const eps = await discovery.resolver.resolve('web');
    assert.deepEqual(
      eps.map((e) => [e.host, e.port, e.weight, e.zone, e.metadata.v]),
      [['127.0.0.1', served.port, 2, 'z1', '1']],
    );
    const events: string[] = [];
    const w = discovery.resolver.watch('web', (s: Snapshot) => {
      if (s.endpoints.length === 0) events.push('deregistered');
    });
    later(() => w.close());

    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
    later(() => keepAlive.destroy());
    const before = await get(served.port, keepAlive);
    assert.equal(before.connection, 'keep-alive');
    // A request in flight across the whole stop: it must complete.
    const other = new http.Agent({ keepAlive: true });
    later(() => other.destroy());
    const inflight = get(served.port, other, '/slow');
    await waitFor('the slow request to arrive', () => slow !== undefined, { timeoutMs: 3000 });

    const t0 = performance.now();
    const stopping = served.stop();
    await waitFor('deregistration', () => events.includes('deregistered'), { timeoutMs: 3000, intervalMs: 5 });
    await waitFor('the drain to start', () => served.draining, { timeoutMs: 3000, intervalMs: 5 });
    const during = await get(served.port, keepAlive);
    assert.deepEqual([during.status, during.body, during.connection], [200, 'ok', 'close']);
    assert.equal(await refuses(served.port), false, 'still listening during the drain');
    slow!();
    assert.equal((await inflight).body, 'slow done');
    await withTimeout(stopping, 5000, 'stop()');
    assert.ok(performance.now() - t0 >= 390, 'waited the drain');
    assert.equal(await refuses(served.port), true, 'closed after the drain');
    assert.equal(server.listening, false);
    assert.equal(served.stop(), served.stop(), 'idempotent');
  });

  it('stop({ force: true }) skips the drain and cuts requests still running', async () => {
    const { discovery, cleanup } = await fileDiscovery();
    later(cleanup);
    const server = http.createServer(() => {
      /* never answers */
    });
    const served = await serveHttp(server, {
      discovery,
      service: 'hang',
      host: '127.0.0.1',
      drainMs: 10_000,
      signals: false,
    });
    const a = new http.Agent();
    later(() => a.destroy());
    const hanging = get(served.port, a).then(
      () => 'answered',
      () => 'cut',
    );
    await waitFor('a connection', () => new Promise((r) => server.getConnections((_e, n) => r(n > 0))), {
      timeoutMs: 3000,
    });
    await withTimeout(served.stop({ force: true }), 3000, 'forced stop');
    assert.equal(await withTimeout(hanging, 3000, 'the hanging request'), 'cut');
    assert.deepEqual(await discovery.resolver.resolve('hang'), []);
  });

  it('rejects bad input clearly', async () => {
    const { discovery, cleanup } = await fileDiscovery();
    later(cleanup);
    await assert.rejects(serveHttp({} as http.Server, { discovery, service: 'x' }), /node:http or node:https Server/);
    await assert.rejects(
      serveHttp(http.createServer(), {} as never),
      /opts.discovery \(with a registrar\) is required/,
    );
    await assert.rejects(
      serveHttp(http.createServer(), { discovery, service: 'x', drainMs: -1 }),
      /drainMs and shutdownTimeoutMs must be non-negative/,
    );
    // A registration the registrar refuses closes the server again.
    const server = http.createServer();
    await assert.rejects(serveHttp(server, { discovery, service: 'bad name!', host: '127.0.0.1' }), /service/);
    assert.equal(server.listening, false);
  });
});
