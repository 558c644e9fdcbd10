import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  BadEntryError,
  ConfigError,
  DEFAULT_REGISTRY_URL,
  Discovery,
  RegistryUnavailableError,
  TokenBucket,
  WatchResolver,
  checkEndpoint,
  collectEndpoints,
  defineAdapter,
  getAdapter,
  listAdapterSchemes,
  normalizeConfig,
  parseDuration,
  parseRegistryUrl,
  registerAdapter,
  validateOptions,
  RegistrarBase,
  RegistrationBase,
  type SourceSink,
} from '.';
import '../builtins';
import { SnapshotRecorder } from '../testkit';

describe('core: registry URLs', () => {
  it('parses multi-host authorities, IPv6, paths, params and credentials', () => {
    const u = parseRegistryUrl(
      'etcd://user:s3cret@h1:2379,[::1]:2380,h3/base/path?prefix=/services&format=grpc-go&token=abc',
    );
    assert.equal(u.scheme, 'etcd');
    assert.deepEqual(u.hosts, [{ host: 'h1', port: 2379 }, { host: '::1', port: 2380 }, { host: 'h3' }]);
    assert.equal(u.path, '/base/path');
    assert.deepEqual(u.params, { prefix: '/services', format: 'grpc-go', token: 'abc' });
    assert.equal(u.username, 'user');
    assert.equal(u.password, 's3cret');
    assert.ok(!u.redacted.includes('s3cret') && !u.redacted.includes('abc'), u.redacted);
    assert.match(
      u.redacted,
      /^etcd:\/\/user:\*\*\*@h1:2379,\[::1\]:2380,h3\/base\/path\?prefix=\/services&format=grpc-go&token=\*\*\*$/,
    );
  });
  it('rejects bad ports and repeated parameters naming the field', () => {
    assert.throws(
      () => parseRegistryUrl('etcd://h1:99999'),
      (e: ConfigError) => e.code === 'CONFIG_INVALID' && e.field === 'hosts' && /1\.\.65535/.test(e.message),
    );
    assert.throws(
      () => parseRegistryUrl('etcd://h1?prefix=/a&prefix=/b'),
      (e: ConfigError) => e.field === 'prefix',
    );
    assert.throws(() => parseRegistryUrl('not a url'), ConfigError);
  });
  it('parses durations', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('10s'), 10_000);
    assert.equal(parseDuration('1.5m'), 90_000);
    assert.equal(parseDuration(42), 42);
    assert.equal(parseDuration('ten'), undefined);
  });
});

describe('core: option validation', () => {
  const schema = {
    prefix: {
      type: 'string' as const,
      default: '/services',
      doc: 'key prefix',
      check: (v: string) => (v.startsWith('/') ? undefined : 'must start with "/"'),
    },
    format: { type: 'enum' as const, values: ['wayfinder', 'grpc-go'], default: 'wayfinder', doc: 'key layout' },
    ttl: { type: 'duration' as const, default: 10_000, min: 2000, doc: 'lease TTL' },
    password: {
      type: 'string' as const,
      secret: true,
      doc: 'password',
      check: (v: string) => (v.length >= 8 ? undefined : 'is too short'),
    },
    tls: { type: 'boolean' as const, default: false, doc: 'tls' },
  };
  it('applies defaults and coerces URL strings', () => {
    assert.deepEqual(validateOptions('etcd', schema, { ttl: '5s', tls: 'true' }), {
      prefix: '/services',
      format: 'wayfinder',
      ttl: 5000,
      tls: true,
    });
  });
  it('names the owner and the field in every error', () => {
    assert.throws(() => validateOptions('etcd', schema, { prefix: 'services' }), {
      message: 'etcd: "prefix" must start with "/"',
    });
    assert.throws(() => validateOptions('etcd', schema, { format: 'go' }), {
      message: 'etcd: "format" must be one of "wayfinder", "grpc-go" (got "go")',
    });
    assert.throws(
      () => validateOptions('etcd', schema, { ttl: '1s' }),
      /etcd: "ttl" must be a duration .* of at least 2000ms/,
    );
    assert.throws(
      () => validateOptions('etcd', schema, { prefx: '/a' }),
      /etcd: unknown option "prefx"; known options: prefix, format, ttl, password, tls/,
    );
  });
  it('never echoes a secret value in an error', () => {
    assert.throws(
      () => validateOptions('etcd', schema, { password: 'hunter' }),
      (e: Error) => !e.message.includes('hunter') && /"password" is too short/.test(e.message),
    );
    assert.throws(
      () => validateOptions('etcd', { password: { type: 'integer', secret: true, doc: '' } }, { password: 'hunter2' }),
      (e: Error) => !e.message.includes('hunter2'),
    );
  });
});

