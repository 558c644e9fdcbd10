import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import {
  RegistryUnavailableError,
  collectEndpoints,
  silentLogger,
  type BadEntry,
  type Endpoint,
  type Logger,
} from '../../core';
import { acquireLock, type LockOptions } from './lock';

/**
 * The registry file's format and its writer.
 *
 * ```json
 * { "format": "wayfinder-file-registry", "version": 1, "revision": 7, "updated": "2026-…Z",
 *   "services": { "echo": { "127.0.0.1:50051": { "id": "127.0.0.1:50051", "host": "127.0.0.1",
 *     "port": 50051, "weight": 1, "zone": "a", "metadata": {}, "heartbeat": 1764070000000,
 *     "ttl": 10000, "pid": 4242, "hostname": "box", "registrant": "5f0c…" } } } }
 * ```
 * `heartbeat` is wall-clock epoch ms (processes on one host share the clock); an entry is alive
 * while `heartbeat + ttl > now` (its own ttl, else the reader's). An entry without `heartbeat` is
 * static (written by hand or by a tool) and never expires. `registrant` identifies the
 * registration that owns the entry.
 */

export const FORMAT = 'wayfinder-file-registry';
export const FORMAT_VERSION = 1;

export interface RegistryDoc {
  format: string;
  version: number;
  revision: number;
  updated?: string;
  /** service -> id -> raw entry (raw: validated only when read). */
  services: Record<string, unknown>;
}

export function emptyDoc(): RegistryDoc {
  return { format: FORMAT, version: FORMAT_VERSION, revision: 0, services: {} };
}

