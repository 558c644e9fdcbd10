import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { AdapterDefinition, AdapterInstance } from './adapter';
import { CachedResolver } from './cache';
import { FeedCatalog, pollingWatchAll, RegistryFeed } from './catalog';
import { ConfigError, NotSupportedError } from './errors';
import type {
  Balancer,
  Capabilities,
  Catalog,
  InstanceSpec,
  Logger,
  Registrar,
  Registration,
  Resolver,
  WatchMode,
} from './model';
import { parseRegistryUrl, redactOptions, validateOptions, type ParsedUrl } from './options';
import { getAdapter, getBalancer } from './registry';
import { monotonicNow, silentLogger } from './util';
import { WatchResolver, type ServiceStatus } from './watch-resolver';

// The last-known-good cache (core/cache.ts), re-exported here so the package root exposes it.
export {
  CachedResolver,
  withCache,
  parseCacheFile,
  cacheDirFor,
  cacheFileFor,
  DEFAULT_CACHE_START_WAIT_MS,
  type CacheOptions,
} from './cache';

/** Where the zero-setup file registry lives when nothing is configured. */
export const DEFAULT_FILE_REGISTRY = path.join(os.tmpdir(), 'wayfinder', 'registry.json');
export const DEFAULT_REGISTRY_URL = `file://${DEFAULT_FILE_REGISTRY}`;

export interface DiscoveryConfig {
  /** A registry URL, or `{ scheme, ...options }`. */
  registry?: string | ({ scheme: string } & Record<string, unknown>);
  /** A balancer name (default "round_robin"), or `{ name, ...options }`. */
  balancer?: string | ({ name: string } & Record<string, unknown>);
}
/** A registry URL, a path to a .json/.yaml/.yml config file, or a config object. */
export type ConfigSource = string | DiscoveryConfig;

export interface DiscoveryOptions {
  logger?: Logger;
  /** Environment to read WAYFINDER_REGISTRY from (default process.env). */
  env?: Record<string, string | undefined>;
}

const TOP_LEVEL = ['registry', 'balancer'];

function isUrl(s: string): boolean {
  return /^[a-zA-Z][a-zA-Z0-9+.-]+:/.test(s) && !/^[a-zA-Z]:[\\/]/.test(s);
}

function loadConfigFile(file: string): DiscoveryConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`, { field: 'config', cause: e });
  }
  let data: unknown;
  try {
    data = /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw new ConfigError(
      `config file ${file} is not valid ${/\.ya?ml$/i.test(file) ? 'YAML' : 'JSON'}: ${(e as Error).message}`,
      { field: 'config', cause: e },
    );
  }
  if (!data || typeof data !== 'object' || Array.isArray(data))
    throw new ConfigError(`config file ${file} must hold an object with "registry" (and optionally "balancer")`, {
      field: 'config',
    });
  return data as DiscoveryConfig;
}

/** Turns any accepted source into a config object (without touching the registry). */
export function normalizeConfig(
  source: ConfigSource | undefined,
  env: Record<string, string | undefined> = process.env,
): DiscoveryConfig {
  if (source === undefined || source === null) {
    const fromEnv = env.WAYFINDER_REGISTRY?.trim();
    source = fromEnv ? fromEnv : DEFAULT_REGISTRY_URL;
  }
  if (typeof source === 'string') {
    if (isUrl(source)) return { registry: source };
    if (/\.(json|ya?ml)$/i.test(source)) return normalizeConfig(loadConfigFile(source), env);
    throw new ConfigError(
      `config source ${JSON.stringify(source)} is neither a registry URL (scheme://...) nor a .json/.yaml file path`,
      { field: 'registry' },
    );
  }
  if (typeof source !== 'object' || Array.isArray(source))
    throw new TypeError('Discovery.fromConfig(): source must be a URL string, a file path or an object');
  for (const k of Object.keys(source)) {
    if (!TOP_LEVEL.includes(k))
      throw new ConfigError(`unknown config key "${k}"; known keys: ${TOP_LEVEL.join(', ')}`, { field: k });
  }
  return { registry: source.registry ?? env.WAYFINDER_REGISTRY ?? DEFAULT_REGISTRY_URL, balancer: source.balancer };
}

/** Maps URL parts to raw options by the adapter's schema: hosts, path, username, password, params. */
export function defaultFromUrl(def: AdapterDefinition, url: ParsedUrl): Record<string, unknown> {
  const raw: Record<string, unknown> = { ...url.params };
  const has = (k: string) => k in def.options;
  for (const k of ['hosts', 'path', 'username', 'password']) {
    if (k in url.params)
      throw new ConfigError(`${def.scheme}: "${k}" goes in the URL itself, not as a ?${k}= parameter`, { field: k });
  }
  if (url.hosts.length) {
    if (!has('hosts'))
      throw new ConfigError(`${def.scheme}: this adapter takes no host in its URL (got ${url.redacted})`, {
        field: 'hosts',
      });
    raw.hosts = url.hosts.map((h) => (h.host.includes(':') ? `[${h.host}]` : h.host) + (h.port ? `:${h.port}` : ''));
  }
  if (url.path && url.path !== '/') {
    if (!has('path'))
      throw new ConfigError(`${def.scheme}: this adapter takes no path in its URL (got ${url.redacted})`, {
        field: 'path',
      });
    raw.path = url.path;
  }
  if (url.username !== undefined) {
    if (!has('username'))
      throw new ConfigError(`${def.scheme}: this adapter takes no credentials in its URL`, { field: 'username' });
    raw.username = url.username;
    if (url.password !== undefined) raw.password = url.password;
  }
  return raw;
}

