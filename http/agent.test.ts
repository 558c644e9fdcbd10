import '../builtins'; // the built-in registries and balancers
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable, Writable } from 'node:stream';
import { fetch as undiciFetch, getGlobalDispatcher, request, setGlobalDispatcher, stream } from 'undici';
import { createMemoryRegistry } from '../adapters/memory';
import { ConfigError, isWayfinderError } from '../core';
import { waitFor, withTimeout } from '../testkit/process';
import { WayfinderAgent, isServiceHost, type WayfinderAgentOptions } from './index';
import { countBy, fileDiscovery, load, startServer, type Answer, type TestServer } from './fixtures/support';

describe('http WayfinderAgent', function () {
  this.timeout(30_000);
  const cleanups: (() => unknown)[] = [];
  const later = (fn: () => unknown) => cleanups.push(fn);
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  async function setup(n: number, opts: { weights?: number[]; latencyMs?: number[] } = {}) {
    const reg = await fileDiscovery();
    later(reg.cleanup);
    const servers: TestServer[] = [];
    for (let i = 0; i < n; i++) {
      const s = await startServer({
        id: `s${i + 1}`,
        discovery: reg.discovery,
        weight: opts.weights?.[i],
        latencyMs: opts.latencyMs?.[i],
      });
      later(() => s.stop());
      servers.push(s);
    }
    await waitFor('every server registered', async () => (await reg.discovery.resolver.resolve('echo')).length === n, {
      timeoutMs: 5000,
    });
    return { ...reg, servers };
  }

  function agentFor(options: WayfinderAgentOptions) {
    const a = new WayfinderAgent(options);
    later(() => a.close());
    return a;
  }

  async function get(agent: WayfinderAgent, url = 'http://echo/hello'): Promise<Answer> {
    const res = await fetch(url, { dispatcher: agent } as unknown as RequestInit);
    assert.equal(res.status, 200, await res.clone().text());
    return (await res.json()) as Answer;
  }

  it('fetch() to http://<service>/path reaches the service, keeps path, method, body and the Host header', async () => {
    const { discovery, servers } = await setup(2);
    const agent = agentFor({ discovery });
    const a = await get(agent, 'http://echo:8080/invoices?x=1');
    assert.ok(['s1', 's2'].includes(a.id));
    assert.equal(a.path, '/invoices?x=1');
    assert.equal(a.host, 'echo:8080', 'the Host header is the URL host, not the endpoint address');
    const res = await fetch('http://echo/post', {
      method: 'POST',
      body: 'payload',
      dispatcher: agent,
    } as unknown as RequestInit);
    const b = (await res.json()) as Answer;
    assert.deepEqual([b.method, b.body], ['POST', 'payload']);
    // undici's own fetch, request() and stream() through the same agent.
    assert.equal(((await (await undiciFetch('http://echo/u', { dispatcher: agent })).json()) as Answer).path, '/u');
    const r = await request('http://echo/r', { dispatcher: agent });
    assert.equal(((await r.body.json()) as Answer).path, '/r');
    const chunks: Buffer[] = [];
    await stream(
      'http://echo/s',
      { dispatcher: agent, method: 'GET' },
      () =>
        new Writable({
          write(c: Buffer, _e, cb) {
            chunks.push(c);
            cb();
          },
        }),
    );
    assert.equal(JSON.parse(Buffer.concat(chunks).toString()).path, '/s');
    assert.equal(agent.stats.passThrough, 0);
    assert.ok(
      servers.every((s) => s.requests > 0),
      'round_robin reached both servers',
    );
  });

  it('works as the global dispatcher for Node’s fetch()', async () => {
    const { discovery } = await setup(1);
    const agent = agentFor({ discovery });
    const before = getGlobalDispatcher();
    setGlobalDispatcher(agent);
    later(() => setGlobalDispatcher(before));
    const res = await fetch('http://echo/global');
    assert.equal(((await res.json()) as Answer).path, '/global');
  });

  it('spreads requests by weight (weighted balancer)', async () => {
    const { discovery } = await setup(3, { weights: [1, 2, 3] });
    const agent = agentFor({ discovery, balancer: 'weighted' });
    const answers: Answer[] = [];
    for (let i = 0; i < 120; i++) answers.push(await get(agent));
    const c = countBy(answers);
    // Smooth weighted round robin is exact over whole cycles of 6.
    assert.deepEqual(c, { s1: 20, s2: 40, s3: 60 });
  });

  it('passes IP literals, localhost and excluded hosts through to a plain Agent; dotted names listed in services are services', async () => {
    assert.equal(isServiceHost('billing'), true);
    assert.equal(isServiceHost('BILLING'), true);
    for (const h of ['127.0.0.1', '[::1]', 'localhost', 'api.localhost', 'api.example.com', 'billing.svc'])
      assert.equal(isServiceHost(h), false, h);
    assert.equal(isServiceHost('billing.internal', { services: ['billing.internal'] }), true);
    assert.equal(isServiceHost('billing.internal', { services: [/\.internal$/] }), true);
    assert.equal(isServiceHost('metadata', { passThrough: ['metadata'] }), false);
    assert.equal(isServiceHost('x', { services: () => true, passThrough: () => true }), false, 'passThrough first');

    const { discovery, servers } = await setup(1);
    const agent = agentFor({ discovery, services: ['echo.internal'] });
    const direct = await get(agent, `http://127.0.0.1:${servers[0].port}/ip`);
    assert.equal(direct.host, `127.0.0.1:${servers[0].port}`);
    await get(agent, `http://localhost:${servers[0].port}/lh`);
    assert.equal(agent.stats.passThrough, 2);
    const dotted = await startServer({ id: 'dotted', discovery, service: 'echo.internal' });
    later(() => dotted.stop());
    const viaDotted = await get(agent, 'http://echo.internal/dotted');
    assert.deepEqual([viaDotted.id, viaDotted.host], ['dotted', 'echo.internal']);
    assert.equal(agent.stats.requests, 1);
    assert.equal(agent.stats.passThrough, 2);
  });

  it('fails an unknown service with NO_ENDPOINTS naming the service and the registry', async () => {
    const { discovery } = await setup(1);
    const agent = agentFor({ discovery });
    const err = await fetch('http://billing/x', { dispatcher: agent } as unknown as RequestInit).then(
      () => assert.fail('should fail'),
      (e: Error) => e.cause as Error,
    );
    assert.ok(isWayfinderError(err, 'NO_ENDPOINTS'), String(err));
    assert.match(err.message, /unknown service "billing"/);
    assert.ok(err.message.includes(discovery.description), err.message);
    assert.match(err.message, /known: echo/);
  });

  it('fails a service with no endpoints with NO_ENDPOINTS (registry that cannot list services)', async () => {
    const mem = createMemoryRegistry();
    later(() => mem.resolver.close());
    const agent = agentFor({ discovery: { resolver: mem.resolver, description: 'memory://test' } });
    const err = await fetch('http://billing/x', { dispatcher: agent } as unknown as RequestInit).then(
      () => assert.fail('should fail'),
      (e: Error) => e.cause as Error,
    );
    assert.ok(isWayfinderError(err, 'NO_ENDPOINTS'), String(err));
    assert.equal(err.message, 'service "billing" has no endpoints in registry memory://test');
  });

  it('fails with REGISTRY_UNAVAILABLE naming service and registry when no snapshot comes within resolveTimeoutMs', async () => {
    const silent = {
      watch: () => ({ close() {} }),
      resolve: () => new Promise<never>(() => {}),
      close: async () => {},
    };
    const agent = agentFor({ discovery: { resolver: silent, description: 'stuck://r' }, resolveTimeoutMs: 150 });
    const err = await request('http://billing/', { dispatcher: agent }).then(
      () => assert.fail('should fail'),
      (e: Error) => e,
    );
    assert.ok(isWayfinderError(err, 'REGISTRY_UNAVAILABLE'), String(err));
    assert.equal(err.message, 'service "billing": no answer from registry stuck://r within 150 ms');
  });

  it('serves handlers of undici’s newer controller interface (compose() interceptors)', async () => {
    const { discovery, servers } = await setup(1);
    const agent = agentFor({ discovery });
    const seen: string[] = [];
    const composed = agent.compose((dispatch) => (opts, handler) => {
      seen.push(String(opts.path));
      return dispatch(opts, handler);
    });
    const r = await request('http://echo/composed', { dispatcher: composed });
    assert.equal(((await r.body.json()) as Answer).path, '/composed');
    assert.deepEqual(seen, ['/composed']);
    assert.ok(servers[0].requests > 0);
  });

  it('close() finishes, closes its pools and a Discovery it built; later requests fail as closed', async () => {
    const reg = await fileDiscovery();
    later(reg.cleanup);
    const s = await startServer({ id: 'c1', discovery: reg.discovery, latencyMs: 200 });
    later(() => s.stop());
    const agent = new WayfinderAgent({ discovery: reg.url }); // built and owned by the agent
    const running = get(agent);
    await waitFor('the request to arrive', () => s.hosts.size > 0 || s.server.connections !== 0, {
      timeoutMs: 3000,
    }).catch(() => undefined);
    await withTimeout(agent.close(), 5000, 'close()');
    assert.equal((await running).id, 'c1', 'the running request finished');
    await assert.rejects(request('http://echo/', { dispatcher: agent }), /closed/i);
  });

  it('rejects bad options clearly', () => {
    assert.throws(() => new WayfinderAgent({ balancer: 'nope' }), ConfigError);
    assert.throws(() => new WayfinderAgent({ discovery: 'nope://x' }), /unknown registry scheme "nope"/);
    assert.throws(() => new WayfinderAgent({ connections: 0 }), /connections must be a positive integer/);
    assert.throws(() => new WayfinderAgent({ services: 'billing' as never }), /"services" must be an array/);
  });

  it('does not retry a POST whose body is a stream after it was written; retries GETs on a reset socket', async () => {
    // A server that destroys the socket of every request it receives: the request was written.
    const resets = http.createServer((req) => req.socket.destroy());
    await new Promise<void>((r) => resets.listen(0, '127.0.0.1', r));
    later(() => new Promise((r) => resets.close(r)));
    const mem = createMemoryRegistry();
    later(() => mem.resolver.close());
    const port = (resets.address() as AddressInfo).port;
    const reg = await mem.registrar!.register({ service: 'echo', host: '127.0.0.1', port });
    later(() => reg.deregister());
    const agent = agentFor({ discovery: { resolver: mem.resolver } });
    await assert.rejects(
      request('http://echo/', { method: 'POST', body: Readable.from(['a', 'b']), dispatcher: agent }),
    );
    assert.equal(agent.stats.retries, 0, 'a streamed POST is never retried');
    await assert.rejects(request('http://echo/', { dispatcher: agent }));
    assert.equal(agent.stats.retries, 2, 'a GET on a reset socket is retried up to maxAttempts');
  });

  it('p2c with peak EWMA sends less to a slow server than round_robin does', async function () {
    const { discovery } = await setup(3, { latencyMs: [0, 0, 150] });
    const share = async (
      balancer: WayfinderAgent extends never ? never : string | { name: string; ewma?: boolean },
    ) => {
      const agent = new WayfinderAgent({ discovery, balancer });
      try {
        const l = load(12, () => get(agent));
        await waitFor('300 answers', () => l.results.length >= 300, { timeoutMs: 20_000 });
        await l.stop();
        assert.deepEqual(l.failures, []);
        return (countBy(l.results).s3 ?? 0) / l.results.length;
      } finally {
        await agent.close();
      }
    };
    const rr = await share('round_robin');
    const p2c = await share('p2c_ewma');
    assert.ok(rr > 0.25, `round_robin gives the slow server its third (${rr})`);
    assert.ok(p2c < rr / 2, `p2c_ewma share of the slow server ${p2c.toFixed(3)} vs round_robin ${rr.toFixed(3)}`);
  });

  it('ring_hash sends requests with the same wayfinder-pick-key header to the same endpoint', async () => {
    const { discovery } = await setup(3);
    const agent = agentFor({ discovery, balancer: 'ring_hash' });
    const byKey = new Map<string, Set<string>>();
    for (let i = 0; i < 60; i++) {
      const key = `user-${i % 12}`;
      const res = await fetch('http://echo/', {
        dispatcher: agent,
        headers: { 'wayfinder-pick-key': key },
      } as unknown as RequestInit);
      const a = (await res.json()) as Answer;
      byKey.set(key, (byKey.get(key) ?? new Set()).add(a.id));
    }
    for (const [key, ids] of byKey) assert.equal(ids.size, 1, `${key} went to ${[...ids]}`);
    const used = new Set([...byKey.values()].flatMap((ids) => [...ids]));
    assert.ok(used.size >= 2, 'twelve keys spread over more than one endpoint');
  });

  it('outlier ejection stops sending to a server answering 503', async () => {
    const { discovery, servers } = await setup(3);
    servers[2].status = 503;
    const agent = agentFor({
      discovery,
      balancer: { name: 'round_robin', outlier: true, outlierConsecutiveFailures: 3, outlierBaseEjection: '30s' },
    });
    const statuses: number[] = [];
    for (let i = 0; i < 150; i++) {
      const res = await fetch('http://echo/', { dispatcher: agent } as unknown as RequestInit);
      await res.arrayBuffer();
      statuses.push(res.status);
    }
    const bad = statuses.filter((s) => s === 503).length;
    assert.equal(bad, 3, `the 503 server is ejected after 3 consecutive failures (saw ${bad})`);
    assert.deepEqual(
      statuses.slice(-100).filter((s) => s !== 200),
      [],
    );
  });

  it('an endpoint that leaves the set finishes its in-flight requests, then its pool closes', async () => {
    const { discovery, servers } = await setup(2, { latencyMs: [300, 300] });
    const agent = agentFor({ discovery });
    const inflight = [get(agent), get(agent), get(agent), get(agent)];
    await waitFor('requests on both servers', () => servers.every((s) => s.server.connections !== 0), {
      timeoutMs: 2000,
    }).catch(() => undefined);
    // s1 deregisters (its server keeps serving): its running requests must still complete.
    await servers[0].served.registration.deregister();
    await waitFor('agent sees one endpoint', () => agent.status()[0]?.endpoints.length === 1, { timeoutMs: 3000 });
    const answers = await withTimeout(Promise.all(inflight), 5000, 'in-flight requests');
    assert.deepEqual(countBy(answers), { s1: 2, s2: 2 });
    const after = await Promise.all([get(agent), get(agent), get(agent)]);
    assert.deepEqual(countBy(after), { s2: 3 });
    await waitFor(
      's1 connections closed',
      () => new Promise((r) => servers[0].server.getConnections((_e, n) => r(n === 0))),
      {
        timeoutMs: 3000,
      },
    );
  });
});
