import type { RegistrySink, WatchAllFn } from './adapter';
import { BadEntryError, ClosedError, toWayfinderError, type BadEntry, type WayfinderError } from './errors';
import type { Catalog, CatalogChange, CatalogWatchOptions, Endpoint, Logger, Resolver, Snapshot, Watch } from './model';
import { sameEndpoints, silentLogger } from './util';

/**
 * The catalog (design.md "Catalog"): every service of a registry as snapshots, from one
 * registry-wide stream when the adapter has one (AdapterInstance.watchAll), else from
 * listServices() polled every CATALOG_LIST_INTERVAL_MS plus one per-service watch per listed
 * service (pollingWatchAll). The same RegistryFeed also serves resolver.watch() in registry mode
 * (watch-resolver.ts), so a process holds one registry-wide stream however it is consumed.
 */

/** How often the catalog re-lists services when the adapter has no registry-wide watch. */
export const CATALOG_LIST_INTERVAL_MS = 5000;

/** What a feed tells its consumers. Calls are synchronous, in registry order. */
export interface FeedListener {
  /** The first complete view is known (also called for a listener added after it was). */
  synced(): void;
  /** A service's snapshot changed after the first view (a removed service: empty endpoints). */
  change(snap: Snapshot): void;
  /** The registry failed; every snapshot is now stale (last good set kept). */
  error(err: WayfinderError): void;
  /** The registry is followed again after error() (called after the changes that came with it). */
  recovered?(): void;
}

/**
 * One registry-wide watch, shared and reference-counted: started with the first listener, stopped
 * with the last. Keeps every service's current snapshot; duplicate sets are suppressed.
 */
export class RegistryFeed {
  private readonly services = new Map<string, Snapshot>();
  private readonly listeners = new Set<FeedListener>();
  private stop?: () => void | Promise<void>;
  private generation = 0;
  private closed = false;
  synced = false;
  lastError?: WayfinderError;

  constructor(
    private readonly name: string,
    private readonly watchAll: WatchAllFn,
    private readonly logger: Logger = silentLogger,
  ) {}

  /** The current snapshot of a service (undefined: not in the registry, or not synced yet). */
  get(service: string): Snapshot | undefined {
    return this.services.get(service);
  }

  /** Every service's current snapshot (a copy). */
  all(): Map<string, Snapshot> {
    return new Map(this.services);
  }

  subscribe(l: FeedListener): () => void {
    if (this.closed) throw new ClosedError(`${this.name} catalog`);
    this.listeners.add(l);
    if (this.listeners.size === 1 && !this.stop) this.start();
    else if (this.synced) queueMicrotask(() => this.listeners.has(l) && l.synced());
    return () => {
      if (!this.listeners.delete(l) || this.listeners.size > 0) return;
      void this.halt();
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    await this.halt();
  }

  private start(): void {
    const gen = ++this.generation;
    const live = () => gen === this.generation;
    const sink: RegistrySink = {
      reset: (all, opts) => {
        if (!live()) return;
        const first = !this.synced;
        const changed: Snapshot[] = [];
        for (const [service, endpoints] of all) {
          const snap = this.put(service, endpoints, opts?.revision, opts?.bad?.get(service));
          if (snap) changed.push(snap);
        }
        for (const service of [...this.services.keys()]) {
          if (all.has(service)) continue;
          const snap = this.put(service, [], opts?.revision);
          if (snap) changed.push(snap);
        }
        this.synced = true;
        if (first) for (const l of [...this.listeners]) this.safe(() => l.synced());
        else for (const snap of changed) this.emit(snap);
        this.clearError();
      },
      update: (service, endpoints, opts) => {
        if (!live() || !this.synced) return;
        const snap = this.put(service, endpoints, opts?.revision, opts?.bad);
        if (snap) this.emit(snap);
        this.clearError();
      },
      error: (err) => {
        if (!live()) return;
        if (this.lastError?.code === err.code && this.lastError.message === err.message) return;
        this.lastError = err;
        this.logger.warn({ code: err.code }, `${this.name}: registry-wide watch: ${err.message}`);
        for (const l of [...this.listeners]) this.safe(() => l.error(err));
      },
    };
    try {
      this.stop = this.watchAll(sink);
    } catch (err) {
      queueMicrotask(() => sink.error(toWayfinderError(err, `${this.name}: the registry-wide watch failed`)));
    }
  }

  private clearError(): void {
    if (!this.lastError) return;
    this.lastError = undefined;
    this.logger.info({}, `${this.name}: registry-wide watch recovered`);
    for (const l of [...this.listeners]) this.safe(() => l.recovered?.());
  }

  private async halt(): Promise<void> {
    const stop = this.stop;
    this.stop = undefined;
    this.generation++;
    this.synced = false;
    this.services.clear();
    this.lastError = undefined;
    try {
      await stop?.();
    } catch (err) {
      this.logger.warn({ err }, `${this.name}: stopping the registry-wide watch failed`);
    }
  }

  /** Records a service's set; returns the new snapshot when it changed. */
  private put(service: string, endpoints: Endpoint[], revision?: string, bad?: BadEntry[]): Snapshot | undefined {
    const prev = this.services.get(service);
    const badErr = bad?.length ? new BadEntryError(bad) : undefined;
    if (prev && sameEndpoints(prev.endpoints, endpoints) && prev.error?.message === badErr?.message) return undefined;
    if (!prev && endpoints.length === 0 && !badErr) return undefined;
    const snap: Snapshot = { service, endpoints, revision };
    if (badErr) snap.error = badErr;
    if (endpoints.length === 0 && !badErr) this.services.delete(service);
    else this.services.set(service, snap);
    return snap;
  }

  private emit(snap: Snapshot): void {
    for (const l of [...this.listeners]) this.safe(() => l.change(snap));
  }

  private safe(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.logger.error({ err }, `${this.name}: a catalog listener threw; ignored`);
    }
  }
}

