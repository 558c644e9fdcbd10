import type { WayfinderError } from './errors';

export type Health = 'passing' | 'warning' | 'critical';

/** One instance of a service. Identity is `host:port`. */
export interface Endpoint {
  /** Stable per instance (e.g. "10.0.0.5:50051" or a uuid). */
  id: string;
  host: string;
  port: number;
  /** Positive integer, default 1. */
  weight?: number;
  /** Locality, when the registry knows it. */
  zone?: string;
  metadata: Record<string, string>;
  /** Adapters drop `critical` endpoints by default. */
  health?: Health;
}

/**
 * The complete set of a service's endpoints (never a delta). When the registry fails the resolver
 * keeps delivering the last good set with `error` attached; it never delivers an empty set because
 * of a transport error.
 */
export interface Snapshot {
  service: string;
  endpoints: Endpoint[];
  revision?: string;
  error?: WayfinderError;
  /** True when the endpoints are the last known good set, not confirmed by the registry just now. */
  stale?: boolean;
  /**
   * The service config the registry publishes for this service: a gRPC JSON service config (e.g.
   * `{"loadBalancingConfig":[{"wayfinder_p2c":{}}]}`), already selected for this client. Absent
   * when the registry publishes none. Set by the dns adapter (gRFC A2 `_grpc_config.<name>` TXT
   * records); the gRPC bridge hands it to grpc-js. Other consumers may ignore it.
   */
  serviceConfig?: Record<string, unknown>;
}

export interface Watch {
  close(): void;
}

export interface Resolver {
  /** The first callback is always asynchronous, never from inside watch(). */
  watch(service: string, onSnapshot: (s: Snapshot) => void): Watch;
  /** The current endpoints (first snapshot). Rejects only if the registry fails before any good set. */
  resolve(service: string, opts?: { signal?: AbortSignal }): Promise<Endpoint[]>;
  /** Ask for a fresh look now (poll-based adapters); push-based adapters may ignore it. */
  refresh?(service: string): void;
  close(): Promise<void>;
}

export interface InstanceSpec {
  service: string;
  host: string;
  port: number;
  id?: string;
  weight?: number;
  zone?: string;
  metadata?: Record<string, string>;
}

export type RegistrationEvent = 'lost' | 'restored';

export interface Registration {
  readonly id: string;
  readonly service: string;
  /** Change weight, zone or metadata (host/port/service are identity and cannot change). */
  update(p: Partial<InstanceSpec>): Promise<void>;
  /** Remove the instance from the registry now. Idempotent. */
  deregister(): Promise<void>;
  on(event: RegistrationEvent, fn: (err?: Error) => void): void;
  off?(event: RegistrationEvent, fn: (err?: Error) => void): void;
}

export interface Registrar {
  /** Registers and keeps the instance alive (TTL, lease or session) until deregistered or closed. */
  register(instance: InstanceSpec): Promise<Registration>;
  /** Deregisters everything it registered. */
  close(): Promise<void>;
}

// ---- balancing ----

export interface PickInfo {
  /** A routing key for sticky balancers (e.g. a user id). */
  key?: string;
  metadata?: Record<string, string>;
}

export interface PickDone {
  (result: { ok: boolean; latencyMs: number }): void;
}

export type Pick =
  | {
      endpoint: Endpoint;
      /**
       * Called by callers that know when the call really starts (the gRPC bridge, from grpc-js's
       * onCallStarted: grpc-js may pick several times before a call starts). Only when the context
       * has `explicitStart: true`; otherwise balancers count the call as started at pick().
       */
      started?(): void;
      /** Called once when the call ends. */
      done: PickDone;
    }
  | { endpoint: null; reason: 'no-endpoints' | 'drop' };

/** An immutable snapshot of a balancing decision. pick() never throws and never blocks. */
export interface Picker {
  pick(info?: PickInfo): Pick;
}

export interface Logger {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

export interface BalancerContext {
  /** Milliseconds, monotonic. Injected so balancers are deterministic under test. */
  now(): number;
  /** Uniform in [0, 1). Injected so balancers are deterministic under test. */
  random(): number;
  logger: Logger;
  /** The caller will call Pick.started() when each call really starts (see Pick). */
  explicitStart?: boolean;
}

export interface Balancer {
  readonly name: string;
  /**
   * True when pickers read PickInfo.key/metadata (sticky balancers). Callers skip extracting them
   * per call otherwise (the gRPC bridge reads the `wayfinder-pick-key` metadata only then).
   */
  readonly usesPickInfo?: boolean;
  /** Called on every change of the endpoint set; the returned picker is immutable. */
  build(endpoints: Endpoint[], ctx: BalancerContext): Picker;
}

export interface Capabilities {
  /** How changes are learnt: 'push' (watch/stream) or 'poll'. */
  watch: 'push' | 'poll';
  /** Has a registrar. */
  register: boolean;
  /** Dead registrants disappear by themselves (a TTL, a lease or an ephemeral session). */
  ttl: boolean;
  weights: boolean;
  zones: boolean;
  metadata: boolean;
  /** Can list service names. */
  listServices: boolean;
  /**
   * Can watch the whole registry through one stream (AdapterInstance.watchAll): `watch=registry`
   * and the automatic switch (`watch=auto`) need it; the catalog works either way.
   */
  registryWatch?: boolean;
}

/** How a resolver learns changes: one watch per service, one registry-wide stream, or chosen by count. */
export type WatchMode = 'auto' | 'service' | 'registry';

/**
 * What discovery.catalog.watch() delivers: first a complete view of every service, then one change
 * per service that changed (a removed service: empty endpoints).
 */
export type CatalogChange =
  { initial: true; snapshots: ReadonlyMap<string, Snapshot> } | { initial: false; snapshot: Snapshot };

/**
 * Registry health for a catalog watcher (discovery.catalog.watch's second argument). Changes keep
 * their shape; these say when the view stopped (and started again) following the registry.
 */
export interface CatalogWatchOptions {
  /**
   * The registry failed: the last view is kept (nothing is removed) and is stale until onRecover.
   * Called once per distinct error, asynchronously; also before the first view when the registry
   * cannot be read at all, and after the first view for a watcher that joins during an outage.
   */
  onError?(err: WayfinderError): void;
  /**
   * The registry is followed again after onError: every change missed meanwhile has been delivered
   * just before this call (or is in the first view, when the outage came before it).
   */
  onRecover?(): void;
}

/** The whole registry as a stream of snapshots (discovery.catalog). */
export interface Catalog {
  /** The first callback (the complete view) is always asynchronous, never from inside watch(). */
  watch(onChange: (c: CatalogChange) => void, opts?: CatalogWatchOptions): Watch;
}
