import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as zookeeper from 'node-zookeeper-client';
import {
  ClosedError,
  Discovery,
  endpointKey,
  isWayfinderError,
  resolveRegistry,
  type InstanceSpec,
  type Endpoint,
  type Logger,
  type Registrar,
  type Registration,
  type Snapshot,
} from '../../core';
import {
  SnapshotRecorder,
  faultProxy,
  proxyFaults,
  registrarConformance,
  requireBinaryOrSkip,
  resolverConformance,
  tempDir,
  uniqueService,
  waitFor,
  withTimeout,
} from '../../testkit';
import { findZooKeeper, startZooKeeper, type ZooKeeperServer } from '../../testkit/zookeeper';
import {
  ServiceWatch,
  createZooKeeperRegistry,
  zookeeperAdapter,
  zookeeperCapabilities,
  type ZooKeeperOptions,
  type ZooKeeperRegistry,
} from '.';
import { hardClose } from '../../testkit/zookeeper-faults';
import { digestId, sessionHex } from './client';
import { installGrpc } from '../../grpc';
import { grpcFailoverCheck } from '../../testkit/echo';

/**
 * Against a real ZooKeeper 3.8 (one server for this file, started in before()). Sessions here are
 * short (2 s) so expiry tests stay quick; the server allows them (minSessionTimeout 200 ms).
 */

let zk: ZooKeeperServer;
let baseSerial = 0;
const uniqueBase = (p = 'wf') => `/${p}-${process.pid}-${baseSerial++}`;
const SESSION_MS = 2000;
const PROP = 3000;
const open: { close(): Promise<void> }[] = [];

function registry(o: Partial<ZooKeeperOptions> = {}, logger?: Logger): ZooKeeperRegistry {
  const r = createZooKeeperRegistry(
    { hosts: [zk.connectString], sessionTimeout: SESSION_MS, timeout: 5000, ...o },
    logger,
  );
  open.push(r);
  return r;
}

/** A raw vendor client for writing nodes the way other tools (Curator, zkCli) would. */
async function rawClient(
  auth?: string,
  connectString = zk.connectString,
): Promise<zookeeper.Client & { done(): void }> {
  const c = zookeeper.createClient(connectString, { sessionTimeout: 10_000, spinDelay: 100, retries: 0 });
  if (auth) c.addAuthInfo('digest', Buffer.from(auth));
  await withTimeout(
    new Promise<void>((resolve) => {
      c.once('connected', () => resolve());
      c.connect();
    }),
    10_000,
    'a raw client to connect',
  );
  return Object.assign(c, {
    done: () => {
      c.close();
      setTimeout(() => hardClose(c), 500).unref();
    },
  });
}
const p = <T>(fn: (cb: (err: unknown, v?: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))));
const OPEN_ACL = [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('world', 'anyone'))];
const mkdirp = (c: zookeeper.Client, at: string) => p<string>((cb) => c.mkdirp(at, cb));
const createNode = (c: zookeeper.Client, at: string, data: string, mode = zookeeper.CreateMode.PERSISTENT) =>
  p<string>((cb) => c.create(at, Buffer.from(data), OPEN_ACL, mode, cb));
const getData = (c: zookeeper.Client, at: string) => p<Buffer>((cb) => c.getData(at, cb));
const statOf = (c: zookeeper.Client, at: string) => p<zookeeper.Stat>((cb) => c.exists(at, cb));

const keys = (s: Snapshot) => s.endpoints.map(endpointKey).sort();
const hasExactly =
  (...want: string[]) =>
  (s: Snapshot) =>
    JSON.stringify(keys(s)) === JSON.stringify([...want].sort());

/** A TCP relay that can cut every connection through it and refuse new ones: a network partition. */
async function partitionableProxy(
  target: number,
): Promise<{ port: number; cut(): void; heal(): void; close(): Promise<void> }> {
  let blocked = false;
  const pairs = new Set<net.Socket>();
  const server = net.createServer((down) => {
    if (blocked) return void down.destroy();
    const up = net.connect({ host: '127.0.0.1', port: target });
    pairs.add(down).add(up);
    const end = () => {
      down.destroy();
      up.destroy();
      pairs.delete(down);
      pairs.delete(up);
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut() {
      blocked = true;
      for (const s of pairs) s.destroy();
    },
    heal() {
      blocked = false;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of pairs) s.destroy();
        server.close(() => r());
      }),
  };
}

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const rec = (level: string) => (obj: object | string, msg?: string) =>
    void lines.push(`${level} ${typeof obj === 'string' ? obj : `${msg ?? ''} ${JSON.stringify(obj)}`}`);
  return { lines, debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error') };
}