describe('core: endpoints', () => {
  it('validates raw entries and explains the first problem', () => {
    assert.equal(checkEndpoint({ host: 'h', port: 80 }).ok, true);
    assert.deepEqual(checkEndpoint({ host: 'h', port: 0 }), {
      ok: false,
      reason: '"port" must be an integer in 1..65535',
    });
    assert.deepEqual(checkEndpoint({ host: 'h', port: 80, weight: 1.5 }), {
      ok: false,
      reason: '"weight" must be a positive integer',
    });
    assert.deepEqual(checkEndpoint({ host: 'h', port: 80, metadata: { a: 1 } }), {
      ok: false,
      reason: '"metadata.a" must be a string',
    });
    assert.deepEqual(checkEndpoint('x'), { ok: false, reason: 'not an object' });
  });
  it('collects a complete, de-duplicated, sorted set, dropping critical ones and reporting bad ones', () => {
    const { endpoints, bad } = collectEndpoints([
      { key: 'b', value: { host: '10.0.0.2', port: 80 } },
      { key: 'a', value: { host: '10.0.0.1', port: 80, health: 'passing' } },
      { key: 'a2', value: { host: '10.0.0.1', port: 80, weight: 3 } },
      { key: 'c', value: { host: '10.0.0.3', port: 80, health: 'critical' } },
      { key: 'x', value: { port: 80 } },
    ]);
    assert.deepEqual(
      endpoints.map((e) => `${e.host}:${e.port}/${e.weight ?? 1}`),
      ['10.0.0.1:80/3', '10.0.0.2:80/1'],
    );
    assert.deepEqual(bad, [{ key: 'x', reason: '"host" must be a non-empty string' }]);
    assert.match(new BadEntryError(bad).message, /skipped 1 malformed registry entry: x: "host"/);
  });
});

describe('core: WatchResolver', () => {
  function fakeSource() {
    const sinks = new Map<string, SourceSink>();
    let subscribes = 0;
    let stops = 0;
    const resolver = new WatchResolver('fake', (service, sink) => {
      subscribes++;
      sinks.set(service, sink);
      return () => {
        stops++;
        sinks.delete(service);
      };
    });
    return { resolver, sinks, counts: () => ({ subscribes, stops }) };
  }
  const ep = (port: number) => ({ id: `h:${port}`, host: 'h', port, metadata: {} });

  it('holds one registry watch per service however many watchers, closed with the last', () => {
    const f = fakeSource();
    const w = [1, 2, 3].map(() => f.resolver.watch('svc', () => {}));
    assert.deepEqual(f.counts(), { subscribes: 1, stops: 0 });
    w[0].close();
    w[1].close();
    assert.deepEqual(f.counts(), { subscribes: 1, stops: 0 });
    w[2].close();
    assert.deepEqual(f.counts(), { subscribes: 1, stops: 1 });
  });

  it('keeps the last good set across registry errors, and never turns an error into an empty set', async () => {
    const f = fakeSource();
    const r = new SnapshotRecorder();
    f.resolver.watch('svc', r.onSnapshot);
    const sink = f.sinks.get('svc')!;
    sink.update([ep(1), ep(2)]);
    await r.until((s) => s.endpoints.length === 2, 1000);
    sink.error(new RegistryUnavailableError('connection refused'));
    const s = await r.until((x) => !!x.error, 1000);
    assert.equal(s.error!.code, 'REGISTRY_UNAVAILABLE');
    assert.equal(s.stale, true);
    assert.deepEqual(
      s.endpoints.map((e) => e.port),
      [1, 2],
    );
    sink.update([ep(2)]);
    const healed = await r.until((x) => !x.error, 1000);
    assert.deepEqual(
      healed.endpoints.map((e) => e.port),
      [2],
    );
  });

  it('suppresses duplicate snapshots', async () => {
    const f = fakeSource();
    const r = new SnapshotRecorder();
    f.resolver.watch('svc', r.onSnapshot);
    const sink = f.sinks.get('svc')!;
    sink.update([ep(1)], { revision: '1' });
    await r.until(() => true, 1000);
    sink.update([ep(1)], { revision: '2' });
    sink.update([ep(1), ep(2)], { revision: '3' });
    await r.until((x) => x.endpoints.length === 2, 1000);
    assert.equal(r.snapshots.length, 2);
  });

  it('rejects resolve() when the registry fails before any good set', async () => {
    const f = fakeSource();
    const p = f.resolver.resolve('svc');
    f.sinks.get('svc')!.error(new RegistryUnavailableError('down'));
    await assert.rejects(p, { code: 'REGISTRY_UNAVAILABLE' });
  });
});

