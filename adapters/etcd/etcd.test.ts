import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import {
  Discovery,
  endpointKey,
  isWayfinderError,
  resolveRegistry,
  type Logger,
  type Registration,
  type Snapshot,
} from '../../core';
import {
  SnapshotRecorder,
  proxyFaults,
  registrarConformance,
  resolverConformance,
  uniqueService,
} from '../../testkit/conformance';
import { faultProxy } from '../../testkit/fault-proxy';
import { startEtcd, makeTestPki, findEtcd, findEtcdctl, findOpenssl, type EtcdServer } from '../../testkit/etcd';
import { requireBinaryOrSkip, tempDir, waitFor, withTimeout } from '../../testkit/process';
import { installGrpc } from '../../grpc';
import { grpcFailoverCheck } from '../../testkit/echo';
import { createEtcdRegistry, etcdAdapter, etcdCapabilities, type EtcdRegistration } from './index';

const keys = (s: Snapshot) => s.endpoints.map(endpointKey).sort();
const only =
  (...want: string[]) =>
  (s: Snapshot) =>
    !s.error && JSON.stringify(keys(s)) === JSON.stringify(want.sort());

let prefixSerial = 0;
const uniquePrefix = () => `/wf-test-${process.pid}-${prefixSerial++}`;

/** Keeps log lines so tests can check what the adapter reported (and that no secret leaked). */
function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const rec = (level: string) => (obj: object | string, msg?: string) =>
    void lines.push(`${level} ${typeof obj === 'string' ? obj : `${msg ?? ''} ${JSON.stringify(obj)}`}`);
  return { lines, debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error') };
}

function onceEvent(reg: Registration, event: 'lost' | 'restored', ms: number): Promise<Error | undefined> {
  return withTimeout(
    new Promise<Error | undefined>((resolve) => reg.on(event, (e) => resolve(e))),
    ms,
    `registration "${event}"`,
  );
}

