import type { FeedListener, RegistryFeed } from './catalog';
import { BadEntryError, ClosedError, toWayfinderError, type BadEntry, type WayfinderError } from './errors';
import type { Endpoint, Logger, Resolver, Snapshot, Watch, WatchMode } from './model';
import { telemetry } from './telemetry';
import { sameEndpoints, silentLogger } from './util';

/** What an adapter's watch loop reports into. Calls after the subscription is closed are ignored. */
export interface SourceSink {
  /**
   * A complete, validated set. `bad` lists entries skipped as malformed (reported as BAD_ENTRY);
   * `serviceConfig` is the service config the registry publishes with it (Snapshot.serviceConfig).
   */
  update(endpoints: Endpoint[], opts?: UpdateOptions): void;
  /** The registry failed; the last good set is kept and re-delivered with this error attached. */
  error(err: WayfinderError): void;
}

/**
 * The per-service watch loop an adapter implements. Called once per service per resolver however
 * many watchers there are; the returned function stops it (called when the last watcher leaves).
 */
export type SubscribeFn = (service: string, sink: SourceSink) => () => void | Promise<void>;

export interface ServiceStatus {
  service: string;
  watchers: number;
  endpoints: Endpoint[];
  revision?: string;
  lastUpdate?: string;
  lastError?: { code: string; message: string; at: string };
  stale: boolean;
  /** Where the snapshots come from now: the service's own watch or the registry-wide stream. */
  source: 'service' | 'registry';
}

/**
 * `watch=auto` switches a resolver to the registry-wide stream when it watches more than this many
 * services, and back to per-service watches below half of it.
 */
export const REGISTRY_WATCH_THRESHOLD = 32;

/** What comes with a complete set besides its endpoints. */
export interface UpdateOptions {
  revision?: string;
  bad?: BadEntry[];
  serviceConfig?: Record<string, unknown>;
}

type Source = 'service' | 'registry';
interface View extends UpdateOptions {
  endpoints: Endpoint[];
}

interface Entry {
  service: string;
  listeners: Set<(s: Snapshot) => void>;
  current?: Snapshot;
  hasGood: boolean;
  good: Endpoint[];
  revision?: string;
  /** The service config delivered with the last good set. */
  serviceConfig?: Record<string, unknown>;
  stop?: () => void | Promise<void>;
  active: boolean;
  lastUpdate?: Date;
  lastError?: { err: WayfinderError; at: Date };
  /** Which source's sets are delivered; `target` is the source being switched to. */
  source: Source;
  target?: Source;
  /** The latest set of each running source, compared to hand over without a lost or repeated snapshot. */
  views: Partial<Record<Source, View>>;
}

/** Registry service names; '_' and ':' allowed for DNS forms (`_grpc._tcp.name`, `name:port`). */
const SERVICE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._:-]{0,252}$/;

export function checkServiceName(service: unknown, where = 'watch()'): asserts service is string {
  if (typeof service !== 'string' || !SERVICE_NAME.test(service)) {
    throw new TypeError(
      `${where}: service name must match [A-Za-z0-9_][A-Za-z0-9._:-]* (at most 253 characters), got ${JSON.stringify(service)}`,
    );
  }
}

/**
 * Resolver.resolve() in terms of watch(): the first snapshot's endpoints (copies), or its error
 * when the registry failed before any good set; rejects with the signal's reason on abort.
 */
