import assert from 'node:assert/strict';
import * as net from 'node:net';
import {
  ConfigError,
  Discovery,
  endpointKey,
  isWayfinderError,
  resolveRegistry,
  silentLogger,
  type Snapshot,
  type Watch,
} from '../../core';
import {
  SnapshotRecorder,
  dnsmasqRegistrar,
  dnsmasqSrvName,
  findDnsmasq,
  freePort,
  requireBinaryOrSkip,
  resolverConformance,
  startDnsmasq,
  type Dnsmasq,
} from '../../testkit';
import type * as GrpcModule from '../../grpc';
import type * as EchoModule from '../../testkit/echo';
import { createDnsRegistry, dnsAdapter, parseDnsService, type DnsOptions } from './index';

const keys = (s: Snapshot) => s.endpoints.map(endpointKey).sort();
const exactly =
  (...want: string[]) =>
  (s: Snapshot) =>
    JSON.stringify(keys(s)) === JSON.stringify([...want].sort());

/** Builds the adapter the way users do: from a registry URL, validated by the schema. */
function fromUrl(url: string) {
  const { def, options } = resolveRegistry(url);
  assert.equal(def.scheme, 'dns');
  return dnsAdapter.create(options as unknown as DnsOptions, {
    logger: silentLogger,
    now: () => performance.now(),
    random: Math.random,
  }) as ReturnType<typeof createDnsRegistry>;
}

/** A TCP listener on host:0 that accepts and holds connections (a stand-in backend for probes). */
async function listener(host = '127.0.0.1'): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => srv.listen(0, host, r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}

/** Registers an afterEach that closes, newest first, whatever the test passed to the returned track(). */
function closeAfterEach(): <T extends { close(): unknown }>(x: T) => T {
  const closers: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });
  return (x) => (closers.push(() => x.close()), x);
}

