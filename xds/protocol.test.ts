import '../builtins'; // the built-in registries and balancers
import assert from 'node:assert/strict';
import { promises as dns } from 'node:dns';
import { ConfigError, Discovery, type Registration } from '../core';
import { renameSync, writeFileSync } from 'node:fs';
import { tempDir, waitFor } from '../testkit';
import { checkXdsConfig } from './config';
import { namesOf, RawAds, resourcesOf } from './fixtures/raw';
import { startXdsServer, type XdsNack, type XdsServer, type XdsServerOptions } from './index';
import { TYPE, unpack, type DiscoveryResponse } from './protocol';

/**
 * The ADS protocol as a raw stream sees it (State of the World): nonces and versions, ACK/NACK,
 * subscribe/unsubscribe, LDS/CDS completeness, absent services, many overlapping clients; and the
 * resource mapping (localities, weights, health, IP literals, policies).
 */

let n = 0;
describe('xds server: the ADS protocol on a raw stream', function () {
  this.timeout(30_000);
  const cleanups: (() => unknown)[] = [];
  let d: Discovery;
  let xds: XdsServer;
  const nacks: XdsNack[] = [];
  const regs = new Map<string, Registration>();

  async function start(opts: Partial<XdsServerOptions> = {}) {
    d = await Discovery.fromConfig(`memory://xds-proto-${++n}`);
    cleanups.push(() => d.close());
    nacks.length = 0;
    xds = await startXdsServer({ discovery: d, host: '127.0.0.1', port: 0, onNack: (x) => nacks.push(x), ...opts });
    cleanups.push(() => xds.stop());
  }
  async function register(
    service: string,
    port: number,
    extra: { weight?: number; zone?: string; host?: string } = {},
  ) {
    const r = await d.registrar.register({ service, host: extra.host ?? '127.0.0.1', port, ...extra });
    regs.set(`${service}:${port}`, r);
    return r;
  }
  function raw(id = 'raw'): RawAds {
    const c = new RawAds(xds.port, { id, locality: { zone: 'z' } });
    cleanups.push(() => c.close());
    return c;
  }
  /** Ends with a barrier: a subscription change on another type whose answer must come next. */
  async function expectNoMore(c: RawAds, barrierType: string, barrierNames: string[]): Promise<DiscoveryResponse> {
    c.send(barrierType, barrierNames);
    const r = await c.next('the barrier response');
    assert.equal(r.type_url, barrierType, `expected no response before the barrier, got ${r.type_url}`);
    return r;
  }

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    regs.clear();
  });

  it('answers a subscription with a versioned, nonced response; an ACK gets no response', async () => {
    await start();
    await register('billing', 5001);
    const c = raw();
    c.send(TYPE.listener, ['billing']);
    const r = await c.next();
    assert.equal(r.type_url, TYPE.listener);
    assert.ok(r.nonce && r.version_info);
    assert.deepEqual(namesOf(r), ['billing']);
    for (const a of r.resources) assert.equal(a.type_url, r.type_url);
    c.ack(r, ['billing']);
    await expectNoMore(c, TYPE.route, ['billing']);
  });

  it('a NACK is reported with the client text and not answered by a resend (no loop)', async () => {
    await start();
    await register('billing', 5001);
    const c = raw('nacker');
    c.send(TYPE.cluster, ['billing']);
    const r = await c.next();
    c.send(TYPE.cluster, ['billing'], { version: '', nonce: r.nonce, error: 'cluster billing: I do not like it' });
    await expectNoMore(c, TYPE.route, ['billing']);
    assert.equal(nacks.length, 1);
    assert.deepEqual(
      { node: nacks[0].node, type: nacks[0].typeUrl, nonce: nacks[0].nonce, msg: nacks[0].message },
      { node: 'nacker', type: TYPE.cluster, nonce: r.nonce, msg: 'cluster billing: I do not like it' },
    );
    // A client that ACKs a later version after its NACK (grpc-js may advance) still gets no resend.
    c.send(TYPE.cluster, ['billing'], { version: '99', nonce: r.nonce });
    await expectNoMore(c, TYPE.endpoint, ['billing']);
  });

  it('ignores a request carrying a stale nonce; the one with the latest nonce is answered', async () => {
    await start();
    await register('a', 5001);
    await register('b', 5002);
    const c = raw();
    c.send(TYPE.listener, ['a']);
    const r1 = await c.next();
    c.ack(r1, ['a', 'b']);
    const r2 = await c.next();
    assert.deepEqual(namesOf(r2), ['a', 'b']);
    // Stale: answers r1 although r2 was sent; its subscription change is not acted on.
    c.send(TYPE.listener, ['a'], { version: r1.version_info, nonce: r1.nonce });
    await expectNoMore(c, TYPE.route, ['a']);
    c.ack(r2, ['a']);
    const r3 = await c.next();
    assert.equal(r3.type_url, TYPE.listener);
    assert.deepEqual(namesOf(r3), ['a']);
    assert.notEqual(r3.nonce, r2.nonce);
    assert.notEqual(r3.version_info, r2.version_info);
  });

  it('LDS and CDS responses carry every subscribed resource; EDS only the changed ones', async () => {
    await start();
    await register('a', 5001);
    await register('b', 5002);
    const c = raw();
    c.send(TYPE.cluster, ['a', 'b']);
    const cds = await c.next();
    assert.deepEqual(namesOf(cds), ['a', 'b']);
    c.ack(cds, ['a', 'b']);
    c.send(TYPE.endpoint, ['a', 'b']);
    const eds = await c.next();
    assert.deepEqual(namesOf(eds), ['a', 'b']);
    c.ack(eds, ['a', 'b']);
    // A policy change of a alone: CDS carries a and b, EDS only a (its localities follow the policy).
    xds.setConfig({ services: { a: { lbPolicy: 'ring_hash' } } });
    const cds2 = await c.next();
    assert.equal(cds2.type_url, TYPE.cluster);
    assert.deepEqual(namesOf(cds2), ['a', 'b']);
    c.ack(cds2, ['a', 'b']);
    // An endpoint change of b: EDS carries only b.
    await register('b', 5003);
    const eds2 = await c.next();
    assert.equal(eds2.type_url, TYPE.endpoint);
    assert.deepEqual(namesOf(eds2), ['b']);
  });

  it('subscribe, unsubscribe and subscribe again: the resource is sent again', async () => {
    await start();
    await register('a', 5001);
    await register('b', 5002);
    const c = raw();
    c.send(TYPE.endpoint, ['a', 'b']);
    const r1 = await c.next();
    assert.deepEqual(namesOf(r1), ['a', 'b']);
    c.ack(r1, ['a']);
    const r2 = await c.next(); // the unsubscription is answered (nothing to carry)
    assert.deepEqual(namesOf(r2), []);
    assert.equal(xds.services, 1, 'the watch of b is released');
    c.ack(r2, ['a', 'b']);
    const r3 = await c.next();
    assert.deepEqual(namesOf(r3), ['b']);
    c.ack(r3, []);
    await c.next();
    assert.equal(xds.services, 0);
  });

  it('a service that does not exist is answered as absent; it appears once registered, and leaves with its last instance', async () => {
    await start();
    await register('a', 5001);
    const c = raw();
    c.send(TYPE.listener, ['a', 'ghost']);
    const r1 = await c.next();
    assert.deepEqual(namesOf(r1), ['a']);
    c.ack(r1, ['a', 'ghost']);
    c.send(TYPE.endpoint, ['ghost']);
    const e0 = await c.next();
    assert.deepEqual(namesOf(e0), []);
    c.ack(e0, ['ghost']);
    const g = await register('ghost', 5009);
    const got = [await c.next(), await c.next()];
    assert.deepEqual(got.map((x) => x.type_url).sort(), [TYPE.endpoint, TYPE.listener].sort());
    assert.deepEqual(namesOf(got.find((x) => x.type_url === TYPE.listener)!), ['a', 'ghost']);
    for (const x of got) c.ack(x, x.type_url === TYPE.listener ? ['a', 'ghost'] : ['ghost']);
    // Its last instance gone, the registry no longer holds ghost: LDS drops it (SotW deletion).
    await g.deregister();
    const gone = await c.next();
    assert.equal(gone.type_url, TYPE.listener);
    assert.deepEqual(namesOf(gone), ['a']);
  });

  it('many clients with overlapping subscriptions each get exactly their services, over one watch per service', async () => {
    await start();
    const services = ['s0', 's1', 's2', 's3', 's4'];
    for (const [i, s] of services.entries()) await register(s, 6000 + i);
    const clients = Array.from({ length: 20 }, (_, i) => ({
      c: raw(`c${i}`),
      subs: services.filter((_, j) => (i + j) % 3 !== 0),
    }));
    for (const { c, subs } of clients) c.send(TYPE.endpoint, subs);
    for (const { c, subs } of clients) {
      const r = await c.next();
      assert.deepEqual(namesOf(r), subs);
      c.ack(r, subs);
    }
    assert.equal(xds.services, services.length);
    await register('s2', 7002);
    for (const { c, subs } of clients) {
      if (subs.includes('s2')) {
        const r = await c.next();
        assert.deepEqual(namesOf(r), ['s2']);
        const [cla] = resourcesOf<{ cluster_name: string; endpoints: { lb_endpoints: unknown[] }[] }>(r);
        assert.equal(cla.endpoints.flatMap((l) => l.lb_endpoints).length, 2);
      } else await expectNoMore(c, TYPE.cluster, ['s2']);
    }
    for (const { c } of clients) c.close();
    await waitFor('every watch released', () => xds.services === 0);
  });
});

