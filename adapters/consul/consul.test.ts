import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  ConfigError,
  Discovery,
  endpointKey,
  resolveRegistry,
  validateOptions,
  type Logger,
  type Registration,
  type Snapshot,
} from '../../core';
import {
  proxyFaults,
  registrarConformance,
  resolverConformance,
  SnapshotRecorder,
  uniqueService,
} from '../../testkit/conformance';
import { faultProxy } from '../../testkit/fault-proxy';
import { startFakeConsul, type FakeConsul, type FakeConsulOptions } from '../../testkit/fake-consul';
import { tempDir, waitFor } from '../../testkit/process';
import { installGrpc } from '../../grpc';
import { grpcFailoverCheck } from '../../testkit/echo';
import {
  consulAdapter,
  consulCapabilities,
  createConsulRegistry,
  type ConsulOptions,
  type ConsulRegistration,
} from './index';

/**
 * The consul adapter against the fake Consul agent from the testkit, or against a real agent when
 * CONSUL_HTTP_ADDR is set (CONSUL_HTTP_TOKEN is then used as the token). Tests that need fault
 * injection (index resets, hangs, restarts, ACL set-up) run only against the fake.
 */

const REAL = process.env.CONSUL_HTTP_ADDR?.replace(/^https?:\/\//, '');
type Registry = ReturnType<typeof createConsulRegistry>;

const keys = (s: Snapshot) => s.endpoints.map(endpointKey).sort();
const hasExactly =
  (...want: string[]) =>
  (s: Snapshot) =>
    s.error?.code !== 'AUTH_FAILED' && JSON.stringify(keys(s)) === JSON.stringify([...want].sort());

/** A logger that keeps every line, to prove secrets never reach logs. */
function capturingLogger(): Logger & { text(): string } {
  const lines: string[] = [];
  const rec = (level: string) => (obj: object | string, msg?: string) =>
    lines.push(`${level} ${typeof obj === 'string' ? obj : JSON.stringify(obj)} ${msg ?? ''}`);
  return {
    debug: rec('debug'),
    info: rec('info'),
    warn: rec('warn'),
    error: rec('error'),
    text: () => lines.join('\n'),
  };
}

function options(address: string, extra: Record<string, unknown> = {}): ConsulOptions {
  const o = validateOptions<ConsulOptions>('consul', consulAdapter.options, {
    hosts: [address],
    wait: '5s',
    ttl: '1s',
    timeout: '3s',
    ...extra,
  });
  consulAdapter.validate!(o);
  return o;
}

/** PUT to the agent's HTTP API directly (for writes the adapter would never make). */
async function agentPut(
  address: string,
  p: string,
  body?: unknown,
  token = process.env.CONSUL_HTTP_TOKEN,
): Promise<void> {
  const headers: Record<string, string> = {};
  if (token) headers['X-Consul-Token'] = token;
  const r = await fetch(`http://${address}${p}`, {
    method: 'PUT',
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`PUT ${p}: ${r.status} ${await r.text()}`);
}

describe('consul adapter', function () {
  this.timeout(30_000);
  const cleanups: (() => Promise<void> | void)[] = [];
  const later = (fn: () => Promise<void> | void) => cleanups.push(fn);
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  async function fake(ctx: Mocha.Context | undefined, opts: FakeConsulOptions = {}): Promise<FakeConsul> {
    if (REAL) ctx?.skip();
    const f = await startFakeConsul(opts);
    later(() => f.close());
    return f;
  }
  /** The agent under test: a fresh fake, or the real one named by CONSUL_HTTP_ADDR. */
  async function agent(): Promise<{ address: string; fake?: FakeConsul }> {
    if (REAL) return { address: REAL };
    const f = await startFakeConsul();
    later(() => f.close());
    return { address: f.address, fake: f };
  }
  function registry(
    address: string,
    extra: Record<string, unknown> = {},
    logger?: Logger,
    env?: Record<string, string | undefined>,
  ): Registry {
    const r = createConsulRegistry(options(address, extra), { logger, env: env ?? process.env });
    later(async () => {
      await r.registrar!.close();
      await r.resolver.close();
      await r.close!();
    });
    return r;
  }
  function watch(r: Registry, service: string): SnapshotRecorder {
    const rec = new SnapshotRecorder();
    const w = r.resolver.watch(service, rec.onSnapshot);
    later(() => w.close());
    return rec;
  }

  // ---- conformance ----

  const factory = async () => {
    let f: FakeConsul | undefined;
    let address = REAL;
    if (!address) {
      f = await startFakeConsul();
      address = f.address;
    }
    const r = createConsulRegistry(options(address));
    // The resolver's agent connection goes through a fault proxy (the kit's outage tests); the
    // registrar's does not, so writes made during an outage test the re-list after it.
    const proxy = await faultProxy({ target: address });
    const viaProxy = createConsulRegistry(options(proxy.address));
    const crashed: Registration[] = [];
    return {
      resolver: viaProxy.resolver,
      registrar: r.registrar!,
      faults: proxyFaults(proxy),
      async injectBadEntry(service: string) {
        // Consul accepts a service without a port; nothing can dial it, so it is a bad entry for us.
        await agentPut(address!, '/v1/agent/service/register', {
          ID: `${service}-noport`,
          Name: service,
          Address: '127.0.0.1',
          Port: 0,
        });
        crashed.push({
          deregister: () => agentPut(address!, `/v1/agent/service/deregister/${service}-noport`),
        } as Registration);
      },
      async crash(reg: Registration) {
        (reg as ConsulRegistration).suspendKeepAlive();
        crashed.push(reg);
      },
      async cleanup() {
        await r.registrar!.close();
        await r.resolver.close();
        for (const c of crashed) await c.deregister().catch(() => {});
        await r.close!();
        await viaProxy.resolver.close();
        await viaProxy.close!();
        await proxy.close();
        await f?.close();
      },
    };
  };
  resolverConformance({
    it,
    describe,
    name: REAL ? 'consul (real agent)' : 'consul (fake agent)',
    factory,
    capabilities: consulCapabilities,
    timing: { propagationMs: 3000, ttlMs: 3000 },
  });
  registrarConformance({
    it,
    describe,
    name: REAL ? 'consul (real agent)' : 'consul (fake agent)',
    factory,
    capabilities: consulCapabilities,
    timing: { propagationMs: 3000, ttlMs: 3000 },
  });

  // ---- configuration ----

  describe('configuration', () => {
    it('parses consul://host:port?dc=...&token-file=... with defaults for the rest', () => {
      const { options: o, display } = resolveRegistry(
        'consul://10.1.2.3:8501?dc=east&token-file=/run/secrets/consul&tag=primary,v2&meta=version:2&wait=30s',
      );
      assert.deepEqual(o.hosts, ['10.1.2.3:8501']);
      assert.equal(o.dc, 'east');
      assert.equal(o['token-file'], '/run/secrets/consul');
      assert.deepEqual(o.tag, ['primary', 'v2']);
      assert.deepEqual(o.meta, ['version:2']);
      assert.equal(o.wait, 30_000);
      assert.equal(o.ttl, 10_000);
      assert.equal(o['deregister-after'], 60_000);
      assert.equal(o.rate, 1);
      assert.equal(
        display,
        'consul://10.1.2.3:8501?dc=east&token-file=/run/secrets/consul&tag=primary%2Cv2&meta=version%3A2&wait=30s',
      );
      assert.deepEqual(resolveRegistry('consul://').options.hosts, ['127.0.0.1:8500']);
    });

    it('fails fast on bad options, naming the field', () => {
      const bad: [string, string, RegExp][] = [
        ['consul://h:1?wait=1h', 'wait', /"wait" must be a duration .* between 1000ms and 600000ms/],
        ['consul://h:1?rate=0', 'rate', /"rate"/],
        ['consul://h:1?meta=no-separator', 'meta', /"meta" entries must be key:value/],
        ['consul://h:1?dc=a/b', 'dc', /"dc" must match/],
        ['consul://a:1,b:2', 'hosts', /exactly one agent/],
        ['consul://h:1/services', 'path', /takes no path/],
        [
          'consul://h:1?datacenter=x',
          'datacenter',
          /unknown option "datacenter"; known options: hosts, dc, token-file/,
        ],
        ['consul://h:1?token=abc&token-file=/x', 'token', /not both/],
        ['consul://h:1?deregister-after=10s', 'deregister-after', /at least 60000ms/],
      ];
      for (const [url, field, msg] of bad) {
        assert.throws(
          () => resolveRegistry(url),
          (e: unknown) =>
            e instanceof ConfigError && e.field === field && msg.test(e.message) && e.message.startsWith('consul: '),
          url,
        );
      }
    });

    it('never shows a token: redacted in the description, absent from errors about it', async () => {
      const { display } = resolveRegistry('consul://h:1?token=s3cr3t-token');
      assert.ok(!display.includes('s3cr3t'), display);
      const { dir, remove } = tempDir();
      later(remove);
      await assert.rejects(
        Discovery.fromConfig(`consul://127.0.0.1:1?token-file=${path.join(dir, 'missing')}`),
        (e: unknown) =>
          e instanceof ConfigError && e.field === 'token-file' && /cannot be read: ENOENT/.test((e as Error).message),
      );
      assert.throws(
        () => validateOptions('consul', consulAdapter.options, { token: 42 }),
        (e: Error) => !e.message.includes('42'),
      );
    });
  });

  // ---- blocking-query loop ----

  it('restarts the blocking loop when X-Consul-Index goes backwards', async function () {
    const f = await fake(this);
    const r = registry(f.address, { wait: '3s' });
    const rec = watch(r, 'web');
    const reg = await r.registrar!.register({ service: 'web', host: '127.0.0.1', port: 7001 });
    // Push the service's index well up, and let the client block on it.
    for (let i = 0; i < 10; i++) await reg.update({ metadata: { n: String(i) } });
    await rec.until((s) => s.endpoints[0]?.metadata.n === '9', 3000, 'the last update');
    const held = BigInt(
      await waitFor('a blocking request on the high index', () => {
        const i = f.healthRequests('web').slice(-1)[0].query.index;
        return i !== undefined && BigInt(i) > 10n ? i : undefined;
      }),
    );
    const n = f.healthRequests('web').length;
    f.resetIndex(2); // a snapshot restore: every index is back at 2
    // The blocked query waits out its `wait`, returns index 2 < held; the client must restart from 0.
    await waitFor(
      'a non-blocking re-read after the reset',
      () =>
        f
          .healthRequests('web')
          .slice(n)
          .some((q) => q.query.index === undefined),
      { timeoutMs: 3000 * 1.07 + 3000 },
    );
    // Now it blocks on the low index, so changes arrive at once, not after each 3 s wait.
    for (const port of [7002, 7003]) {
      const t0 = Date.now();
      await r.registrar!.register({ service: 'web', host: '127.0.0.1', port });
      await rec.until((s) => keys(s).includes(`127.0.0.1:${port}`), 2500, `127.0.0.1:${port}`);
      assert.ok(
        Date.now() - t0 < 1500,
        `a change took ${Date.now() - t0} ms: the client still blocks on the stale index ${held}`,
      );
    }
    const blockedOn = f.healthRequests('web').slice(-1)[0].query.index;
    assert.ok(blockedOn !== undefined && BigInt(blockedOn) < held, `blocking on ${blockedOn}, not below ${held}`);
  });

  it('never loops faster than its rate limit against an agent that answers instantly', async function () {
    const f = await fake(this);
    const r = registry(f.address, { rate: 2, burst: 2 });
    const rec = watch(r, 'web');
    await r.registrar!.register({ service: 'web', host: '127.0.0.1', port: 7001 });
    await rec.until(hasExactly('127.0.0.1:7001'), 3000, 'the instance');
    f.ignoreBlocking();
    const t0 = Date.now();
    const n0 = f.healthRequests('web').length;
    await new Promise((res) => setTimeout(res, 3000)); // measuring a rate over a fixed window
    const n = f.healthRequests('web').length - n0;
    const secs = (Date.now() - t0) / 1000;
    // Token bucket: at most burst + rate * t requests, and it does keep polling at about that rate.
    assert.ok(n <= 2 + 2 * secs + 1, `${n} requests in ${secs.toFixed(1)} s exceeds burst 2 + 2/s`);
    assert.ok(n >= 2 * secs - 2, `${n} requests in ${secs.toFixed(1)} s: the loop stalled`);
    assert.deepEqual(keys(rec.last!), ['127.0.0.1:7001']);
  });

  it('at rest holds one blocking request per wait (about 60/wait requests a minute)', async function () {
    const f = await fake(this);
    const r = registry(f.address, { wait: '1s' });
    const rec = watch(r, 'idle');
    await rec.until(() => true, 3000, 'a first snapshot');
    const n0 = f.healthRequests('idle').length;
    const t0 = Date.now();
    await new Promise((res) => setTimeout(res, 3200)); // measuring a rate over a fixed window
    const n = f.healthRequests('idle').length - n0;
    const secs = (Date.now() - t0) / 1000;
    // One request per wait (1 s plus up to 1/16 jitter), plus one straddling the window's start.
    assert.ok(n >= 2 && n <= Math.ceil(secs) + 1, `${n} requests in ${secs.toFixed(1)} s with wait=1s`);
  });

  it('cuts a hung request after wait + wait/16 + 1s, keeps the last good set, and recovers', async function () {
    const f = await fake(this);
    const r = registry(f.address, { wait: '1s' });
    const rec = watch(r, 'web');
    await r.registrar!.register({ service: 'web', host: '127.0.0.1', port: 7001 });
    await rec.until(hasExactly('127.0.0.1:7001'), 3000, 'the instance');
    const t0 = Date.now();
    f.stall(); // from now on the agent accepts requests and never answers (a 5-minute hang)
    const failed = await rec.until(
      (s) => s.error?.code === 'REGISTRY_UNAVAILABLE',
      1000 * 2 + 1000 / 16 + 2000,
      'the hang reported',
    );
    const took = Date.now() - t0;
    // At most: the request in flight finishes its wait, then the next one hangs until cut.
    assert.ok(took <= 2 * (1000 + 1000 / 16) + 1000 + 500, `a hang was reported after ${took} ms`);
    assert.match(failed.error!.message, /no answer in time/);
    assert.deepEqual(keys(failed), ['127.0.0.1:7001'], 'the last good set was not kept');
    f.stall(false);
    await rec.until((s) => !s.error && keys(s).includes('127.0.0.1:7001'), 20_000, 'recovery');
  });

  it('backs off while the agent is down, keeping the last good set, and resumes when it is back', async function () {
    const f = await fake(this);
    const r = registry(f.address);
    const rec = watch(r, 'web');
    const reg = await r.registrar!.register({ service: 'web', host: '127.0.0.1', port: 7001 });
    await rec.until(hasExactly('127.0.0.1:7001'), 3000, 'the instance');
    await f.stop();
    const err = await rec.until((s) => !!s.error, 5000, 'an error snapshot');
    assert.equal(err.error!.code, 'REGISTRY_UNAVAILABLE');
    assert.deepEqual(keys(err), ['127.0.0.1:7001']);
    assert.equal(err.stale, true);
    await f.start();
    await rec.until((s) => !s.error && keys(s).includes('127.0.0.1:7001'), 20_000, 'the set confirmed again');
    void reg;
  });

  // ---- registrar ----

  it('survives an agent restart: lost, re-registered, restored; the resolver follows the index reset', async function () {
    const f = await fake(this);
    const r = registry(f.address, { wait: '2s' });
    const rec = watch(r, 'web');
    const reg = await r.registrar!.register({ service: 'web', host: '127.0.0.1', port: 7001, metadata: { v: '0' } });
    for (let i = 1; i <= 10; i++) await reg.update({ metadata: { v: String(i) } });
    await rec.until((s) => s.endpoints[0]?.metadata.v === '10', 3000, 'the instance, updated');
    const events: string[] = [];
    const lost = new Promise<Error | undefined>((resolve) => reg.on('lost', (e) => (events.push('lost'), resolve(e))));
    const restored = new Promise<void>((resolve) => reg.on('restored', () => (events.push('restored'), resolve())));
    const before = f.index;
    const seen = f.healthRequests('web').length;
    await f.restart(); // a fresh agent: our service is forgotten and indexes start low
    assert.deepEqual(f.serviceIds(), ['consul']);
    const err = await Promise.race([
      lost,
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no "lost" event')), 3000)),
    ]);
    assert.equal((err as { code?: string })?.code, 'REGISTRATION_LOST');
    await Promise.race([
      restored,
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no "restored" event')), 3000)),
    ]);
    assert.deepEqual(events, ['lost', 'restored']);
    assert.deepEqual(f.serviceIds(), ['127.0.0.1:7001', 'consul']);
    assert.ok(f.index < before, 'the restarted agent should have a lower index');
    // A request may already be blocking on the old, high index at the new agent: it returns when its
    // wait runs out, with a lower index, and the loop restarts and blocks on the new agent's index.
    await waitFor(
      'a blocking query on the new, lower index',
      () =>
        f
          .healthRequests('web')
          .slice(seen)
          .some((q) => q.query.index !== undefined && BigInt(q.query.index) < before),
      { timeoutMs: 2000 * 1.07 + 3000 },
    );
    const snap = await rec.until((s) => !s.error && keys(s).includes('127.0.0.1:7001'), 3000, 'the instance');
    assert.equal(snap.endpoints[0].metadata.v, '10', 're-registered with its latest metadata');
    // And it follows changes at the new agent promptly.
    await r.registrar!.register({ service: 'web', host: '127.0.0.1', port: 7002 });
    await rec.until(hasExactly('127.0.0.1:7001', '127.0.0.1:7002'), 1500, 'a change after the restart');
  });

  it('keeps the TTL check passing and a crashed instance turns critical, then is reaped', async function () {
    // Agent time compressed 100x for DeregisterCriticalServiceAfter: the 1m we send reaps in 600 ms.
    const f = await fake(this, { reapIntervalMs: 100, deregisterTimeScale: 0.01 });
    const r = registry(f.address, { ttl: '1s' });
    const reg = (await r.registrar!.register({ service: 'web', host: '127.0.0.1', port: 7001 })) as ConsulRegistration;
    const checkId = 'service:127.0.0.1:7001';
    assert.deepEqual(f.checkInfo(checkId), {
      status: 'passing',
      ttlMs: 1000,
      deregisterCriticalServiceAfterMs: 60_000,
    });
    // Well past the TTL the check is still passing: the keep-alive works.
    await new Promise((res) => setTimeout(res, 2000)); // observing that nothing happens over 2 TTLs
    assert.equal(f.checkStatus(checkId), 'passing');
    reg.suspendKeepAlive();
    await waitFor('the check to go critical', () => f.checkStatus(checkId) === 'critical', { timeoutMs: 3000 });
    await waitFor('the service to be reaped', () => !f.serviceIds().includes('127.0.0.1:7001'), {
      timeoutMs: 600 + 3000,
    });
  });

  it('sends Weights.Passing, the zone in meta and register-tags; rejects metadata Consul would refuse', async () => {
    const { address } = await agent();
    const r = registry(address, { 'register-tags': 'grpc,v2' });
    const svc = uniqueService('w');
    const rec = watch(r, svc);
    await r.registrar!.register({
      service: svc,
      host: '127.0.0.1',
      port: 7001,
      weight: 7,
      zone: 'eu-1a',
      metadata: { version: '3' },
    });
    const snap = await rec.until(hasExactly('127.0.0.1:7001'), 3000, 'the instance');
    assert.deepEqual(snap.endpoints[0], {
      id: '127.0.0.1:7001',
      host: '127.0.0.1',
      port: 7001,
      weight: 7,
      zone: 'eu-1a',
      metadata: { version: '3' },
      health: 'passing',
    });
    const tagged = registry(address, { tag: 'v2' });
    const rt = watch(tagged, svc);
    await rt.until(hasExactly('127.0.0.1:7001'), 3000, 'the instance found by its registered tag');
    await assert.rejects(
      r.registrar!.register({ service: svc, host: '127.0.0.1', port: 7002, metadata: { 'bad.key': 'x' } }),
      /metadata key "bad.key" is not accepted by Consul/,
    );
  });

  // ---- resolver mapping ----

  it('filters by tag and meta, uses Weights.Warning for warning instances when asked, and drops critical ones', async () => {
    const { address } = await agent();
    const svc = uniqueService('f');
    const reg = (
      id: string,
      port: number,
      tags: string[],
      meta: Record<string, string>,
      weights = { Passing: 10, Warning: 2 },
    ) =>
      agentPut(address, '/v1/agent/service/register', {
        ID: id,
        Name: svc,
        Address: '127.0.0.1',
        Port: port,
        Tags: tags,
        Meta: meta,
        Weights: weights,
        Check: { CheckID: `check-${id}`, TTL: '60s', Status: 'passing' },
      });
    later(async () => {
      for (const id of ['a', 'b', 'c', 'd'])
        await agentPut(address, `/v1/agent/service/deregister/${svc}-${id}`).catch(() => {});
    });
    await reg(`${svc}-a`, 7001, ['primary'], { version: '2', zone: 'z1' });
    await reg(`${svc}-b`, 7002, ['primary'], { version: '1' });
    await reg(`${svc}-c`, 7003, ['secondary'], { version: '2' });
    await reg(`${svc}-d`, 7004, ['primary'], { version: '2' }, { Passing: 5, Warning: 0 });
    const filtered = watch(registry(address, { tag: 'primary', meta: 'version:2' }), svc);
    const s1 = await filtered.until(hasExactly('127.0.0.1:7001', '127.0.0.1:7004'), 3000, 'primary+version 2');
    const a = s1.endpoints.find((e) => e.port === 7001)!;
    assert.equal(a.zone, 'z1');
    assert.deepEqual(a.metadata, { version: '2' }, 'the zone key stays out of metadata');
    assert.equal(a.weight, 10);
    const all = watch(registry(address, { 'include-warning': true }), svc);
    await all.until(
      hasExactly('127.0.0.1:7001', '127.0.0.1:7002', '127.0.0.1:7003', '127.0.0.1:7004'),
      3000,
      'all four',
    );
    const passingOnly = watch(registry(address), svc);
    await passingOnly.until(
      hasExactly('127.0.0.1:7001', '127.0.0.1:7002', '127.0.0.1:7003', '127.0.0.1:7004'),
      3000,
      'all four passing',
    );
    await agentPut(address, `/v1/agent/check/warn/check-${svc}-a`);
    await agentPut(address, `/v1/agent/check/warn/check-${svc}-d`);
    await agentPut(address, `/v1/agent/check/fail/check-${svc}-b`);
    // With warnings included: a at Weights.Warning (2), d excluded (Warning 0), b critical and dropped.
    const s2 = await all.until(
      hasExactly('127.0.0.1:7001', '127.0.0.1:7003'),
      3000,
      'warning at Weights.Warning, critical gone',
    );
    const aw = s2.endpoints.find((e) => e.port === 7001)!;
    assert.equal(aw.weight, 2);
    assert.equal(aw.health, 'warning');
    // Passing only (the default): just c.
    await passingOnly.until(hasExactly('127.0.0.1:7003'), 3000, 'only the passing instance');
  });

  it('queries the configured datacenter, and reports an unknown one without inventing endpoints', async function () {
    const east = await fake(this, { datacenter: 'east' });
    const west = await fake(this, { datacenter: 'west' });
    east.joinWan(west);
    await agentPut(west.address, '/v1/agent/service/register', {
      ID: 'far-1',
      Name: 'far',
      Address: '10.9.9.9',
      Port: 9000,
    });
    const rec = watch(registry(east.address, { dc: 'west' }), 'far');
    await rec.until(hasExactly('10.9.9.9:9000'), 3000, 'the west instance through the east agent');
    assert.deepEqual(await registry(east.address).resolver.resolve('far'), [], 'the local dc has none');
    await assert.rejects(
      registry(east.address, { dc: 'nowhere' }).resolver.resolve('far'),
      (e: { code?: string; message: string }) =>
        e.code === 'REGISTRY_UNAVAILABLE' && /No path to datacenter/.test(e.message),
    );
  });

  it('lists services through /v1/catalog/services', async () => {
    const { address } = await agent();
    const r = registry(address);
    const svc = uniqueService('list');
    await r.registrar!.register({ service: svc, host: '127.0.0.1', port: 7001 });
    const names = await r.listServices!();
    assert.ok(names.includes(svc), `${svc} missing from ${names}`);
  });

  // ---- ACLs ----

  describe('ACL tokens', () => {
    const READER = 'secret-reader-7f3a';
    const WRITER = 'secret-writer-9c1e';
    const NOBODY = 'secret-nobody-2b4d';
    const aclOpts: FakeConsulOptions = {
      acl: {
        defaultPolicy: 'deny',
        tokens: {
          [READER]: { servicePrefix: { '': 'read' }, nodePrefix: { '': 'read' } },
          [WRITER]: { servicePrefix: { '': 'write' }, nodePrefix: { '': 'read' } },
          [NOBODY]: {},
        },
      },
    };
    const noEnv = {};

    it('sends the token only as X-Consul-Token, never in URLs, logs or errors', async function () {
      const f = await fake(this, aclOpts);
      const log = capturingLogger();
      const w = registry(f.address, { token: WRITER }, log, noEnv);
      const rd = registry(f.address, { token: READER }, log, noEnv);
      const rec = watch(rd, 'web');
      const reg = await w.registrar!.register({ service: 'web', host: '127.0.0.1', port: 7001 });
      await rec.until(hasExactly('127.0.0.1:7001'), 3000, 'the instance');
      await reg.update({ metadata: { v: '2' } });
      // Errors too: a reader may not register, and a stopped agent makes every call fail.
      const denied = await rd
        .registrar!.register({ service: 'web', host: '127.0.0.1', port: 7002 })
        .catch((e: Error) => e);
      assert.equal((denied as { code?: string }).code, 'AUTH_FAILED');
      await f.stop();
      await rec.until((s) => !!s.error, 5000, 'an error while the agent is down');
      await f.start();
      for (const q of f.requests) {
        assert.ok(q.tokenVia === 'header', `${q.method} ${q.path} carried its token via ${q.tokenVia}`);
        assert.ok(!q.rawUrl.includes('secret-'), `a token in a URL: ${q.rawUrl}`);
      }
      const everything = `${log.text()}\n${(denied as Error).message}\n${JSON.stringify(rec.snapshots)}\n${JSON.stringify(rd.resolver)}`;
      for (const t of [READER, WRITER])
        assert.ok(!everything.includes(t), 'a token leaked into logs, errors or snapshots');
    });

    it('a response emptied by ACL filtering never wipes the set: AUTH_FAILED is attached instead', async function () {
      const f = await fake(this, aclOpts);
      const log = capturingLogger();
      const { dir, remove } = tempDir();
      later(remove);
      const tokenFile = path.join(dir, 'token');
      writeFileSync(tokenFile, `${READER}\n`);
      const w = registry(f.address, { token: WRITER }, undefined, noEnv);
      await w.registrar!.register({ service: 'web', host: '127.0.0.1', port: 7001 });
      await w.registrar!.register({ service: 'web', host: '127.0.0.1', port: 7002 });
      const rd = registry(f.address, { 'token-file': tokenFile }, log, noEnv);
      const rec = watch(rd, 'web');
      await rec.until(hasExactly('127.0.0.1:7001', '127.0.0.1:7002'), 3000, 'both instances');
      // The reader's policy loses service:read: Consul answers 200 [] with the filtered header.
      f.setToken(READER, { nodePrefix: { '': 'read' } });
      await agentPut(f.address, '/v1/agent/service/register', { ID: 'web-3', Name: 'web', Port: 7003 }, WRITER); // wake the blocking query
      const snap = await rec.until((s) => s.error?.code === 'AUTH_FAILED', 3000, 'AUTH_FAILED');
      assert.deepEqual(keys(snap), ['127.0.0.1:7001', '127.0.0.1:7002'], 'the filtered response wiped the set');
      assert.match(snap.error!.message, /filtered by ACLs/);
      assert.ok(
        rec.snapshots.every((s) => s.endpoints.length > 0),
        'an empty set was delivered',
      );
      assert.match(log.text(), /filtered by ACLs/);
      // A rotated token file is picked up: the new token can read again.
      f.setToken('secret-rotated-5e6f', { servicePrefix: { '': 'read' }, nodePrefix: { '': 'read' } });
      writeFileSync(tokenFile, 'secret-rotated-5e6f\n');
      await agentPut(
        f.address,
        '/v1/agent/service/register',
        { ID: 'web-3', Name: 'web', Port: 7003, Meta: { n: '2' } },
        WRITER,
      );
      await rec.until((s) => !s.error && keys(s).length === 3, 8000, 'all three with the rotated token');
      assert.ok(f.requests.some((q) => q.tokenVia === 'header'));
    });

    it('resolve() rejects with AUTH_FAILED when the token sees nothing, and an unknown token is refused', async function () {
      const f = await fake(this, aclOpts);
      const w = registry(f.address, { token: WRITER }, undefined, noEnv);
      await w.registrar!.register({ service: 'web', host: '127.0.0.1', port: 7001 });
      await assert.rejects(
        registry(f.address, { token: NOBODY }, undefined, noEnv).resolver.resolve('web'),
        (e: { code?: string }) => e.code === 'AUTH_FAILED',
      );
      await assert.rejects(
        registry(f.address, {}, undefined, noEnv).resolver.resolve('web'),
        (e: { code?: string }) => e.code === 'AUTH_FAILED',
        'anonymous',
      );
      await assert.rejects(
        registry(f.address, { token: 'secret-unknown-0000' }, undefined, noEnv).resolver.resolve('web'),
        (e: { code?: string; message: string }) =>
          e.code === 'AUTH_FAILED' && /ACL not found/.test(e.message) && !e.message.includes('secret-unknown'),
      );
      assert.deepEqual(
        (await registry(f.address, { token: READER }, undefined, noEnv).resolver.resolve('web')).map(endpointKey),
        ['127.0.0.1:7001'],
      );
    });
  });

  describe('gRPC end to end', () => {
    it('calls echo servers through consul://127.0.0.1:<port>/echo and follows deregistration', async () => {
      installGrpc();
      const { address } = await agent();
      const svc = REAL ? uniqueService('echo') : 'echo';
      const d = await Discovery.fromConfig(`consul://${address}?ttl=2s`);
      later(() => d.close());
      // A graceful stop deregisters from Consul first; the blocking query must carry that to the
      // channel before the 300 ms drain ends.
      await grpcFailoverCheck({ discovery: d, target: `consul://${address}/${svc}?wait=10s`, service: svc });
    });
  });
});