describe('dns adapter: configuration and service names', () => {
  it('maps the URL authority to nameservers and validates options in one place', () => {
    const { options } = resolveRegistry(
      'dns://127.0.0.1:5353,[::1]:53?min-refresh=1s&max-refresh=10s&timeout=500ms&tries=3&family=ipv4',
    );
    assert.deepEqual(options.hosts, ['127.0.0.1:5353', '[::1]:53']);
    assert.equal(options['min-refresh'], 1000);
    assert.equal(options['max-refresh'], 10_000);
    assert.equal(options.timeout, 500);
    assert.equal(options.tries, 3);
    assert.equal(options.family, 'ipv4');
    const sys = resolveRegistry('dns://').options;
    assert.deepEqual(sys.hosts, [], 'no authority means the system nameservers');
    assert.equal(sys['min-refresh'], 5000);
    assert.equal(sys['max-refresh'], 30_000);
  });

  it('fails fast on malformed config, naming the field', () => {
    const bad: [string, string, RegExp][] = [
      ['dns://ns.example.com:53', 'hosts', /"hosts" must be IP addresses/],
      ['dns://127.0.0.1?min-refresh=10s&max-refresh=5s', 'min-refresh', /must not exceed "max-refresh"/],
      ['dns://127.0.0.1?min-refresh=fast', 'min-refresh', /"min-refresh" must be a duration/],
      ['dns://127.0.0.1?tries=0', 'tries', /"tries" must be an integer between 1 and 10/],
      ['dns://127.0.0.1?family=ipx', 'family', /"family" must be one of "any", "ipv4", "ipv6"/],
      ['dns://127.0.0.1?srv=grpc.tcp', 'srv', /"srv" must be SRV labels/],
      ['dns://127.0.0.1?refresh=1s', 'refresh', /unknown option "refresh"/],
      ['dns://127.0.0.1/echo', 'path', /takes no path/],
    ];
    for (const [url, field, msg] of bad) {
      assert.throws(
        () => resolveRegistry(url),
        (e: unknown) =>
          e instanceof ConfigError && e.field === field && msg.test(e.message) && e.message.startsWith('dns: '),
        url,
      );
    }
  });

  it('parses the service-name forms and rejects the ones DNS cannot ask for', () => {
    assert.deepEqual(parseDnsService('echo.svc.test:50051'), { kind: 'address', name: 'echo.svc.test', port: 50051 });
    assert.deepEqual(parseDnsService('_grpc._tcp.echo.svc.test'), { kind: 'srv', name: '_grpc._tcp.echo.svc.test' });
    assert.deepEqual(parseDnsService('127.0.0.9:80'), { kind: 'literal', host: '127.0.0.9', port: 80 });
    assert.deepEqual(parseDnsService('echo', { srv: '_grpc._tcp', domain: 'default.svc.cluster.local' }), {
      kind: 'srv',
      name: '_grpc._tcp.echo.default.svc.cluster.local',
    });
    assert.deepEqual(parseDnsService('echo', { port: 8080, domain: 'svc.test' }), {
      kind: 'address',
      name: 'echo.svc.test',
      port: 8080,
    });
    assert.deepEqual(
      parseDnsService('echo.other:1', { domain: 'svc.test' }),
      { kind: 'address', name: 'echo.other', port: 1 },
      'dotted names are not extended',
    );
    assert.deepEqual(
      parseDnsService('echo.:1', { domain: 'svc.test' }),
      { kind: 'address', name: 'echo', port: 1 },
      'a trailing dot means absolute',
    );
    assert.throws(() => parseDnsService('echo'), /needs a port/);
    assert.throws(() => parseDnsService('echo:0'), /port that is not in 1\.\.65535/);
    assert.throws(() => parseDnsService('echo:http'), TypeError);
    assert.throws(() => parseDnsService('_grpc._tcp.echo:80'), /SRV name/);
    assert.throws(() => parseDnsService(`${'a'.repeat(64)}.test:1`), /not a valid DNS name/);
    const { resolver } = createDnsRegistry({ hosts: ['127.0.0.1:9'] });
    try {
      assert.throws(() => resolver.watch('echo', () => {}), TypeError, 'watch() rejects a plain name synchronously');
      assert.throws(() => resolver.resolve('echo:99999'), TypeError);
    } finally {
      void resolver.close();
    }
  });

  it('is read-only: Discovery gives a registrar that refuses with NOT_SUPPORTED', async () => {
    const d = await Discovery.fromConfig('dns://127.0.0.1:9');
    try {
      assert.equal(d.capabilities.register, false);
      assert.equal(d.capabilities.watch, 'poll');
      await assert.rejects(d.registrar.register({ service: 'echo', host: '127.0.0.1', port: 1 }), (e: unknown) =>
        isWayfinderError(e, 'NOT_SUPPORTED'),
      );
    } finally {
      await d.close();
    }
  });
});