describe('core: Discovery.fromConfig', () => {
  it('accepts a URL, an object, a JSON file and a YAML file', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'wf-cfg-'));
    writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ registry: 'memory://cfg-json', balancer: 'round_robin' }));
    writeFileSync(path.join(dir, 'c.yaml'), 'registry:\n  scheme: memory\n  name: cfg-yaml\n');
    for (const src of [
      'memory://cfg-url',
      { registry: { scheme: 'memory', name: 'cfg-obj' } },
      path.join(dir, 'c.json'),
      path.join(dir, 'c.yaml'),
    ]) {
      const d = await Discovery.fromConfig(src);
      assert.equal(d.scheme, 'memory');
      assert.equal(d.balancer.name, 'round_robin');
      await d.close();
    }
  });
  it('defaults to WAYFINDER_REGISTRY, else the file registry', () => {
    assert.deepEqual(normalizeConfig(undefined, { WAYFINDER_REGISTRY: 'memory://env' }), { registry: 'memory://env' });
    assert.deepEqual(normalizeConfig(undefined, {}), { registry: DEFAULT_REGISTRY_URL });
  });
  it('fails fast on bad config, naming the field', async () => {
    await assert.rejects(
      Discovery.fromConfig('nope://x'),
      (e: ConfigError) => e.code === 'UNKNOWN_SCHEME' && /known schemes: .*memory/.test(e.message),
    );
    await assert.rejects(
      Discovery.fromConfig('memory://x?colour=red'),
      /memory: unknown option "colour"; known options: name/,
    );
    await assert.rejects(
      Discovery.fromConfig({ registry: 'memory://x', balancer: 'fastest' }),
      /unknown balancer "fastest"; known balancers: .*round_robin/,
    );
    await assert.rejects(Discovery.fromConfig({ registy: 'memory://x' } as never), /unknown config key "registy"/);
    await assert.rejects(Discovery.fromConfig('/does/not/exist.yaml'), /cannot read config file/);
  });
  it('rejects registrations on a read-only adapter with NOT_SUPPORTED', async () => {
    const def = defineAdapter({
      scheme: 'readonly-test',
      description: 'test',
      capabilities: {
        watch: 'poll',
        register: false,
        ttl: false,
        weights: false,
        zones: false,
        metadata: false,
        listServices: false,
      },
      options: {},
      create: () => ({ resolver: new WatchResolver('ro', (_s, sink) => (sink.update([]), () => {})) }),
    });
    registerAdapter(def);
    registerAdapter(def); // harmless twice
    assert.equal(getAdapter('readonly-test'), def);
    assert.ok(listAdapterSchemes().includes('readonly-test'));
    const d = await Discovery.fromConfig('readonly-test:');
    await assert.rejects(d.registrar.register({ service: 's', host: 'h', port: 1 }), { code: 'NOT_SUPPORTED' });
    await assert.rejects(d.listServices(), { code: 'NOT_SUPPORTED' });
    await d.close();
  });
});

