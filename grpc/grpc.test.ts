import '../builtins'; // the built-in registries and balancers
import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { ConfigError, Discovery, registerBalancer } from '../core';
import { EchoClient, startEchoServer, type EchoServer } from '../testkit/echo';
import { freePort, tempDir, waitFor, withTimeout } from '../testkit/process';
import { WAYFINDER_ENDPOINT, grpcBridgeStats, installGrpc, parseBridgeTarget, wayfinderEndpointOf } from './index';
import {
  captured,
  captures,
  doneCalls,
  memoryDiscovery,
  setupTestDoubles,
  testRegistry,
  uniqueName,
} from './fixtures/support';

/**
 * End-to-end tests of the bridge over real loopback gRPC servers and the in-process registries.
 * Every test uses its own registry name, and closes its clients, servers and registries.
 */

const CAPTURE_SC = (opts: Record<string, unknown> = {}) =>
  JSON.stringify({ loadBalancingConfig: [{ wayfinder_grpctest_capture: opts }] });

describe('grpc bridge', function () {
  this.timeout(20_000);
  const cleanups: (() => unknown)[] = [];
  const later = (fn: () => unknown) => cleanups.push(fn);

  before(() => {
    installGrpc();
    // Registered after the first installGrpc(): calling it again makes them usable from grpc.
    setupTestDoubles();
    const inst = installGrpc();
    assert.ok(inst.schemes.includes('wftest'), 'a scheme registered later is installed by a second installGrpc()');
    assert.ok(inst.policies.includes('wayfinder_grpctest_capture'));
    assert.ok(inst.policies.includes('wayfinder_round_robin'));
    assert.ok(!inst.schemes.includes('dns') && inst.schemes.includes('wayfinder+dns'), "dns: stays grpc-js's own");
  });

  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  function client(target: string, options?: grpc.ClientOptions): EchoClient {
    const c = new EchoClient(target, undefined, options);
    later(() => c.close());
    return c;
  }
  async function servers(
    n: number,
    d: Discovery,
    extra: Parameters<typeof startEchoServer>[0] = {},
  ): Promise<EchoServer[]> {
    const out = await Promise.all(
      Array.from({ length: n }, () => startEchoServer({ discovery: d, drainMs: 0, ...extra })),
    );
    for (const s of out) later(() => s.kill());
    return out;
  }
  async function registry(name = uniqueName()): Promise<{ name: string; d: Discovery }> {
    const d = await memoryDiscovery(name);
    later(() => d.close());
    return { name, d };
  }
  /** Calls until every id in `ids` answered (bounded); returns the replies' ids. */
  async function untilAllSeen(c: EchoClient, ids: string[], opts = {}): Promise<void> {
    const seen = new Set<string>();
    await waitFor(
      `calls to reach ${ids.join(', ')}`,
      async () => {
        const r = await c.echo({}, opts);
        seen.add(r.serverId);
        return ids.every((id) => seen.has(id));
      },
      { intervalMs: 1, timeoutMs: 5000 },
    );
  }

  describe('targets', () => {
    it('maps each target form to a registry URL and a service', () => {
      assert.deepEqual(parseBridgeTarget('etcd://127.0.0.1:2379/echo?prefix=/services'), {
        scheme: 'etcd',
        adapterScheme: 'etcd',
        service: 'echo',
        registryUrl: 'etcd://127.0.0.1:2379?prefix=%2Fservices',
      });
      assert.equal(parseBridgeTarget('memory://n/echo').registryUrl, 'memory://n');
      assert.equal(parseBridgeTarget('file:///echo?path=/tmp/reg.json').registryUrl, 'file:///tmp/reg.json');
      assert.equal(
        parseBridgeTarget('zk://h1:2181,h2:2181/echo?path=/services&format=curator').registryUrl,
        'zk://h1:2181,h2:2181/services?format=curator',
      );
      assert.deepEqual(parseBridgeTarget('wayfinder+dns://127.0.0.1:53/_grpc._tcp.echo'), {
        scheme: 'wayfinder+dns',
        adapterScheme: 'dns',
        service: '_grpc._tcp.echo',
        registryUrl: 'dns://127.0.0.1:53',
      });
      assert.deepEqual(parseBridgeTarget('wayfinder:///echo'), { scheme: 'wayfinder', service: 'echo' });
    });

    it('rejects malformed targets with the field named, at client construction', () => {
      assert.throws(() => parseBridgeTarget('memory://n/a/b'), /one path segment/);
      assert.throws(() => parseBridgeTarget('wayfinder://host/echo'), /takes no authority/);
      assert.throws(() => parseBridgeTarget('wayfinder:///echo?x=1'), /takes no \?options/);
      assert.throws(() => parseBridgeTarget('file:///echo?path=relative.json'), /"path" must start with "\/"/);
      assert.throws(() => new EchoClient('memory://n/a/b'), /one path segment/);
      assert.throws(() => new EchoClient('etcd://127.0.0.1:2379/echo?format=nope'), /etcd: "format"/);
    });
  });

  it('resolves memory://<name>/echo and spreads calls evenly over 3 servers with wayfinder_round_robin', async () => {
    const { name, d } = await registry();
    const ss = await servers(3, d);
    const c = client(`memory://${name}/echo`);
    await untilAllSeen(
      c,
      ss.map((s) => s.id),
    );
    const counts = new Map<string, number>();
    for (let i = 0; i < 60; i++) {
      const r = await c.echo({ message: `m${i}` });
      assert.equal(r.message, `m${i}`);
      counts.set(r.serverId, (counts.get(r.serverId) ?? 0) + 1);
    }
    for (const s of ss) assert.equal(counts.get(s.id), 20, `server ${s.id} got ${counts.get(s.id)} of 60`);
  });

  it('resolves wayfinder:///echo through the installed default discovery', async () => {
    const { d } = await registry();
    installGrpc({ discovery: d });
    later(() => installGrpc({ discovery: null }));
    const [s] = await servers(1, d);
    const c = client('wayfinder:///echo');
    const r = await c.echo({ message: 'hi' });
    assert.equal(r.serverId, s.id);
    assert.equal(r.port, s.port);
  });

  it('without an installed discovery, wayfinder: builds one from WAYFINDER_REGISTRY and closes it with its last channel', async () => {
    const { name, d } = await registry();
    const [s] = await servers(1, d);
    const saved = process.env.WAYFINDER_REGISTRY;
    process.env.WAYFINDER_REGISTRY = `memory://${name}`;
    later(() =>
      saved === undefined ? delete process.env.WAYFINDER_REGISTRY : (process.env.WAYFINDER_REGISTRY = saved),
    );
    const c = new EchoClient('wayfinder:///echo');
    assert.equal((await c.echo()).serverId, s.id);
    assert.ok(grpcBridgeStats().registries.some((r) => r.registry === `memory://${name}` && r.channels === 1));
    c.close();
    await waitFor(
      'the default discovery to close',
      () => !grpcBridgeStats().registries.some((r) => r.registry === `memory://${name}`),
      { timeoutMs: 2000 },
    );
  });

  it('delivers additions and removals to the channel', async () => {
    const { name, d } = await registry();
    const [a] = await servers(1, d);
    const c = client(`memory://${name}/echo`);
    assert.equal((await c.echo()).serverId, a.id);
    const [b] = await servers(1, d);
    await untilAllSeen(c, [a.id, b.id]);
    await a.registration!.deregister();
    // After the removal reaches the channel, every call lands on b (a is still up: not a failover).
    await waitFor(
      'calls to avoid the removed server',
      async () => {
        const ids = await Promise.all(Array.from({ length: 6 }, () => c.echo().then((r) => r.serverId)));
        return ids.every((id) => id === b.id);
      },
      { timeoutMs: 5000, intervalMs: 10 },
    );
    const before = a.calls;
    for (let i = 0; i < 10; i++) assert.equal((await c.echo()).serverId, b.id);
    assert.equal(a.calls, before);
  });

  it('an empty set fails fast with UNAVAILABLE; a waitForReady call waits for a server to register', async () => {
    const { name, d } = await registry();
    const c = client(`memory://${name}/echo`);
    await assert.rejects(
      c.echo({}, { deadlineMs: 3000 }),
      (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE && /no endpoints registered/.test(e.details),
    );
    const waiting = c.echo({ message: 'late' }, { waitForReady: true, deadlineMs: 5000 });
    const [s] = await servers(1, d);
    const r = await waiting;
    assert.equal(r.serverId, s.id);
  });

  it('shares one registry and one watch per service among channels on equal registry configs', async () => {
    const name = uniqueName();
    const ctl = testRegistry(name);
    const d = await Discovery.fromConfig(`wftest://${name}`);
    later(() => d.close());
    const [s] = await servers(1, d);
    const c1 = client(`wftest://${name}/echo`);
    const c2 = client(`wftest://${name}/echo`);
    const c3 = client(`wayfinder+wftest://${name}/echo`);
    for (const c of [c1, c2, c3]) assert.equal((await c.echo()).serverId, s.id);
    // Three channels (two target spellings of one registry config): one registry watch.
    assert.equal(ctl.subscribes, 1, `subscribes: ${ctl.subscribes}`);
    const reg = grpcBridgeStats().registries.filter((r) => r.registry === `wftest://${name}`);
    assert.deepEqual(reg, [{ registry: `wftest://${name}`, channels: 3 }]);
    c1.close();
    c2.close();
    c3.close();
    await waitFor(
      'the shared registry to close with its last channel',
      () => !grpcBridgeStats().registries.some((r) => r.registry === `wftest://${name}`),
      { timeoutMs: 2000 },
    );
  });

  it('does not share a registry between targets that differ only in cache=', async () => {
    const name = uniqueName();
    const ctl = testRegistry(name);
    const d = await Discovery.fromConfig(`wftest://${name}`);
    later(() => d.close());
    const tmp = tempDir();
    later(() => tmp.remove());
    const [s] = await servers(1, d);
    const plain = client(`wftest://${name}/echo`);
    const cached = client(`wftest://${name}/echo?cache=${encodeURIComponent(tmp.dir)}`);
    for (const c of [plain, cached]) assert.equal((await c.echo()).serverId, s.id);
    // The cached channel runs its own Discovery (with the last-known-good cache): two registries, two watches.
    const mine = grpcBridgeStats().registries.filter((r) => r.registry.startsWith(`wftest://${name}`));
    assert.equal(mine.length, 2, JSON.stringify(mine));
    assert.equal(ctl.subscribes, 2, `subscribes: ${ctl.subscribes}`);
  });

  describe('LB policy', () => {
    it('passes weight, zone and metadata to the balancer on the endpoint objects, and the config options', async () => {
      const { name, d } = await registry();
      const [s] = await servers(1, d, { weight: 7, zone: 'z-a', metadata: { version: 'v1' } });
      const c = client(`memory://${name}/echo`, { 'grpc.service_config': CAPTURE_SC({ tag: 't1' }) });
      const n0 = captures.length;
      await c.echo();
      const rec = captures.slice(n0).at(-1)!;
      assert.deepEqual(rec.config, { tag: 't1', drop: false });
      assert.equal(rec.endpoints.length, 1);
      assert.equal(rec.endpoints[0].port, s.port);
      assert.equal(rec.endpoints[0].weight, 7);
      assert.equal(rec.endpoints[0].zone, 'z-a');
      assert.deepEqual(rec.endpoints[0].metadata, { version: 'v1' });
    });

    it('our Endpoint rides on the grpc-js endpoint under a symbol that survives copies', () => {
      const ep = { id: 'x', host: '10.0.0.1', port: 5, weight: 3, metadata: { a: 'b' } };
      const ge = { addresses: [{ host: ep.host, port: ep.port }], [WAYFINDER_ENDPOINT]: ep };
      assert.equal(wayfinderEndpointOf({ ...ge }), ep);
      assert.deepEqual(wayfinderEndpointOf({ addresses: [{ host: '10.0.0.2', port: 6 }] }), {
        id: '10.0.0.2:6',
        host: '10.0.0.2',
        port: 6,
        metadata: {},
      });
    });

    it('a weight/metadata change updates the picker without closing the connection', async () => {
      const { name, d } = await registry();
      const [s] = await servers(1, d, { metadata: { version: 'v1' } });
      const c = client(`memory://${name}/echo`, { 'grpc.service_config': CAPTURE_SC() });
      const first = await c.echo();
      const created = grpcBridgeStats().childrenCreated;
      const n0 = captures.length;
      const rebuilt = new Promise<void>((resolve) => captured.once('build', resolve));
      await s.registration!.update({ weight: 9, metadata: { version: 'v2' } });
      await withTimeout(rebuilt, 3000, 'the picker rebuild');
      const rec = captures.slice(n0).at(-1)!;
      assert.equal(rec.endpoints[0].weight, 9);
      assert.deepEqual(rec.endpoints[0].metadata, { version: 'v2' });
      const second = await c.echo();
      assert.equal(second.peer, first.peer, 'same client connection before and after the update');
      assert.equal(s.peers.size, 1, 'the server saw one connection');
      assert.equal(grpcBridgeStats().childrenCreated, created, 'no child balancer was recreated');
    });

    it("reports call start and end to the pick's done(ok, latency); drop maps to a DROP result", async () => {
      const { name, d } = await registry();
      const [s] = await servers(1, d, { latencyMs: 30 });
      const c = client(`memory://${name}/echo`, { 'grpc.service_config': CAPTURE_SC() });
      await c.echo();
      const n0 = doneCalls.length;
      await c.echo();
      await assert.rejects(c.echo({ fail: true }));
      await c.echo({ fail: true, failCode: grpc.status.NOT_FOUND }).catch(() => undefined);
      const recs = doneCalls.slice(n0);
      assert.equal(recs.length, 3);
      assert.ok(recs.every((r) => r.started && r.endpoint.port === s.port));
      assert.deepEqual(
        recs.map((r) => r.ok),
        [true, false, true],
        'UNAVAILABLE is a failure, NOT_FOUND an answer',
      );
      assert.ok(recs[0].latencyMs >= 25, `latency ${recs[0].latencyMs}`);

      const dropper = client(`memory://${name}/echo`, { 'grpc.service_config': CAPTURE_SC({ drop: true }) });
      await assert.rejects(
        dropper.echo(),
        (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE && /dropped by the balancer/.test(e.details),
      );
    });

    it("validates a wayfinder_* service config with the balancer's options schema", async () => {
      const { name, d } = await registry();
      await servers(1, d);
      const c = client(`memory://${name}/echo`, { 'grpc.service_config': CAPTURE_SC({ bogus: 1 }) });
      await assert.rejects(
        c.echo(),
        (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE && /unknown option "bogus"/.test(e.details),
      );
      const c2 = client(`memory://${name}/echo`, { 'grpc.service_config': CAPTURE_SC({ drop: 'maybe' }) });
      await assert.rejects(c2.echo(), (e: grpc.ServiceError) => /"drop" must be true or false/.test(e.details));
      // A balancer that refuses its (schema-valid) config at create(): calls fail with the reason.
      registerBalancer('grpctest_refuses', () => {
        throw new ConfigError('grpctest_refuses: this configuration cannot work');
      });
      installGrpc();
      const c4 = client(`memory://${name}/echo`, {
        'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ wayfinder_grpctest_refuses: {} }] }),
      });
      await assert.rejects(
        c4.echo({}, { deadlineMs: 5000 }),
        (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE && /cannot work/.test(e.details),
      );
      // The lookaside policy's config is validated the same way (not grpc-js's silent pick_first).
      const c3 = client(`memory://${name}/echo`, {
        'grpc.service_config': JSON.stringify({
          loadBalancingConfig: [{ wayfinder_grpclb: { fallbackTimeout: 'soon' } }],
        }),
      });
      await assert.rejects(
        c3.echo(),
        (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE && /fallbackTimeout/.test(e.details),
      );
    });

    it("keeps the channel's method config when adding our default LB policy", async () => {
      const { name, d } = await registry();
      await servers(1, d, { latencyMs: 300 });
      const sc = JSON.stringify({
        methodConfig: [{ name: [{ service: 'wayfinder.testkit.Echo' }], timeout: '0.05s' }],
      });
      const c = client(`memory://${name}/echo`, { 'grpc.service_config': sc });
      await assert.rejects(
        c.echo({}, { deadlineMs: 5000 }),
        (e: grpc.ServiceError) => e.code === grpc.status.DEADLINE_EXCEEDED,
      );
      const c2 = client(`memory://${name}/echo`, { 'grpc.service_config': sc });
      const n0 = grpcBridgeStats().childrenCreated;
      await c2.echo({}, { deadlineMs: 5000 }).catch(() => undefined);
      assert.ok(grpcBridgeStats().childrenCreated > n0, 'the channel runs a wayfinder policy');
    });
  });

  describe('the balancers as grpc policies', () => {
    it('registers wayfinder_<name> for every balancer', () => {
      const { policies } = installGrpc();
      for (const p of ['wayfinder_round_robin', 'wayfinder_weighted', 'wayfinder_p2c'])
        assert.ok(policies.includes(p), `${p} in ${policies.join(', ')}`);
    });

    it('wayfinder_weighted follows the registered weights', async () => {
      const { name, d } = await registry();
      const [light, heavy] = [await servers(1, d, { weight: 1 }), await servers(1, d, { weight: 3 })].flat();
      const c = client(`memory://${name}/echo`, {
        'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ wayfinder_weighted: {} }] }),
      });
      await untilAllSeen(c, [light.id, heavy.id]);
      const counts = new Map<string, number>();
      for (let i = 0; i < 80; i++) {
        const r = await c.echo();
        counts.set(r.serverId, (counts.get(r.serverId) ?? 0) + 1);
      }
      assert.ok(
        Math.abs((counts.get(heavy.id) ?? 0) - 60) <= 2,
        `heavy got ${counts.get(heavy.id)} of 80 (weight 3:1)`,
      );
    });

    it('wayfinder_p2c counts in-flight calls from their real start: a slow server gets fewer calls under load', async () => {
      const { name, d } = await registry();
      const fast = await servers(2, d, { latencyMs: 2 });
      const [slow] = await servers(1, d, { latencyMs: 150 });
      const c = client(`memory://${name}/echo`, {
        'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ wayfinder_p2c: {} }] }),
      });
      await untilAllSeen(
        c,
        [...fast, slow].map((s) => s.id),
      );
      const base = new Map([...fast, slow].map((s) => [s.id, s.calls]));
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: 6 }, async () => {
          while (performance.now() - t0 < 800) await c.echo();
        }),
      );
      const got = (s: EchoServer) => s.calls - base.get(s.id)!;
      const total = got(slow) + fast.reduce((n, s) => n + got(s), 0);
      assert.ok(total > 30, `load: ${total} calls`);
      // Uniform picking would give the slow server a third; least-request keeps it near its in-flight share.
      assert.ok(got(slow) < total / 6, `slow server got ${got(slow)} of ${total}`);
    });
  });

  describe('registry failures', () => {
    it('keeps serving the last good set while the registry fails', async () => {
      const name = uniqueName();
      const ctl = testRegistry(name);
      const d = await Discovery.fromConfig(`wftest://${name}`);
      later(() => d.close());
      const ss = await servers(2, d);
      const c = client(`wftest://${name}/echo`);
      await untilAllSeen(
        c,
        ss.map((s) => s.id),
      );
      ctl.fail('registry on fire');
      later(() => ctl.recover());
      await new Promise((r) => setImmediate(r));
      const ids = new Set<string>();
      for (let i = 0; i < 20; i++) ids.add((await c.echo()).serverId);
      assert.deepEqual([...ids].sort(), ss.map((s) => s.id).sort());
    });

    it('reports UNAVAILABLE with the registry error before any good set, and recovers', async () => {
      const name = uniqueName();
      const ctl = testRegistry(name);
      ctl.failing = 'registry down at start';
      later(() => ctl.recover());
      const d = await Discovery.fromConfig(`wftest://${name}`);
      later(() => d.close());
      const [s] = await servers(1, d);
      const c = client(`wftest://${name}/echo`);
      await assert.rejects(
        c.echo(),
        (e: grpc.ServiceError) =>
          e.code === grpc.status.UNAVAILABLE && /REGISTRY_UNAVAILABLE: registry down at start/.test(e.details),
      );
      ctl.recover();
      await waitFor('the channel to recover', () => c.echo().then((r) => r.serverId === s.id), {
        timeoutMs: 5000,
        intervalMs: 20,
      });
    });
  });

  describe('re-resolution', () => {
    it('rate-limits updateResolution() and forwards it to resolver.refresh()', async () => {
      const name = uniqueName();
      const ctl = testRegistry(name);
      const d = await Discovery.fromConfig(`wftest://${name}`);
      later(() => d.close());
      await servers(1, d);
      let reports = 0;
      let gotFirst!: () => void;
      const first = new Promise<void>((r) => (gotFirst = r));
      const r = grpc.experimental.createResolver(
        { scheme: 'wftest', authority: name, path: 'echo' },
        () => {
          reports++;
          gotFirst();
          return true;
        },
        {},
      );
      later(() => r.destroy());
      r.updateResolution(); // starts the watch
      await withTimeout(first, 3000, 'the first resolution');
      const base = ctl.refreshes;
      const t0 = performance.now();
      for (let i = 0; i < 1000; i++) r.updateResolution();
      assert.equal(ctl.refreshes - base, 2, 'burst (2) forwarded at once, the rest held back');
      await waitFor('the deferred refresh', () => ctl.refreshes - base === 3, { timeoutMs: 3000, intervalMs: 20 });
      const elapsed = performance.now() - t0;
      assert.ok(elapsed >= 800, `one token per second: third refresh after ${elapsed.toFixed(0)} ms`);
      assert.equal(reports, 1, "unchanged sets are not re-reported (that would reset grpc-js's backoff)");
    });

    it('bounds refreshes while a backend is down under call load', async () => {
      const name = uniqueName();
      const ctl = testRegistry(name);
      const d = await Discovery.fromConfig(`wftest://${name}`);
      later(() => d.close());
      const deadPort = await freePort();
      await d.registrar.register({ service: 'echo', host: '127.0.0.1', port: deadPort });
      const c = client(`wftest://${name}/echo`, {
        'grpc.initial_reconnect_backoff_ms': 10,
        'grpc.max_reconnect_backoff_ms': 20,
      });
      const req0 = grpcBridgeStats().resolutionRequests;
      const base = ctl.refreshes;
      const t0 = performance.now();
      let failed = 0;
      while (performance.now() - t0 < 2000) {
        await Promise.all(Array.from({ length: 20 }, () => c.echo({}, { deadlineMs: 500 }).catch(() => void failed++)));
      }
      const secs = (performance.now() - t0) / 1000;
      const requests = grpcBridgeStats().resolutionRequests - req0;
      const refreshes = ctl.refreshes - base;

      console.log(
        `      down backend, ${secs.toFixed(1)} s: ${requests} re-resolution requests from grpc-js, ${refreshes} refreshes forwarded, ${failed} calls failed`,
      );
      assert.ok(failed > 0);
      assert.ok(requests >= 1, 'grpc-js asked for re-resolution');
      assert.ok(refreshes <= 2 + Math.ceil(secs) + 1, `refreshes ${refreshes} within burst + rate`);
    });
  });

  describe('proxy environment', () => {
    const VARS = ['grpc_proxy', 'https_proxy', 'http_proxy', 'no_grpc_proxy', 'no_proxy'];
    let saved: Record<string, string | undefined> = {};
    let proxy: net.Server;
    let proxyConnections = 0;
    beforeEach(async () => {
      saved = Object.fromEntries(VARS.map((v) => [v, process.env[v]]));
      for (const v of VARS) delete process.env[v];
      proxyConnections = 0;
      proxy = net.createServer((sock) => {
        proxyConnections++;
        sock.destroy();
      });
      await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
      process.env.http_proxy = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    });
    afterEach(async () => {
      for (const v of VARS) {
        if (saved[v] === undefined) delete process.env[v];
        else process.env[v] = saved[v];
      }
      await new Promise((r) => proxy.close(r));
    });

    it('http_proxy does not hijack our schemes (and does hijack a plain dns: target)', async () => {
      const { name, d } = await registry();
      const [s] = await servers(1, d);
      const ours = client(`memory://${name}/echo`);
      assert.equal((await ours.echo()).serverId, s.id);
      const viaDefault = client('wayfinder+memory://' + name + '/echo');
      assert.equal((await viaDefault.echo()).serverId, s.id);
      assert.equal(proxyConnections, 0, 'no connection went to the proxy');
      // Control: grpc-js does route a dns: target through the proxy from the same environment
      // (its "failed to connect to proxy" error log is silenced for this call).
      const plain = new EchoClient(`dns:127.0.0.1:${s.port}`);
      grpc.setLogger({ error() {}, info() {}, debug() {} } as unknown as Console);
      try {
        await plain.echo({}, { deadlineMs: 1000 }).catch(() => undefined);
      } finally {
        plain.close();
        grpc.setLogger(console);
      }
      assert.ok(proxyConnections > 0, 'the proxy environment is live');
    });
  });
});