/** discovery.catalog: CatalogChange callbacks over a RegistryFeed, each delivered asynchronously. */
export class FeedCatalog implements Catalog {
  constructor(
    private readonly feed: RegistryFeed,
    private readonly logger: Logger = silentLogger,
  ) {}

  watch(onChange: (c: CatalogChange) => void, opts: CatalogWatchOptions = {}): Watch {
    if (typeof onChange !== 'function') throw new TypeError('catalog.watch(): onChange must be a function');
    for (const k of ['onError', 'onRecover'] as const)
      if (opts[k] !== undefined && typeof opts[k] !== 'function')
        throw new TypeError(`catalog.watch(): ${k} must be a function`);
    let open = true;
    let initialDone = false;
    /** The error this watcher was told of and not yet told the end of. */
    let told: WayfinderError | undefined;
    const guard = (fn: () => void) => {
      if (!open) return;
      try {
        fn();
      } catch (err) {
        this.logger.error({ err }, 'catalog: a watch callback threw; ignored');
      }
    };
    const call = (c: CatalogChange) => guard(() => onChange(c));
    const tell = (err: WayfinderError) => {
      if (!open || told === err) return;
      told = err;
      guard(() => opts.onError?.(err));
    };
    // Every callback is queued in feed order, so a watcher sees the first view, changes, an error
    // and its recovery in the order they happened.
    const off = this.feed.subscribe({
      synced: () =>
        // The view is read when delivered, so changes before then are in it (and not repeated).
        queueMicrotask(() => {
          if (!open || initialDone) return;
          initialDone = true;
          call({ initial: true, snapshots: this.feed.all() });
          // Joined during an outage: the view just delivered is the last good one, now stale.
          if (this.feed.lastError) tell(this.feed.lastError);
        }),
      change: (snap) => {
        if (initialDone) queueMicrotask(() => call({ initial: false, snapshot: copy(snap) }));
      },
      error: (err) =>
        queueMicrotask(() => {
          // Synced but the first view not delivered yet: it is told right after that view.
          if (this.feed.synced && !initialDone) return;
          tell(err);
        }),
      recovered: () =>
        queueMicrotask(() => {
          if (!open || !told) return;
          told = undefined;
          guard(() => opts.onRecover?.());
        }),
    });
    // Joined before the first view while the registry is failing: said at once.
    if (!this.feed.synced && this.feed.lastError) {
      const err = this.feed.lastError;
      queueMicrotask(() => {
        if (!this.feed.synced) tell(err);
      });
    }
    return {
      close: () => {
        if (!open) return;
        open = false;
        off();
      },
    };
  }
}

function copy(s: Snapshot): Snapshot {
  return { ...s, endpoints: s.endpoints.slice() };
}

/**
 * A registry-wide watch for adapters without one: listServices() every `intervalMs` (new services
 * appear within it; removed ones are reported with empty endpoints) plus one resolver.watch() per
 * listed service. The first view is reported once every listed service has its first snapshot.
 */
export function pollingWatchAll(
  list: () => Promise<string[]>,
  resolver: Pick<Resolver, 'watch'>,
  opts: { intervalMs?: number } = {},
): WatchAllFn {
  const intervalMs = opts.intervalMs ?? CATALOG_LIST_INTERVAL_MS;
  return (sink) => {
    const watches = new Map<string, { w: Watch; snap?: Snapshot }>();
    let reported = false;
    let failed = false;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const maybeReset = () => {
      if (reported || [...watches.values()].some((x) => !x.snap)) return;
      reported = true;
      sink.reset(new Map([...watches].map(([name, x]) => [name, x.snap!.endpoints])));
    };
    const tick = async () => {
      try {
        const names = new Set(await list());
        if (stopped) return;
        for (const name of names) {
          if (watches.has(name)) continue;
          const x: { w?: Watch; snap?: Snapshot } = {};
          x.w = resolver.watch(name, (s) => {
            if (stopped) return;
            x.snap = s;
            if (reported) {
              if (!s.stale) sink.update(name, s.endpoints, { revision: s.revision });
            } else maybeReset();
          });
          watches.set(name, x as { w: Watch; snap?: Snapshot });
        }
        for (const [name, x] of watches) {
          if (names.has(name)) continue;
          x.w.close();
          watches.delete(name);
          if (reported) sink.update(name, []);
        }
        maybeReset();
        if (failed && reported) {
          // Listing works again: the current view, compared by the feed (only differences are
          // reported), which also ends the error.
          failed = false;
          sink.reset(new Map([...watches].filter(([, x]) => x.snap).map(([name, x]) => [name, x.snap!.endpoints])));
        }
      } catch (err) {
        if (stopped) return;
        failed = true;
        sink.error(toWayfinderError(err, 'listing services failed'));
      } finally {
        if (!stopped) {
          timer = setTimeout(() => void tick(), intervalMs);
          timer.unref();
        }
      }
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
      for (const x of watches.values()) x.w.close();
      watches.clear();
    };
  };
}