describe('dns adapter against a real dnsmasq', function () {
  this.timeout(30_000);
  before(function () {
    requireBinaryOrSkip(this, findDnsmasq);
  });

  // ---- conformance (read-only parts): the test registrar writes SRV records and restarts dnsmasq ----
  const zone = 'conf.test';
  resolverConformance({
    it,
    describe,
    name: 'dns (dnsmasq SRV)',
    capabilities: dnsAdapter.capabilities,
    timing: { propagationMs: 5000 },
    factory: async () => {
      const d = await startDnsmasq({ domains: ['test'] });
      const { resolver } = fromUrl(
        `${d.url}?srv=_grpc._tcp&domain=${zone}&min-refresh=150ms&max-refresh=1s&timeout=300ms&tries=2`,
      );
      const registrar = dnsmasqRegistrar(d, { domain: zone, srv: '_grpc._tcp' });
      let bad = 0;
      return {
        resolver,
        registrar,
        // An SRV record whose target has no address: what an operator's typo looks like in DNS.
        injectBadEntry: async (service) => {
          await d.updateRecords((r) => ({
            ...r,
            srv: [
              ...(r.srv ?? []),
              {
                name: dnsmasqSrvName(service, { domain: zone }),
                target: `missing-${bad++}.${zone}`,
                port: 7999,
                weight: 1,
              },
            ],
          }));
        },
        // The outage: dnsmasq SIGSTOPped, bound but answering nothing, so every query times out
        // (a TCP fault proxy cannot stand in: the resolver queries over UDP). No writes during
        // it: every SRV change restarts dnsmasq, which would end the outage, so the re-list test
        // is skipped (a poller re-reads everything each refresh anyway).
        faults: { outage: () => d.pause(), heal: () => d.resume(), writesDuringOutage: false },
        cleanup: async () => {
          await resolver.close();
          await registrar.close().catch(() => undefined);
          await d.stop();
        },
      };
    },
  });

  describe('A/AAAA (name:port)', () => {
    let d: Dnsmasq;
    const track = closeAfterEach();
    afterEach(async () => {
      await d?.stop();
    });
    const watch = (resolver: { watch(s: string, f: (s: Snapshot) => void): Watch }, service: string) => {
      const r = new SnapshotRecorder();
      track(resolver.watch(service, r.onSnapshot));
      return r;
    };

    it('sees a scale-up within max-refresh without any refresh() call, even with a long TTL', async () => {
      d = await startDnsmasq({ localTtl: 3600, records: { hosts: { 'echo.svc.test': ['127.0.0.2'] } } });
      const maxMs = 1500;
      const resolver = track(fromUrl(`${d.url}?min-refresh=200ms&max-refresh=${maxMs}ms`).resolver);
      const r = watch(resolver, 'echo.svc.test:50051');
      const first = await r.until(exactly('127.0.0.2:50051'), 3000, 'the first instance');
      assert.equal(first.error, undefined);
      await d.setRecords({ hosts: { 'echo.svc.test': ['127.0.0.2', '127.0.0.3'] } });
      const t0 = Date.now();
      const snap = await r.until(exactly('127.0.0.2:50051', '127.0.0.3:50051'), maxMs + 2000, 'the scale-up');
      const took = Date.now() - t0;
      assert.ok(took <= maxMs + 1000, `scale-up seen after ${took} ms, max-refresh is ${maxMs} ms`);
      assert.equal(snap.error, undefined);
      // Every snapshot in between still held the first instance: nothing was dropped.
      for (const s of r.snapshots)
        assert.ok(keys(s).includes('127.0.0.2:50051'), `a snapshot lost the existing instance: ${keys(s)}`);
    });

    it('follows the record TTL within the bounds (1 s TTL is seen well before a 20 s max-refresh)', async () => {
      d = await startDnsmasq({ localTtl: 1, records: { hosts: { 'ttl.svc.test': ['127.0.0.2'] } } });
      const resolver = track(fromUrl(`${d.url}?min-refresh=100ms&max-refresh=20s`).resolver);
      const r = watch(resolver, 'ttl.svc.test:80');
      await r.until(exactly('127.0.0.2:80'), 3000, 'the first instance');
      await d.setRecords({ hosts: { 'ttl.svc.test': ['127.0.0.4'] } });
      const t0 = Date.now();
      await r.until(exactly('127.0.0.4:80'), 4000, 'the replacement, within about one TTL');
      assert.ok(Date.now() - t0 <= 2500, `took ${Date.now() - t0} ms with a 1 s TTL`);
    });

    it('never polls faster than min-refresh, even with TTL 0 (queries at rest are bounded)', async () => {
      d = await startDnsmasq({ localTtl: 0, records: { hosts: { 'rest.svc.test': ['127.0.0.2'] } } });
      const resolver = track(fromUrl(`${d.url}?min-refresh=400ms&max-refresh=5s&family=ipv4`).resolver);
      const r = watch(resolver, 'rest.svc.test:80');
      await r.until(exactly('127.0.0.2:80'), 3000, 'the first answer');
      const before = d.queryCount('A');
      const windowMs = 2000;
      await new Promise((res) => setTimeout(res, windowMs)); // measuring a rate: the wait is the measurement
      const n = d.queryCount('A') - before;
      assert.ok(
        n >= 2 && n <= windowMs / 400 + 1,
        `${n} A queries in ${windowMs} ms with min-refresh 400 ms and TTL 0`,
      );
      assert.equal(d.queryCount('AAAA'), 0, 'family=ipv4 asked for AAAA');
    });

    it('refresh() looks again at once, rate-limited to one lookup per min-refresh', async () => {
      d = await startDnsmasq({ localTtl: 3600, records: { hosts: { 'ondemand.svc.test': ['127.0.0.2'] } } });
      const resolver = track(fromUrl(`${d.url}?min-refresh=500ms&max-refresh=30s&family=ipv4`).resolver);
      const r = watch(resolver, 'ondemand.svc.test:80');
      await r.until(exactly('127.0.0.2:80'), 3000, 'the first answer');
      await d.setRecords({ hosts: { 'ondemand.svc.test': ['127.0.0.5'] } });
      const before = d.queryCount('A');
      const t0 = Date.now();
      // grpc-js asks in a loop while a backend is down; the adapter must not follow that loop.
      const spam = setInterval(() => resolver.refresh('ondemand.svc.test:80'), 5);
      try {
        await r.until(exactly('127.0.0.5:80'), 2000, 'the change after refresh()');
        assert.ok(Date.now() - t0 <= 1000, `refresh took ${Date.now() - t0} ms`);
        await new Promise((res) => setTimeout(res, 1200)); // keep asking for 1.2 s more: the rate is what is measured
      } finally {
        clearInterval(spam);
      }
      const n = d.queryCount('A') - before;
      const elapsed = Date.now() - t0;
      assert.ok(
        n <= Math.ceil(elapsed / 500) + 1,
        `${n} lookups in ${elapsed} ms of refresh() spam with min-refresh 500 ms`,
      );
      assert.ok(n >= 2, `refresh() spam caused only ${n} lookups`);
    });

    it('serves IPv6 (AAAA) records, alone or with A records, and honours family', async () => {
      d = await startDnsmasq({ records: { hosts: { 'v6.svc.test': ['::1'], 'dual.svc.test': ['127.0.0.2', '::1'] } } });
      const any = track(fromUrl(`${d.url}?min-refresh=200ms`).resolver);
      assert.deepEqual((await any.resolve('v6.svc.test:50051')).map(endpointKey), ['[::1]:50051']);
      const both = await any.resolve('dual.svc.test:50051');
      assert.deepEqual(both.map(endpointKey).sort(), ['127.0.0.2:50051', '[::1]:50051']);
      assert.equal(both.find((e) => e.host === '::1')?.id, '[::1]:50051');
      const v4 = track(fromUrl(`${d.url}?family=ipv4`).resolver);
      assert.deepEqual((await v4.resolve('dual.svc.test:50051')).map(endpointKey), ['127.0.0.2:50051']);
      const v6 = track(fromUrl(`${d.url}?family=ipv6`).resolver);
      assert.deepEqual((await v6.resolve('dual.svc.test:50051')).map(endpointKey), ['[::1]:50051']);
      // An AAAA-only name asked for A only: the name exists with no such records (NODATA): an empty set.
      const r = watch(v4, 'v6.svc.test:50051');
      const snap = await r.until(() => true, 3000, 'a first snapshot');
      assert.deepEqual(snap.endpoints, []);
      assert.equal(snap.error, undefined);
    });
  });

  describe('NXDOMAIN versus registry failures', () => {
    let d: Dnsmasq | undefined;
    const track = closeAfterEach();
    afterEach(async () => {
      await d?.stop();
      d = undefined;
    });

    it('a name that does not exist (NXDOMAIN) is an empty set without error', async () => {
      d = await startDnsmasq();
      const resolver = track(fromUrl(`${d.url}?min-refresh=200ms`).resolver);
      assert.deepEqual(await resolver.resolve('nothing-here.svc.test:80'), []);
      assert.deepEqual(await resolver.resolve('_grpc._tcp.nothing-here.svc.test'), []);
    });

    it('a closed nameserver port is REGISTRY_UNAVAILABLE, never an empty set', async () => {
      const port = await freePort();
      const resolver = track(fromUrl(`dns://127.0.0.1:${port}?min-refresh=200ms&timeout=200ms&tries=1`).resolver);
      await assert.rejects(
        resolver.resolve('echo.svc.test:80'),
        (e: unknown) =>
          isWayfinderError(e, 'REGISTRY_UNAVAILABLE') && /ECONNREFUSED|ETIMEOUT/.test((e as Error).message),
      );
      const r = new SnapshotRecorder();
      track(resolver.watch('echo.svc.test:80', r.onSnapshot));
      const snap = await r.until(() => true, 3000, 'a first snapshot');
      assert.equal(snap.error?.code, 'REGISTRY_UNAVAILABLE');
      assert.deepEqual(snap.endpoints, []);
    });

    it('a timeout keeps the last good set, reports REGISTRY_UNAVAILABLE, and recovers', async () => {
      d = await startDnsmasq({ records: { hosts: { 'echo.svc.test': ['127.0.0.2', '127.0.0.3'] } } });
      const resolver = track(fromUrl(`${d.url}?min-refresh=150ms&max-refresh=1s&timeout=150ms&tries=1`).resolver);
      const r = new SnapshotRecorder();
      track(resolver.watch('echo.svc.test:50051', r.onSnapshot));
      await r.until(exactly('127.0.0.2:50051', '127.0.0.3:50051'), 3000, 'the good set');
      await d.pause(); // bound but silent: every query times out
      const failed = await r.until((s) => s.error?.code === 'REGISTRY_UNAVAILABLE', 5000, 'the failure to be reported');
      assert.match(failed.error!.message, /ETIMEOUT/);
      assert.deepEqual(keys(failed), ['127.0.0.2:50051', '127.0.0.3:50051'], 'the last good set was not kept');
      assert.equal(failed.stale, true);
      await d.resume();
      const back = await r.until((s) => !s.error, 5000, 'recovery');
      assert.deepEqual(keys(back), ['127.0.0.2:50051', '127.0.0.3:50051']);
      for (const s of r.snapshots) assert.equal(s.endpoints.length, 2, 'an outage emptied the set');
    });

    it('REFUSED and a stopped server keep the last good set too', async () => {
      d = await startDnsmasq({ records: { hosts: { 'echo.svc.test': ['127.0.0.2'] } } });
      const resolver = track(fromUrl(`${d.url}?min-refresh=150ms&max-refresh=1s&timeout=200ms&tries=1`).resolver);
      // dnsmasq answers names outside its local domains with REFUSED (it has no upstream).
      await assert.rejects(
        resolver.resolve('echo.example.com:80'),
        (e: unknown) => isWayfinderError(e, 'REGISTRY_UNAVAILABLE') && /EREFUSED/.test((e as Error).message),
      );
      const r = new SnapshotRecorder();
      track(resolver.watch('echo.svc.test:50051', r.onSnapshot));
      await r.until(exactly('127.0.0.2:50051'), 3000, 'the good set');
      await d.stop();
      const failed = await r.until((s) => s.error?.code === 'REGISTRY_UNAVAILABLE', 5000, 'the failure to be reported');
      assert.deepEqual(keys(failed), ['127.0.0.2:50051']);
    });
  });

  describe('SRV weights and priorities', () => {
    let d: Dnsmasq;
    const track = closeAfterEach();
    afterEach(async () => {
      await d?.stop();
    });
    const name = '_grpc._tcp.echo.svc.test';

    it('maps SRV weights to endpoint weights and uses the lowest priority group only', async () => {
      const [a, b] = [track(await listener()), track(await listener('127.0.0.2'))];
      d = await startDnsmasq({
        records: {
          hosts: { 't1.svc.test': ['127.0.0.1'], 't2.svc.test': ['127.0.0.2'], 'backup.svc.test': ['127.0.0.3'] },
          srv: [
            { name, target: 't1.svc.test', port: a.port, priority: 10, weight: 30 },
            { name, target: 't2.svc.test', port: b.port, priority: 10, weight: 10 },
            { name, target: 't1.svc.test', port: 7003, priority: 10, weight: 0 },
            { name, target: 'backup.svc.test', port: 7004, priority: 20, weight: 50 },
          ],
        },
      });
      const resolver = track(fromUrl(`${d.url}?min-refresh=200ms&timeout=300ms`).resolver);
      const eps = await resolver.resolve(name);
      const w = Object.fromEntries(eps.map((e) => [endpointKey(e), e.weight]));
      assert.deepEqual(
        w,
        { [`127.0.0.1:${a.port}`]: 30, [`127.0.0.2:${b.port}`]: 10, '127.0.0.1:7003': 1 },
        'weight 0 maps to 1; priority 20 is left out',
      );
      assert.equal(eps.find((e) => e.port === a.port)?.metadata['dns.target'], 't1.svc.test');
    });

    it('falls back to the next priority group only when the lowest is unreachable', async () => {
      const backup = track(await listener('127.0.0.3'));
      // Two distinct closed ports (freePort() may hand out the same port twice once it is released).
      const dead1 = await freePort();
      let dead2 = await freePort();
      while (dead2 === dead1) dead2 = await freePort();
      d = await startDnsmasq({
        records: {
          hosts: { 't1.svc.test': ['127.0.0.1'], 'backup.svc.test': ['127.0.0.3'] },
          srv: [
            { name, target: 't1.svc.test', port: dead1, priority: 0, weight: 10 },
            { name, target: 't1.svc.test', port: dead2, priority: 0, weight: 10 },
            { name, target: 'backup.svc.test', port: backup.port, priority: 5, weight: 7 },
          ],
        },
      });
      const probing = track(fromUrl(`${d.url}?min-refresh=200ms&timeout=300ms`).resolver);
      assert.deepEqual((await probing.resolve(name)).map(endpointKey), [`127.0.0.3:${backup.port}`]);
      // Without probing, DNS alone says the priority-0 group exists, so it is used.
      const trusting = track(fromUrl(`${d.url}?min-refresh=200ms&probe=false`).resolver);
      assert.deepEqual(
        (await trusting.resolve(name)).map(endpointKey).sort(),
        [`127.0.0.1:${dead1}`, `127.0.0.1:${dead2}`].sort(),
      );
      // When the preferred group comes back, the next lookup returns to it.
      const r = new SnapshotRecorder();
      track(probing.watch(name, r.onSnapshot));
      await r.until(exactly(`127.0.0.3:${backup.port}`), 3000, 'the backup group');
      const revived = track(await listener('127.0.0.1'));
      await d.setRecords({
        ...d.records(),
        srv: [
          ...d.records().srv!.filter((x) => x.port !== dead1),
          { name, target: 't1.svc.test', port: revived.port, priority: 0, weight: 10 },
        ],
      });
      await r.until(exactly(`127.0.0.1:${dead2}`, `127.0.0.1:${revived.port}`), 5000, 'the priority-0 group again');
      await backup.close();
    });

    it('uses the lowest group when no group is reachable (DNS is all it has)', async () => {
      const [p1, p2] = [await freePort(), await freePort()];
      d = await startDnsmasq({
        records: {
          hosts: { 't1.svc.test': ['127.0.0.1'] },
          srv: [
            { name, target: 't1.svc.test', port: p1, priority: 1, weight: 1 },
            { name, target: 't1.svc.test', port: p2, priority: 2, weight: 1 },
          ],
        },
      });
      const resolver = track(fromUrl(`${d.url}?timeout=200ms`).resolver);
      assert.deepEqual((await resolver.resolve(name)).map(endpointKey), [`127.0.0.1:${p1}`]);
    });

    it('skips an SRV record whose target has no address (BAD_ENTRY) and falls to a group that has one', async () => {
      d = await startDnsmasq({
        records: {
          hosts: { 'ok.svc.test': ['127.0.0.2'] },
          srv: [
            { name, target: 'typo.svc.test', port: 7001, priority: 0, weight: 1 },
            { name, target: 'ok.svc.test', port: 7002, priority: 1, weight: 1 },
          ],
        },
      });
      const resolver = track(fromUrl(`${d.url}?min-refresh=200ms`).resolver);
      const r = new SnapshotRecorder();
      track(resolver.watch(name, r.onSnapshot));
      const snap = await r.until(() => true, 3000, 'a first snapshot');
      assert.deepEqual(keys(snap), ['127.0.0.2:7002']);
      assert.equal(snap.error?.code, 'BAD_ENTRY');
      assert.match(snap.error!.message, /typo\.svc\.test has no A or AAAA record/);
    });
  });
});

