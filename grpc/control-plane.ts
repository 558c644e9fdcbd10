import * as grpc from '@grpc/grpc-js';
import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';
import {
  Discovery,
  hostPort,
  type Capabilities,
  type Catalog,
  type CatalogChange,
  type Logger,
  type Resolver,
  type Snapshot,
  type Watch,
} from '../core';

/**
 * What the registry-fed gRPC servers share (the grpclb balancer server and the xDS control plane):
 * where endpoint sets come from (EndpointFeed: the catalog, or one watch per service), host names
 * resolved to IP literals (both protocols carry addresses), and the bind / stop scaffolding of a
 * grpc-js Server whose streams end with the server.
 */

// ---- endpoint feeds ----

/**
 * Where a server gets endpoint sets from: the services its clients ask for, dropped when the last
 * asker leaves. Callbacks carry the service's complete current snapshot and whether the registry
 * lists the service (`listed: false`: it does not exist there), and are never called from inside
 * watch().
 */
export interface EndpointFeed {
  watch(service: string, onSnapshot: (s: Snapshot, listed: boolean) => void): Watch;
  close(): Promise<void>;
}

/** What a feed can be built from: a Discovery, or anything with a resolver (and maybe a catalog). */
export interface FeedSource {
  resolver: Pick<Resolver, 'watch'>;
  catalog?: Catalog;
  capabilities?: Pick<Capabilities, 'listServices' | 'registryWatch'>;
}

/**
 * `catalog`: every service from discovery.catalog (one registry-wide stream when the adapter has
 * one); `service`: one resolver.watch() per asked service; `auto` (default): the catalog when the
 * adapter has a registry-wide watch (etcd, file, Kubernetes, Consul, ZooKeeper), else one watch per
 * asked service (the catalog of the others lists services every 5 s and watches each of them anyway).
 */
export type FeedMode = 'auto' | 'catalog' | 'service';

/**
 * Whether a snapshot says the registry holds the service: at least one instance (of any health)
 * or a malformed entry. A service whose instances are all gone is not listed (etcd, file, memory,
 * Consul and Kubernetes list no such service, and the catalog drops it too).
 */
export function holdsService(s: Snapshot): boolean {
  return s.endpoints.length > 0 || s.error?.code === 'BAD_ENTRY';
}

/** The feed over a resolver: one watch per asked service (the resolver shares it per service). */
export function resolverFeed(resolver: Pick<Resolver, 'watch'>): EndpointFeed {
  return {
    watch: (service, onSnapshot) => resolver.watch(service, (s) => onSnapshot(s, holdsService(s))),
    close: async () => {},
  };
}

/**
 * The feed over the catalog: one catalog watch for every asked service, opened with the first
 * asker and closed by close(). Nothing is delivered before the catalog's first complete view; then
 * a service absent from it is answered at once as not listed (empty snapshot). A removed service
 * (empty endpoints, no error) leaves the view. On a registry error the last view keeps serving (the
 * Discovery logs the error; the servers take no catalog onError: nothing of theirs changes with it).
 */
export function catalogFeed(catalog: Catalog): EndpointFeed {
  type Cb = (s: Snapshot, listed: boolean) => void;
  const view = new Map<string, Snapshot>();
  const asked = new Map<string, Set<Cb>>();
  let synced = false;
  let w: Watch | undefined;
  const deliver = (service: string, cbs: Iterable<Cb>) => {
    const s = view.get(service);
    const snap = s ?? { service, endpoints: [] };
    for (const cb of [...cbs]) cb(snap, s !== undefined);
  };
  const onChange = (c: CatalogChange) => {
    if (c.initial) {
      view.clear();
      for (const [name, s] of c.snapshots) if (holdsService(s)) view.set(name, s);
      synced = true;
      for (const [service, cbs] of asked) deliver(service, cbs);
      return;
    }
    const s = c.snapshot;
    if (holdsService(s)) view.set(s.service, s);
    else view.delete(s.service);
    const cbs = asked.get(s.service);
    if (synced && cbs) deliver(s.service, cbs);
  };
  return {
    watch(service, onSnapshot) {
      w ??= catalog.watch(onChange);
      const cb: Cb = (s, listed) => onSnapshot(s, listed);
      let cbs = asked.get(service);
      if (!cbs) asked.set(service, (cbs = new Set()));
      cbs.add(cb);
      if (synced) queueMicrotask(() => cbs.has(cb) && deliver(service, [cb]));
      return {
        close() {
          cbs.delete(cb);
          if (cbs.size === 0 && asked.get(service) === cbs) asked.delete(service);
        },
      };
    },
    async close() {
      w?.close();
      w = undefined;
      asked.clear();
      view.clear();
      synced = false;
    },
  };
}

/** The feed a server uses for `mode` (see FeedMode). */
export function endpointFeed(source: FeedSource, mode: FeedMode = 'auto'): EndpointFeed {
  const canCatalog =
    !!source.catalog &&
    (!source.capabilities || !!source.capabilities.listServices || !!source.capabilities.registryWatch);
  if (mode === 'catalog') {
    if (!canCatalog) throw new TypeError('feed "catalog": this registry has no catalog (it cannot list services)');
    return catalogFeed(source.catalog!);
  }
  if (mode === 'auto' && canCatalog && (!source.capabilities || source.capabilities.registryWatch))
    return catalogFeed(source.catalog!);
  return resolverFeed(source.resolver);
}