/**
 * `cache` is a core option every registry accepts (the last-known-good cache, core/cache.ts). It is
 * taken out here, before the adapter's own options are validated, so no adapter has to know of it.
 */
function takeCacheOption(raw: unknown): string | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || raw.trim() === '')
    throw new ConfigError('"cache" must be a directory path (e.g. cache=/var/cache/wayfinder)', { field: 'cache' });
  return path.resolve(raw);
}

const WATCH_MODES: readonly WatchMode[] = ['auto', 'service', 'registry'];

/**
 * `watch` is a core option every registry accepts (like `cache`): `service` (one watch per
 * service), `registry` (one registry-wide stream; needs capabilities.registryWatch) or `auto`
 * (the default: registry-wide once more than REGISTRY_WATCH_THRESHOLD services are watched, when
 * the adapter can; per-service otherwise).
 */
function takeWatchOption(def: AdapterDefinition, raw: unknown): WatchMode {
  if (raw === undefined || adapterOwnsWatch(def, raw)) return 'auto';
  if (typeof raw !== 'string' || !WATCH_MODES.includes(raw as WatchMode))
    throw new ConfigError(`"watch" must be one of "auto", "service", "registry" (got ${JSON.stringify(raw)})`, {
      field: 'watch',
    });
  if (raw === 'registry' && !def.capabilities.registryWatch)
    throw new ConfigError(
      `${def.scheme}: watch=registry needs a registry-wide watch, which this adapter does not have (use auto or service)`,
      { field: 'watch' },
    );
  return raw as WatchMode;
}

/**
 * The file adapter has its own boolean `watch` (fs.watch on or off): a value that is not a watch
 * mode is left to an adapter whose schema has a `watch` option.
 */
function adapterOwnsWatch(def: AdapterDefinition, raw: unknown): boolean {
  return 'watch' in def.options && !WATCH_MODES.includes(raw as WatchMode);
}

/** An adapter's fromUrl() that throws TypeError about the URL (memory:// does) is a config error. */
function fromUrlAsConfig(def: AdapterDefinition, url: ParsedUrl): Record<string, unknown> {
  try {
    return def.fromUrl!(url);
  } catch (e) {
    if (e instanceof TypeError)
      throw new ConfigError(`${e.message} (in ${url.redacted})`, { field: 'registry', cause: e });
    throw e;
  }
}

/** An adapter with its own parse(url: URL): the URL (less core's `cache`) as a WHATWG URL. */
function parseWithAdapter(def: AdapterDefinition, spec: string, parsed: ParsedUrl): unknown {
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    throw new ConfigError(`${def.scheme}: ${parsed.redacted} is not a URL this adapter can parse (one host per URL)`, {
      field: 'registry',
    });
  }
  url.searchParams.delete('cache');
  if (WATCH_MODES.includes(url.searchParams.get('watch') as WatchMode)) url.searchParams.delete('watch');
  try {
    return def.parse!(url);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`${def.scheme}: ${(e as Error).message}`, { field: 'registry', cause: e });
  }
}

/** Parses and validates a registry spec into the adapter and its typed options. */
export function resolveRegistry(spec: DiscoveryConfig['registry']): {
  def: AdapterDefinition;
  options: Record<string, unknown>;
  display: string;
  cache?: string;
  watch: WatchMode;
} {
  if (typeof spec === 'string') {
    const url = parseRegistryUrl(spec); // badly percent-encoded parts are ConfigErrors there
    const def = getAdapter(url.scheme);
    // Core option (see takeCacheOption): removed before the adapter maps and validates the rest.
    const cache = takeCacheOption(url.params.cache);
    const watch = takeWatchOption(def, url.params.watch);
    const { cache: _cache, watch: _watch, ...params } = url.params;
    if (_watch !== undefined && adapterOwnsWatch(def, _watch)) params.watch = _watch;
    url.params = params;
    if (def.parse) {
      const options = parseWithAdapter(def, spec, url) as Record<string, unknown>;
      def.validate?.(options);
      return { def, options, display: url.redacted, cache, watch };
    }
    const raw = def.fromUrl ? fromUrlAsConfig(def, url) : defaultFromUrl(def, url);
    const options = validateOptions(def.scheme, def.options, raw);
    def.validate?.(options);
    return { def, options, display: url.redacted, cache, watch };
  }
  if (!spec || typeof spec !== 'object' || typeof spec.scheme !== 'string')
    throw new ConfigError('"registry" must be a URL string or an object with a "scheme"', { field: 'registry' });
  const { scheme, cache: rawCache, watch: rawWatch, ...rest } = spec;
  const cache = takeCacheOption(rawCache);
  const def = getAdapter(scheme);
  const watch = takeWatchOption(def, rawWatch);
  if (rawWatch !== undefined && adapterOwnsWatch(def, rawWatch)) rest.watch = rawWatch;
  const options = def.parse ? rest : validateOptions(def.scheme, def.options, rest);
  def.validate?.(options);
  const display = `${def.scheme}: ${JSON.stringify(redactOptions(def.options, options))}`;
  return { def, options, display: cache ? `${display} cache=${cache}` : display, cache, watch };
}