describe('core: TokenBucket', () => {
  it('allows a burst, then the configured rate', () => {
    let t = 0;
    const b = new TokenBucket(2, 3, () => t);
    assert.deepEqual([b.take(), b.take(), b.take()], [0, 0, 0]);
    assert.equal(b.take(), 500);
    t += 500;
    assert.equal(b.take(), 0);
  });
});

describe('core: registry URL user info', () => {
  it('rejects badly percent-encoded credentials with a ConfigError that does not echo them', () => {
    assert.throws(
      () => parseRegistryUrl('etcd://us%zz:pa%zzss@h1:2379'),
      (e: ConfigError) => e instanceof ConfigError && e.field === 'username' && !e.message.includes('pa%zzss'),
    );
  });
});

describe('core: RegistrationBase', () => {
  it('lets a failed deregister() be retried, and keeps the registration for close() meanwhile', async () => {
    let failNext = true;
    const removed: string[] = [];
    class Reg extends RegistrationBase {
      protected async write(): Promise<void> {}
      protected async remove(): Promise<void> {
        if (failNext) {
          failNext = false;
          throw new RegistryUnavailableError('registry unreachable');
        }
        removed.push(this.id);
      }
    }
    class Registrar extends RegistrarBase<Reg> {
      protected async create(spec: ConstructorParameters<typeof Reg>[0]): Promise<Reg> {
        return new Reg(spec);
      }
    }
    const r = new Registrar('test');
    const reg = await r.register({ service: 'svc', host: '127.0.0.1', port: 1 });
    await assert.rejects(reg.deregister(), { code: 'REGISTRY_UNAVAILABLE' });
    await r.close(); // retries the one that failed
    assert.deepEqual(removed, ['127.0.0.1:1']);
    await reg.deregister(); // idempotent after success
    assert.deepEqual(removed, ['127.0.0.1:1']);
  });
});

describe("core: adapters written in the design's parse(url) form", () => {
  it('parse(url: URL) is used instead of an options schema, and its errors are ConfigErrors', async () => {
    let seen: URL | undefined;
    registerAdapter(
      defineAdapter<{ host: string; port: number; ns: string }>({
        scheme: 'parsetest',
        description: 'test adapter in the parse(url) form',
        capabilities: {
          watch: 'push',
          register: false,
          ttl: false,
          weights: false,
          zones: false,
          metadata: false,
          listServices: false,
        },
        parse(url) {
          seen = url;
          const ns = url.searchParams.get('ns') ?? 'default';
          if (!/^[a-z]+$/.test(ns)) throw new ConfigError('parsetest: "ns" must be lowercase letters', { field: 'ns' });
          return { host: url.hostname, port: Number(url.port || 1), ns };
        },
        create: (o) => ({
          resolver: new WatchResolver(
            'parsetest',
            (_s, sink) => (sink.update([{ id: o.ns, host: o.host, port: o.port, metadata: {} }]), () => {}),
          ),
        }),
      }),
    );
    const d = await Discovery.fromConfig(`parsetest://10.1.2.3:99?ns=prod&cache=${os.tmpdir()}/wf-parsetest-cache`);
    assert.equal(seen!.searchParams.get('cache'), null, 'core strips its own cache option');
    assert.deepEqual(
      (await d.resolver.resolve('x')).map((e) => `${e.id}@${e.host}:${e.port}`),
      ['prod@10.1.2.3:99'],
    );
    await d.close();
    await assert.rejects(Discovery.fromConfig('parsetest://h?ns=PROD'), (e: ConfigError) => e.field === 'ns');
    assert.throws(
      () =>
        defineAdapter({ scheme: 'neither', description: '', capabilities: {} as never, create: () => ({}) as never }),
      /"options" schema \(or a parse\(url\) function\)/,
    );
  });
});