describe('dns adapter: gRPC end to end against a real dnsmasq', function () {
  this.timeout(30_000);

  let grpcMod: typeof GrpcModule | undefined;
  let echoMod: typeof EchoModule | undefined;
  const cleanups: (() => unknown)[] = [];
  before(function () {
    requireBinaryOrSkip(this, findDnsmasq);
    grpcMod = require('../../grpc');
    echoMod = require('../../testkit/echo');
    grpcMod!.installGrpc();
  });
  after(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /** Two echo servers on 127.0.0.2 and 127.0.0.3 sharing one free port (A records carry no port). */
  async function twoServers() {
    for (let attempt = 0; ; attempt++) {
      const a = await echoMod!.startEchoServer({ host: '127.0.0.2', id: 'A' });
      try {
        const b = await echoMod!.startEchoServer({ host: '127.0.0.3', port: a.port, id: 'B' });
        return [a, b] as const;
      } catch (e) {
        a.kill();
        if (attempt >= 3) throw e;
      }
    }
  }

  it('wayfinder+dns:// target: a scale-up reaches a busy channel within max-refresh, with no call failing and no connection dropped', async () => {
    const [a, b] = await twoServers();
    cleanups.push(
      () => a.kill(),
      () => b.kill(),
    );
    const d = await startDnsmasq({ localTtl: 3600, records: { hosts: { 'echo.svc.test': ['127.0.0.2'] } } });
    cleanups.push(() => d.stop());
    const maxMs = 1500;
    // grpc-js owns the dns: scheme, so the bridge serves this registry as wayfinder+dns: (see grpc/index.ts).
    const ours = new echoMod!.EchoClient(
      `wayfinder+dns://${d.address}/echo.svc.test:${a.port}?min-refresh=200ms&max-refresh=${maxMs}ms`,
    );
    // grpc-js's own dns: resolver on the same records, for comparison. It honours the target's
    // nameserver only with GRPC_NODE_USE_ALTERNATIVE_RESOLVER=true (read once at load, so set on
    // its module for this test and restored after); otherwise it uses getaddrinfo.
    const env = require('@grpc/grpc-js/build/src/environment') as { GRPC_NODE_USE_ALTERNATIVE_RESOLVER: boolean };
    const saved = env.GRPC_NODE_USE_ALTERNATIVE_RESOLVER;
    env.GRPC_NODE_USE_ALTERNATIVE_RESOLVER = true;
    cleanups.push(() => void (env.GRPC_NODE_USE_ALTERNATIVE_RESOLVER = saved));
    const theirs = new echoMod!.EchoClient(`dns://${d.address}/echo.svc.test:${a.port}`, undefined, {
      'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
      'grpc.enable_http_proxy': 0,
    });
    cleanups.push(
      () => ours.close(),
      () => theirs.close(),
    );

    for (let i = 0; i < 5; i++) {
      assert.equal((await ours.echo({ message: 'x' })).serverId, 'A');
      assert.equal((await theirs.echo({ message: 'x' })).serverId, 'A');
    }
    const peersOfA = new Set(a.peers);
    assert.equal(peersOfA.size, 2, `expected one connection per client to A, saw ${[...a.peers]}`);

    await d.setRecords({ hosts: { 'echo.svc.test': ['127.0.0.2', '127.0.0.3'] } });
    const t0 = Date.now();
    let seenB = -1;
    const theirsBy: string[] = [];
    // Calls keep flowing the whole time; each must succeed (nothing breaks, nothing is retried away).
    while (Date.now() - t0 < maxMs + 2500) {
      const [r1, r2] = await Promise.all([ours.echo({ message: 'y' }), theirs.echo({ message: 'y' })]);
      theirsBy.push(r2.serverId);
      if (r1.serverId === 'B' && seenB < 0) seenB = Date.now() - t0;
      if (seenB >= 0 && Date.now() - t0 > maxMs + 1000) break;
      await new Promise((r) => setTimeout(r, 20)); // call pacing, not synchronisation
    }
    assert.ok(seenB >= 0, 'our channel never reached the new server B');
    assert.ok(seenB <= maxMs + 1000, `B first answered after ${seenB} ms; max-refresh is ${maxMs} ms`);
    // No connection to A was dropped or re-made to get there: A still sees the same two peers.
    assert.deepEqual([...a.peers].sort(), [...peersOfA].sort(), 'a connection to A was re-established');
    // Both are used once B is known (round robin).
    const spread = new Set<string>();
    for (let i = 0; i < 10; i++) spread.add((await ours.echo({})).serverId);
    assert.deepEqual([...spread].sort(), ['A', 'B']);
    // grpc-js's dns: resolver re-resolves only when a connection drops, so it never saw B.
    assert.ok(
      !theirsBy.includes('B'),
      'grpc-js dns: saw the scale-up (behaviour changed upstream; docs/adapters/dns.md needs updating)',
    );
  });

  it('installGrpc({ replaceDns: true }) serves plain dns:// targets with this adapter (scale-ups seen), and false gives dns: back', async () => {
    const [a, b] = await twoServers();
    cleanups.push(
      () => a.kill(),
      () => b.kill(),
    );
    const d = await startDnsmasq({ localTtl: 3600, records: { hosts: { 'echo.svc.test': ['127.0.0.2'] } } });
    cleanups.push(() => d.stop());
    const inst = grpcMod!.installGrpc({ replaceDns: true });
    cleanups.push(() => void grpcMod!.installGrpc({ replaceDns: false }));
    assert.ok(inst.schemes.includes('dns'));
    const client = new echoMod!.EchoClient(
      `dns://${d.address}/echo.svc.test:${a.port}?max-refresh=1s&min-refresh=200ms`,
    );
    cleanups.push(() => client.close());
    assert.equal((await client.echo({})).serverId, 'A');
    await d.setRecords({ hosts: { 'echo.svc.test': ['127.0.0.2', '127.0.0.3'] } });
    const t0 = Date.now();
    let sawB = false;
    while (!sawB && Date.now() - t0 < 4000) {
      sawB = (await client.echo({})).serverId === 'B';
      await new Promise((r) => setTimeout(r, 20)); // call pacing, not synchronisation
    }
    assert.ok(sawB, 'a dns: channel never saw the scale-up with replaceDns');
    assert.ok(!grpcMod!.installGrpc({ replaceDns: false }).schemes.includes('dns'));
    // grpc-js's own resolver is back: it rejects our ?options as part of the host name.
    const plain = new echoMod!.EchoClient(`dns://${d.address}/echo.svc.test:${a.port}?max-refresh=1s`, undefined, {
      'grpc.enable_http_proxy': 0,
    });
    cleanups.push(() => plain.close());
    await assert.rejects(plain.echo({}, { deadlineMs: 3000 }));
  });
});
