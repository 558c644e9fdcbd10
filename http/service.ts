import '../builtins'; // the built-in registries and balancers
import {
  ClosedError,
  Discovery,
  NoEndpointsError,
  normalizeConfig,
  resolveRegistry,
  RegistryUnavailableError,
  endpointKey,
  monotonicNow,
  resolveBalancer,
  silentLogger,
  type Balancer,
  type BalancerContext,
  type ConfigSource,
  type DiscoveryConfig,
  type Endpoint,
  type Logger,
  type Pick,
  type PickInfo,
  type Picker,
  type Resolver,
  type Snapshot,
  type Watch,
  type WayfinderError,
} from '../core';

/** What the HTTP clients need of a Discovery (a Discovery is one). */
export interface DiscoveryLike {
  resolver: Resolver;
  /** The registry, safe to log; named in errors. */
  description?: string;
  /** Used to tell "no such service" from "no endpoints" in errors, where the registry can list. */
  listServices?(): Promise<string[]>;
  capabilities?: { listServices?: boolean };
}

/** A balancer name, or `{ name, ...options }` (decorator options included), as in Discovery config. */
export type BalancerSpec = NonNullable<DiscoveryConfig['balancer']>;

export interface ServiceViewOptions {
  balancer: Balancer;
  logger: Logger;
  now?: () => number;
  random?: () => number;
  /** How long a pick waits for the service's first snapshot. */
  resolveTimeoutMs: number;
  /** Called after the endpoint set changes (before the new picker is used). */
  onEndpoints?(endpoints: Endpoint[], removed: string[]): void;
}

export const DEFAULT_RESOLVE_TIMEOUT_MS = 10_000;

/** Builds a fresh Balancer per service: balancers keep per-endpoint state (load, ejections). */
export function balancerFactory(spec: BalancerSpec | undefined): () => Balancer {
  const s = spec ?? 'round_robin';
  resolveBalancer(s); // throws ConfigError now, not at the first request
  return () => resolveBalancer(s);
}

/** A resolved pick, or the error to fail the request with. */
export type PickOutcome = { pick: Pick & { endpoint: Endpoint }; error?: undefined } | { error: WayfinderError };

/**
 * One service as the HTTP clients see it: one resolver watch (the resolver shares one registry
 * watch per service per process), the current endpoints, and the balancer's picker over them.
 *
 * Endpoints that refused a connection are held off for a backoff (1 s × 1.6^n, at most 30 s, ±20 %
 * jitter), like a gRPC subchannel in TRANSIENT_FAILURE: the picker is rebuilt without them and
 * rebuilt again at the first pick after the backoff ends. When every endpoint is held off the
 * picker uses all of them (fail by trying, not by guessing).
 */
export class ServiceView {
  readonly service: string;
  private readonly watch: Watch;
  private readonly ctx: BalancerContext;
  private readonly now: () => number;
  private endpoints: Endpoint[] = [];
  private picker?: Picker;
  private lastError?: WayfinderError;
  private ready = false;
  private waiters: ((ok: boolean) => void)[] = [];
  private readonly down = new Map<string, { until: number; n: number }>();
  private nextReadmit = Infinity;
  private unknownMessage?: Promise<string>;
  private closed = false;

  constructor(
    private readonly discovery: DiscoveryLike,
    service: string,
    private readonly opts: ServiceViewOptions,
  ) {
    this.service = service;
    this.now = opts.now ?? monotonicNow;
    this.ctx = { now: this.now, random: opts.random ?? Math.random, logger: opts.logger ?? silentLogger };
    this.watch = discovery.resolver.watch(service, (s) => this.onSnapshot(s));
  }

