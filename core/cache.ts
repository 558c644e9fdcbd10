import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { checkEndpoint } from './endpoint';
import { ClosedError, RegistryUnavailableError, type WayfinderError } from './errors';
import type { Endpoint, Logger, Resolver, Snapshot, Watch } from './model';
import { silentLogger } from './util';
import { checkServiceName, resolveFirst, type ServiceStatus } from './watch-resolver';

/**
 * The last-known-good cache (opt-in with `cache=/dir` on any registry URL, or `cache` in a config
 * object). It decorates an adapter's resolver, so every adapter gets it the same way:
 *
 * - Every good snapshot (no error, or only BAD_ENTRY) of a watched service is written to
 *   `<dir>/<registry-key>/<service>.json`, atomically (temp file in the same directory, fsync,
 *   rename), only when the set changed. Write failures are logged, never thrown.
 * - A watch whose registry fails before delivering any good set in this process (REGISTRY_UNAVAILABLE,
 *   or no answer within `startWaitMs`) gets the cached set instead, with `stale: true` and the error
 *   attached. The registry's first good set replaces it as soon as it comes.
 * - AUTH_FAILED is never answered from the cache: wrong credentials fail closed.
 * - A cache file that cannot be read as a cache (bad JSON, wrong service, invalid endpoints) is
 *   ignored with a warning, as if absent.
 *
 * The registry key is a hash of the registry as displayed (secrets already redacted), so one cache
 * directory can serve several registries without mixing their services.
 */

export const CACHE_FORMAT = 'wayfinder-cache';
export const CACHE_VERSION = 1;
/** How long a watch waits for the registry's first answer before serving the cache. */
export const DEFAULT_CACHE_START_WAIT_MS = 3000;

export interface CacheOptions {
  /** The cache directory (created on first write, mode 0700). */
  dir: string;
  /** Identifies the registry (its redacted display string); hashed into a subdirectory name. */
  registry: string;
  logger?: Logger;
  startWaitMs?: number;
}

interface CacheFile {
  format: typeof CACHE_FORMAT;
  version: number;
  registry: string;
  service: string;
  savedAt: string;
  revision?: string;
  endpoints: Endpoint[];
}

/** The directory holding one registry's cache files. */
export function cacheDirFor(dir: string, registry: string): string {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(registry)?.[1]?.toLowerCase() ?? 'registry';
  return path.join(path.resolve(dir), `${scheme}-${createHash('sha256').update(registry).digest('hex').slice(0, 16)}`);
}

