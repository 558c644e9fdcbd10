import { strict as assert } from 'node:assert';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  ConfigError,
  defineAdapter,
  Discovery,
  FeedCatalog,
  pollingWatchAll,
  registerAdapter,
  RegistryFeed,
  RegistryUnavailableError,
  REGISTRY_WATCH_THRESHOLD,
  WatchResolver,
  type CatalogChange,
  type RegistrySink,
  type SourceSink,
  type Snapshot,
  type Watch,
} from '../../index';
import { waitFor, withTimeout } from '../../testkit';
import { ports, WatchedServices } from './support';

/** The file registry's document, written atomically (rename) as another process would. */
class RegistryFile {
  revision = 0;
  readonly services = new Map<string, number[]>();
  constructor(readonly file: string) {}
  set(service: string, ports: number[]): void {
    if (ports.length) this.services.set(service, ports);
    else this.services.delete(service);
  }
  write(): void {
    const services: Record<string, Record<string, unknown>> = {};
    for (const [s, ports] of this.services)
      services[s] = Object.fromEntries(ports.map((p) => [`127.0.0.1:${p}`, { host: '127.0.0.1', port: p }]));
    const doc = { format: 'wayfinder-file-registry', version: 1, revision: ++this.revision, services };
    const tmp = `${this.file}.${this.revision}.tmp`;
    writeFileSync(tmp, JSON.stringify(doc));
    renameSync(tmp, this.file);
  }
}

