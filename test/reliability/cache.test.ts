import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { createEtcdRegistry } from '../../adapters/etcd';
import { CachedResolver, ConfigError, Discovery, cacheFileFor, resolveRegistry, type Snapshot } from '../../index';
import { faultProxy, type FaultProxy } from '../../testkit/fault-proxy';
import { findEtcd, findEtcdctl, startEtcd, type EtcdServer } from '../../testkit/etcd';
import { startEchoServer, type EchoServer } from '../../testkit/echo';
import { requireBinaryOrSkip, tempDir, waitFor, withTimeout } from '../../testkit/process';
import { captureLogger, runTsChild } from '../support';

/**
 * The last-known-good cache (core/cache.ts) through Discovery, against a real etcd reached through
 * the fault proxy: what is written, what is served when the registry is down at start, and a real
 * process restarted during an outage reaching its backends.
 */

let seq = 0;
const uniquePrefix = () => `/cache-test-${process.pid}-${++seq}`;
const CHILD = path.join(__dirname, 'fixtures', 'cached-client.ts');

describe('last-known-good cache', function () {
  this.timeout(90_000);

  it('every registry scheme accepts cache=<dir> (core takes it; the adapter never sees it), and a bad one names the field', () => {
    const urls = [
      'memory://c1?cache=/tmp/wf-cache',
      'file:///tmp/wf-cache-reg.json?cache=/tmp/wf-cache',
      'etcd://127.0.0.1:2379?prefix=/s&cache=/tmp/wf-cache',
      'zk://127.0.0.1:2181/services?cache=/tmp/wf-cache',
      'consul://127.0.0.1:8500?cache=/tmp/wf-cache',
      'dns://127.0.0.1:53?cache=/tmp/wf-cache',
      'k8s://?namespace=default&cache=/tmp/wf-cache',
    ];
    for (const u of urls) {
      const r = resolveRegistry(u);
      assert.equal(r.cache, '/tmp/wf-cache', u);
      assert.ok(!('cache' in r.options), `${u}: the adapter got "cache"`);
    }
    assert.equal(resolveRegistry({ scheme: 'memory', name: 'c2', cache: 'rel/dir' }).cache, path.resolve('rel/dir'));
    assert.equal(resolveRegistry('memory://c3').cache, undefined);
    for (const bad of ['memory://c4?cache=', { scheme: 'memory', cache: 42 }] as const) {
      assert.throws(
        () => resolveRegistry(bad as never),
        (e: unknown) => e instanceof ConfigError && e.field === 'cache',
        JSON.stringify(bad),
      );
    }
  });

  describe('against etcd', () => {
    let etcd: EtcdServer;
    let proxy: FaultProxy;
    const cleanups: (() => Promise<void> | void)[] = [];
    before(async function () {
      this.timeout(60_000);
      requireBinaryOrSkip(this, () => {
        findEtcd();
        findEtcdctl();
      });
      etcd = await startEtcd();
      proxy = await faultProxy({ target: etcd.address });
    });
    afterEach(async () => {
      proxy.heal();
      for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => undefined);
    });
    after(async () => {
      await proxy?.close();
      await etcd?.close();
    });

    /** Backends registered straight into etcd (not through the proxy). */
    async function backends(
      prefix: string,
      n: number,
      service = 'echo',
    ): Promise<{ servers: EchoServer[]; close(): Promise<void> }> {
      const reg = createEtcdRegistry({ hosts: [etcd.address], prefix, ttl: 10_000 });
      const servers: EchoServer[] = [];
      for (let i = 0; i < n; i++)
        servers.push(await startEchoServer({ discovery: { registrar: reg.registrar }, service, drainMs: 0 }));
      const close = async () => {
        await Promise.allSettled(servers.map((s) => s.stop()));
        await reg.close!();
      };
      cleanups.push(close);
      return { servers, close };
    }
    function cacheDir() {
      const t = tempDir('wf-cache-');
      cleanups.push(() => t.remove());
      return t.dir;
    }
    async function discovery(url: string, logger = captureLogger()) {
      const d = await Discovery.fromConfig(url, { logger });
      cleanups.push(() => d.close());
      return d;
    }
    const keysOf = (s: Snapshot) => s.endpoints.map((e) => `${e.host}:${e.port}`).sort();

    it('writes each changed good set atomically (temp file + rename, mode 0600), and follows changes', async () => {
      const prefix = uniquePrefix();
      const dir = cacheDir();
      const b = await backends(prefix, 2);
      const url = `etcd://${proxy.address}?prefix=${prefix}&cache=${dir}`;
      const d = await discovery(url);
      assert.ok(d.resolver instanceof CachedResolver);
      const file = cacheFileFor(dir, d.description, 'echo');
      const got: Snapshot[] = [];
      const w = d.resolver.watch('echo', (s) => got.push(s));
      cleanups.push(() => w.close());
      const read = () => JSON.parse(readFileSync(file, 'utf8')) as { service: string; endpoints: { port: number }[] };
      await waitFor('cache file with 2 endpoints', () => read().endpoints.length === 2, { timeoutMs: 10_000 });
      assert.deepEqual(
        read()
          .endpoints.map((e) => e.port)
          .sort(),
        b.servers.map((s) => s.port).sort(),
      );
      assert.equal(statSync(file).mode & 0o777, 0o600);
      await b.servers[0].stop();
      await waitFor('cache file with 1 endpoint', () => read().endpoints.length === 1, { timeoutMs: 10_000 });
      assert.deepEqual(
        read().endpoints.map((e) => e.port),
        [b.servers[1].port],
      );
      assert.deepEqual(
        readdirSync(path.dirname(file)).filter((f) => f.endsWith('.tmp')),
        [],
        'no temp file left behind',
      );
      assert.ok(
        got.every((s) => !s.stale),
        'nothing stale while etcd is up',
      );
    });

    it('registry refusing connections at start: the cached set is served with stale: true and the error; the live set replaces it', async () => {
      const prefix = uniquePrefix();
      const dir = cacheDir();
      const b = await backends(prefix, 2);
      const url = `etcd://${proxy.address}?prefix=${prefix}&cache=${dir}&dial-timeout=1s&request-timeout=1s`;
      const first = await discovery(url);
      assert.equal((await first.resolver.resolve('echo')).length, 2);
      await (first.resolver as CachedResolver).flush();
      await first.close();

      const healed = proxy.cut(60_000); // connection refused (RST) until heal()
      const logger = captureLogger();
      const d = await discovery(url, logger);
      const t0 = Date.now();
      const snaps: Snapshot[] = [];
      const w = d.resolver.watch('echo', (s) => snaps.push(s));
      cleanups.push(() => w.close());
      const stale = await waitFor('a stale snapshot', () => snaps.find((s) => s.stale), { timeoutMs: 10_000 });
      assert.deepEqual(keysOf(stale), b.servers.map((s) => `127.0.0.1:${s.port}`).sort());
      assert.equal(stale.error?.code, 'REGISTRY_UNAVAILABLE');
      assert.ok(Date.now() - t0 < 5000, 'served within the start wait');
      assert.equal(d.status().services.find((s) => s.service === 'echo')?.stale, true);
      assert.ok(
        logger.lines.some((l) => /serving 2 cached endpoint/.test(l.msg)),
        logger.text(),
      );
      // A change made during the outage is seen once etcd is reachable: the live set replaces the cache.
      await b.servers[0].stop();
      proxy.heal();
      await healed;
      const live = await waitFor('the live set', () => snaps.find((s) => !s.stale && !s.error), { timeoutMs: 15_000 });
      assert.deepEqual(keysOf(live), [`127.0.0.1:${b.servers[1].port}`]);
      assert.equal(d.status().services.find((s) => s.service === 'echo')?.stale, false);
    });

    it('registry blackholed at start (no answer at all): the cached set is served after the start wait', async () => {
      const prefix = uniquePrefix();
      const dir = cacheDir();
      await backends(prefix, 1);
      const url = `etcd://${proxy.address}?prefix=${prefix}&cache=${dir}`;
      const first = await discovery(url);
      assert.equal((await first.resolver.resolve('echo')).length, 1);
      await (first.resolver as CachedResolver).flush();
      await first.close();
      proxy.blackhole();
      const d = await discovery(url);
      const t0 = Date.now();
      const eps = await withTimeout(d.resolver.resolve('echo'), 10_000, 'resolve from cache');
      assert.equal(eps.length, 1);
      const waited = Date.now() - t0;
      assert.ok(waited >= 2900 && waited < 6000, `served after the 3 s start wait, took ${waited} ms`);
    });

    it('a corrupt cache file is ignored with a warning; without a usable cache, start-up in an outage is REGISTRY_UNAVAILABLE', async () => {
      const prefix = uniquePrefix();
      const dir = cacheDir();
      const url = `etcd://${proxy.address}?prefix=${prefix}&cache=${dir}&dial-timeout=1s&request-timeout=1s`;
      const probe = await discovery(url);
      const file = cacheFileFor(dir, probe.description, 'echo');
      await probe.close();
      const { mkdirSync } = await import('node:fs');
      mkdirSync(path.dirname(file), { recursive: true });
      for (const garbage of [
        '{"format":"wayfinder-cache","version":1,"service":"echo","endpoints":[{"host":"x","port":0}]}',
        '{ truncated',
        '{"format":"wayfinder-cache","version":1,"service":"other","endpoints":[]}',
      ]) {
        writeFileSync(file, garbage);
        const healed = proxy.cut(60_000);
        const logger = captureLogger();
        const d = await discovery(url, logger);
        await assert.rejects(
          withTimeout(d.resolver.resolve('echo'), 15_000, 'resolve'),
          (e: { code?: string }) => e.code === 'REGISTRY_UNAVAILABLE',
        );
        assert.ok(
          logger.lines.some((l) => l.level === 'warn' && /ignoring corrupt cache file/.test(l.msg)),
          `no warning for ${garbage}: ${logger.text()}`,
        );
        await d.close();
        proxy.heal();
        await healed;
      }
    });

    it('a process restarted while etcd is down still reaches its backends through the cache (and cannot without it)', async function () {
      const prefix = uniquePrefix();
      const dir = cacheDir();
      const b = await backends(prefix, 2);
      const ids = new Set(b.servers.map((s) => s.id));
      const target = `etcd://${etcd.address}/echo?prefix=${prefix}&cache=${dir}&dial-timeout=1s&request-timeout=1s`;
      // 1. A first run while etcd is up fills the cache.
      const warm = await runTsChild(CHILD, { TARGET: target, WAIT_CACHE_DIR: dir });
      assert.equal(warm.lines[0]?.ok, true, JSON.stringify(warm));
      // 2. etcd goes down; the process is started again.
      await etcd.stop();
      cleanups.push(() => (etcd.running() ? undefined : etcd.restart()));
      const cold = await runTsChild(CHILD, { TARGET: target, CALL_DEADLINE_MS: '15000' });
      assert.equal(cold.lines[0]?.ok, true, `restarted process failed: ${JSON.stringify(cold)}`);
      assert.ok(ids.has(cold.lines[0].serverId));
      // 3. Control: the same restart without a cache fails, so the cache is what made it work.
      const none = await runTsChild(CHILD, {
        TARGET: `etcd://${etcd.address}/echo?prefix=${prefix}&dial-timeout=1s&request-timeout=1s`,
        CALL_DEADLINE_MS: '5000',
      });
      assert.equal(none.lines[0]?.ok, false, JSON.stringify(none));
      await etcd.restart();
    });
  });
});