/** File name of a service's cache entry (service names may hold ':', kept out of file names). */
export function cacheFileFor(dir: string, registry: string, service: string): string {
  return path.join(
    cacheDirFor(dir, registry),
    `${service.replace(/[^A-Za-z0-9._-]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`)}.json`,
  );
}

/** Parses a cache file's text; returns the endpoints or why it was refused. Never throws. */
export function parseCacheFile(
  text: string,
  service: string,
): { ok: true; endpoints: Endpoint[]; revision?: string; savedAt: string } | { ok: false; reason: string } {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return { ok: false, reason: `not JSON (${(e as Error).message})` };
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return { ok: false, reason: 'not an object' };
  const d = doc as Partial<CacheFile>;
  if (d.format !== CACHE_FORMAT || d.version !== CACHE_VERSION)
    return { ok: false, reason: `not a ${CACHE_FORMAT} v${CACHE_VERSION} file` };
  if (d.service !== service)
    return { ok: false, reason: `holds service ${JSON.stringify(d.service)}, not ${JSON.stringify(service)}` };
  if (!Array.isArray(d.endpoints)) return { ok: false, reason: '"endpoints" is not an array' };
  const endpoints: Endpoint[] = [];
  for (const [i, raw] of d.endpoints.entries()) {
    const c = checkEndpoint(raw);
    if (!c.ok) return { ok: false, reason: `endpoint ${i}: ${c.reason}` };
    endpoints.push(c.endpoint);
  }
  return {
    ok: true,
    endpoints,
    revision: typeof d.revision === 'string' ? d.revision : undefined,
    savedAt: typeof d.savedAt === 'string' ? d.savedAt : '',
  };
}

const isGood = (s: Snapshot) => !s.error || s.error.code === 'BAD_ENTRY';

/** A resolver that persists good snapshots and serves them, stale, while the registry is down at start. */
export class CachedResolver implements Resolver {
  private readonly logger: Logger;
  private readonly startWaitMs: number;
  /** Last JSON written per service, so unchanged sets are not rewritten. */
  private readonly written = new Map<string, string>();
  /** Serialises writes per service (latest wins). */
  private readonly writing = new Map<string, Promise<void>>();
  /** Services currently answered from the cache (no good set yet in this process). */
  private readonly servedStale = new Map<string, Endpoint[]>();
  private readonly goodSeen = new Set<string>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(
    private readonly inner: Resolver,
    private readonly opts: CacheOptions,
  ) {
    if (!opts || typeof opts.dir !== 'string' || opts.dir === '')
      throw new TypeError('CachedResolver: "dir" must be a non-empty string');
    this.logger = opts.logger ?? silentLogger;
    this.startWaitMs = opts.startWaitMs ?? DEFAULT_CACHE_START_WAIT_MS;
  }

  /** The directory this resolver's files go in. */
  get directory(): string {
    return cacheDirFor(this.opts.dir, this.opts.registry);
  }

  watch(service: string, onSnapshot: (s: Snapshot) => void): Watch {
    checkServiceName(service);
    if (this.closed) throw new ClosedError('cached resolver');
    let open = true;
    let good = this.goodSeen.has(service);
    let servedCache = false;
    const deliver = (s: Snapshot) => {
      if (open) onSnapshot(s);
    };
    const fromCache = (err: WayfinderError): boolean => {
      const cached = this.load(service);
      if (!cached) return false;
      servedCache = true;
      this.servedStale.set(service, cached.endpoints);
      deliver({
        service,
        endpoints: cached.endpoints.map((e) => ({ ...e, metadata: { ...e.metadata } })),
        revision: cached.revision,
        error: err,
        stale: true,
      });
      return true;
    };
    let timer: NodeJS.Timeout | undefined;
    if (!good && this.startWaitMs > 0) {
      timer = setTimeout(() => {
        this.timers.delete(timer!);
        timer = undefined;
        if (open && !good && !servedCache)
          fromCache(
            new RegistryUnavailableError(
              `no answer from the registry within ${this.startWaitMs} ms; serving the cached set`,
            ),
          );
      }, this.startWaitMs);
      timer.unref?.();
      this.timers.add(timer);
    }
    const w = this.inner.watch(service, (s) => {
      if (isGood(s)) {
        good = true;
        this.goodSeen.add(service);
        this.servedStale.delete(service);
        if (timer) {
          clearTimeout(timer);
          this.timers.delete(timer);
          timer = undefined;
        }
        this.persist(service, s);
        return deliver(s);
      }
      // An error before any good set: the inner resolver has nothing to keep; the cache may.
      if (!good && s.endpoints.length === 0 && s.error?.code === 'REGISTRY_UNAVAILABLE') {
        if (servedCache) {
          const cached = this.servedStale.get(service);
          if (cached)
            return deliver({
              service,
              endpoints: cached.map((e) => ({ ...e, metadata: { ...e.metadata } })),
              error: s.error,
              stale: true,
            });
        } else if (fromCache(s.error)) return;
      }
      deliver(s);
    });
    return {
      close: () => {
        if (!open) return;
        open = false;
        if (timer) {
          clearTimeout(timer);
          this.timers.delete(timer);
        }
        w.close();
      },
    };
  }

  resolve(service: string, opts: { signal?: AbortSignal } = {}): Promise<Endpoint[]> {
    return resolveFirst(this, service, opts);
  }

  refresh(service: string): void {
    this.inner.refresh?.(service);
  }

  /** The inner resolver's status, with services answered from the cache shown as such. */
  status(): ServiceStatus[] {
    const inner = this.inner as Resolver & { status?: () => ServiceStatus[] };
    const list = inner.status ? inner.status() : [];
    return list.map((s) => {
      const cached = this.servedStale.get(s.service);
      return cached && !this.goodSeen.has(s.service) ? { ...s, endpoints: cached, stale: true } : s;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.inner.close();
    await Promise.allSettled([...this.writing.values()]);
  }

  /** Reads a service's cache file; undefined when absent or unusable (warned). Synchronous: tiny files, read once per start. */
  private load(service: string): { endpoints: Endpoint[]; revision?: string } | undefined {
    const file = cacheFileFor(this.opts.dir, this.opts.registry, service);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        this.logger.warn(
          { service, file, code: (e as NodeJS.ErrnoException).code },
          `cache: cannot read ${file}; ignored`,
        );
      return undefined;
    }
    const p = parseCacheFile(text, service);
    if (!p.ok) {
      this.logger.warn({ service, file }, `cache: ignoring corrupt cache file ${file}: ${p.reason}`);
      return undefined;
    }
    this.logger.info(
      { service, file, endpoints: p.endpoints.length, savedAt: p.savedAt },
      `cache: serving ${p.endpoints.length} cached endpoint(s) of ${service} (stale, saved ${p.savedAt})`,
    );
    return p;
  }

  private persist(service: string, s: Snapshot): void {
    const body: CacheFile = {
      format: CACHE_FORMAT,
      version: CACHE_VERSION,
      registry: this.opts.registry,
      service,
      savedAt: '',
      revision: s.revision,
      endpoints: s.endpoints,
    };
    const key = JSON.stringify({ ...body, revision: undefined });
    if (this.written.get(service) === key) return;
    this.written.set(service, key);
    body.savedAt = new Date().toISOString();
    const text = `${JSON.stringify(body, null, 2)}\n`;
    const prev = this.writing.get(service) ?? Promise.resolve();
    const next = prev
      .then(() => this.writeAtomic(service, text))
      .catch((e: Error) => {
        this.written.delete(service);
        this.logger.warn({ service, err: e.message }, `cache: writing the cache of ${service} failed: ${e.message}`);
      });
    this.writing.set(service, next);
    void next.finally(() => {
      if (this.writing.get(service) === next) this.writing.delete(service);
    });
  }

  /** temp file in the same directory + fsync + rename: readers see the old file or the new, never a mix. */
  private async writeAtomic(service: string, text: string): Promise<void> {
    const file = cacheFileFor(this.opts.dir, this.opts.registry, service);
    await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const fh = await fsp.open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await fsp.rename(tmp, file);
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      throw e;
    }
  }

  /** Resolves once every write queued so far is on disk (for tests and orderly shutdown). */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.writing.values()]);
  }
}

/** Wraps `resolver` in a CachedResolver when `dir` is given. */
export function withCache(resolver: Resolver, opts: CacheOptions): CachedResolver {
  return new CachedResolver(resolver, opts);
}