/**
 * "Does not exist" is the registry's listing: a service exists while the registry holds an
 * instance (or a malformed entry) of it, whether the server reads the catalog (file registry: one
 * registry-wide stream) or one watch per service (memory registry). A service whose instances are
 * all gone is listed by no adapter (and the catalog drops it): it is absent like a name never
 * registered, not an empty assignment as it was when existence meant "had endpoints since start".
 */
describe('xds server: a resource exists while the registry lists its service', function () {
  this.timeout(30_000);
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  const cases = [
    {
      feed: 'catalog' as const,
      registry: () => {
        const tmp = tempDir('wf-xds-listing-');
        cleanups.push(() => tmp.remove());
        return `file://${tmp.dir}/registry.json`;
      },
    },
    { feed: 'service' as const, registry: () => `memory://xds-listing-${++n}` },
  ];
  for (const { feed, registry } of cases)
    it(`${feed} feed: never registered and all instances gone are absent; a configured empty service is an empty assignment`, async () => {
      const url = registry();
      const d = await Discovery.fromConfig(url);
      cleanups.push(() => d.close());
      await d.registrar.register({ service: 'a', host: '127.0.0.1', port: 5001 });
      const gone = await d.registrar.register({ service: 'gone', host: '127.0.0.1', port: 5002 });
      // pendingWaitMs far beyond the test: every answer below comes from the registry's view, not the timer.
      const xds = await startXdsServer({
        registry: url,
        feed,
        host: '127.0.0.1',
        port: 0,
        pendingWaitMs: 120_000,
        config: { services: { declared: {} } },
      });
      cleanups.push(() => xds.stop());
      const c = new RawAds(xds.port);
      cleanups.push(() => c.close());
      const names = ['a', 'declared', 'ghost', 'gone'];
      c.send(TYPE.listener, names);
      const l1 = await c.next('the first LDS answer');
      assert.deepEqual(namesOf(l1), ['a', 'declared', 'gone'], 'ghost was never registered');
      c.ack(l1, names);
      c.send(TYPE.endpoint, ['declared']);
      const e1 = await c.next('the EDS answer for declared');
      const [cla] = resourcesOf<{ cluster_name: string; endpoints?: unknown[] }>(e1);
      assert.equal(cla.cluster_name, 'declared');
      assert.equal(cla.endpoints, undefined, 'configured, not in the registry: an empty assignment');
      c.ack(e1, ['declared']);

      await gone.deregister();
      const l2 = await c.next('the LDS answer without gone');
      assert.equal(l2.type_url, TYPE.listener);
      assert.deepEqual(namesOf(l2), ['a', 'declared'], 'all instances gone: absent, like ghost');
      c.ack(l2, names);

      await d.registrar.register({ service: 'gone', host: '127.0.0.1', port: 5003 });
      const l3 = await c.next('the LDS answer with gone back');
      assert.equal(l3.type_url, TYPE.listener);
      assert.deepEqual(namesOf(l3), ['a', 'declared', 'gone']);
    });

  it('catalog feed: a service whose only entry is malformed is an empty assignment; a registry error keeps the last good resources', async () => {
    const tmp = tempDir('wf-xds-outage-');
    cleanups.push(() => tmp.remove());
    const file = `${tmp.dir}/registry.json`;
    const write = (text: string) => {
      writeFileSync(`${file}.new`, text);
      renameSync(`${file}.new`, file); // atomic, as docs/adapters/file.md asks of hand edits
    };
    const entry = { id: 'a1', service: 'a', host: '127.0.0.1', port: 5001 }; // static: no heartbeat
    write(
      JSON.stringify({
        format: 'wayfinder-file-registry',
        version: 1,
        services: { a: { a1: entry }, broken: { b1: { id: 'b1', service: 'broken', host: '127.0.0.1', port: 'x' } } },
      }),
    );
    const warnings: string[] = [];
    const logger = { debug() {}, info() {}, warn: (_o: object, m?: string) => warnings.push(m ?? ''), error() {} };
    const xds = await startXdsServer({
      registry: `file://${file}`,
      feed: 'catalog',
      host: '127.0.0.1',
      port: 0,
      logger,
    });
    cleanups.push(() => xds.stop());
    const c = new RawAds(xds.port);
    cleanups.push(() => c.close());
    c.send(TYPE.listener, ['a', 'broken']);
    const l1 = await c.next();
    assert.deepEqual(namesOf(l1), ['a', 'broken'], 'the registry lists broken (with a malformed entry)');
    c.ack(l1, ['a', 'broken']);
    c.send(TYPE.endpoint, ['broken']);
    const e1 = await c.next();
    const [cla] = resourcesOf<{ cluster_name: string; endpoints?: unknown[] }>(e1);
    assert.equal(cla.cluster_name, 'broken');
    assert.equal(cla.endpoints, undefined);
    c.ack(e1, ['broken']);
    write('{ this is not json');
    await waitFor('the registry error, logged', () => warnings.some((m) => /registry-wide watch/.test(m)));
    c.send(TYPE.cluster, ['a']);
    const barrier = await c.next('the CDS barrier');
    assert.equal(barrier.type_url, TYPE.cluster, 'no LDS answer dropping a or broken before it');
    assert.deepEqual(namesOf(barrier), ['a']);
  });
});