  /** Resolves once the first snapshot arrived (true) or the wait timed out / the view closed (false). */
  whenReady(): Promise<boolean> {
    if (this.ready) return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(false);
      }, this.opts.resolveTimeoutMs);
      t.unref?.();
      const done = (ok: boolean) => {
        clearTimeout(t);
        resolve(ok);
      };
      this.waiters.push(done);
    });
  }

  get isReady(): boolean {
    return this.ready;
  }

  /** The endpoint set of the last snapshot. */
  current(): readonly Endpoint[] {
    return this.endpoints;
  }

  /** True when the balancer reads PickInfo (ring_hash): callers then pass the pick key. */
  get usesPickInfo(): boolean {
    return this.opts.balancer.usesPickInfo === true;
  }

  /** Synchronous pick; only after whenReady() resolved true. */
  pick(info?: PickInfo): PickOutcome {
    if (this.nextReadmit <= this.now()) this.rebuild();
    const p = this.picker?.pick(info);
    if (p && p.endpoint) return { pick: p };
    if (this.endpoints.length === 0) return { error: this.noEndpointsError() };
    return {
      error: new NoEndpointsError(
        `service "${this.service}" (registry ${this.registry()}): the balancer chose no endpoint (${p?.reason ?? 'no picker'})`,
      ),
    };
  }

  /** The error for a service that never answered within the resolve timeout. */
  timeoutError(): WayfinderError {
    return new RegistryUnavailableError(
      `service "${this.service}": no answer from registry ${this.registry()} within ${this.opts.resolveTimeoutMs} ms`,
    );
  }

  /**
   * The NO_ENDPOINTS error naming the service and registry. Where the registry can list its
   * services and this one is not among them, the message says so (a typo is the usual cause).
   */
  async explainNoEndpoints(err: WayfinderError): Promise<WayfinderError> {
    if (!(err instanceof NoEndpointsError) || this.endpoints.length > 0) return err;
    if (!this.discovery.listServices || this.discovery.capabilities?.listServices === false) return err;
    this.unknownMessage ??= this.discovery.listServices().then(
      (names) => {
        if (names.includes(this.service)) return '';
        const known = names.slice(0, 10).join(', ') + (names.length > 10 ? `, … (${names.length})` : '');
        return `unknown service "${this.service}": registry ${this.registry()} has no such service (known: ${known || 'none'})`;
      },
      () => '',
    );
    const msg = await this.unknownMessage;
    return msg ? new NoEndpointsError(msg, { cause: err }) : err;
  }

  /** An endpoint refused a connection: hold it off for a backoff (no-op while already held off). */
  markUnreachable(e: Endpoint): void {
    const key = endpointKey(e);
    const t = this.now();
    const d = this.down.get(key);
    if (d && d.until > t) return;
    const n = (d?.n ?? 0) + 1;
    const backoff = Math.min(30_000, 1000 * 1.6 ** (n - 1)) * (0.8 + 0.4 * this.ctx.random());
    this.down.set(key, { until: t + backoff, n });
    this.rebuild();
  }

  /** An endpoint answered: forget its backoff history. */
  markReachable(e: Endpoint): void {
    if (this.down.size > 0) this.down.delete(endpointKey(e));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watch.close();
    for (const w of this.waiters.splice(0)) w(false);
  }

  private registry(): string {
    return this.discovery.description ?? 'registry';
  }

  private noEndpointsError(): WayfinderError {
    if (this.lastError && this.lastError.code !== 'BAD_ENTRY') return this.lastError;
    return new NoEndpointsError(`service "${this.service}" has no endpoints in registry ${this.registry()}`);
  }

  private onSnapshot(s: Snapshot): void {
    if (this.closed) return;
    this.lastError = s.error;
    const keys = new Set(s.endpoints.map(endpointKey));
    const removed = this.endpoints.map(endpointKey).filter((k) => !keys.has(k));
    for (const k of removed) this.down.delete(k);
    this.endpoints = s.endpoints;
    if (s.endpoints.length > 0) this.unknownMessage = undefined;
    this.opts.onEndpoints?.(s.endpoints, removed);
    this.rebuild();
    if (!this.ready) {
      this.ready = true;
      for (const w of this.waiters.splice(0)) w(true);
    }
  }

  private rebuild(): void {
    const t = this.now();
    let next = Infinity;
    const usable = this.endpoints.filter((e) => {
      const d = this.down.get(endpointKey(e));
      if (!d || d.until <= t) return true;
      next = Math.min(next, d.until);
      return false;
    });
    this.nextReadmit = next;
    this.picker = this.opts.balancer.build(usable.length > 0 ? usable : this.endpoints, this.ctx);
  }
}

/**
 * The registry of an HTTP client: a DiscoveryLike the user owns, or one built from a config
 * source on first use (validated now, so a bad config throws ConfigError at construction) and
 * closed by close().
 */
export class DiscoveryHandle {
  private discovery?: DiscoveryLike;
  private building?: Promise<DiscoveryLike>;
  private readonly owned: boolean;
  private closed = false;

  constructor(
    private readonly source: DiscoveryLike | ConfigSource | undefined,
    private readonly logger: Logger,
  ) {
    if (source && typeof source === 'object' && 'resolver' in source) {
      this.discovery = source;
      this.owned = false;
    } else {
      resolveRegistry(normalizeConfig(source as ConfigSource | undefined).registry);
      this.owned = true;
    }
  }

  /** Synchronously, when already available. */
  get ready(): DiscoveryLike | undefined {
    return this.discovery;
  }

  get(): Promise<DiscoveryLike> {
    if (this.discovery) return Promise.resolve(this.discovery);
    if (this.closed) return Promise.reject(new ClosedError('discovery'));
    this.building ??= Discovery.fromConfig(this.source as ConfigSource | undefined, { logger: this.logger }).then(
      (d) => {
        if (this.closed) {
          void d.close();
          throw new ClosedError('discovery');
        }
        return (this.discovery = d);
      },
    );
    return this.building;
  }

  /** Closes the Discovery if it was built here. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.owned && this.building)
      await this.building.then(
        (d) => (d as Discovery).close(),
        () => undefined,
      );
  }
}
