import { strict as assert } from 'node:assert';
import {
  FeedCatalog,
  REGISTRY_WATCH_THRESHOLD,
  RegistryFeed,
  type AdapterInstance,
  type Catalog,
  type CatalogChange,
  type Discovery,
  type Endpoint,
  type Resolver,
  type Snapshot,
  type Watch,
  type WatchResolver,
} from '../../index';
import { waitFor } from '../../testkit';

/** Scaffolding shared by the test/catalog suites; each suite keeps what is particular to its registry. */

/** A snapshot's ports, sorted, comma-separated ('' for none or no snapshot). */
export const ports = (s: Snapshot | undefined): string =>
  (s?.endpoints ?? [])
    .map((e) => e.port)
    .sort((a, b) => a - b)
    .join(',');

/** Everything a snapshot says about its endpoints, order-free, for comparing two paths. */
export const content = (eps: Endpoint[]): string => JSON.stringify([...eps].sort((a, b) => (a.id < b.id ? -1 : 1)));

type Closable = { close(): unknown };

/** What a test opens (registries, discoveries, feeds, watches), closed last first after it. */
export interface TestScope {
  /** Closes `x` after the test. */
  track<T extends Closable>(x: T): T;
  /** Every change a catalog watcher is given, in order. */
  catalog(catalog: Pick<Catalog, 'watch'>): CatalogChange[];
  /** A catalog straight over an adapter's registry-wide watch (no Discovery around it), recording every change. */
  feed(name: string, registry: AdapterInstance): { feed: RegistryFeed; got: CatalogChange[] };
}

/**
 * A TestScope for each test of the enclosing describe(). Call it before the hooks that stop the
 * registry server: mocha runs a suite's afterEach hooks in the order they were added.
 */
export function testScope(): TestScope {
  const open: Closable[] = [];
  afterEach(async () => {
    for (const c of open.splice(0).reverse()) await c.close();
  });
  const scope: TestScope = {
    track: (x) => (open.push(x), x),
    catalog(catalog) {
      const got: CatalogChange[] = [];
      scope.track(catalog.watch((c) => got.push(c)));
      return got;
    },
    feed(name, registry) {
      scope.track({ close: () => registry.close?.() });
      const feed = scope.track(new RegistryFeed(name, registry.watchAll!));
      return { feed, got: scope.catalog(new FeedCatalog(feed)) };
    },
  };
  return scope;
}

/**
 * The catalog's current view, folded from its changes. With dropEmpty, a change that leaves a
 * service with no endpoints removes it from the view.
 */
export function fold(got: CatalogChange[], opts: { dropEmpty?: boolean } = {}): Map<string, Snapshot> {
  const m = new Map<string, Snapshot>();
  for (const c of got)
    if (c.initial) for (const [k, s] of c.snapshots) m.set(k, s);
    else if (opts.dropEmpty && !c.snapshot.endpoints.length) m.delete(c.snapshot.service);
    else m.set(c.snapshot.service, c.snapshot);
  return m;
}

/**
 * Watches every service of `view` through `resolver` (per-service watches) and asserts each gives
 * the same endpoints as the view; returns the per-service snapshots for further comparison.
 */
export async function assertSameAsPerService(
  view: Map<string, Snapshot>,
  resolver: Resolver,
  scope: TestScope,
  opts: { timeoutMs?: number } = {},
): Promise<Map<string, Snapshot>> {
  const per = new Map<string, Snapshot>();
  for (const name of view.keys()) scope.track(resolver.watch(name, (s) => per.set(name, s)));
  await waitFor('per-service first snapshots', () => per.size === view.size, opts);
  for (const [name, s] of view) assert.equal(content(per.get(name)!.endpoints), content(s.endpoints), name);
  return per;
}

/**
 * A feed whose first view holds a = [1] and b = [2] loses its server (`stop`): the outage is
 * reported (REGISTRY_UNAVAILABLE) and the feed keeps the last good sets.
 */
export async function assertOutageKeepsLastSet(
  feed: RegistryFeed,
  got: CatalogChange[],
  stop: () => Promise<unknown>,
): Promise<void> {
  await waitFor('first view', () => ports(fold(got).get('a')) === '1' && ports(fold(got).get('b')) === '2');
  await stop();
  await waitFor('the outage reported', () => feed.lastError?.code === 'REGISTRY_UNAVAILABLE', { timeoutMs: 10_000 });
  assert.equal(ports(feed.get('a')), '1');
  assert.equal(ports(feed.get('b')), '2');
}