function events(reg: Registration): string[] {
  const seen: string[] = [];
  reg.on('lost', () => seen.push('lost'));
  reg.on('restored', () => seen.push('restored'));
  return seen;
}

describe('zookeeper adapter (real ZooKeeper)', function () {
  this.timeout(60_000);

  before(async function () {
    this.timeout(60_000);
    if (!requireBinaryOrSkip(this, findZooKeeper)) return;
    zk = await startZooKeeper({ tickTimeMs: 100, minSessionTimeoutMs: 200 });
  });
  afterEach(async () => {
    await Promise.allSettled(open.splice(0).map((r) => r.close()));
  });
  after(async () => {
    await zk?.close();
  });

  // ---- the conformance kit ----
  // In ZooKeeper liveness belongs to a session, so a "registrant" is a session: the test registrar
  // gives each registration its own session (as separate processes would have), and crash(reg)
  // cuts that session's connection without closing it, so the node goes only at session expiry.
  class SessionPerInstanceRegistrar implements Registrar {
    private readonly producers = new Map<Registration, ZooKeeperRegistry>();
    private closed = false;
    constructor(private readonly base: string) {}
    async register(spec: InstanceSpec): Promise<Registration> {
      if (this.closed) throw new ClosedError('zk test registrar');
      const pr = createZooKeeperRegistry({
        hosts: [zk.connectString],
        path: this.base,
        sessionTimeout: SESSION_MS,
        timeout: 5000,
      });
      try {
        const reg = await pr.registrar.register(spec);
        this.producers.set(reg, pr);
        return reg;
      } catch (e) {
        await pr.close();
        throw e;
      }
    }
    crash(reg: Registration): void {
      const pr = this.producers.get(reg);
      assert.ok(pr, 'crash() of a registration this registrar did not make');
      pr.session.kill();
    }
    async close(): Promise<void> {
      this.closed = true;
      await Promise.allSettled([...this.producers.values()].map((pr) => pr.close()));
    }
  }
  const factory = async () => {
    const base = uniqueBase('conf');
    // The resolver's session goes through a fault proxy (the kit's outage tests); the registrar's
    // sessions do not, so writes made during an outage test the re-list after it.
    const proxy = await faultProxy({ target: zk.connectString });
    const consumer = createZooKeeperRegistry({
      hosts: [proxy.address],
      path: base,
      sessionTimeout: SESSION_MS,
      timeout: 5000,
    });
    const registrar = new SessionPerInstanceRegistrar(base);
    return {
      resolver: consumer.resolver,
      registrar,
      faults: proxyFaults(proxy),
      async injectBadEntry(service: string) {
        const c = await rawClient();
        try {
          await mkdirp(c, `${base}/${service}`);
          await createNode(c, `${base}/${service}/corrupt`, '{"host": 42, not json');
        } finally {
          c.done();
        }
      },
      crash: async (reg: Registration) => registrar.crash(reg),
      async cleanup() {
        await Promise.allSettled([consumer.close(), registrar.close()]);
        await proxy.close();
      },
    };
  };
  const timing = { propagationMs: PROP, ttlMs: SESSION_MS + 1500 };
  resolverConformance({ it, describe, name: 'zookeeper', factory, capabilities: zookeeperCapabilities, timing });
  registrarConformance({ it, describe, name: 'zookeeper', factory, capabilities: zookeeperCapabilities, timing });

  describe('behaviour beyond the kit', () => {
    it('parses zk:// and zookeeper:// URLs and rejects bad options naming the field', () => {
      const a = resolveRegistry('zk://h1:2181,h2:2182/services?format=curator&sessionTimeout=5s');
      assert.equal(a.def, zookeeperAdapter);
      assert.deepEqual(a.options.hosts, ['h1:2181', 'h2:2182']);
      assert.equal(a.options.path, '/services');
      assert.equal(a.options.format, 'curator');
      assert.equal(a.options.sessionTimeout, 5000);
      assert.equal(resolveRegistry('zookeeper://h1/base/deeper').options.path, '/base/deeper');
      assert.equal(resolveRegistry('zk://h1').options.format, 'wayfinder');
      const cred = resolveRegistry('zk://alice:pa55word@h1:2181/services');
      assert.equal(cred.options.username, 'alice');
      assert.equal(cred.options.password, 'pa55word');
      assert.ok(!cred.display.includes('pa55word'), `password shown in ${cred.display}`);
      assert.equal(cred.options.acl, undefined);

      const bad = (spec: Parameters<typeof resolveRegistry>[0], field: string, msg: RegExp) =>
        assert.throws(
          () => resolveRegistry(spec),
          (e: unknown) =>
            isWayfinderError(e, 'CONFIG_INVALID') &&
            (e as { field?: string }).field === field &&
            msg.test((e as Error).message),
        );
      bad({ scheme: 'zk', hosts: ['h1'], path: 'services' }, 'path', /^zk: "path" must start with "\/"/);
      bad({ scheme: 'zk', hosts: ['h1'], path: '/a//b' }, 'path', /empty/);
      bad('zk://h1/services?format=etcd', 'format', /"format" must be one of "wayfinder", "curator"/);
      bad('zk:///services', 'hosts', /"hosts" is required/);
      bad('zk://h1/services?sessionTimeout=soon', 'sessionTimeout', /duration/);
      bad('zk://h1/services?password-file=/etc/pw', 'username', /"username" is required/);
      bad('zk://alice@h1/services', 'password', /needs "password" or "password-file"/);
      bad('zk://h1/services?acl=world-read', 'acl', /needs a digest identity/);
      bad('zk://h1/services?acl=everyone', 'acl', /one of "open", "world-read", "creator-only"/);
      bad('zk://h1/services?prefix=/x', 'prefix', /unknown option "prefix"; known options: hosts, path, format/);
      bad('zk://alice:pw@h1/services?password-file=/x', 'password-file', /not both/);
    });

    it('works through Discovery.fromConfig with the zookeeper:// alias, and lists services', async () => {
      const base = uniqueBase('disc');
      const a = await Discovery.fromConfig(zk.url(base, `sessionTimeout=${SESSION_MS}`));
      const b = await Discovery.fromConfig({
        registry: { scheme: 'zookeeper', hosts: [zk.connectString], path: base },
      });
      open.push(a, b);
      assert.equal(a.scheme, 'zk');
      await a.registrar.register({ service: 'echo', host: '127.0.0.1', port: 7001 });
      await a.registrar.register({ service: 'billing', host: '127.0.0.1', port: 7002 });
      assert.deepEqual((await b.resolver.resolve('echo')).map(endpointKey), ['127.0.0.1:7001']);
      assert.deepEqual(await b.listServices(), ['billing', 'echo']);
      await a.close();
      const r = new SnapshotRecorder();
      const w = b.resolver.watch('echo', r.onSnapshot);
      await r.until(hasExactly(), PROP, 'the instance gone after close()');
      w.close();
    });

    it('reports a node without data, and non-JSON data, as BAD_ENTRY and keeps the good ones', async () => {
      const base = uniqueBase();
      const svc = uniqueService();
      const reg = registry({ path: base });
      await reg.registrar.register({ service: svc, host: '127.0.0.1', port: 7101 });
      const c = await rawClient();
      try {
        await p<string>((cb) => c.create(`${base}/${svc}/bare`, cb));
        await createNode(c, `${base}/${svc}/garbage`, '\u0000\u0001binary');
      } finally {
        c.done();
      }
      const r = new SnapshotRecorder();
      const w = reg.resolver.watch(svc, r.onSnapshot);
      const s = await r.until((x) => x.error?.code === 'BAD_ENTRY', PROP, 'BAD_ENTRY');
      w.close();
      assert.deepEqual(keys(s), ['127.0.0.1:7101']);
      const entries = (s.error as unknown as { entries: { key: string; reason: string }[] }).entries;
      assert.deepEqual(entries.map((e) => e.key).sort(), [`${base}/${svc}/bare`, `${base}/${svc}/garbage`]);
      assert.match(entries.find((e) => e.key.endsWith('bare'))!.reason, /no data/);
      assert.match(entries.find((e) => e.key.endsWith('garbage'))!.reason, /not valid JSON/);
    });

    it('a disconnect shorter than the session timeout loses nothing, and a change made meanwhile is still delivered', async () => {
      const proxy = await partitionableProxy(zk.port);
      open.push(proxy);
      const base = uniqueBase();
      const svc = uniqueService();
      const viaProxy = createZooKeeperRegistry({
        hosts: [`127.0.0.1:${proxy.port}`],
        path: base,
        sessionTimeout: 8000,
        timeout: 5000,
      });
      open.push(viaProxy);
      const direct = registry({ path: base });
      const mine = await viaProxy.registrar.register({ service: svc, host: '127.0.0.1', port: 7201 });
      const ev = events(mine);
      const session = viaProxy.session.sessionId;
      const r = new SnapshotRecorder();
      viaProxy.resolver.watch(svc, r.onSnapshot);
      await r.until(hasExactly('127.0.0.1:7201'), PROP, 'the first set');

      proxy.cut();
      const down = await r.until((s) => s.error?.code === 'REGISTRY_UNAVAILABLE', PROP, 'the disconnect reported');
      assert.deepEqual(keys(down), ['127.0.0.1:7201'], 'the last good set was not kept');
      assert.equal(down.stale, true);
      // The change happens while the watcher cannot hear about it.
      await direct.registrar.register({ service: svc, host: '127.0.0.1', port: 7202 });
      assert.ok(!keys(r.last!).includes('127.0.0.1:7202'), 'saw a change through a cut connection?');

      proxy.heal();
      const up = await r.until(
        (s) => hasExactly('127.0.0.1:7201', '127.0.0.1:7202')(s) && !s.error,
        PROP + 2000,
        'the missed change after reconnecting',
      );
      assert.equal(up.stale, undefined);
      assert.equal(viaProxy.session.sessionId, session, 'the session should have survived');
      assert.deepEqual(ev, [], 'the registration must not be lost by a short disconnect');
      const c = await rawClient();
      try {
        const st = await statOf(c, `${base}/${svc}/127.0.0.1:7201`);
        assert.equal(sessionHex(st.ephemeralOwner), session, 'the node changed owner');
      } finally {
        c.done();
      }
    });

    it('churn does not grow the watch: what it keeps per child (state, watcher) goes when the child goes', async () => {
      // The soak (bench/soak.ts) found the per-child watcher map growing by one closure per instance
      // ever seen (~0.3 MiB/min at ~600 registrations/min); heap-diff named ServiceWatch.dataWatchers.
      const base = uniqueBase();
      const svc = uniqueService();
      const r = registry({ path: base });
      let last: Endpoint[] | undefined;
      const w = new ServiceWatch(
        r.session,
        base,
        svc,
        'wayfinder',
        { update: (eps) => (last = eps), error: () => {} },
        Math.random,
      );
      w.start();
      try {
        let port = 7300;
        for (let round = 0; round < 3; round++) {
          const regs = await Promise.all(
            Array.from({ length: 10 }, () => r.registrar.register({ service: svc, host: '127.0.0.1', port: port++ })),
          );
          await waitFor('the watch to see 10 instances', () => last?.length === 10, { timeoutMs: PROP });
          assert.deepEqual(w.tracked(), { nodes: 10, dataWatchers: 10 });
          await Promise.all(regs.map((g) => g.deregister()));
          await waitFor('the watch to see none', () => last?.length === 0, { timeoutMs: PROP });
          assert.deepEqual(w.tracked(), { nodes: 0, dataWatchers: 0 }, `after round ${round + 1}`);
        }
      } finally {
        w.stop();
      }
    });

    it('forced session expiry: lost then restored on a new session, and the watches re-armed', async () => {
      const base = uniqueBase();
      const svc = uniqueService();
      const a = registry({ path: base });
      const observer = registry({ path: base });
      const reg = await a.registrar.register({ service: svc, host: '127.0.0.1', port: 7301, metadata: { v: '1' } });
      const ev = events(reg);
      const r = new SnapshotRecorder();
      a.resolver.watch(svc, r.onSnapshot);
      const obs = new SnapshotRecorder();
      observer.resolver.watch(svc, obs.onSnapshot);
      await r.until(hasExactly('127.0.0.1:7301'), PROP, 'own watch sees the instance');
      await obs.until(hasExactly('127.0.0.1:7301'), PROP, 'observer sees the instance');
      const old = a.session.sessionId!;

      await zk.expireSession(a.session.credentials());
      await waitFor('lost then restored', () => ev.includes('restored'), { timeoutMs: 10_000 });
      assert.deepEqual(ev, ['lost', 'restored']);
      assert.notEqual(a.session.sessionId, old);
      assert.ok(a.session.deadSessions.has(old));
      const c = await rawClient();
      try {
        const st = await statOf(c, `${base}/${svc}/127.0.0.1:7301`);
        assert.equal(sessionHex(st.ephemeralOwner), a.session.sessionId, 'the node is not owned by the new session');
        assert.equal(JSON.parse((await getData(c, `${base}/${svc}/127.0.0.1:7301`)).toString()).metadata.v, '1');
      } finally {
        c.done();
      }
      // The watch of the expired session is re-armed on the new one: later changes still arrive.
      await observer.registrar.register({ service: svc, host: '127.0.0.1', port: 7302 });
      await r.until(
        (s) => hasExactly('127.0.0.1:7301', '127.0.0.1:7302')(s) && !s.error,
        PROP,
        'a change after expiry through the re-armed watch',
      );
      await reg.update({ metadata: { v: '2' } });
      await obs.until(
        (s) => s.endpoints.find((e) => e.port === 7301)?.metadata.v === '2',
        PROP,
        'an update after recovery',
      );
    });

    it('after expiry, a node at our path owned by another live session is not replaced; it is re-created once that session goes', async () => {
      const proxy = await partitionableProxy(zk.port);
      open.push(proxy);
      const base = uniqueBase();
      const svc = uniqueService();
      const log = recordingLogger();
      const a = createZooKeeperRegistry(
        { hosts: [`127.0.0.1:${proxy.port}`], path: base, sessionTimeout: SESSION_MS, timeout: 5000 },
        log,
      );
      open.push(a);
      const reg = await a.registrar.register({ service: svc, host: '127.0.0.1', port: 7401, id: 'inst-1' });
      const ev = events(reg);
      const nodePath = `${base}/${svc}/inst-1`;
      const creds = a.session.credentials();

      proxy.cut(); // a cannot reconnect, so cannot re-create before the other session takes the path
      await zk.expireSession(creds);
      const other = await rawClient();
      try {
        assert.equal(await statOf(other, nodePath), null, "the expired session's node should be gone");
        await createNode(
          other,
          nodePath,
          JSON.stringify({ host: '127.0.0.1', port: 7499 }),
          zookeeper.CreateMode.EPHEMERAL,
        );
        proxy.heal();
        await waitFor(
          'the registrar to meet the foreign owner',
          () => log.lines.some((l) => l.includes('held by another live session')),
          { timeoutMs: 10_000 },
        );
        const st = await statOf(other, nodePath);
        assert.equal(
          sessionHex(st.ephemeralOwner),
          sessionHex(other.getSessionId()),
          "a live session's node was replaced",
        );
        assert.equal(JSON.parse((await getData(other, nodePath)).toString()).port, 7499);
        assert.deepEqual(ev, ['lost']);
      } finally {
        other.done(); // closing the other session deletes its node: the registration may take the path back
      }
      await waitFor('restored', () => ev.includes('restored'), { timeoutMs: 10_000 });
      const c = await rawClient();
      try {
        assert.equal(sessionHex((await statOf(c, nodePath)).ephemeralOwner), a.session.sessionId);
        assert.equal(JSON.parse((await getData(c, nodePath)).toString()).port, 7401);
      } finally {
        c.done();
      }
    });

    it("NodeExists on re-create is settled by ephemeralOwner: ours is kept, a dead session's replaced", async () => {
      const base = uniqueBase();
      const svc = uniqueService();
      const a = registry({ path: base });
      const reg = await a.registrar.register({
        service: svc,
        host: '127.0.0.1',
        port: 7451,
        id: 'inst-2',
        metadata: { v: '1' },
      });
      const nodePath = `${base}/${svc}/inst-2`;
      const recreate = (reg as unknown as { createNode(initial: boolean): Promise<string> }).createNode.bind(reg);
      const c = await rawClient();
      try {
        // Our own session's node (an earlier create whose answer was lost): kept, data made current.
        const before = await statOf(c, nodePath);
        await reg.update({ metadata: { v: '2' } });
        assert.equal(await recreate(false), 'adopted');
        const kept = await statOf(c, nodePath);
        assert.deepEqual(kept.czxid, before.czxid, 'our own node was deleted and re-created');
        // A node held by a session this process knows to be expired (an ensemble member lagging
        // behind the expiry): replaced. The other session is alive here; the registrar's knowledge
        // of it as one of its dead sessions is what decides, so it is told so.
        const other = await rawClient();
        try {
          await p((cb) => c.remove(nodePath, cb));
          await createNode(
            other,
            nodePath,
            JSON.stringify({ host: '127.0.0.1', port: 7459 }),
            zookeeper.CreateMode.EPHEMERAL,
          );
          a.session.deadSessions.add(sessionHex(other.getSessionId()));
          assert.equal(await recreate(false), 'created');
          assert.equal(sessionHex((await statOf(c, nodePath)).ephemeralOwner), a.session.sessionId);
          assert.equal(JSON.parse((await getData(c, nodePath)).toString()).metadata.v, '2');
        } finally {
          other.done();
        }
      } finally {
        c.done();
      }
    });

    it('server restart: the last good set is kept while it is down, then watching and registering resume', async function () {
      this.timeout(90_000);
      const base = uniqueBase();
      const svc = uniqueService();
      // A session timeout longer than the restart, so sessions (and ephemeral nodes) survive it.
      const a = registry({ path: base, sessionTimeout: 20_000, timeout: 20_000 });
      const b = registry({ path: base, sessionTimeout: 20_000, timeout: 20_000 });
      const reg = await a.registrar.register({ service: svc, host: '127.0.0.1', port: 7501 });
      const ev = events(reg);
      const r = new SnapshotRecorder();
      b.resolver.watch(svc, r.onSnapshot);
      await r.until(hasExactly('127.0.0.1:7501'), PROP, 'the instance');
      await zk.stop();
      const down = await r.until((s) => s.error?.code === 'REGISTRY_UNAVAILABLE', PROP, 'the outage reported');
      assert.deepEqual(keys(down), ['127.0.0.1:7501'], 'the last good set was dropped during the outage');
      await zk.restart();
      await a.registrar.register({ service: svc, host: '127.0.0.1', port: 7502 });
      await r.until(
        (s) => hasExactly('127.0.0.1:7501', '127.0.0.1:7502')(s) && !s.error,
        20_000,
        'both after the restart',
      );
      assert.deepEqual(ev, [], 'the session survived the restart; nothing should be lost');
    });

    it('Curator interop: reads ServiceInstance nodes as Curator writes them, and writes nodes Curator reads', async () => {
      const base = uniqueBase('curator');
      const svc = 'payments';
      const uriSpec =
        '{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},{"value":"address","variable":true},{"value":":","variable":false},{"value":"port","variable":true}]}';
      const curator = (id: string, fields: string) =>
        `{"name":"payments","id":"${id}",${fields},"registrationTimeUTC":1700000000000,"serviceType":"DYNAMIC","uriSpec":${uriSpec}`;
      const nodes: Record<string, string> = {
        // JsonInstanceSerializer<Map> (Jackson puts the payload's class in "@class").
        'f3a1c2d4-0000-4000-8000-000000000001':
          curator(
            'f3a1c2d4-0000-4000-8000-000000000001',
            '"address":"10.1.0.1","port":8080,"sslPort":null,"payload":{"@class":"java.util.HashMap","version":"2.1","weight":"3","zone":"eu-1"}',
          ) + ',"enabled":true}',
        // Spring Cloud Zookeeper's payload: metadata nested in a bean.
        'f3a1c2d4-0000-4000-8000-000000000002':
          curator(
            'f3a1c2d4-0000-4000-8000-000000000002',
            '"address":"10.1.0.2","port":8081,"sslPort":null,"payload":{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance","id":"payments-1","name":"payments","metadata":{"instance_status":"UP"}}',
          ) + ',"enabled":true}',
        // Compatible serialization mode (no "enabled"), a String payload, SSL port only.
        'f3a1c2d4-0000-4000-8000-000000000003':
          curator(
            'f3a1c2d4-0000-4000-8000-000000000003',
            '"address":"10.1.0.3","port":null,"sslPort":8443,"payload":"From Test"',
          ) + '}',
        // Disabled instances are not offered (Curator's providers filter them out).
        'f3a1c2d4-0000-4000-8000-000000000004':
          curator(
            'f3a1c2d4-0000-4000-8000-000000000004',
            '"address":"10.1.0.4","port":8084,"sslPort":null,"payload":null',
          ) + ',"enabled":false}',
        // Malformed: no address.
        'f3a1c2d4-0000-4000-8000-000000000005':
          curator('f3a1c2d4-0000-4000-8000-000000000005', '"address":null,"port":8085,"sslPort":null,"payload":null') +
          ',"enabled":true}',
      };
      const c = await rawClient();
      try {
        await mkdirp(c, `${base}/${svc}`);
        for (const [id, json] of Object.entries(nodes))
          await createNode(c, `${base}/${svc}/${id}`, json, zookeeper.CreateMode.EPHEMERAL);
        const reg = registry({ path: base, format: 'curator' });
        const r = new SnapshotRecorder();
        reg.resolver.watch(svc, r.onSnapshot);
        const s = await r.until(
          (x) => x.endpoints.length === 3 && x.error?.code === 'BAD_ENTRY',
          PROP,
          'three Curator instances and one BAD_ENTRY',
        );
        assert.deepEqual(keys(s), ['10.1.0.1:8080', '10.1.0.2:8081', '10.1.0.3:8443']);
        const byPort = new Map(s.endpoints.map((e) => [e.port, e]));
        assert.deepEqual(byPort.get(8080), {
          id: 'f3a1c2d4-0000-4000-8000-000000000001',
          host: '10.1.0.1',
          port: 8080,
          weight: 3,
          zone: 'eu-1',
          metadata: { version: '2.1' },
        });
        assert.deepEqual(byPort.get(8081)!.metadata, { instance_status: 'UP' });
        assert.deepEqual(byPort.get(8443)!.metadata, { payload: 'From Test' });
        assert.match(s.error!.message, /f3a1c2d4-0000-4000-8000-000000000005: Curator ServiceInstance: "address"/);

        // And the other way: what we write is a ServiceInstance as Curator's serializer lays it out.
        const mine = await reg.registrar.register({
          service: svc,
          host: '10.1.0.9',
          port: 9090,
          id: 'wf-1',
          weight: 4,
          zone: 'eu-2',
          metadata: { version: '3' },
        });
        const raw = JSON.parse((await getData(c, `${base}/${svc}/wf-1`)).toString());
        assert.deepEqual(Object.keys(raw), [
          'name',
          'id',
          'address',
          'port',
          'sslPort',
          'payload',
          'registrationTimeUTC',
          'serviceType',
          'uriSpec',
          'enabled',
        ]);
        assert.equal(raw.name, svc);
        assert.equal(raw.id, 'wf-1');
        assert.equal(raw.address, '10.1.0.9');
        assert.equal(raw.port, 9090);
        assert.equal(raw.sslPort, null);
        assert.equal(raw.payload['@class'], 'java.util.LinkedHashMap');
        assert.equal(raw.serviceType, 'DYNAMIC');
        assert.ok(Number.isInteger(raw.registrationTimeUTC) && Math.abs(raw.registrationTimeUTC - Date.now()) < 60_000);
        assert.equal(raw.enabled, true);
        const st = await statOf(c, `${base}/${svc}/wf-1`);
        assert.notEqual(
          sessionHex(st.ephemeralOwner),
          '0000000000000000',
          'a DYNAMIC instance must be an ephemeral node',
        );
        const back = await r.until(
          (x) => x.endpoints.some((e) => e.port === 9090),
          PROP,
          'our own Curator-format instance',
        );
        assert.deepEqual(
          back.endpoints.find((e) => e.port === 9090),
          { id: 'wf-1', host: '10.1.0.9', port: 9090, weight: 4, zone: 'eu-2', metadata: { version: '3' } },
        );
        await mine.update({ weight: 6 });
        const after = JSON.parse((await getData(c, `${base}/${svc}/wf-1`)).toString());
        assert.equal(after.payload.weight, 6);
        assert.equal(after.registrationTimeUTC, raw.registrationTimeUTC, 'an update must keep the registration time');
      } finally {
        c.done();
      }
    });

    it('digest ACLs: readable by anyone, writable only by the registrant; an unauthenticated writer gets AUTH_FAILED', async () => {
      const base = uniqueBase('acl');
      const svc = uniqueService();
      const secret = 's3cret-alice-pw';
      const alice = registry({ path: base, username: 'alice', password: secret });
      const reg = await alice.registrar.register({ service: svc, host: '127.0.0.1', port: 7601 });
      const nodePath = `${base}/${svc}/127.0.0.1:7601`;

      const anon = registry({ path: base });
      assert.deepEqual(
        (await anon.resolver.resolve(svc)).map(endpointKey),
        ['127.0.0.1:7601'],
        'a consumer without credentials cannot read',
      );
      // The server shows a digest in full only to a caller with ADMIN on the node (else "alice:x").
      const owner = await rawClient(`alice:${secret}`);
      try {
        const acls = await p<zookeeper.ACL[]>((cb) => owner.getACL(nodePath, cb));
        // @types says "perms"; the library's ACL objects carry "permission".
        const seen = acls
          .map((a) => `${a.id.scheme}:${a.id.id}=${(a as unknown as { permission: number }).permission}`)
          .sort();
        assert.deepEqual(
          seen,
          [
            `digest:${digestId('alice', secret)}=${zookeeper.Permission.ALL}`,
            `world:anyone=${zookeeper.Permission.READ}`,
          ].sort(),
        );
      } finally {
        owner.done();
      }
      const c = await rawClient();
      try {
        // A raw unauthenticated write is refused by the server itself.
        await assert.rejects(
          p((cb) => c.setData(nodePath, Buffer.from('{}'), cb)),
          (e: { code?: number }) => e.code === zookeeper.Exception.NO_AUTH,
        );
      } finally {
        c.done();
      }
      const isAuthFailed = (e: unknown) =>
        isWayfinderError(e, 'AUTH_FAILED') && /not authorised/.test((e as Error).message);
      await assert.rejects(anon.registrar.register({ service: svc, host: '127.0.0.1', port: 7602 }), isAuthFailed);
      await assert.rejects(
        anon.registrar.register({ service: svc, host: '127.0.0.1', port: 7601 }),
        isAuthFailed,
        "replacing another identity's node",
      );
      // The wrong password is another digest identity: refused the same way, and never echoed.
      const mallory = registry({ path: base, username: 'alice', password: 'guessed-pw' });
      const err = await mallory.registrar.register({ service: svc, host: '127.0.0.1', port: 7603 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(isAuthFailed(err), `expected AUTH_FAILED, got ${String(err)}`);
      assert.ok(
        !JSON.stringify({ m: (err as Error).message, j: err }).includes('guessed-pw'),
        'the password leaked into the error',
      );
      // The owner still can.
      await reg.update({ weight: 3 });
      assert.equal((await anon.resolver.resolve(svc))[0].weight, 3);
      // After a session expiry the new session authenticates again: the node (under a service node
      // only alice may write to) is re-created with alice's ACL.
      const ev = events(reg);
      await zk.expireSession(alice.session.credentials());
      await waitFor('restored after expiry', () => ev.includes('restored'), { timeoutMs: 10_000 });
      assert.deepEqual(ev, ['lost', 'restored']);
      const again = await rawClient(`alice:${secret}`);
      try {
        const acls = await p<zookeeper.ACL[]>((cb) => again.getACL(nodePath, cb));
        assert.ok(
          acls.some((a) => a.id.scheme === 'digest' && a.id.id === digestId('alice', secret)),
          'the re-created node lost its owner ACL',
        );
        assert.equal(sessionHex((await statOf(again, nodePath)).ephemeralOwner), alice.session.sessionId);
      } finally {
        again.done();
      }
    });

    it('acl=creator-only with password-file: consumers without the identity get AUTH_FAILED, the identity reads', async () => {
      const base = uniqueBase('acl');
      const svc = uniqueService();
      const dir = tempDir('wayfinder-zk-pw-');
      try {
        const file = path.join(dir.dir, 'pw');
        writeFileSync(file, 'bob-file-secret\n');
        const bob = registry({ path: base, username: 'bob', 'password-file': file, acl: 'creator-only' });
        await bob.registrar.register({ service: svc, host: '127.0.0.1', port: 7701 });
        const anon = registry({ path: base });
        await assert.rejects(anon.resolver.resolve(svc), (e: unknown) => isWayfinderError(e, 'AUTH_FAILED'));
        const bob2 = registry({ path: base, username: 'bob', password: 'bob-file-secret' });
        assert.deepEqual((await bob2.resolver.resolve(svc)).map(endpointKey), ['127.0.0.1:7701']);
        assert.throws(
          () => registry({ path: base, username: 'bob', 'password-file': path.join(dir.dir, 'missing') }),
          (e: unknown) => isWayfinderError(e, 'CONFIG_INVALID') && (e as { field?: string }).field === 'password-file',
        );
      } finally {
        dir.remove();
      }
    });

    it('a gRPC call through zk://127.0.0.1:<port>/<service> reaches servers registered in ZooKeeper, in both formats', async () => {
      installGrpc();
      const svc = uniqueService('echo');
      // Default base path /services, our format; then a Curator-format registry under /curator-grpc.
      for (const [target, registryUrl] of [
        [`zk://127.0.0.1:${zk.port}/${svc}`, zk.url('/services', `sessionTimeout=${SESSION_MS}`)],
        [
          `zk://127.0.0.1:${zk.port}/${svc}?path=/curator-grpc&format=curator`,
          zk.url('/curator-grpc', `format=curator&sessionTimeout=${SESSION_MS}`),
        ],
      ]) {
        const d = await Discovery.fromConfig(registryUrl);
        open.push(d);
        await grpcFailoverCheck({ discovery: d, target, service: svc });
      }
    });

    it('a parent with 20,000 children (a >1 MB listing) resolves without hanging the client, and stays watchable', async function () {
      this.timeout(240_000);
      const base = uniqueBase('big');
      const svc = 'big';
      const N = 20_000;
      const name = (i: number) => `instance-${String(i).padStart(6, '0')}-with-a-rather-long-node-name`;
      const c = await rawClient();
      try {
        await mkdirp(c, `${base}/${svc}`);
        let next = 0;
        const worker = async () => {
          for (let i = next++; i < N; i = next++)
            await createNode(
              c,
              `${base}/${svc}/${name(i)}`,
              JSON.stringify({ host: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 8000 }),
            );
        };
        await Promise.all(Array.from({ length: 200 }, worker));
      } finally {
        c.done();
      }
      const reg = registry({ path: base, timeout: 60_000 });
      const r = new SnapshotRecorder();
      reg.resolver.watch(svc, r.onSnapshot);
      // Either outcome is acceptable; hanging is not. It succeeds on this server.
      const first = await r.until(() => true, 180_000, 'a first snapshot of the huge service');
      if (first.error) assert.ok(isWayfinderError(first.error), `not a typed error: ${String(first.error)}`);
      else assert.equal(first.endpoints.length, N);
      // Still usable for other services, and the huge one still receives changes.
      await reg.registrar.register({ service: 'small', host: '127.0.0.1', port: 7801 });
      assert.deepEqual(
        (await withTimeout(reg.resolver.resolve('small'), 10_000, 'a small service next to a huge one')).map(
          endpointKey,
        ),
        ['127.0.0.1:7801'],
      );
      if (!first.error) {
        const d = await rawClient();
        try {
          await p((cb) => d.remove(`${base}/${svc}/${name(7)}`, cb));
        } finally {
          d.done();
        }
        await r.until((s) => s.endpoints.length === N - 1, 20_000, 'one removal among 20,000');
      }
    });
  });
});