export function resolveFirst(
  resolver: Pick<Resolver, 'watch'>,
  service: string,
  opts: { signal?: AbortSignal } = {},
): Promise<Endpoint[]> {
  checkServiceName(service, 'resolve()');
  return new Promise((resolve, reject) => {
    const { signal } = opts;
    if (signal?.aborted) return reject(signal.reason);
    const finish = () => {
      signal?.removeEventListener('abort', onAbort);
      queueMicrotask(() => w.close()); // runs after watch() below has returned and w is set
    };
    const onAbort = () => {
      finish();
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const w: Watch = resolver.watch(service, (s) => {
      finish();
      if (s.error && s.endpoints.length === 0 && s.error.code !== 'BAD_ENTRY') reject(s.error);
      else resolve(s.endpoints.map((e) => ({ ...e, metadata: { ...e.metadata } })));
    });
  });
}

/**
 * The shared resolver behind every adapter: one registry watch per service (reference-counted,
 * stopped with the last watcher), complete snapshots only, duplicate snapshots suppressed, the last
 * good set kept across registry errors, and every callback delivered asynchronously.
 */
export class WatchResolver implements Resolver {
  private readonly entries = new Map<string, Entry>();
  private closed = false;
  private readonly logger: Logger;

  constructor(
    private readonly name: string,
    private readonly subscribe: SubscribeFn,
    opts: { logger?: Logger; refresh?: (service: string) => void; onClose?: () => Promise<void> | void } = {},
  ) {
    this.logger = opts.logger ?? silentLogger;
    this.refreshFn = opts.refresh;
    this.onClose = opts.onClose;
  }
  private readonly refreshFn?: (service: string) => void;
  private readonly onClose?: () => Promise<void> | void;

  watch(service: string, onSnapshot: (s: Snapshot) => void): Watch {
    checkServiceName(service);
    if (typeof onSnapshot !== 'function') throw new TypeError('watch(): onSnapshot must be a function');
    if (this.closed) throw new ClosedError(`${this.name} resolver`);
    let entry = this.entries.get(service);
    if (!entry) {
      entry = { service, listeners: new Set(), hasGood: false, good: [], active: true, source: 'service', views: {} };
      this.entries.set(service, entry);
      if (this.feedOff && this.registryOn && this.covers(service)) {
        entry.source = 'registry';
        if (this.feed!.synced) this.fromSource(entry, 'registry', feedView(this.feed!, service));
        else if (this.feed!.lastError) this.failFrom(entry, 'registry', this.feed!.lastError);
      } else this.startService(entry);
      this.rebalance();
    }
    const e = entry;
    // Wrap so the same function can watch twice and each Watch closes only itself.
    const listener = (s: Snapshot) => onSnapshot(s);
    e.listeners.add(listener);
    if (e.current) {
      const snap = e.current;
      queueMicrotask(() => {
        if (e.listeners.has(listener)) this.deliver(listener, snap);
      });
    }
    let open = true;
    return {
      close: () => {
        if (!open) return;
        open = false;
        e.listeners.delete(listener);
        if (e.listeners.size === 0 && e.active) void this.stopEntry(e); // never rejects: logs its own failure
      },
    };
  }

  resolve(service: string, opts: { signal?: AbortSignal } = {}): Promise<Endpoint[]> {
    return resolveFirst(this, service, opts);
  }

  refresh(service: string): void {
    if (!this.closed && this.entries.has(service)) this.refreshFn?.(service);
  }

  /** A JSON-able view of every watched service, for admin endpoints and the CLI. */
  status(): ServiceStatus[] {
    return [...this.entries.values()].map((e) => ({
      service: e.service,
      watchers: e.listeners.size,
      endpoints: e.good,
      revision: e.revision,
      lastUpdate: e.lastUpdate?.toISOString(),
      lastError: e.lastError
        ? { code: e.lastError.err.code, message: e.lastError.err.message, at: e.lastError.at.toISOString() }
        : undefined,
      stale: !!e.current?.stale,
      source: e.source,
    }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const stops = [...this.entries.values()].map((e) => this.stopEntry(e));
    this.feedOff?.();
    this.feedOff = undefined;
    await Promise.allSettled(stops);
    await this.onClose?.();
  }

  /** Delivers a source's complete set (the shared rules: dedupe, BAD_ENTRY, last good set). */
  private apply(e: Entry, endpoints: Endpoint[], opts?: UpdateOptions): void {
    const bad = opts?.bad?.length ? new BadEntryError(opts.bad) : undefined;
    if (bad) this.logger.warn({ service: e.service, code: bad.code, entries: bad.entries }, bad.message);
    const serviceConfig = opts?.serviceConfig;
    const changed =
      !e.hasGood ||
      !sameEndpoints(e.good, endpoints) ||
      !!e.current?.error !== !!bad ||
      (bad && e.current?.error?.message !== bad.message) ||
      JSON.stringify(e.serviceConfig) !== JSON.stringify(serviceConfig);
    e.hasGood = true;
    e.good = endpoints;
    e.revision = opts?.revision;
    e.serviceConfig = serviceConfig;
    e.lastUpdate = new Date();
    if (!changed) return;
    const snap: Snapshot = { service: e.service, endpoints, revision: opts?.revision };
    if (bad) snap.error = bad;
    if (serviceConfig) snap.serviceConfig = serviceConfig;
    telemetry.snapshot(this.name, e.service, endpoints.length);
    this.publish(e, snap);
  }

  private fail(e: Entry, err: WayfinderError): void {
    const repeat = e.current?.error?.code === err.code && e.current?.error?.message === err.message;
    e.lastError = { err, at: new Date() };
    telemetry.registryError(this.name, err.code);
    this.logger.warn({ service: e.service, code: err.code }, `${this.name}: ${err.message}`);
    if (repeat) return;
    const snap: Snapshot = { service: e.service, endpoints: e.good, revision: e.revision, error: err, stale: true };
    if (e.serviceConfig) snap.serviceConfig = e.serviceConfig;
    this.publish(e, snap);
  }

  /** A set from one source: delivered when it is the entry's source; then a pending switch is tried. */
  private fromSource(e: Entry, src: Source, view: View): void {
    if (!e.active) return;
    if (e.source === src || e.target === src) e.views[src] = view;
    if (e.source === src) this.apply(e, view.endpoints, view);
    this.tryHandoff(e);
  }

  private failFrom(e: Entry, src: Source, err: WayfinderError): void {
    if (e.active && e.source === src) this.fail(e, err);
  }

  /**
   * Switches an entry to its target source once both sources hold the same set (so the switch
   * delivers nothing, loses nothing and repeats nothing), or when nothing was delivered yet.
   */
  private tryHandoff(e: Entry): void {
    const t = e.target;
    const v = t && e.views[t];
    if (!t || !v) return;
    if (e.hasGood && !sameEndpoints(e.good, v.endpoints)) return;
    const old = e.source;
    e.source = t;
    e.target = undefined;
    e.views = { [t]: v };
    this.apply(e, v.endpoints, v);
    if (old === 'service') void this.stopService(e);
    else this.releaseFeedIfUnused();
  }

  private startService(e: Entry): void {
    const sink: SourceSink = {
      update: (endpoints, opts) => this.fromSource(e, 'service', { endpoints, ...opts }),
      error: (err) => this.failFrom(e, 'service', err),
    };
    let stop: (() => void | Promise<void>) | undefined;
    try {
      stop = this.subscribe(e.service, sink);
    } catch (err) {
      // A subscribe that throws synchronously is a bug in the adapter; report it as a snapshot error.
      queueMicrotask(() => sink.error(toWayfinderError(err, `${this.name}: watching ${e.service} failed`)));
    }
    // Updates after this subscription is replaced are ignored by fromSource (source/target checks).
    e.stop = stop;
  }

  private async stopService(e: Entry): Promise<void> {
    const stop = e.stop;
    e.stop = undefined;
    try {
      await stop?.();
    } catch (err) {
      this.logger.warn({ service: e.service, err }, `${this.name}: stopping a watch failed`);
    }
  }

  // ---- registry-wide mode ----

  private feed?: RegistryFeed;
  private mode: WatchMode = 'service';
  private threshold = REGISTRY_WATCH_THRESHOLD;
  private covers: (service: string) => boolean = () => true;
  private feedOff?: () => void;
  /** True while the resolver wants the registry-wide stream (the feed may outlive it during a switch). */
  private registryOn = false;

  /**
   * Lets this resolver be served from a registry-wide stream (core/catalog.ts): always
   * (`registry`), never (`service`), or when it watches more than `threshold` services (`auto`).
   */
  useRegistryFeed(
    feed: RegistryFeed,
    mode: WatchMode,
    opts: { threshold?: number; covers?: (service: string) => boolean } = {},
  ): void {
    this.feed = feed;
    this.covers = opts.covers ?? (() => true);
    const threshold = opts.threshold ?? REGISTRY_WATCH_THRESHOLD;
    this.mode = mode;
    this.threshold = threshold;
    this.rebalance();
  }

  /** The watch mode in force now: 'service' or 'registry'. */
  get watchSource(): Source {
    return this.registryOn ? 'registry' : 'service';
  }

  private rebalance(): void {
    if (!this.feed || this.closed) return;
    const n = this.entries.size;
    const want =
      this.mode === 'registry' ||
      (this.mode === 'auto' && (this.registryOn ? n >= this.threshold / 2 : n > this.threshold));
    if (want === this.registryOn) return;
    this.registryOn = want;
    if (want) {
      this.logger.info({ services: n }, `${this.name}: watching the whole registry through one stream`);
      this.feedOff ??= this.feed.subscribe(this.feedListener);
      for (const e of this.entries.values()) {
        if (e.source === 'registry' || !this.covers(e.service)) continue;
        e.target = 'registry';
        if (this.feed.synced) this.fromSource(e, 'registry', feedView(this.feed, e.service));
      }
    } else {
      this.logger.info({ services: n }, `${this.name}: back to one watch per service`);
      for (const e of this.entries.values()) {
        if (e.source === 'service') {
          e.target = undefined;
          delete e.views.registry;
          continue;
        }
        e.target = 'service';
        this.startService(e);
      }
      this.releaseFeedIfUnused();
    }
  }

  private releaseFeedIfUnused(): void {
    if (this.registryOn || !this.feedOff) return;
    for (const e of this.entries.values()) if (e.source === 'registry' || e.target === 'registry') return;
    this.feedOff();
    this.feedOff = undefined;
  }

  private readonly feedListener: FeedListener = {
    synced: () => {
      for (const e of [...this.entries.values()])
        if (e.source === 'registry' || e.target === 'registry')
          this.fromSource(e, 'registry', feedView(this.feed!, e.service));
    },
    change: (snap) => {
      const e = this.entries.get(snap.service);
      if (e) this.fromSource(e, 'registry', snapView(snap));
    },
    error: (err) => {
      for (const e of this.entries.values()) this.failFrom(e, 'registry', err);
    },
  };

  private publish(e: Entry, snap: Snapshot): void {
    e.current = snap;
    const listeners = [...e.listeners];
    queueMicrotask(() => {
      for (const l of listeners) if (e.listeners.has(l) && e.current === snap) this.deliver(l, snap);
    });
  }

  private deliver(l: (s: Snapshot) => void, snap: Snapshot): void {
    try {
      l({ ...snap, endpoints: snap.endpoints.slice() });
    } catch (err) {
      this.logger.error({ service: snap.service, err }, `${this.name}: a watch callback threw; ignored`);
    }
  }

  private async stopEntry(e: Entry): Promise<void> {
    e.active = false;
    e.listeners.clear();
    telemetry.unwatched(this.name, e.service);
    if (this.entries.get(e.service) === e) this.entries.delete(e.service);
    e.target = undefined;
    if (!this.closed) {
      this.rebalance();
      this.releaseFeedIfUnused();
    }
    await this.stopService(e);
  }
}

function snapView(s: Snapshot): View {
  const bad = s.error instanceof BadEntryError ? s.error.entries : undefined;
  return { endpoints: s.endpoints, revision: s.revision, bad, serviceConfig: s.serviceConfig };
}

/** A service's set in the feed: absent means no endpoints. */
function feedView(feed: RegistryFeed, service: string): View {
  const s = feed.get(service);
  return s ? snapView(s) : { endpoints: [] };
}