export function resolveBalancer(spec: DiscoveryConfig['balancer']): Balancer {
  const { name, ...rest } = typeof spec === 'string' ? { name: spec } : (spec ?? { name: 'round_robin' });
  if (typeof name !== 'string')
    throw new ConfigError('"balancer" must be a name or an object with a "name"', { field: 'balancer' });
  const def = getBalancer(name);
  return def.create(validateOptions(def.name, def.options, rest));
}

class UnsupportedRegistrar implements Registrar {
  constructor(private readonly scheme: string) {}
  register(_: InstanceSpec): Promise<Registration> {
    return Promise.reject(
      new NotSupportedError(
        `${this.scheme}: this registry is read-only; register instances with the registry's own tooling`,
      ),
    );
  }
  async close(): Promise<void> {}
}

/**
 * A configured registry (resolver + registrar) and balancer. Build one with Discovery.fromConfig().
 */
export class Discovery {
  readonly resolver: Resolver;
  readonly registrar: Registrar;
  readonly balancer: Balancer;
  readonly scheme: string;
  readonly capabilities: Capabilities;
  /** The registry as configured, with secrets redacted: safe to log. */
  readonly description: string;
  /** Every service of the registry: a complete first view, then per-service changes (core/catalog.ts). */
  readonly catalog: Catalog;
  private readonly feed: RegistryFeed;
  private closing?: Promise<void>;

  private constructor(
    def: AdapterDefinition,
    private readonly instance: AdapterInstance,
    balancer: Balancer,
    description: string,
    resolver: Resolver | undefined,
    watch: WatchMode,
    logger: Logger,
  ) {
    // `resolver` is the adapter's resolver wrapped by the cache (when configured), else the adapter's own.
    this.resolver = resolver ?? instance.resolver;
    this.registrar = instance.registrar ?? new UnsupportedRegistrar(def.scheme);
    this.balancer = balancer;
    this.scheme = def.scheme;
    this.capabilities = def.capabilities;
    this.description = description;
    // One registry-wide stream per Discovery, shared by the catalog and the resolver's registry mode;
    // without the adapter's own, the catalog lists services and watches each (pollingWatchAll).
    const native = instance.watchAll;
    const listServices = () => this.listServices();
    this.feed = new RegistryFeed(
      def.scheme,
      native ? native.bind(instance) : pollingWatchAll(listServices, instance.resolver),
      logger,
    );
    this.catalog = new FeedCatalog(this.feed, logger);
    if (native && instance.resolver instanceof WatchResolver)
      instance.resolver.useRegistryFeed(this.feed, watch, {
        covers: instance.registryWatchCovers?.bind(instance),
      });
  }

  /**
   * Builds a Discovery from a registry URL, a config file path, or an object. With no source:
   * env WAYFINDER_REGISTRY, else the file registry at DEFAULT_FILE_REGISTRY.
   * Invalid config throws ConfigError naming the field, before anything connects.
   */
  static async fromConfig(source?: ConfigSource, opts: DiscoveryOptions = {}): Promise<Discovery> {
    const cfg = normalizeConfig(source, opts.env);
    const { def, options, display, cache, watch } = resolveRegistry(cfg.registry);
    const balancer = resolveBalancer(cfg.balancer);
    const logger = opts.logger ?? silentLogger;
    const instance = await def.create(options, { logger, now: monotonicNow, random: Math.random, wallNow: Date.now });
    // Opt-in last-known-good cache around whatever resolver the adapter built (core/cache.ts).
    const resolver = cache
      ? new CachedResolver(instance.resolver, { dir: cache, registry: display, logger })
      : undefined;
    return new Discovery(def, instance, balancer, display, resolver, watch, logger);
  }

  /** Service names, where the registry can list them. */
  async listServices(): Promise<string[]> {
    if (!this.instance.listServices) throw new NotSupportedError(`${this.scheme}: this registry cannot list services`);
    return this.instance.listServices();
  }

  /** What every watched service looks like now: endpoints, last update, last error. JSON-able. */
  status(): { registry: string; services: ServiceStatus[] } {
    const r = this.resolver as Resolver & { status?: () => ServiceStatus[] };
    return { registry: this.description, services: r.status ? r.status() : [] };
  }

  /** Deregisters what this process registered, stops every watch, releases clients. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.allSettled([this.registrar.close(), this.resolver.close(), this.feed.close()]);
      await this.instance.close?.();
    })();
    return this.closing;
  }
}