describe('xds server: the resource mapping', function () {
  this.timeout(30_000);
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function resources(
    opts: Partial<XdsServerOptions>,
    setup: (d: Discovery) => Promise<void>,
    type: string,
    names: string[],
  ) {
    const d = await Discovery.fromConfig(`memory://xds-map-${++n}`);
    cleanups.push(() => d.close());
    await setup(d);
    const xds = await startXdsServer({ discovery: d, host: '127.0.0.1', port: 0, ...opts });
    cleanups.push(() => xds.stop());
    const c = new RawAds(xds.port);
    cleanups.push(() => c.close());
    c.send(type, names);
    return resourcesOf<Record<string, unknown>>(await c.next());
  }

  it('EDS: localities per (zone, weight) with weight x endpoints; hostnames become IP literals; health', async () => {
    const [cla] = await resources(
      {},
      async (d) => {
        await d.registrar.register({ service: 'm', host: '127.0.0.1', port: 1, zone: 'z1' });
        await d.registrar.register({ service: 'm', host: '127.0.0.2', port: 2, zone: 'z1' });
        await d.registrar.register({ service: 'm', host: 'localhost', port: 3, zone: 'z1', weight: 3 });
        await d.registrar.register({ service: 'm', host: '127.0.0.4', port: 4, zone: 'z2', weight: 3 });
      },
      TYPE.endpoint,
      ['m'],
    );
    type Loc = {
      locality: { zone?: string; sub_zone?: string };
      load_balancing_weight: { value: number };
      lb_endpoints: {
        endpoint: { address: { socket_address: { address: string; port_value: number } } };
        health_status?: string;
        load_balancing_weight: { value: number };
      }[];
    };
    const locs = (cla.endpoints as Loc[]).map((l) => ({
      zone: l.locality.zone,
      sub: l.locality.sub_zone ?? '',
      w: l.load_balancing_weight.value,
      eps: l.lb_endpoints.map(
        (e) =>
          `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}/${e.load_balancing_weight.value}`,
      ),
    }));
    const lo = (await dns.lookup('localhost')).address;
    assert.deepEqual(locs, [
      { zone: 'z1', sub: '', w: 2, eps: ['127.0.0.1:1/1', '127.0.0.2:2/1'] },
      { zone: 'z1', sub: 'w3', w: 3, eps: [`${lo}:3/3`] },
      { zone: 'z2', sub: 'w3', w: 3, eps: ['127.0.0.4:4/3'] },
    ]);
  });

  it('CDS: ring_hash with XX_HASH and ring sizes, outlier detection, max requests, LRS on self; RDS hash policy', async () => {
    const config = {
      services: {
        r: {
          lbPolicy: 'ring_hash' as const,
          hashHeader: 'x-user',
          maxRingSize: 4096,
          maxRequests: 50,
          outlierDetection: { interval: '5s', failurePercentage: { threshold: 60 } },
        },
      },
    };
    const setup = async (d: Discovery) =>
      void (await d.registrar.register({ service: 'r', host: '127.0.0.1', port: 1 }));
    const [cluster] = await resources({ config }, setup, TYPE.cluster, ['r']);
    assert.equal(cluster.lb_policy, 'RING_HASH');
    assert.equal(cluster.type, 'EDS');
    assert.deepEqual(cluster.ring_hash_lb_config, {
      hash_function: 'XX_HASH',
      minimum_ring_size: { value: '1024' },
      maximum_ring_size: { value: '4096' },
    });
    assert.deepEqual(cluster.circuit_breakers, { thresholds: [{ priority: 'DEFAULT', max_requests: { value: 50 } }] });
    assert.deepEqual(cluster.lrs_server, { self: {} });
    const od = cluster.outlier_detection as Record<string, unknown>;
    assert.deepEqual(od.interval, { seconds: '5', nanos: 0 });
    assert.deepEqual(od.enforcing_success_rate, { value: 0 });
    assert.deepEqual(od.enforcing_failure_percentage, { value: 100 });
    assert.deepEqual(od.failure_percentage_threshold, { value: 60 });
    const [route] = await resources({ config }, setup, TYPE.route, ['r']);
    const vh = (route.virtual_hosts as { routes: { route: { cluster: string; hash_policy: unknown } }[] }[])[0];
    assert.equal(vh.routes[0].route.cluster, 'r');
    assert.deepEqual(vh.routes[0].route.hash_policy, [{ header: { header_name: 'x-user' } }]);
  });

  it('LDS: a Listener per asked name (with or without a port), RDS or inline route, router filter last', async () => {
    const setup = async (d: Discovery) =>
      void (await d.registrar.register({ service: 'l', host: '127.0.0.1', port: 1 }));
    const listeners = await resources({}, setup, TYPE.listener, ['l', 'l:50051']);
    assert.deepEqual(listeners.map((l) => l.name).sort(), ['l', 'l:50051']);
    const inline = await resources({ inlineRoutes: true }, setup, TYPE.listener, ['l']);
    const hcmOf = (l: Record<string, unknown>) =>
      (l.api_listener as { api_listener: { type_url: string; value: Buffer } }).api_listener;
    const rds = unpack<Record<string, unknown>>(hcmOf(listeners[0]));
    assert.deepEqual((rds.rds as { route_config_name: string }).route_config_name, 'l');
    const filters = rds.http_filters as { name: string }[];
    assert.equal(filters[filters.length - 1].name, 'router');
    const inl = unpack<Record<string, unknown>>(hcmOf(inline[0]));
    assert.equal(inl.rds, undefined);
    assert.equal((inl.route_config as { name: string }).name, 'l');
  });

  it('a malformed policy fails fast naming the field', () => {
    assert.throws(
      () => checkXdsConfig({ services: { x: { lbPolicy: 'random' } } }),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.equal(e.field, 'services.x.lbPolicy');
        return true;
      },
    );
    assert.throws(() => checkXdsConfig({ defaults: { maxRingSize: 10_000_000 } }), /defaults\.maxRingSize/);
    assert.throws(
      () => checkXdsConfig({ services: { x: { outlierDetection: { interval: 'soon' } } } }),
      /services\.x\.outlierDetection\.interval/,
    );
    assert.throws(() => checkXdsConfig({ servces: {} }), /servces/);
  });
});