/** Raised for a file that is not a registry we can read (invalid JSON, wrong shape, newer version). */
export class DocFormatError extends Error {
  constructor(
    message: string,
    readonly newer = false,
  ) {
    super(message);
    this.name = 'DocFormatError';
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Parses the registry file's text. An empty (or all-whitespace) file is an empty registry. */
export function parseDoc(text: string): RegistryDoc {
  if (text.trim() === '') return emptyDoc();
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new DocFormatError(`not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(data)) throw new DocFormatError('the top level must be a JSON object');
  if (data.version !== undefined && (typeof data.version !== 'number' || data.version > FORMAT_VERSION)) {
    throw new DocFormatError(
      `format version ${JSON.stringify(data.version)} is newer than this wayfinder reads (${FORMAT_VERSION})`,
      true,
    );
  }
  if (data.services !== undefined && !isObject(data.services)) throw new DocFormatError('"services" must be an object');
  return {
    format: FORMAT,
    version: FORMAT_VERSION,
    revision: typeof data.revision === 'number' && Number.isSafeInteger(data.revision) ? data.revision : 0,
    updated: typeof data.updated === 'string' ? data.updated : undefined,
    services: (data.services as Record<string, unknown>) ?? {},
  };
}

/** When an entry stops being alive (epoch ms), Infinity for static entries, or the reason it is malformed. */
export function entryExpiry(raw: unknown, defaultTtl: number): { expires: number } | { bad: string } {
  if (!isObject(raw) || raw.heartbeat === undefined) return { expires: Infinity };
  const hb = raw.heartbeat;
  if (typeof hb !== 'number' || !Number.isFinite(hb))
    return { bad: '"heartbeat" must be a timestamp in epoch milliseconds' };
  const ttl = raw.ttl ?? defaultTtl;
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0)
    return { bad: '"ttl" must be a positive number of milliseconds' };
  return { expires: hb + ttl };
}

export interface ServiceView {
  endpoints: Endpoint[];
  bad: BadEntry[];
  /** The earliest time (epoch ms) one of the live entries expires, if any does. */
  nextExpiry?: number;
}

/** The live, valid endpoints of one service at `now`; expired entries are left out silently. */
export function serviceView(doc: RegistryDoc, service: string, now: number, defaultTtl: number): ServiceView {
  const bucket = doc.services[service];
  if (bucket === undefined) return { endpoints: [], bad: [] };
  if (!isObject(bucket))
    return { endpoints: [], bad: [{ key: service, reason: 'a service must map instance ids to entries' }] };
  const raw: { key: string; value: unknown }[] = [];
  const bad: BadEntry[] = [];
  let nextExpiry: number | undefined;
  for (const [id, value] of Object.entries(bucket)) {
    const key = `${service}/${id}`;
    const exp = entryExpiry(value, defaultTtl);
    if ('bad' in exp) {
      bad.push({ key, reason: exp.bad });
      continue;
    }
    if (exp.expires <= now) continue;
    if (exp.expires !== Infinity)
      nextExpiry = nextExpiry === undefined ? exp.expires : Math.min(nextExpiry, exp.expires);
    raw.push({ key, value: isObject(value) && value.id === undefined ? { ...value, id } : value });
  }
  const c = collectEndpoints(raw);
  return { endpoints: c.endpoints, bad: [...bad, ...c.bad], nextExpiry };
}

/** Services with at least one live, valid endpoint. */
export function liveServices(doc: RegistryDoc, now: number, defaultTtl: number): string[] {
  return Object.keys(doc.services)
    .filter((s) => serviceView(doc, s, now, defaultTtl).endpoints.length > 0)
    .sort();
}

/** Drops expired entries (and services left empty). Malformed entries are kept: they are not ours to lose. */
export function purgeExpired(doc: RegistryDoc, now: number, defaultTtl: number): number {
  let n = 0;
  for (const [service, bucket] of Object.entries(doc.services)) {
    if (!isObject(bucket)) continue;
    for (const [id, value] of Object.entries(bucket)) {
      const exp = entryExpiry(value, defaultTtl);
      if ('expires' in exp && exp.expires <= now) {
        delete bucket[id];
        n++;
      }
    }
    if (Object.keys(bucket).length === 0) delete doc.services[service];
  }
  return n;
}

/** The entries of a service as a mutable object, creating it (replacing a malformed one) when absent. */
export function bucketOf(doc: RegistryDoc, service: string): Record<string, unknown> {
  const b = doc.services[service];
  if (isObject(b)) return b;
  const fresh: Record<string, unknown> = {};
  doc.services[service] = fresh;
  return fresh;
}

export function getEntry(doc: RegistryDoc, service: string, id: string): Record<string, unknown> | undefined {
  const b = doc.services[service];
  const e = isObject(b) ? b[id] : undefined;
  return isObject(e) ? e : undefined;
}

export function deleteEntry(doc: RegistryDoc, service: string, id: string): void {
  const b = doc.services[service];
  if (!isObject(b)) return;
  delete b[id];
  if (Object.keys(b).length === 0) delete doc.services[service];
}

/** A change applied under the lock to the freshly read document; `now` is the write time. */
export type Mutation<T> = (doc: RegistryDoc, now: number) => T;

interface Pending {
  fn: Mutation<unknown>;
  ttl: number;
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

export type StoreOptions = LockOptions;

/** One landed write, for measurements and tests. */
export interface WriteInfo {
  revision: number;
  /** performance.now() just before the rename that made it visible (so `now - visibleAt` over-estimates latency). */
  visibleAt: number;
  /** Lock + read + write + fsync + rename + directory fsync, in ms. */
  ms: number;
}

/**
 * The writer of one registry file. One per file per process (see fileStore()): mutations from all
 * registrations in the process are queued and applied in batches, each batch as one locked
 * read-modify-write: lock, read, purge expired entries, apply, write a temp file, fsync, rename
 * over the registry (readers never see a half-written file), fsync the directory, unlock.
 *
 * A file that is not valid JSON is moved aside to `<file>.corrupt-<epoch ms>` (nothing is lost) and
 * the registry starts afresh; live registrants re-add themselves on their next heartbeat. A file
 * of a newer format version is never overwritten (the write fails).
 */
export class FileStore {
  private queue: Pending[] = [];
  private running = false;
  private logger: Logger = silentLogger;
  private wallNow: () => number = Date.now;
  private random: () => number = Math.random;
  private readonly writeListeners = new Set<(w: WriteInfo) => void>();

  constructor(
    readonly file: string,
    private readonly opts: StoreOptions = {},
  ) {}

  /** Calls `fn` after each write this process makes to the file. Returns the remover. */
  onWrite(fn: (w: WriteInfo) => void): () => void {
    this.writeListeners.add(fn);
    return () => this.writeListeners.delete(fn);
  }

  setLogger(logger: Logger): void {
    if (logger !== silentLogger) this.logger = logger;
  }

  /**
   * The wall clock (epoch ms) for heartbeats, purging and lock times, and the random source of the
   * lock's retry jitter, from the registry's context. One store serves every registry of the file
   * in this process: the registry opened last sets them (the defaults are Date.now and Math.random).
   */
  setClock(wallNow: () => number, random: () => number): void {
    this.wallNow = wallNow;
    this.random = random;
  }

  /**
   * Applies `fn` under the lock and writes the result if anything changed. `ttl` is the fallback
   * for entries without their own ttl when purging. Resolves with fn's result once it is on disk.
   */
  mutate<T>(fn: Mutation<T>, ttl: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, ttl, resolve: resolve as (v: unknown) => void, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length) {
        const batch = this.queue.splice(0);
        try {
          const results = await this.apply(batch);
          batch.forEach((p, i) => (results[i].ok ? p.resolve(results[i].value) : p.reject(results[i].error)));
        } catch (e) {
          for (const p of batch) p.reject(e);
        }
      }
    } finally {
      this.running = false;
    }
  }

  private async apply(batch: Pending[]): Promise<{ ok: boolean; value?: unknown; error?: unknown }[]> {
    const t0 = performance.now();
    const dir = path.dirname(this.file);
    try {
      await fsp.mkdir(dir, { recursive: true });
    } catch (e) {
      throw new RegistryUnavailableError(`file: cannot create directory ${dir}: ${(e as Error).message}`, { cause: e });
    }
    const release = await acquireLock(`${this.file}.lock`, {
      wallNow: this.wallNow,
      random: this.random,
      ...this.opts,
      logger: this.opts.logger ?? this.logger,
    });
    try {
      const { doc, corrupt } = await this.readForWrite();
      const now = this.wallNow();
      const ttl = Math.max(...batch.map((p) => p.ttl));
      const before = JSON.stringify(doc.services);
      const purged = purgeExpired(doc, now, ttl);
      const results = batch.map((p) => {
        try {
          return { ok: true, value: p.fn(doc, now) };
        } catch (error) {
          return { ok: false, error };
        }
      });
      if (corrupt || purged > 0 || JSON.stringify(doc.services) !== before) {
        doc.revision += 1;
        doc.updated = new Date(now).toISOString();
        if (corrupt) await this.quarantine(corrupt);
        const visibleAt = await this.writeAtomic(doc);
        const info: WriteInfo = { revision: doc.revision, visibleAt, ms: performance.now() - t0 };
        for (const fn of this.writeListeners) fn(info);
      }
      return results;
    } finally {
      await release();
    }
  }

  private async readForWrite(): Promise<{ doc: RegistryDoc; corrupt?: string }> {
    let text: string;
    try {
      text = await fsp.readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { doc: emptyDoc() };
      throw new RegistryUnavailableError(`file: cannot read ${this.file}: ${(e as Error).message}`, { cause: e });
    }
    try {
      return { doc: parseDoc(text) };
    } catch (e) {
      if (e instanceof DocFormatError && !e.newer) return { doc: emptyDoc(), corrupt: e.message };
      throw new RegistryUnavailableError(`file: ${this.file}: ${(e as Error).message}; not overwriting it`, {
        cause: e,
      });
    }
  }

  private async quarantine(reason: string): Promise<void> {
    const aside = `${this.file}.corrupt-${this.wallNow()}`;
    try {
      await fsp.rename(this.file, aside);
      this.logger.warn(
        { file: this.file, movedTo: aside, reason },
        `file registry: ${this.file} was unreadable (${reason}); moved it to ${aside} and started afresh`,
      );
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new RegistryUnavailableError(
          `file: cannot move the unreadable ${this.file} aside: ${(e as Error).message}`,
          { cause: e },
        );
    }
  }

  /** Returns performance.now() taken just before the rename that makes the new content visible. */
  private async writeAtomic(doc: RegistryDoc): Promise<number> {
    const dir = path.dirname(this.file);
    const tmp = path.join(dir, `.${path.basename(this.file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    let visibleAt: number;
    try {
      const fh = await fsp.open(tmp, 'wx');
      try {
        await fh.writeFile(`${JSON.stringify(doc, null, 2)}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
      visibleAt = performance.now();
      await fsp.rename(tmp, this.file);
    } catch (e) {
      await fsp.unlink(tmp).catch(() => {});
      throw new RegistryUnavailableError(`file: cannot write ${this.file}: ${(e as Error).message}`, { cause: e });
    }
    // Make the rename itself durable; some filesystems refuse fsync on a directory: harmless.
    try {
      const d = await fsp.open(dir, 'r');
      try {
        await d.sync();
      } finally {
        await d.close();
      }
    } catch {
      /* best effort */
    }
    return visibleAt;
  }
}

const stores = new Map<string, FileStore>();
/** The process-wide writer of `file`, so all registrations of a process share one queue. */
export function fileStore(file: string): FileStore {
  const key = path.resolve(file);
  let s = stores.get(key);
  if (!s) stores.set(key, (s = new FileStore(key)));
  return s;
}