describe('catalog and registry-wide watching (core/catalog.ts, file registry)', function () {
  this.timeout(30_000);
  let dir: string;
  let reg: RegistryFile;
  let d: Discovery | undefined;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'wf-catalog-'));
    reg = new RegistryFile(path.join(dir, 'registry.json'));
  });
  afterEach(async () => {
    await d?.close();
    d = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('delivers a complete first view asynchronously, then one change per changed service', async () => {
    for (let i = 0; i < 50; i++) reg.set(`svc-${i}`, [1000 + i, 2000 + i, 3000 + i]);
    reg.write();
    d = await Discovery.fromConfig(`file://${reg.file}`);
    const got: CatalogChange[] = [];
    let returned = false;
    let syncCall = false;
    const w = d.catalog.watch((c) => {
      if (!returned) syncCall = true;
      got.push(c);
    });
    returned = true;
    await waitFor('first catalog view', () => got.length >= 1);
    assert.equal(syncCall, false, 'the first callback must not come from inside watch()');
    const first = got[0];
    assert.ok(first.initial);
    assert.equal(first.snapshots.size, 50);
    for (let i = 0; i < 50; i++)
      assert.equal(ports(first.snapshots.get(`svc-${i}`)!), `${1000 + i},${2000 + i},${3000 + i}`);

    reg.set('svc-7', [1007, 2007, 3007, 4007]);
    reg.set('svc-8', []);
    reg.set('new-svc', [9000]);
    reg.write();
    await waitFor('three changes', () => got.length >= 4);
    const changes = new Map(
      got.slice(1).map((c) => {
        assert.equal(c.initial, false);
        return [c.initial ? '' : c.snapshot.service, c.initial ? '' : ports(c.snapshot)];
      }),
    );
    assert.deepEqual(Object.fromEntries(changes), {
      'svc-7': '1007,2007,3007,4007',
      'svc-8': '',
      'new-svc': '9000',
    });
    assert.equal(got.length, 4, 'only the services that changed are delivered');

    // A second watcher shares the stream and gets the current complete view.
    const second: CatalogChange[] = [];
    const w2 = d.catalog.watch((c) => second.push(c));
    await waitFor('second view', () => second.length >= 1);
    assert.ok(second[0].initial);
    assert.equal(second[0].snapshots.size, 50);
    assert.ok(!second[0].snapshots.has('svc-8'));
    w.close();
    w2.close();
  });

  it('builds the catalog from listServices() and per-service watches when the adapter has no registry-wide watch', async () => {
    d = await Discovery.fromConfig('memory://catalog-fallback');
    await d.registrar.register({ service: 'a', host: '127.0.0.1', port: 1 });
    await d.registrar.register({ service: 'b', host: '127.0.0.1', port: 2 });
    const got: CatalogChange[] = [];
    const w = d.catalog.watch((c) => got.push(c));
    await waitFor('first view', () => got.length >= 1);
    assert.ok(got[0].initial);
    assert.deepEqual([...got[0].snapshots.keys()].sort(), ['a', 'b']);
    await d.registrar.register({ service: 'a', host: '127.0.0.1', port: 3 });
    await waitFor('change of a', () => got.length >= 2);
    assert.ok(!got[1].initial && got[1].snapshot.service === 'a' && ports(got[1].snapshot) === '1,3');
    w.close();
  });

  it('switches per-service -> registry-wide -> per-service under live changes, losing and repeating nothing', async () => {
    const N = REGISTRY_WATCH_THRESHOLD + 8;
    for (let i = 0; i < N; i++) reg.set(`s${i}`, [10_000 + i]);
    reg.write();
    d = await Discovery.fromConfig(`file://${reg.file}`); // watch=auto (the default)
    const resolver = d.resolver as WatchResolver;
    assert.ok(resolver instanceof WatchResolver);
    const ws = new WatchedServices(resolver);
    const { seen } = ws;
    const expected = new Map<string, string[]>();
    for (let i = 0; i < N; i++) expected.set(`s${i}`, [String(10_000 + i)]);
    // The watched services that change: every write changes one, and waits until it is seen.
    const live = ['s0', 's1', 's2', 's3'];
    let step = 0;
    const change = async () => {
      const s = live[step % live.length];
      const next = [...reg.services.get(s)!, 20_000 + step++];
      reg.set(s, next);
      reg.write();
      const want = next.join(',');
      expected.get(s)!.push(want);
      await waitFor(`${s} = ${want}`, () => seen.get(s)!.at(-1) === want, { timeoutMs: 5000, intervalMs: 2 });
    };
    for (const s of live) ws.watch(s);
    await waitFor('first snapshots', () => live.every((s) => seen.get(s)!.length === 1));
    for (let k = 0; k < 5; k++) await change();
    assert.equal(resolver.watchSource, 'service');

    // Cross the threshold while changes keep coming: the resolver moves onto the registry stream.
    for (let i = live.length; i < N; i++) {
      ws.watch(`s${i}`);
      if (i % 8 === 0) await change();
    }
    assert.equal(resolver.watchSource, 'registry');
    for (let k = 0; k < 10; k++) await change();
    await waitFor('every entry on the registry stream', () =>
      d!.status().services.every((s) => s.source === 'registry'),
    );
    for (let k = 0; k < 5; k++) await change();

    // Drop below half the threshold: back to one watch per service, still under changes.
    for (let i = N - 1; i >= live.length; i--) {
      ws.unwatch(`s${i}`);
      if (i % 8 === 0) await change();
    }
    assert.equal(resolver.watchSource, 'service');
    for (let k = 0; k < 10; k++) await change();
    await waitFor('every entry on its own watch', () => d!.status().services.every((s) => s.source === 'service'));
    for (let k = 0; k < 5; k++) await change();
    for (const s of live) assert.deepEqual(seen.get(s), expected.get(s), `${s}: every set exactly once, in order`);
    ws.close();
  });

  it('watch=registry serves resolver.watch() from the registry stream from the first watch; watch=service never does', async () => {
    reg.set('a', [1]);
    reg.write();
    d = await Discovery.fromConfig(`file://${reg.file}?watch=registry`);
    const got: string[] = [];
    const w = d.resolver.watch('a', (s) => got.push(ports(s)));
    const absent: Snapshot[] = [];
    const w2 = d.resolver.watch('absent', (s) => absent.push(s));
    await waitFor('first', () => got.length === 1 && absent.length === 1);
    assert.equal((d.resolver as WatchResolver).watchSource, 'registry');
    assert.deepEqual(absent[0].endpoints, []);
    reg.set('a', [1, 2]);
    reg.write();
    await waitFor('change', () => got.length === 2);
    assert.deepEqual(got, ['1', '1,2']);
    w.close();
    w2.close();
    await d.close();

    d = await Discovery.fromConfig({ registry: { scheme: 'file', path: reg.file, watch: 'service' } });
    const ws: Watch[] = [];
    for (let i = 0; i < REGISTRY_WATCH_THRESHOLD + 2; i++) ws.push(d.resolver.watch(`x${i}`, () => {}));
    assert.equal((d.resolver as WatchResolver).watchSource, 'service');
    for (const x of ws) x.close();
  });

  it('rejects a bad watch= value and watch=registry where the adapter has no registry-wide watch', async () => {
    await assert.rejects(Discovery.fromConfig(`file://${reg.file}?watch=all`), (e: unknown) => {
      return e instanceof ConfigError && e.field === 'watch';
    });
    await assert.rejects(
      withTimeout(Discovery.fromConfig('memory://x?watch=registry'), 5000, 'fromConfig'),
      (e: unknown) => e instanceof ConfigError && e.field === 'watch' && /registry-wide/.test(e.message),
    );
  });

  it('hands a service over only when both sources agree: no older set after a newer one, nothing repeated', async () => {
    // A scripted adapter: the test drives the per-service source and the registry-wide source apart.
    const perService = new Map<string, SourceSink>();
    let all: RegistrySink | undefined;
    let serviceStops = 0;
    registerAdapter(
      defineAdapter({
        scheme: 'scripted',
        description: 'test adapter',
        capabilities: {
          watch: 'push',
          register: false,
          ttl: false,
          weights: false,
          zones: false,
          metadata: false,
          listServices: false,
          registryWatch: true,
        },
        options: {},
        create: () => ({
          resolver: new WatchResolver('scripted', (service, sink) => {
            perService.set(service, sink);
            return () => {
              serviceStops++;
              perService.delete(service);
            };
          }),
          watchAll: (sink) => {
            all = sink;
            return () => (all = undefined);
          },
        }),
      }),
    );
    const ep = (...ps: number[]) => ps.map((port) => ({ id: `h:${port}`, host: 'h', port, metadata: {} }));
    d = await Discovery.fromConfig('scripted://');
    const resolver = d.resolver as WatchResolver;
    const ws = new WatchedServices(resolver);
    const { seen } = ws;
    for (let i = 0; i <= REGISTRY_WATCH_THRESHOLD; i++) ws.watch(`s${i}`);
    for (let i = 0; i <= REGISTRY_WATCH_THRESHOLD; i++) perService.get(`s${i}`)!.update(ep(1));
    await waitFor('first snapshots', () => [...seen.values()].every((v) => v.length === 1));
    // s0's own watch is ahead (2), the registry stream is behind (1): no switch, nothing delivered.
    perService.get('s0')!.update(ep(1, 2));
    ws.watch('extra'); // crosses the threshold
    assert.equal(resolver.watchSource, 'registry');
    const view = new Map<string, ReturnType<typeof ep>>();
    for (let i = 0; i <= REGISTRY_WATCH_THRESHOLD; i++) view.set(`s${i}`, ep(1));
    all!.reset(view);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen.get('s0'), ['1', '1,2'], 'the older registry set is not delivered');
    assert.ok(perService.has('s0'), 's0 keeps its own watch until the sources agree');
    assert.ok(!perService.has('s1'), 's1 agreed at once and moved over');
    // The stream catches up: s0 moves over silently; later sets come from the stream only.
    all!.update('s0', ep(1, 2));
    await new Promise((r) => setImmediate(r));
    assert.ok(!perService.has('s0'));
    all!.update('s0', ep(1, 2, 3));
    await waitFor('s0 from the stream', () => seen.get('s0')!.length === 3);
    assert.deepEqual(seen.get('s0'), ['1', '1,2', '1,2,3']);
    assert.ok(serviceStops >= REGISTRY_WATCH_THRESHOLD + 1);
    ws.close();
  });

  describe('registry errors reach catalog watchers (onError / onRecover)', () => {
    const ep = (...ps: number[]) => ps.map((port) => ({ id: `h:${port}`, host: 'h', port, metadata: {} }));
    const tick = () => new Promise((r) => setImmediate(r));
    /** A feed over a registry-wide watch the test drives, and a log of what a watcher was told. */
    function scripted() {
      let sink: RegistrySink | undefined;
      const feed = new RegistryFeed('scripted', (s) => {
        sink = s;
        return () => (sink = undefined);
      });
      const catalog = new FeedCatalog(feed);
      const watch = () => {
        const log: string[] = [];
        const w = catalog.watch(
          (c) =>
            log.push(
              c.initial
                ? `initial ${[...c.snapshots.keys()].join(',')}`
                : `change ${c.snapshot.service} ${ports(c.snapshot)}`,
            ),
          { onError: (e) => log.push(`error ${e.message}`), onRecover: () => log.push('recovered') },
        );
        return { log, w };
      };
      return { sink: () => sink!, feed, watch };
    }

    it('an outage is told once per distinct error, the last view kept, then the recovery after the missed changes', async () => {
      const { sink, feed, watch } = scripted();
      const a = watch();
      sink().reset(
        new Map([
          ['s1', ep(1)],
          ['s2', ep(2)],
        ]),
      );
      await tick();
      sink().error(new RegistryUnavailableError('down'));
      sink().error(new RegistryUnavailableError('down')); // a retry failing the same way
      await tick();
      assert.deepEqual(a.log, ['initial s1,s2', 'error down']);
      // A watcher joining during the outage: the last view, then the error it is stale with.
      const b = watch();
      await tick();
      assert.deepEqual(b.log, ['initial s1,s2', 'error down']);
      sink().error(new RegistryUnavailableError('still down'));
      // Back: the re-read differs in s2 only; the change comes first, then the recovery.
      sink().reset(
        new Map([
          ['s1', ep(1)],
          ['s2', ep(2, 3)],
        ]),
      );
      await tick();
      for (const x of [a, b])
        assert.deepEqual(x.log, ['initial s1,s2', 'error down', 'error still down', 'change s2 2,3', 'recovered']);
      sink().update('s1', ep(1, 4));
      await tick();
      assert.equal(a.log.filter((l) => l === 'recovered').length, 1, 'told once');
      assert.equal(a.log.at(-1), 'change s1 1,4');
      a.w.close();
      b.w.close();
      await feed.close();
    });

    it('a registry unreadable from the start is told before any view; the first view then ends it', async () => {
      const { sink, feed, watch } = scripted();
      const a = watch();
      sink().error(new RegistryUnavailableError('refused'));
      await tick();
      assert.deepEqual(a.log, ['error refused']);
      const b = watch(); // joins while nothing was ever read
      await tick();
      assert.deepEqual(b.log, ['error refused']);
      sink().reset(new Map([['s1', ep(1)]]));
      await tick();
      assert.deepEqual(a.log, ['error refused', 'initial s1', 'recovered']);
      assert.deepEqual(b.log, ['error refused', 'initial s1', 'recovered']);
      a.w.close();
      b.w.close();
      await feed.close();
    });

    it('the listing fallback (adapters without a registry-wide watch) tells a failed listing and its recovery', async () => {
      let failing = false;
      const resolver = new WatchResolver('scripted', (service, s) => {
        queueMicrotask(() => s.update(ep(service === 'a' ? 1 : 2)));
        return () => undefined;
      });
      const feed = new RegistryFeed(
        'scripted',
        pollingWatchAll(
          async () => {
            if (failing) throw new Error('listing refused');
            return ['a', 'b'];
          },
          resolver,
          { intervalMs: 20 },
        ),
      );
      const log: string[] = [];
      const w = new FeedCatalog(feed).watch((c) => log.push(c.initial ? `initial ${c.snapshots.size}` : 'change'), {
        onError: (e) => log.push(`error ${e.code}`),
        onRecover: () => log.push('recovered'),
      });
      await waitFor('first view', () => log.length === 1);
      failing = true;
      await waitFor('the failed listing told', () => log.length === 2);
      failing = false;
      await waitFor('the recovery told', () => log.length === 3);
      assert.deepEqual(log, ['initial 2', 'error REGISTRY_UNAVAILABLE', 'recovered']);
      w.close();
      await feed.close();
      await resolver.close();
    });

    it('rejects onError / onRecover that are not functions', () => {
      const { feed } = scripted();
      const catalog = new FeedCatalog(feed);
      assert.throws(() => catalog.watch(() => {}, { onError: 1 as never }), /onError must be a function/);
      assert.throws(() => catalog.watch(() => {}, { onRecover: 'x' as never }), /onRecover must be a function/);
    });
  });
});