/** resolver.watch() per service, each recording the sets it is given (as `format` writes them). */
export class WatchedServices {
  readonly seen = new Map<string, string[]>();
  readonly watches = new Map<string, Watch>();
  constructor(
    private readonly resolver: Resolver,
    private readonly format: (s: Snapshot) => string = ports,
  ) {}
  watch(service: string): void {
    const sets: string[] = [];
    this.seen.set(service, sets);
    this.watches.set(
      service,
      this.resolver.watch(service, (snap) => sets.push(this.format(snap))),
    );
  }
  unwatch(service: string): void {
    this.watches.get(service)!.close();
    this.watches.delete(service);
    this.seen.delete(service);
  }
  close(): void {
    for (const w of this.watches.values()) w.close();
    this.watches.clear();
  }
}

/** What assertLiveSwitch() (the switch under live writes) needs of a registry. */
export interface LiveSwitchRegistry {
  /** Writes instance `key` of `service` with `port` (a new key adds an endpoint). */
  put(service: string, key: string, port: number): Promise<unknown>;
  /** A Discovery on the registry with watch=auto, whose resolver is a WatchResolver. */
  open(): Promise<Discovery>;
  /** The registry's final set of `service` (default: the ports this check wrote). */
  finalSet?(service: string): Promise<string>;
  /** A pause between two writes (default none). */
  writePauseMs?: number;
  /** The bound of the waits for every service to be on the stream / on its own watch. */
  switchTimeoutMs?: number;
}

/**
 * The per-service <-> registry-wide switch under live writes. Services s0..s(N-1) (N above the
 * threshold) are registered; s0..s3 are watched and a writer keeps adding endpoints to them while
 * the others are watched (crossing the threshold: onto the registry stream) and closed again (back
 * to one watch per service), twice. Each live service must end on its final set having been given
 * no set repeated and none older than one before it (every write adds an endpoint, so the sets grow).
 */
export async function assertLiveSwitch(reg: LiveSwitchRegistry, scope: TestScope): Promise<void> {
  const N = REGISTRY_WATCH_THRESHOLD + 8;
  for (let i = 0; i < N; i++) await reg.put(`s${i}`, 'a', 10_000 + i);
  const d = scope.track(await reg.open());
  const resolver = d.resolver as WatchResolver;
  const ws = new WatchedServices(resolver);
  const live = ['s0', 's1', 's2', 's3'];
  for (const s of live) ws.watch(s);
  const want = new Map(live.map((s, i) => [s, [10_000 + i]]));
  let writing = true;
  let n = 0;
  const writer = (async () => {
    while (writing) {
      const s = live[n % live.length];
      await reg.put(s, `w${n}`, 20_000 + n);
      want.get(s)!.push(20_000 + n);
      n++;
      if (reg.writePauseMs) await new Promise((r) => setTimeout(r, reg.writePauseMs));
    }
  })();
  const sources: string[] = [];
  const on = (source: string) => () => d.status().services.every((s) => s.source === source);
  const bound = { timeoutMs: reg.switchTimeoutMs };
  for (let round = 0; round < 2; round++) {
    for (let i = live.length; i < N; i++) {
      ws.watch(`s${i}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    sources.push(resolver.watchSource);
    await waitFor('all on the stream', on('registry'), bound);
    for (let i = N - 1; i >= live.length; i--) {
      ws.unwatch(`s${i}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    sources.push(resolver.watchSource);
    await waitFor('all on their own watches', on('service'), bound);
  }
  writing = false;
  await writer;
  assert.deepEqual(sources, ['registry', 'service', 'registry', 'service']);
  assert.ok(n > 20, `the writer made ${n} changes`);
  for (const s of live) {
    const final = reg.finalSet
      ? await reg.finalSet(s)
      : want
          .get(s)!
          .sort((a, b) => a - b)
          .join(',');
    await waitFor(`${s} final set`, () => ws.seen.get(s)!.at(-1) === final);
    const sizes = ws.seen.get(s)!.map((x) => x.split(',').length);
    for (let k = 1; k < sizes.length; k++)
      assert.ok(sizes[k] > sizes[k - 1], `${s}: set ${k} (${sizes[k]}) after ${sizes[k - 1]}: repeated or older`);
  }
  ws.close();
}