export function checkFeedMode(fn: string, mode: unknown): FeedMode {
  if (mode === undefined) return 'auto';
  if (mode === 'auto' || mode === 'catalog' || mode === 'service') return mode;
  throw new TypeError(`${fn}: "feed" must be "auto", "catalog" or "service" (got ${JSON.stringify(mode)})`);
}

// ---- addresses ----

/**
 * Host names resolved to IP literals (IP literals kept as they are). A name that does not resolve
 * is left out of the map and reported through onFail.
 */
export async function ipAddresses(
  hosts: Iterable<string>,
  onFail: (host: string, err: Error) => void,
): Promise<Map<string, string>> {
  const ips = new Map<string, string>();
  await Promise.all(
    [...new Set(hosts)].map(async (h) => {
      if (isIP(h)) return void ips.set(h, h);
      try {
        ips.set(h, (await dns.lookup(h)).address);
      } catch (err) {
        onFail(h, err as Error);
      }
    }),
  );
  return ips;
}

// ---- the server ----

/** Where a registry-fed server reads the registry, and where it listens. */
export interface RegistryServerOptions {
  /**
   * Where services are resolved: a Discovery (or anything with a resolver, and maybe a catalog),
   * owned by the caller.
   */
  discovery?: FeedSource;
  /** Or a registry URL / config (Discovery.fromConfig); that Discovery is closed by stop(). */
  registry?: string;
  /** Port to bind; 0 (default) picks a free one. */
  port?: number;
  /** Address to bind. Default 0.0.0.0. */
  host?: string;
  credentials?: grpc.ServerCredentials;
  /**
   * Where endpoint sets come from: `catalog` (discovery.catalog: one registry-wide stream when the
   * adapter has one), `service` (one resolver.watch() per asked service), or `auto` (default: the
   * catalog when the adapter has a registry-wide watch, else per service). See FeedMode.
   */
  feed?: FeedMode;
}

/** A stream the server ends when it stops. */
interface EndableStream {
  end(): void;
  on(event: string, fn: (...args: unknown[]) => void): unknown;
}

/**
 * One registry-fed grpc-js server: its Discovery (owned when built from a registry URL), its feed,
 * its open streams, bind, and stop (end the streams, shut down, release) or kill (a crash).
 */
export class RegistryServer {
  readonly server = new grpc.Server();
  private readonly calls = new Set<EndableStream>();
  private stopping?: Promise<void>;
  private onRelease: (() => void | Promise<void>)[] = [];
  port = 0;
  host = '';

  private constructor(
    private readonly label: string,
    readonly feed: EndpointFeed,
    private readonly owned: Discovery | undefined,
    private readonly logger: Logger,
  ) {}

  /** Checks the source options (exactly one of discovery and registry) and opens the feed. */
  static async open(fn: string, label: string, opts: RegistryServerOptions, logger: Logger): Promise<RegistryServer> {
    if (!opts.discovery === !opts.registry)
      throw new TypeError(`${fn}: give exactly one of "discovery" and "registry"`);
    const mode = checkFeedMode(fn, opts.feed);
    const owned = opts.registry ? await Discovery.fromConfig(opts.registry, { logger }) : undefined;
    try {
      return new RegistryServer(label, endpointFeed(owned ?? opts.discovery!, mode), owned, logger);
    } catch (e) {
      await owned?.close();
      throw e;
    }
  }

  /** Runs `fn` when the server is released (after stop or kill). */
  onClose(fn: () => void | Promise<void>): void {
    this.onRelease.push(fn);
  }

  /** Binds host:port (0: a free port); on failure releases everything and throws. */
  async listen(opts: Pick<RegistryServerOptions, 'host' | 'port' | 'credentials'>): Promise<void> {
    this.host = opts.host ?? '0.0.0.0';
    try {
      this.port = await new Promise<number>((resolve, reject) =>
        this.server.bindAsync(
          hostPort(this.host, opts.port ?? 0),
          opts.credentials ?? grpc.ServerCredentials.createInsecure(),
          (err, p) => (err ? reject(err) : resolve(p)),
        ),
      );
    } catch (e) {
      await this.release();
      throw e;
    }
  }

  /** Streams open now. */
  get streams(): number {
    return this.calls.size;
  }

  /**
   * Tracks a stream until it ends in any form (half-close, cancel, error, close): `cleanup` runs
   * once, and a client's half-close is answered by ending ours. Returns that once-only cleanup.
   */
  track(call: EndableStream, cleanup: () => void): () => void {
    this.calls.add(call);
    let done = false;
    const once = () => {
      if (done) return;
      done = true;
      this.calls.delete(call);
      cleanup();
    };
    call.on('end', () => {
      once();
      call.end();
    });
    call.on('cancelled', once);
    call.on('error', once);
    call.on('close', once);
    return once;
  }

  /**
   * Ends every stream, shuts down (connections cut after `graceMs` when given: clients may keep
   * their streams open beyond the end), then releases the feed and the owned Discovery.
   */
  stop(graceMs?: number): Promise<void> {
    this.stopping ??= (async () => {
      for (const c of [...this.calls]) c.end();
      await new Promise<void>((resolve) => {
        const t =
          graceMs === undefined ? undefined : setTimeout(() => (this.server.forceShutdown(), resolve()), graceMs);
        this.server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
      await this.release();
    })();
    return this.stopping;
  }

  /** A crash: connections cut now. */
  kill(): void {
    this.server.forceShutdown();
    this.stopping ??= this.release();
  }

  private async release(): Promise<void> {
    for (const fn of this.onRelease.splice(0)) await fn();
    await this.feed.close();
    await this.owned?.close().catch((err) => this.logger.warn({ err }, `${this.label}: closing the registry failed`));
  }
}
