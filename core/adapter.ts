import type { BadEntry, WayfinderError } from './errors';
import type { Balancer, Capabilities, Endpoint, Logger, Registrar, Resolver } from './model';
import type { OptionsSchema, ParsedUrl } from './options';

/** What an adapter's create() gets besides its options. */
export interface AdapterContext {
  logger: Logger;
  /** ms, monotonic; injectable for tests. */
  now(): number;
  random(): number;
  /**
   * Wall-clock ms since the epoch (default Date.now). Only for times other processes read, such as
   * heartbeats in a shared file; intervals and deadlines use the monotonic now().
   */
  wallNow?(): number;
}

/** What an adapter instance provides. */
export interface AdapterInstance {
  resolver: Resolver;
  registrar?: Registrar;
  /** Service names, where the registry can enumerate them (capabilities.listServices). */
  listServices?(): Promise<string[]>;
  /**
   * The registry-wide watch (capabilities.registryWatch): one stream for every service. Core calls
   * it at most once at a time per Discovery (shared by the catalog and the resolver's registry
   * mode); the returned function stops it.
   */
  watchAll?: WatchAllFn;
  /**
   * Which resolver.watch() names the registry-wide stream can serve (default: every name). Names
   * it cannot (e.g. a Kubernetes target with a port or another namespace) keep their own watch.
   */
  registryWatchCovers?(service: string): boolean;
  /** Releases clients shared by resolver and registrar (called after both are closed). */
  close?(): Promise<void>;
}

/**
 * What a registry-wide watch reports into. The first call is reset() (updates before it are
 * ignored); after a resync (etcd compaction, Kubernetes 410, a reconnect) the adapter calls reset()
 * again with the new complete view and core works out which services changed or went away.
 */
export interface RegistrySink {
  /** The complete registry: every service with its complete, validated set. Absent services are gone. */
  reset(
    services: ReadonlyMap<string, Endpoint[]>,
    opts?: { revision?: string; bad?: ReadonlyMap<string, BadEntry[]> },
  ): void;
  /** One service's complete set (empty: it has no endpoints left). */
  update(service: string, endpoints: Endpoint[], opts?: { revision?: string; bad?: BadEntry[] }): void;
  /** The registry failed; every service keeps its last good set, marked stale. */
  error(err: WayfinderError): void;
}

export type WatchAllFn = (sink: RegistrySink) => () => void | Promise<void>;

export interface AdapterDefinition<O extends object = object> {
  /** Lowercase URL scheme, e.g. "etcd". */
  scheme: string;
  /** Other schemes accepted for the same adapter (e.g. "zookeeper" for "zk"). */
  aliases?: string[];
  /** One line for docs and `--help`. */
  description: string;
  /** Example URLs, shown in the generated configuration reference. */
  examples?: string[];
  capabilities: Capabilities;
  /** Every option, with type, default and doc: the one place options are validated. */
  options: OptionsSchema;
  /**
   * The design's original form, still supported: the adapter parses its URL itself (a WHATWG URL,
   * so one host per URL) and validates what it returns; used instead of `options`/`fromUrl` when
   * given. Throw ConfigError naming the field. With an object config, the object's properties
   * (minus `scheme`) are passed to create() as they are.
   */
  parse?(url: URL): O;
  /**
   * Maps a parsed URL to raw options (validated afterwards against `options`).
   * Default: `{ hosts: "h1:p1,h2:p2" (when the schema has "hosts"), path (when it has "path"), ...params }`.
   */
  fromUrl?(url: ParsedUrl): Record<string, unknown>;
  /** Cross-field checks on validated options; throw ConfigError naming the field. */
  validate?(options: O): void;
  create(options: O, ctx: AdapterContext): AdapterInstance | Promise<AdapterInstance>;
}

/** A balancer factory gets the validated config given in service config or Discovery config. */
export interface BalancerDefinition<C = object> {
  name: string;
  aliases?: string[];
  description: string;
  options: OptionsSchema;
  create(config: C): Balancer;
}

/** Identity function that type-checks and freezes an adapter definition. */
export function defineAdapter<O extends object = object>(
  def: Omit<AdapterDefinition<O>, 'options'> & { options?: OptionsSchema },
): AdapterDefinition<O> {
  if (!def || typeof def !== 'object') throw new TypeError('defineAdapter(): definition must be an object');
  if (typeof def.scheme !== 'string' || !/^[a-z][a-z0-9+.-]*$/.test(def.scheme))
    throw new TypeError(`defineAdapter(): "scheme" must be a lowercase URL scheme, got ${JSON.stringify(def.scheme)}`);
  if (typeof def.create !== 'function')
    throw new TypeError(`defineAdapter(${def.scheme}): "create" must be a function`);
  if (!def.capabilities || typeof def.capabilities !== 'object')
    throw new TypeError(`defineAdapter(${def.scheme}): "capabilities" is required`);
  if (def.parse !== undefined && typeof def.parse !== 'function')
    throw new TypeError(`defineAdapter(${def.scheme}): "parse" must be a function`);
  if (!def.parse && (!def.options || typeof def.options !== 'object'))
    throw new TypeError(
      `defineAdapter(${def.scheme}): an "options" schema (or a parse(url) function) is required (use {} for no options)`,
    );
  return Object.freeze({ ...def, options: def.options ?? {} });
}

export function defineBalancer<C>(def: BalancerDefinition<C>): BalancerDefinition<C> {
  if (!def || typeof def.name !== 'string' || !/^[a-z][a-z0-9_]*$/.test(def.name))
    throw new TypeError(`defineBalancer(): "name" must be lowercase snake_case, got ${JSON.stringify(def?.name)}`);
  if (typeof def.create !== 'function') throw new TypeError(`defineBalancer(${def.name}): "create" must be a function`);
  return Object.freeze({ ...def });
}
