import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import Consul = require('consul');
import { startFakeConsul, type FakeConsul, type FakeConsulOptions } from './fake-consul';
import { uniqueService } from './conformance';

/**
 * Fidelity of the fake Consul agent, driven by the real `consul` npm client. With CONSUL_HTTP_ADDR
 * set, the tests that need no fault injection run against that real agent instead (so the fake's
 * assumptions are checked against Consul itself); the others are skipped there.
 */

type Client = InstanceType<typeof Consul>;
const REAL = process.env.CONSUL_HTTP_ADDR;

/** Asks the vendor client for [response, body] so headers can be checked. */
function withRes(): EventEmitter & { includeResponse: true } {
  return Object.assign(new EventEmitter(), { includeResponse: true as const });
}
type Res = { statusCode: number; headers: Record<string, string | undefined> };

describe('fake Consul agent (driven by the real consul client)', function () {
  this.timeout(20_000);
  const fakes: FakeConsul[] = [];
  const clients: Client[] = [];
  const ids: { client: Client; id: string }[] = [];

  async function agent(
    opts: FakeConsulOptions = {},
    needsFake = false,
    ctx?: Mocha.Context,
  ): Promise<{ consul: Client; fake?: FakeConsul }> {
    if (REAL) {
      if (needsFake || opts.acl) ctx?.skip();
      const [host, port] = REAL.replace(/^https?:\/\//, '').split(':');
      const consul = new Consul({
        host,
        port: Number(port ?? 8500),
        defaults: process.env.CONSUL_HTTP_TOKEN ? { token: process.env.CONSUL_HTTP_TOKEN } : undefined,
      });
      clients.push(consul);
      return { consul };
    }
    const fake = await startFakeConsul(opts);
    fakes.push(fake);
    const consul = new Consul({ host: fake.host, port: fake.port });
    clients.push(consul);
    return { consul, fake };
  }
  async function register(consul: Client, body: Record<string, unknown>): Promise<void> {
    await consul.agent.service.register(body as never);
    ids.push({ client: consul, id: (body.id ?? body.name) as string });
  }
  async function health(consul: Client, opts: Record<string, unknown>): Promise<[Res, any[]]> {
    return (await consul.health.service({ ...opts, ctx: withRes() } as never)) as unknown as [Res, any[]];
  }

  afterEach(async () => {
    for (const { client, id } of ids.splice(0)) await client.agent.service.deregister(id).catch(() => {});
  });
  after(async () => {
    for (const c of clients) c.destroy();
    for (const f of fakes) await f.close();
  });

  it("registers a service with a TTL check and answers /v1/health/service in Consul's shape", async () => {
    const { consul } = await agent();
    const svc = uniqueService('web');
    await register(consul, {
      name: svc,
      id: `${svc}-1`,
      address: '10.0.0.5',
      port: 8080,
      tags: ['primary'],
      meta: { version: '1' },
      check: { ttl: '30s', status: 'passing' },
    });
    const listed = await consul.agent.service.list();
    assert.equal(listed[`${svc}-1`].Service, svc);
    assert.equal(listed[`${svc}-1`].Port, 8080);
    const [res, body] = await health(consul, { service: svc, passing: true });
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['x-consul-index'] ?? '', /^\d+$/);
    assert.equal(res.headers['x-consul-knownleader'], 'true');
    assert.equal(body.length, 1);
    const e = body[0];
    assert.equal(typeof e.Node.Node, 'string');
    assert.equal(typeof e.Node.Address, 'string');
    assert.equal(typeof e.Node.Datacenter, 'string');
    assert.deepEqual(
      {
        ID: e.Service.ID,
        Service: e.Service.Service,
        Tags: e.Service.Tags,
        Address: e.Service.Address,
        Port: e.Service.Port,
        Meta: e.Service.Meta,
        Weights: e.Service.Weights,
      },
      {
        ID: `${svc}-1`,
        Service: svc,
        Tags: ['primary'],
        Address: '10.0.0.5',
        Port: 8080,
        Meta: { version: '1' },
        Weights: { Passing: 1, Warning: 1 },
      },
    );
    const ids = e.Checks.map((c: { CheckID: string }) => c.CheckID).sort();
    assert.deepEqual(ids, ['serfHealth', `service:${svc}-1`]);
    const c = e.Checks.find((x: { CheckID: string }) => x.CheckID === `service:${svc}-1`);
    assert.equal(c.Status, 'passing');
    assert.equal(c.ServiceName, svc);
    assert.equal(c.Name, `Service '${svc}' check`);
  });

  it('starts a TTL check critical unless a Status is given; pass/warn/fail move it and ?passing follows', async () => {
    const { consul } = await agent();
    const svc = uniqueService('ttl');
    await register(consul, { name: svc, id: svc, port: 1, check: { ttl: '30s' } });
    const count = async (passing: boolean) => (await consul.health.service({ service: svc, passing })).length;
    assert.equal(await count(true), 0, 'a new TTL check is critical');
    assert.equal(await count(false), 1);
    await consul.agent.check.pass({ id: `service:${svc}`, note: 'ok' });
    assert.equal(await count(true), 1);
    await consul.agent.check.warn(`service:${svc}`);
    assert.equal(await count(true), 0, 'warning is not passing');
    const [, all] = await health(consul, { service: svc });
    assert.equal(all[0].Checks.find((c: { CheckID: string }) => c.CheckID === `service:${svc}`).Status, 'warning');
    await consul.agent.check.fail(`service:${svc}`);
    const [, failed] = await health(consul, { service: svc });
    assert.equal(failed[0].Checks.find((c: { CheckID: string }) => c.CheckID === `service:${svc}`).Status, 'critical');
  });

  it('turns a TTL check critical when the TTL passes without an update ("TTL expired")', async () => {
    const { consul } = await agent();
    const svc = uniqueService('expire');
    await register(consul, { name: svc, id: svc, port: 1, check: { ttl: '1s', status: 'passing' } });
    assert.equal((await consul.health.service({ service: svc, passing: true })).length, 1);
    const t0 = Date.now();
    let all: any[];
    for (;;) {
      all = await consul.health.service({ service: svc });
      if (all[0].Checks.some((c: { Status: string }) => c.Status === 'critical')) break;
      assert.ok(Date.now() - t0 < 5000, 'the check never expired');
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(Date.now() - t0 >= 800, 'expired before its TTL');
    assert.match(all[0].Checks.find((c: { CheckID: string }) => c.CheckID === `service:${svc}`).Output, /TTL expired/);
  });

  it('reaps a service whose check stays critical past DeregisterCriticalServiceAfter', async function () {
    const { consul, fake } = await agent({ reapIntervalMs: 100, minDeregisterCriticalMs: 300 }, true, this);
    await register(consul, {
      name: 'reaped',
      id: 'reaped-1',
      port: 1,
      check: { ttl: '200ms', status: 'passing', deregistercriticalserviceafter: '100ms' },
    });
    assert.deepEqual(fake!.serviceIds(), ['consul', 'reaped-1']);
    const t0 = Date.now();
    while (fake!.serviceIds().includes('reaped-1')) {
      assert.ok(Date.now() - t0 < 5000, 'never reaped');
      await new Promise((r) => setTimeout(r, 50));
    }
    // TTL 200ms, then the 300 ms floor (the fake's stand-in for Consul's 1 min minimum).
    assert.ok(Date.now() - t0 >= 450, `reaped after ${Date.now() - t0} ms, before TTL + minimum`);
  });

  it('blocks on ?index until that service changes, with a per-service X-Consul-Index', async () => {
    const { consul } = await agent();
    const svc = uniqueService('block');
    const other = uniqueService('other');
    await register(consul, { name: svc, id: svc, port: 1, check: { ttl: '60s', status: 'passing' } });
    const [r0] = await health(consul, { service: svc });
    const idx = BigInt(r0.headers['x-consul-index']!);
    await register(consul, { name: other, id: other, port: 2 });
    const [r1] = await health(consul, { service: svc });
    assert.equal(BigInt(r1.headers['x-consul-index']!), idx, "another service's change moved this service's index");
    // Nothing changes: the query waits out `wait` (1s, plus at most 1/16 of it). The upper bound only
    // tells "about 1 s" from the 5-minute default (a loaded machine may answer late; no tight bound).
    let t0 = Date.now();
    const [r2] = await health(consul, { service: svc, index: idx.toString(), wait: '1s' });
    const waited = Date.now() - t0;
    assert.ok(waited >= 950 && waited < 10_000, `blocked ${waited} ms for wait=1s`);
    assert.equal(BigInt(r2.headers['x-consul-index']!), idx);
    // A change wakes it early with a higher index.
    t0 = Date.now();
    const pending = health(consul, { service: svc, index: idx.toString(), wait: '10s' });
    setTimeout(
      () => void register(consul, { name: svc, id: `${svc}-b`, port: 3, check: { ttl: '60s', status: 'passing' } }),
      200,
    );
    const [r3, body3] = await pending;
    assert.ok(Date.now() - t0 < 8000, 'a change did not wake the blocking query (it waited out wait=10s)');
    assert.ok(BigInt(r3.headers['x-consul-index']!) > idx);
    assert.equal(body3.length, 2);
  });

  it("adds Consul's jitter (up to wait/16) to the wait and refuses a malformed wait", async function () {
    const { consul, fake } = await agent({ random: () => 0.999 }, true, this);
    await register(consul, { name: 'jit', id: 'jit', port: 1 });
    const [r] = await health(consul, { service: 'jit' });
    const t0 = Date.now();
    await health(consul, { service: 'jit', index: r.headers['x-consul-index'], wait: '1600ms' });
    const waited = Date.now() - t0;
    assert.ok(
      waited >= 1600 + 90 && waited < 1600 + 100 + 400,
      `waited ${waited} ms; expected 1600 + ~100 ms of jitter`,
    );
    await assert.rejects(
      consul.health.service({ service: 'jit', index: '5', wait: 'soon' } as never),
      /400|Invalid wait/i,
    );
    void fake;
  });

  it("the real client's watch() follows a service through blocking queries", async () => {
    const { consul } = await agent();
    const svc = uniqueService('watch');
    const seen: number[] = [];
    const watch = consul.watch({
      method: consul.health.service,
      options: { service: svc, passing: true, wait: '2s' } as never,
    });
    const changed = new Promise<void>((resolve, reject) => {
      watch.on('change', (data: unknown[]) => {
        seen.push(data.length);
        if (data.length === 2) resolve();
      });
      watch.on('error', reject);
    });
    try {
      await register(consul, { name: svc, id: `${svc}-1`, port: 1, check: { ttl: '60s', status: 'passing' } });
      await register(consul, { name: svc, id: `${svc}-2`, port: 2, check: { ttl: '60s', status: 'passing' } });
      await Promise.race([
        changed,
        new Promise((_, rej) => setTimeout(() => rej(new Error(`no change to 2 instances; saw ${seen}`)), 8000)),
      ]);
    } finally {
      watch.end();
    }
  });

  it('filters by ?tag, by filter expressions, and refuses a malformed filter', async () => {
    const { consul } = await agent();
    const svc = uniqueService('flt');
    await register(consul, { name: svc, id: `${svc}-a`, port: 1, tags: ['primary', 'v2'], meta: { version: '2' } });
    await register(consul, { name: svc, id: `${svc}-b`, port: 2, tags: ['secondary'], meta: { version: '1' } });
    const ids = async (o: Record<string, unknown>) =>
      (await consul.health.service({ service: svc, ...o } as never)).map((e: any) => e.Service.ID).sort();
    assert.deepEqual(await ids({ tag: 'primary' }), [`${svc}-a`]);
    assert.deepEqual(await ids({ filter: '"secondary" in Service.Tags' }), [`${svc}-b`]);
    assert.deepEqual(await ids({ filter: 'Service.Meta.version == "2" and "v2" in Service.Tags' }), [`${svc}-a`]);
    assert.deepEqual(await ids({ filter: 'Service.Meta["version"] != "2"' }), [`${svc}-b`]);
    assert.deepEqual(await ids({ filter: 'not ("primary" in Service.Tags) or Service.Port == 1' }), [
      `${svc}-a`,
      `${svc}-b`,
    ]);
    assert.deepEqual(await ids({ filter: 'Service.ID matches "-a$"' }), [`${svc}-a`]);
    await assert.rejects(
      consul.health.service({ service: svc, filter: 'Service.Meta.version ==' } as never),
      /400|Bad Request|Failed to create/i,
    );
  });

  it('lists services with their tags from /v1/catalog/services', async () => {
    const { consul } = await agent();
    const svc = uniqueService('cat');
    await register(consul, { name: svc, id: `${svc}-1`, port: 1, tags: ['b', 'a'] });
    await register(consul, { name: svc, id: `${svc}-2`, port: 2, tags: ['c'] });
    const services = (await consul.catalog.service.list()) as Record<string, string[]>;
    assert.deepEqual([...services[svc]].sort(), ['a', 'b', 'c']);
    assert.ok('consul' in services, 'the servers register the "consul" service');
  });

  it('deregisters; unknown service and check IDs answer 404', async () => {
    const { consul } = await agent();
    const svc = uniqueService('dereg');
    await register(consul, { name: svc, id: svc, port: 1, check: { ttl: '60s', status: 'passing' } });
    await consul.agent.service.deregister(svc);
    assert.equal((await consul.health.service(svc)).length, 0);
    await assert.rejects(
      consul.agent.check.pass(`service:${svc}`),
      (e: { response?: { statusCode: number } }) => e.response?.statusCode === 404,
    );
    await assert.rejects(
      consul.agent.service.deregister(`${svc}-never`),
      (e: { response?: { statusCode: number } }) => e.response?.statusCode === 404,
    );
  });

  it('answers "No path to datacenter" for an unknown dc and forwards to a WAN-joined one', async function () {
    const { consul, fake } = await agent({ datacenter: 'east' }, true, this);
    const west = await startFakeConsul({ datacenter: 'west' });
    fakes.push(west);
    fake!.joinWan(west);
    const westClient = new Consul({ host: west.host, port: west.port });
    clients.push(westClient);
    await westClient.agent.service.register({ name: 'far', id: 'far-1', port: 9 } as never);
    const [, body] = await health(consul, { service: 'far', dc: 'west' });
    assert.equal(body[0].Node.Datacenter, 'west');
    assert.equal((await consul.health.service('far')).length, 0, 'the local dc has no "far"');
    await assert.rejects(consul.health.service({ service: 'far', dc: 'nowhere' }), /No path to datacenter|500/);
  });

  describe('ACLs', () => {
    const acl = {
      defaultPolicy: 'deny' as const,
      tokens: {
        'secret-reader': { servicePrefix: { '': 'read' as const }, nodePrefix: { '': 'read' as const } },
        'secret-web-only': { service: { web: 'read' as const }, nodePrefix: { '': 'read' as const } },
        'secret-writer': { servicePrefix: { '': 'write' as const }, nodePrefix: { '': 'read' as const } },
      },
    };

    it('refuses unknown tokens and writes without service:write (403), token in the header', async function () {
      const { fake } = await agent({ acl }, true, this);
      const anon = new Consul({ host: fake!.host, port: fake!.port });
      const bogus = new Consul({ host: fake!.host, port: fake!.port, defaults: { token: 'secret-nope' } });
      const reader = new Consul({ host: fake!.host, port: fake!.port, defaults: { token: 'secret-reader' } });
      clients.push(anon, bogus, reader);
      await assert.rejects(
        bogus.health.service('web'),
        (e: { response?: { statusCode: number; body: unknown } }) =>
          e.response?.statusCode === 403 && /ACL not found/.test(String(e.response.body)),
      );
      await assert.rejects(
        reader.agent.service.register({ name: 'web', port: 1 } as never),
        (e: { response?: { statusCode: number; body: unknown } }) =>
          e.response?.statusCode === 403 && /Permission denied.*service:write/.test(String(e.response.body)),
      );
      await assert.rejects(
        anon.agent.service.register({ name: 'web', port: 1 } as never),
        (e: { response?: { statusCode: number } }) => e.response?.statusCode === 403,
      );
      const last = fake!.requests[fake!.requests.length - 2];
      assert.equal(last.tokenVia, 'header');
      assert.ok(!last.rawUrl.includes('secret'), 'the client put the token in the URL');
    });

    it('filters reads the token may not see and says so in X-Consul-Results-Filtered-By-ACLs', async function () {
      const { fake } = await agent({ acl }, true, this);
      const writer = new Consul({ host: fake!.host, port: fake!.port, defaults: { token: 'secret-writer' } });
      const webOnly = new Consul({ host: fake!.host, port: fake!.port, defaults: { token: 'secret-web-only' } });
      const anon = new Consul({ host: fake!.host, port: fake!.port });
      clients.push(writer, webOnly, anon);
      await writer.agent.service.register({ name: 'web', id: 'web-1', port: 1 } as never);
      await writer.agent.service.register({ name: 'db', id: 'db-1', port: 2 } as never);
      const [okRes, okBody] = (await webOnly.health.service({
        service: 'web',
        ctx: withRes(),
      } as never)) as unknown as [Res, unknown[]];
      assert.equal(okBody.length, 1);
      assert.equal(okRes.headers['x-consul-results-filtered-by-acls'], undefined);
      const [res, body] = (await webOnly.health.service({ service: 'db', ctx: withRes() } as never)) as unknown as [
        Res,
        unknown[],
      ];
      assert.equal(res.statusCode, 200);
      assert.deepEqual(body, []);
      assert.equal(res.headers['x-consul-results-filtered-by-acls'], 'true');
      const [cres, cat] = (await webOnly.catalog.service.list({ ctx: withRes() } as never)) as unknown as [
        Res,
        Record<string, string[]>,
      ];
      assert.deepEqual(Object.keys(cat), ['web']);
      assert.equal(cres.headers['x-consul-results-filtered-by-acls'], 'true');
      assert.deepEqual(await anon.health.service('web'), []);
    });
  });

  describe('test controls', () => {
    it('restart() forgets services and starts the index low again; restart({persist}) keeps them', async function () {
      const { consul, fake } = await agent({}, true, this);
      await consul.agent.service.register({ name: 'r', id: 'r1', port: 1 } as never);
      for (let i = 0; i < 5; i++)
        await consul.agent.service.register({ name: 'r', id: `r1`, port: 1, meta: { i: String(i) } } as never);
      const before = fake!.index;
      await fake!.restart({ persist: true });
      assert.deepEqual(fake!.serviceIds(), ['consul', 'r1']);
      assert.equal(fake!.index, before);
      await fake!.restart();
      assert.deepEqual(fake!.serviceIds(), ['consul']);
      // A fresh client: pooled keep-alive sockets died with the old agent (as with a real restart).
      const fresh = new Consul({ host: fake!.host, port: fake!.port });
      clients.push(fresh);
      const [res] = await health(fresh, { service: 'r' });
      assert.ok(BigInt(res.headers['x-consul-index']!) < before, 'the index did not go backwards');
    });

    it('resetIndex() moves X-Consul-Index backwards while a blocked query keeps waiting out its wait', async function () {
      const { consul, fake } = await agent({}, true, this);
      await consul.agent.service.register({ name: 'ri', id: 'ri', port: 1 } as never);
      const [r0] = await health(consul, { service: 'ri' });
      const idx = BigInt(r0.headers['x-consul-index']!);
      const t0 = Date.now();
      const pending = health(consul, { service: 'ri', index: idx.toString(), wait: '1s' });
      fake!.resetIndex(1);
      const [r1] = await pending;
      assert.ok(Date.now() - t0 >= 950, 'the blocked query returned early');
      assert.equal(r1.headers['x-consul-index'], '1');
    });

    it('stall() holds requests unanswered until the client gives up; ignoreBlocking() answers at once', async function () {
      const { consul, fake } = await agent({}, true, this);
      fake!.stall();
      const t0 = Date.now();
      await assert.rejects(consul.health.service({ service: 'x', timeout: 300 } as never), /timed out|timeout/i);
      assert.ok(Date.now() - t0 < 2000);
      fake!.stall(false);
      const [r] = await health(consul, { service: 'x' });
      fake!.ignoreBlocking();
      const t1 = Date.now();
      await health(consul, { service: 'x', index: r.headers['x-consul-index'], wait: '30s' });
      assert.ok(Date.now() - t1 < 10_000, 'a blocking query blocked (wait=30s) despite ignoreBlocking()');
    });

    it('stop() resets connections held by blocking queries; start() serves again on the same port', async function () {
      const { consul, fake } = await agent({}, true, this);
      const [r] = await health(consul, { service: 'y' });
      const port = fake!.port;
      const pending = health(consul, { service: 'y', index: r.headers['x-consul-index'], wait: '30s' });
      await new Promise((res) => setTimeout(res, 100));
      await fake!.stop();
      await assert.rejects(pending);
      await fake!.start();
      assert.equal(fake!.port, port);
      const [again] = await health(consul, { service: 'y' });
      assert.equal(again.statusCode, 200);
    });
  });
});