describe('etcd adapter', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  const toClose: { close(): Promise<void> | void }[] = [];

  before(async function () {
    this.timeout(60_000);
    requireBinaryOrSkip(this, () => {
      findEtcd();
      findEtcdctl();
      findOpenssl();
    });
    etcd = await startEtcd();
  });
  afterEach(async () => {
    await Promise.allSettled(
      toClose
        .splice(0)
        .reverse()
        .map((c) => c.close()),
    );
  });
  after(async () => {
    await etcd?.close();
  });

  /** A registry on the shared etcd under its own prefix, closed after the test. */
  function registry(opts: Parameters<typeof createEtcdRegistry>[0] = {}) {
    // 10 s leases unless a test is about expiry: a loaded CI machine must not expire them by accident.
    const r = createEtcdRegistry({ hosts: [etcd.address], prefix: uniquePrefix(), ttl: 10_000, ...opts });
    toClose.push({ close: () => r.close!() });
    return r;
  }

  const factory = async () => {
    const prefix = uniquePrefix();
    const r = createEtcdRegistry({ hosts: [etcd.address], prefix, ttl: 3000 });
    // The resolver reaches etcd through a fault proxy the kit switches off for its outage tests;
    // the registrar writes directly, so changes made during the outage test the re-list.
    const proxy = await faultProxy({ target: etcd.address });
    const viaProxy = createEtcdRegistry({ hosts: [proxy.address], prefix, ttl: 3000 });
    return {
      resolver: viaProxy.resolver,
      registrar: r.registrar,
      faults: proxyFaults(proxy),
      injectBadEntry: async (service: string) => {
        await r.client.put(`${prefix}/${service}/broken`, '{"host": "127.0.0.1", "port": "not a port"');
      },
      crash: async (reg: Registration) => (reg as EtcdRegistration).abandon(),
      cleanup: async () => {
        await r.close!();
        await viaProxy.close!();
        await proxy.close();
      },
    };
  };
  resolverConformance({
    it,
    describe,
    name: 'etcd',
    factory,
    capabilities: etcdCapabilities,
    timing: { propagationMs: 3000, ttlMs: 4000 },
  });
  registrarConformance({
    it,
    describe,
    name: 'etcd',
    factory,
    capabilities: etcdCapabilities,
    timing: { propagationMs: 3000, ttlMs: 4000 },
  });

  describe('configuration', () => {
    it('parses hosts, prefix, format, ttl and timeouts from the URL', () => {
      const { options, display } = resolveRegistry(
        'etcd://user:s3cret@h1:2379,h2?prefix=/svc&format=grpc-go&ttl=5s&request-timeout=2s',
      );
      assert.deepEqual(options.hosts, ['h1:2379', 'h2']);
      assert.equal(options.prefix, '/svc');
      assert.equal(options.format, 'grpc-go');
      assert.equal(options.ttl, 5000);
      assert.equal(options['request-timeout'], 2000);
      assert.equal(options.username, 'user');
      assert.equal(options.password, 's3cret');
      assert.ok(!display.includes('s3cret'), `password shown in ${display}`);
    });

    it('fails fast, naming the field, on bad options', () => {
      const bad: [string, string, RegExp][] = [
        ['etcd://127.0.0.1:2379?format=consul', 'format', /"format" must be one of "wayfinder", "grpc-go"/],
        ['etcd://127.0.0.1:2379?ttl=1s', 'ttl', /"ttl" must be a duration .* between 2000ms/],
        ['etcd://127.0.0.1:2379?ttl=2500ms', 'ttl', /whole number of seconds/],
        ['etcd://127.0.0.1:2379?cert=/tmp/c.pem', 'key', /"key" is required with "cert"/],
        ['etcd://127.0.0.1:2379?colour=blue', 'colour', /unknown option "colour"/],
        ['etcd://:s3cret@127.0.0.1:2379', 'username', /password needs a "username"/],
      ];
      for (const [url, field, re] of bad) {
        assert.throws(
          () => resolveRegistry(url),
          (e: unknown) =>
            isWayfinderError(e, 'CONFIG_INVALID') &&
            (e as { field?: string }).field === field &&
            re.test((e as Error).message) &&
            !(e as Error).message.includes('s3cret'),
          url,
        );
      }
    });

    it('reads the password from password-file and refuses an unreadable one', async () => {
      const missing = '/nonexistent/wayfinder-etcd-password';
      await assert.rejects(
        Discovery.fromConfig(`etcd://user@${etcd.address}?password-file=${missing}`),
        (e: unknown) => isWayfinderError(e, 'CONFIG_INVALID') && (e as { field?: string }).field === 'password-file',
      );
      assert.equal(etcdAdapter.options['password'].secret, true);
    });
  });

  describe('resolver', () => {
    it('re-lists when the watch start revision was compacted in the gap after the read', async () => {
      const logger = recordingLogger();
      const svc = uniqueService();
      let compacted = false;
      const prefix = uniquePrefix();
      const r = registry({
        prefix,
        logger,
        beforeWatch: async (startRev) => {
          if (compacted) return;
          compacted = true;
          // Changes after the read, then a compaction past the revision the watch will start from.
          etcd.etcdctl(['put', `${prefix}/${svc}/a`, JSON.stringify({ host: '127.0.0.1', port: 7201 })]);
          etcd.etcdctl(['put', `${prefix}/${svc}/b`, JSON.stringify({ host: '127.0.0.1', port: 7202 })]);
          etcd.etcdctl(['del', `${prefix}/${svc}/a`]);
          const rev = etcd.revision();
          assert.ok(rev > startRev);
          etcd.etcdctl(['compaction', String(rev)]);
        },
      });
      const rec = new SnapshotRecorder();
      const w = r.resolver.watch(svc, rec.onSnapshot);
      toClose.push({ close: () => w.close() });
      await rec.until(only('127.0.0.1:7202'), 5000, 'the set after the compacted gap');
      assert.ok(
        logger.lines.some((l) => /re-listing/.test(l) && /compacted/.test(l)),
        `no compaction re-list logged: ${logger.lines.join('\n')}`,
      );
      // The new watch works: a later change arrives.
      const reg = await r.registrar.register({ service: svc, host: '127.0.0.1', port: 7203 });
      await rec.until(only('127.0.0.1:7202', '127.0.0.1:7203'), 3000, 'a change after the re-list');
      await reg.deregister();
    });

    it('detects a silently dead watch stream with progress requests and keeps the last good set', async () => {
      const r = registry({ 'progress-interval': 300, 'request-timeout': 700 });
      const svc = uniqueService();
      const reg = await r.registrar.register({ service: svc, host: '127.0.0.1', port: 7211 });
      const rec = new SnapshotRecorder();
      const w = r.resolver.watch(svc, rec.onSnapshot);
      toClose.push({ close: () => w.close() });
      await rec.until(only('127.0.0.1:7211'), 3000, 'the endpoint');
      // A change seen through the watch proves the watch stream is established before etcd freezes.
      const probe = await r.registrar.register({ service: svc, host: '127.0.0.1', port: 7212 });
      await rec.until(only('127.0.0.1:7211', '127.0.0.1:7212'), 3000, 'a change through the watch');
      await probe.deregister();
      await rec.until(only('127.0.0.1:7211'), 3000, 'the probe gone');
      etcd.pause();
      try {
        const snap = await rec.until((s) => s.error?.code === 'REGISTRY_UNAVAILABLE', 4000, 'the dead stream reported');
        assert.deepEqual(keys(snap), ['127.0.0.1:7211'], 'the last good set was not kept');
        assert.equal(snap.stale, true);
      } finally {
        etcd.resume();
      }
      await rec.until((s) => !s.error && keys(s).length === 1, 8000, 'recovery after etcd answers again');
      await reg.deregister();
      await rec.until(only(), 5000, 'changes flow again');
    });

    it('holds one etcd watch per service however many watchers share it', async () => {
      // Its own etcd: the watcher count is server-wide, and other tests' watches on the shared
      // server may still be cancelling while this one counts.
      const own = await startEtcd();
      toClose.push({ close: () => own.close() });
      const metric = async () => {
        const res = await fetch(`${own.url}/metrics`);
        const m = /^etcd_debugging_mvcc_watcher_total (\d+)/m.exec(await res.text());
        assert.ok(m, 'etcd exposes no watcher metric');
        return Number(m[1]);
      };
      const r = registry({ hosts: [own.address] });
      const svc = uniqueService();
      const before = await metric();
      assert.equal(before, 0, 'a fresh etcd has no watcher');
      const recs = Array.from({ length: 5 }, () => new SnapshotRecorder());
      const ws = recs.map((rec) => r.resolver.watch(svc, rec.onSnapshot));
      await Promise.all(recs.map((rec) => rec.until(() => true, 3000)));
      await waitFor('the watch to be created', async () => (await metric()) === before + 1, { timeoutMs: 3000 });
      const other = new SnapshotRecorder();
      const w2 = r.resolver.watch(uniqueService(), other.onSnapshot);
      await waitFor('a second service to get its own watch', async () => (await metric()) === before + 2, {
        timeoutMs: 3000,
      });
      for (const w of ws) w.close();
      w2.close();
      await waitFor('the watches to be cancelled with their last watcher', async () => (await metric()) === before, {
        timeoutMs: 3000,
      });
    });

    it('skips malformed values, reporting each as BAD_ENTRY, and keeps the rest', async () => {
      const prefix = uniquePrefix();
      const r = registry({ prefix });
      const svc = uniqueService();
      await r.registrar.register({ service: svc, host: '127.0.0.1', port: 7221 });
      etcd.etcdctl(['put', `${prefix}/${svc}/x1`, 'not json']);
      etcd.etcdctl(['put', `${prefix}/${svc}/x2`, '[1,2]']);
      etcd.etcdctl(['put', `${prefix}/${svc}/x3`, JSON.stringify({ host: '', port: 1 })]);
      const rec = new SnapshotRecorder();
      const w = r.resolver.watch(svc, rec.onSnapshot);
      toClose.push({ close: () => w.close() });
      const s = await rec.until((x) => x.error?.code === 'BAD_ENTRY', 3000, 'BAD_ENTRY');
      assert.deepEqual(keys(s), ['127.0.0.1:7221']);
      const entries = (s.error as unknown as { entries: { key: string; reason: string }[] }).entries
        .map((e) => e.key.split('/').pop())
        .sort();
      assert.deepEqual(entries, ['x1', 'x2', 'x3']);
    });

    it('lists services under its prefix', async () => {
      const r = registry();
      const a = uniqueService('list-a');
      const b = uniqueService('list-b');
      await r.registrar.register({ service: a, host: '127.0.0.1', port: 7231 });
      await r.registrar.register({ service: b, host: '127.0.0.1', port: 7232 });
      assert.deepEqual(await r.listServices!(), [a, b].sort());
    });
  });

  describe('grpc-go key layout', () => {
    it('resolves keys written the Go way with etcdctl (Addr and Metadata)', async () => {
      const prefix = uniquePrefix();
      const r = registry({ prefix, format: 'grpc-go' });
      const svc = uniqueService('go');
      // What go.etcd.io/etcd/client/v3/naming/endpoints' AddEndpoint writes for target "<prefix>/<svc>".
      etcd.etcdctl(['put', `${prefix}/${svc}/10.0.0.1:50051`, '{"Op":0,"Addr":"10.0.0.1:50051","Metadata":null}']);
      etcd.etcdctl([
        'put',
        `${prefix}/${svc}/10.0.0.2:50051`,
        '{"Op":0,"Addr":"10.0.0.2:50051","Metadata":{"zone":"z1","weight":3,"version":"2"}}',
      ]);
      etcd.etcdctl(['put', `${prefix}/${svc}/[::1]:50051`, '{"Op":0,"Addr":"[::1]:50051","Metadata":"free text"}']);
      etcd.etcdctl(['put', `${prefix}/${svc}/junk`, '{"Op":0,"Addr":"no-port"}']);
      const rec = new SnapshotRecorder();
      const w = r.resolver.watch(svc, rec.onSnapshot);
      toClose.push({ close: () => w.close() });
      const s = await rec.until((x) => x.endpoints.length === 3, 3000, 'three Go-registered endpoints');
      assert.equal(s.error?.code, 'BAD_ENTRY');
      const byKey = new Map(s.endpoints.map((e) => [endpointKey(e), e]));
      assert.deepEqual([...byKey.keys()].sort(), ['10.0.0.1:50051', '10.0.0.2:50051', '[::1]:50051']);
      assert.equal(byKey.get('10.0.0.2:50051')!.weight, 3);
      assert.equal(byKey.get('10.0.0.2:50051')!.zone, 'z1');
      assert.equal(byKey.get('10.0.0.2:50051')!.metadata.version, '2');
      assert.equal(byKey.get('[::1]:50051')!.metadata.metadata, 'free text');
      assert.equal(byKey.get('10.0.0.1:50051')!.id, '10.0.0.1:50051');
      etcd.etcdctl(['del', `${prefix}/${svc}/10.0.0.1:50051`]);
      await rec.until((x) => x.endpoints.length === 2, 3000, 'a Go-style delete');
    });

    it('registers in the layout the Go resolver reads', async () => {
      const prefix = uniquePrefix();
      const r = registry({ prefix, format: 'grpc-go' });
      const svc = uniqueService('go');
      const reg = await r.registrar.register({
        service: svc,
        host: '127.0.0.1',
        port: 7241,
        weight: 2,
        metadata: { v: '1' },
      });
      const out = etcd
        .etcdctl(['get', '--prefix', `${prefix}/${svc}/`])
        .trim()
        .split('\n');
      assert.equal(out[0], `${prefix}/${svc}/127.0.0.1:7241`);
      const value = JSON.parse(out[1]);
      assert.deepEqual(value, { Op: 0, Addr: '127.0.0.1:7241', Metadata: { v: '1', weight: 2 } });
      const eps = await r.resolver.resolve(svc);
      assert.equal(eps[0].weight, 2);
      await reg.deregister();
      assert.equal(etcd.etcdctl(['get', '--prefix', `${prefix}/${svc}/`]).trim(), '');
    });
  });

  describe('registrar', () => {
    it('emits lost and restored when its lease is revoked behind its back, and the key comes back', async () => {
      const r = registry();
      const svc = uniqueService();
      const reg = (await r.registrar.register({ service: svc, host: '127.0.0.1', port: 7251 })) as EtcdRegistration;
      const rec = new SnapshotRecorder();
      const w = r.resolver.watch(svc, rec.onSnapshot);
      toClose.push({ close: () => w.close() });
      await rec.until(only('127.0.0.1:7251'), 3000, 'the endpoint');
      const oldLease = reg.leaseId!;
      const lost = onceEvent(reg, 'lost', 5000);
      const restored = onceEvent(reg, 'restored', 8000);
      etcd.etcdctl(['lease', 'revoke', BigInt(oldLease).toString(16)]);
      await rec.until(only(), 3000, 'the key deleted with the revoked lease');
      const err = await lost;
      assert.equal((err as { code?: string })?.code, 'REGISTRATION_LOST');
      await restored;
      await rec.until(only('127.0.0.1:7251'), 3000, 'the key written again');
      assert.notEqual(reg.leaseId, oldLease);
      const ttl = etcd.etcdctl(['lease', 'timetolive', BigInt(reg.leaseId!).toString(16), '--keys']);
      assert.match(ttl, new RegExp(`attached keys\\(\\[.*${svc}`));
    });

    it('deregister() deletes the key and revokes the lease', async () => {
      const r = registry();
      const svc = uniqueService();
      const reg = (await r.registrar.register({ service: svc, host: '127.0.0.1', port: 7261 })) as EtcdRegistration;
      const lease = BigInt(reg.leaseId!).toString(16);
      assert.match(etcd.etcdctl(['lease', 'list']), new RegExp(lease));
      await reg.deregister();
      assert.doesNotMatch(etcd.etcdctl(['lease', 'list']), new RegExp(lease));
      assert.deepEqual(await r.resolver.resolve(svc), []);
    });

    it('a SIGKILLed registrant process disappears within TTL + 1 s', async function () {
      this.timeout(60_000);
      const prefix = uniquePrefix();
      const r = registry({ prefix });
      const svc = uniqueService();
      const rec = new SnapshotRecorder();
      const w = r.resolver.watch(svc, rec.onSnapshot);
      toClose.push({ close: () => w.close() });
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          path.join(__dirname, 'fixtures', 'registrant.ts'),
          etcd.address,
          prefix,
          svc,
          '7271',
          '2000',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      toClose.push({ close: () => void child.kill('SIGKILL') });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      await waitFor('the child to register', () => out.includes('registered'), { timeoutMs: 40_000 });
      await rec.until(only('127.0.0.1:7271'), 3000, 'the child instance');
      const t0 = Date.now();
      child.kill('SIGKILL');
      await rec.until(only(), 3000, 'the killed instance to expire');
      const took = Date.now() - t0;
      assert.ok(took <= 3000, `took ${took} ms`);
    });
  });

  describe('etcd restarts', () => {
    let own: EtcdServer;
    beforeEach(async () => {
      own = await startEtcd();
    });
    afterEach(async () => {
      await Promise.allSettled(
        toClose
          .splice(0)
          .reverse()
          .map((c) => c.close()),
      );
      await own?.close();
    });

    it('survives a restart with the same data: last good set kept during the outage, changes flow after', async () => {
      const r = createEtcdRegistry({ hosts: [own.address], prefix: '/services', ttl: 5000 });
      toClose.push({ close: () => r.close!() });
      const svc = uniqueService();
      await r.registrar.register({ service: svc, host: '127.0.0.1', port: 7301 });
      const rec = new SnapshotRecorder();
      const w = r.resolver.watch(svc, rec.onSnapshot);
      toClose.push({ close: () => w.close() });
      await rec.until(only('127.0.0.1:7301'), 3000, 'the endpoint');
      await own.stop();
      const down = await rec.until((s) => s.error?.code === 'REGISTRY_UNAVAILABLE', 5000, 'the outage reported');
      assert.deepEqual(keys(down), ['127.0.0.1:7301'], 'an outage emptied the set');
      await own.restart();
      await rec.until(only('127.0.0.1:7301'), 8000, 'a clean snapshot after the restart');
      await r.registrar.register({ service: svc, host: '127.0.0.1', port: 7302 });
      await rec.until(only('127.0.0.1:7301', '127.0.0.1:7302'), 3000, 'a change after the restart');
    });

    it('recovers from a restart with a wiped data dir: registration restored, resolver re-lists', async () => {
      const logger = recordingLogger();
      const r = createEtcdRegistry({ hosts: [own.address], prefix: '/services', ttl: 2000, logger });
      toClose.push({ close: () => r.close!() });
      const svc = uniqueService();
      // Push the revision well above what a fresh store will have.
      for (let i = 0; i < 20; i++) own.etcdctl(['put', `/other/k${i}`, 'v']);
      const reg = await r.registrar.register({ service: svc, host: '127.0.0.1', port: 7311 });
      const rec = new SnapshotRecorder();
      const w = r.resolver.watch(svc, rec.onSnapshot);
      toClose.push({ close: () => w.close() });
      const first = await rec.until(only('127.0.0.1:7311'), 3000, 'the endpoint');
      const lost = onceEvent(reg, 'lost', 10_000);
      const restored = onceEvent(reg, 'restored', 15_000);
      await own.restart({ wipe: true });
      await lost;
      await restored;
      const after = await rec.until(
        (s) => only('127.0.0.1:7311')(s) && Number(s.revision) < Number(first.revision),
        5000,
        'the re-registered endpoint at the new, lower revision',
      );
      assert.ok(Number(after.revision) < Number(first.revision));
      const other = await r.registrar.register({ service: svc, host: '127.0.0.1', port: 7312 });
      await rec.until(only('127.0.0.1:7311', '127.0.0.1:7312'), 3000, 'a change after the wipe');
      await other.deregister();
      await rec.until(only('127.0.0.1:7311'), 3000, 'a delete after the wipe');
    });
  });

  describe('TLS', () => {
    let sec: EtcdServer;
    let wrong: ReturnType<typeof makeTestPki>;
    const tmp = tempDir('wayfinder-etcd-wrongca-');
    before(async function () {
      this.timeout(60_000);
      sec = await startEtcd({ tls: { clientCertAuth: true } });
      wrong = makeTestPki(tmp.dir, 'some-other-ca');
    });
    after(async () => {
      await sec?.close();
      tmp.remove();
    });

    it('resolves and registers over TLS with a client certificate', async () => {
      const pki = sec.pki!;
      const d = await Discovery.fromConfig(
        `etcd://${sec.address}?ca=${pki.ca}&cert=${pki.clientCert}&key=${pki.clientKey}`,
      );
      toClose.push(d);
      const svc = uniqueService();
      await d.registrar.register({ service: svc, host: '127.0.0.1', port: 7401 });
      assert.deepEqual((await d.resolver.resolve(svc)).map(endpointKey), ['127.0.0.1:7401']);
    });

    it('checks the certificate against the IP address: another IP than its IP SAN fails closed', async () => {
      // The server certificate names IP:127.0.0.1 and DNS:localhost; the same server reached as
      // 127.0.0.2 (a relay on another loopback address) must be refused, on every Node line.
      const relay = net.createServer((c) => {
        const up = net.connect(sec.port, '127.0.0.1');
        c.pipe(up).pipe(c);
        const end = () => (c.destroy(), up.destroy());
        c.on('error', end).on('close', end);
        up.on('error', end).on('close', end);
      });
      await new Promise<void>((res) => relay.listen(0, '127.0.0.2', res));
      toClose.push({ close: () => new Promise<void>((res) => relay.close(() => res())) });
      const port = (relay.address() as net.AddressInfo).port;
      const pki = sec.pki!;
      const d = await Discovery.fromConfig(
        `etcd://127.0.0.2:${port}?ca=${pki.ca}&cert=${pki.clientCert}&key=${pki.clientKey}&request-timeout=2s`,
      );
      toClose.push(d);
      const err = await withTimeout(d.resolver.resolve(uniqueService()), 10_000, 'resolve').then(
        () => undefined,
        (e) => e,
      );
      assert.ok(isWayfinderError(err, 'AUTH_FAILED'), `expected AUTH_FAILED, got ${err}`);
      assert.match(String(err.message), /127\.0\.0\.2|altnames|IP/);
    });

    it('fails closed with AUTH_FAILED when the server is not signed by the configured CA', async () => {
      const pki = sec.pki!;
      const d = await Discovery.fromConfig(
        `etcd://${sec.address}?ca=${wrong.ca}&cert=${pki.clientCert}&key=${pki.clientKey}&request-timeout=2s`,
      );
      toClose.push(d);
      const svc = uniqueService();
      await assert.rejects(withTimeout(d.resolver.resolve(svc), 10_000, 'resolve'), (e: unknown) =>
        isWayfinderError(e, 'AUTH_FAILED'),
      );
      await assert.rejects(
        withTimeout(d.registrar.register({ service: svc, host: '127.0.0.1', port: 7402 }), 10_000, 'register'),
        (e: unknown) => isWayfinderError(e, 'AUTH_FAILED'),
      );
    });
  });

  describe('auth', () => {
    let sec: EtcdServer;
    const tmp = tempDir('wayfinder-etcd-auth-');
    const writerPw = 'w-Pa55word-xyz';
    const readerPw = 'r-Pa55word-abc';
    before(async function () {
      this.timeout(60_000);
      sec = await startEtcd({
        auth: {
          tokenTtlSec: 1,
          users: [
            { name: 'writer', password: writerPw, readwrite: ['/services/'] },
            { name: 'reader', password: readerPw, read: ['/services/'] },
          ],
        },
      });
    });
    after(async () => {
      await sec?.close();
      tmp.remove();
    });

    it('a read-only user resolves but cannot register (AUTH_FAILED); the password never shows', async () => {
      const logger = recordingLogger();
      const writer = await Discovery.fromConfig(`etcd://writer:${writerPw}@${sec.address}`);
      toClose.push(writer);
      const pwFile = path.join(tmp.dir, 'reader.pw');
      writeFileSync(pwFile, `${readerPw}\n`);
      const reader = await Discovery.fromConfig(`etcd://reader@${sec.address}?password-file=${pwFile}`, { logger });
      toClose.push(reader);
      const svc = uniqueService();
      await writer.registrar.register({ service: svc, host: '127.0.0.1', port: 7501 });
      assert.deepEqual((await reader.resolver.resolve(svc)).map(endpointKey), ['127.0.0.1:7501']);
      const err = await reader.registrar.register({ service: svc, host: '127.0.0.1', port: 7502 }).then(
        () => undefined,
        (e) => e,
      );
      assert.ok(isWayfinderError(err, 'AUTH_FAILED'), `expected AUTH_FAILED, got ${err}`);
      for (const text of [
        String(err?.message),
        JSON.stringify(err),
        ...logger.lines,
        writer.description,
        JSON.stringify(writer.status()),
      ]) {
        assert.ok(!text.includes(readerPw) && !text.includes(writerPw), `a password leaked into: ${text}`);
      }
    });

    it('a wrong password fails with AUTH_FAILED and does not leak', async () => {
      const d = await Discovery.fromConfig(`etcd://reader:not-the-Pa55@${sec.address}`);
      toClose.push(d);
      const err = await withTimeout(d.resolver.resolve(uniqueService()), 10_000, 'resolve').then(
        () => undefined,
        (e) => e,
      );
      assert.ok(isWayfinderError(err, 'AUTH_FAILED'), `expected AUTH_FAILED, got ${err}`);
      assert.ok(!String(err.message).includes('not-the-Pa55'));
    });

    it('keeps watching and registering across auth token expiry and an etcd restart', async function () {
      this.timeout(40_000);
      const writer = await Discovery.fromConfig(`etcd://writer:${writerPw}@${sec.address}?ttl=3s`);
      toClose.push(writer);
      const reader = await Discovery.fromConfig(`etcd://reader:${readerPw}@${sec.address}`);
      toClose.push(reader);
      const svc = uniqueService();
      const rec = new SnapshotRecorder();
      const w = reader.resolver.watch(svc, rec.onSnapshot);
      toClose.push({ close: () => w.close() });
      await writer.registrar.register({ service: svc, host: '127.0.0.1', port: 7511 });
      await rec.until(only('127.0.0.1:7511'), 3000, 'the first instance');
      // Tokens live 1 s since last use (--auth-token-ttl 1); there is no event for expiry, so wait it out.
      await new Promise((res) => setTimeout(res, 2500));
      await writer.registrar.register({ service: svc, host: '127.0.0.1', port: 7512 });
      await rec.until(only('127.0.0.1:7511', '127.0.0.1:7512'), 3000, 'a change after token expiry');
      // A restart forgets every token: the reader's new watch stream and reads must authenticate again.
      await sec.restart();
      await writer.registrar.register({ service: svc, host: '127.0.0.1', port: 7513 });
      await rec.until(only('127.0.0.1:7511', '127.0.0.1:7512', '127.0.0.1:7513'), 10_000, 'a change after the restart');
    });
  });

  describe('gRPC end to end', () => {
    it('calls echo servers through etcd://127.0.0.1:<port>/echo and follows deregistration', async function () {
      this.timeout(30_000);
      installGrpc();
      const d = await Discovery.fromConfig(`etcd://${etcd.address}`);
      toClose.push(d);
      await grpcFailoverCheck({ discovery: d, target: `etcd://${etcd.address}/echo`, service: 'echo' });
    });
  });
});
