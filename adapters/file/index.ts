import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  ConfigError,
  DEFAULT_FILE_REGISTRY,
  RegistrarBase,
  RegistrationBase,
  RegistrationLostError,
  RegistryUnavailableError,
  WatchResolver,
  defineAdapter,
  instanceToJson,
  registerAdapter,
  silentLogger,
  toWayfinderError,
  validateOptions,
  type AdapterContext,
  type AdapterInstance,
  type CheckedSpec,
  type Logger,
  type OptionsSchema,
} from '../../core';
import {
  bucketOf,
  deleteEntry,
  fileStore,
  getEntry,
  liveServices,
  parseDoc,
  serviceView,
  type FileStore,
} from './store';
import { fileWatchAll } from './watch-all';
import { FileWatcher } from './watcher';
import { promises as fsp } from 'node:fs';

/**
 * The embedded default registry: one JSON file on the local host that every process registers
 * into and watches. No server to run; `file:///abs/path/registry.json`.
 *
 * Guarantees (same host, local filesystem):
 * - Writes are atomic (temp file + fsync + rename) under a lock file, so concurrent registrants in
 *   different processes never lose each other's entries (see store.ts, lock.ts).
 * - A registrant rewrites its entry's heartbeat every `heartbeat` ms; an entry whose heartbeat is
 *   older than its ttl is dead to readers and purged by the next writer, so a process killed with
 *   SIGKILL disappears within ttl.
 * - Watchers hear of a change within ~pollMs at worst (fs.watch usually makes it a few ms), and
 *   re-evaluate at the next heartbeat-expiry time, so a dead entry drops out on time with no write.
 * - An unreadable file keeps the last good set and reports REGISTRY_UNAVAILABLE; a malformed entry
 *   is skipped and reported as BAD_ENTRY; a missing file is an empty registry.
 */

export interface FileOptions {
  /** Absolute path of the registry file. */
  path: string;
  /** ms a registration stays alive without a heartbeat. */
  ttl: number;
  /** ms between heartbeats; default ttl/3. */
  heartbeat?: number;
  /** ms between polls of the file (the fallback when fs.watch misses a change). */
  poll: number;
  /** Use fs.watch for immediate notification. */
  watch: boolean;
}

type ResolvedOptions = Required<FileOptions>;

/**
 * What the file registry takes from the AdapterContext: wallNow is epoch ms, as heartbeats in the
 * shared file and lock times are; now (monotonic) paces local checks; random jitters lock retries.
 */
interface FileContext {
  logger: Logger;
  wallNow(): number;
  now(): number;
  random(): number;
}

type FileContextIn = Partial<Pick<AdapterContext, 'logger' | 'wallNow' | 'now' | 'random'>>;

const SCHEMA: OptionsSchema = {
  path: {
    type: 'string',
    default: DEFAULT_FILE_REGISTRY,
    doc: `Absolute path of the registry file; its directory is created on first registration. Default ${DEFAULT_FILE_REGISTRY} (the URL path: file:///abs/path/registry.json).`,
    check: (v: string) =>
      path.isAbsolute(v)
        ? v.endsWith('/')
          ? 'must name a file, not a directory'
          : undefined
        : `must be an absolute path (got ${JSON.stringify(v)})`,
  },
  ttl: {
    type: 'duration',
    default: 10_000,
    min: 1000,
    max: 86_400_000,
    doc: "How long a registration lives without a heartbeat: a process that died (even kill -9) disappears within this time. Written into each entry; readers honour the entry's own ttl. Default 10s.",
  },
  heartbeat: {
    type: 'duration',
    min: 100,
    doc: 'How often a registrant refreshes its entry (and notices if it was removed, emitting lost/restored). Default ttl/3; must be shorter than ttl.',
  },
  poll: {
    type: 'duration',
    default: 50,
    min: 5,
    max: 100,
    doc: 'Fallback poll interval for watchers: one fstat of the file per tick, so a change fs.watch missed is seen within this time. Default 50ms; at most 100ms.',
  },
  watch: {
    type: 'boolean',
    default: true,
    doc: 'Use fs.watch on the registry directory for immediate notification (a few ms). The poll runs either way; set false where inotify does not work.',
  },
};

function checkCrossFields(o: { ttl: number; heartbeat?: number }): void {
  if (o.heartbeat !== undefined && o.heartbeat >= o.ttl) {
    throw new ConfigError(
      `file: "heartbeat" must be shorter than "ttl" (got heartbeat ${o.heartbeat}ms, ttl ${o.ttl}ms); ttl/3 is recommended`,
      { field: 'heartbeat' },
    );
  }
}

/** The one derived default the schema cannot express: heartbeat = ttl/3. */
function withHeartbeat(o: FileOptions): ResolvedOptions {
  return { ...o, heartbeat: o.heartbeat ?? Math.max(100, Math.floor(o.ttl / 3)) };
}

// ---- registrar ----

export class FileRegistration extends RegistrationBase {
  /** Identifies this registration's entry (another registrant may reuse the same id). */
  readonly token = randomBytes(8).toString('hex');
  private current: CheckedSpec;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private inflight = false;
  private lastOk: number;

  constructor(
    spec: CheckedSpec,
    private readonly store: FileStore,
    private readonly opts: ResolvedOptions,
    private readonly ctx: FileContext,
    /** Tells this process's own watcher that the file changed, so its resolve()/watch see it at once. */
    private readonly changed: () => Promise<void> = async () => {},
  ) {
    super(spec, ctx.logger);
    this.current = spec;
    this.lastOk = ctx.wallNow();
  }

  private entry(spec: CheckedSpec, now: number): Record<string, unknown> {
    return {
      ...instanceToJson(spec),
      heartbeat: now,
      ttl: this.opts.ttl,
      pid: process.pid,
      hostname: os.hostname(),
      registrant: this.token,
    };
  }

  /** Writes the entry for the first time and starts the heartbeat. */
  async start(): Promise<void> {
    await this.store.mutate((doc, now) => {
      bucketOf(doc, this.service)[this.id] = this.entry(this.current, now);
    }, this.opts.ttl);
    this.lastOk = this.ctx.wallNow();
    this.schedule();
    await this.changed();
  }

  protected async write(spec: CheckedSpec): Promise<void> {
    // Heartbeats queued after this write must carry the new spec, so switch before awaiting.
    const prev = this.current;
    this.current = spec;
    try {
      await this.store.mutate((doc, now) => {
        if (!this.stopped) bucketOf(doc, this.service)[this.id] = this.entry(spec, now);
      }, this.opts.ttl);
      this.lastOk = this.ctx.wallNow();
    } catch (e) {
      if (this.current === spec) this.current = prev;
      throw toWayfinderError(e, `file: updating ${this.service}/${this.id}`);
    }
    await this.changed();
  }

  protected async remove(): Promise<void> {
    this.halt();
    try {
      await this.store.mutate((doc) => {
        // Only our own entry: another registrant may have taken over the id meanwhile.
        if (getEntry(doc, this.service, this.id)?.registrant === this.token) deleteEntry(doc, this.service, this.id);
      }, this.opts.ttl);
    } catch (e) {
      throw toWayfinderError(e, `file: deregistering ${this.service}/${this.id} (it expires after its ttl anyway)`);
    }
    await this.changed();
  }

  /**
   * Stops the heartbeat WITHOUT removing the entry, as if the process had died: the entry expires
   * after its ttl. For tests and failure drills.
   */
  abandon(): void {
    this.halt();
  }

  private halt(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * Heartbeat ticks run every `heartbeat` ms whether or not the previous write finished (it may
   * be waiting on a lock), so the ttl deadline is checked on time: once a whole ttl passed with no
   * heartbeat written, the entry is dead to readers and `lost` is emitted.
   */
  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => this.tick(), this.opts.heartbeat);
    this.timer.unref();
  }

  private tick(): void {
    if (this.stopped) return;
    if (this.inflight) this.checkDeadline();
    else {
      this.inflight = true;
      void this.beat().finally(() => (this.inflight = false));
    }
    this.schedule();
  }

  private checkDeadline(err?: unknown): void {
    const silent = this.ctx.wallNow() - this.lastOk;
    if (silent < this.opts.ttl) return;
    const why = err instanceof Error ? err.message : 'the write is still waiting (lock held?)';
    this.emitLost(
      new RegistrationLostError(
        `file: no heartbeat written for ${this.service}/${this.id} in ${silent} ms (ttl ${this.opts.ttl} ms): ${why}`,
        { cause: err },
      ),
    );
  }

  /** One heartbeat: refresh our entry, or, if it vanished, emit lost, re-create it, emit restored. */
  private async beat(): Promise<void> {
    try {
      await this.store.mutate((doc, now) => {
        if (this.stopped) return;
        const cur = getEntry(doc, this.service, this.id);
        if (!cur)
          this.emitLost(
            new RegistrationLostError(
              `file: entry ${this.service}/${this.id} vanished from ${this.opts.path}; re-registering`,
            ),
          );
        else if (cur.registrant !== this.token)
          this.logger.warn(
            { service: this.service, id: this.id, pid: cur.pid },
            'file registry: another registrant wrote the same instance id; overwriting',
          );
        bucketOf(doc, this.service)[this.id] = this.entry(this.current, now);
      }, this.opts.ttl);
      if (this.stopped) return;
      this.lastOk = this.ctx.wallNow();
      this.emitRestored();
    } catch (e) {
      this.logger.warn(
        { service: this.service, id: this.id, err: (e as Error).message },
        'file registry: heartbeat failed',
      );
      this.checkDeadline(e);
    }
  }
}

export class FileRegistrar extends RegistrarBase<FileRegistration> {
  constructor(
    private readonly store: FileStore,
    private readonly opts: ResolvedOptions,
    private readonly ctx: FileContext,
    private readonly changed?: () => Promise<void>,
  ) {
    super('file');
  }
  protected async create(spec: CheckedSpec): Promise<FileRegistration> {
    const r = new FileRegistration(spec, this.store, this.opts, this.ctx, this.changed);
    try {
      await r.start();
    } catch (e) {
      throw toWayfinderError(e, `file: registering ${spec.service}/${spec.id}`);
    }
    return r;
  }
}

// ---- resolver ----

function createResolver(opts: ResolvedOptions, ctx: FileContext, watcher: FileWatcher): WatchResolver {
  return new WatchResolver(
    'file',
    (service, sink) => {
      let expiryTimer: NodeJS.Timeout | undefined;
      let closed = false;
      const evaluate = () => {
        if (closed) return;
        clearTimeout(expiryTimer);
        expiryTimer = undefined;
        const st = watcher.state;
        if (!st) return;
        if (!st.ok) return sink.error(st.error);
        const now = ctx.wallNow();
        const view = serviceView(st.doc, service, now, opts.ttl);
        sink.update(view.endpoints, { revision: String(st.doc.revision), bad: view.bad });
        // Drop an entry exactly when its heartbeat expires, whether or not anyone writes.
        if (view.nextExpiry !== undefined) {
          expiryTimer = setTimeout(evaluate, Math.max(0, view.nextExpiry - ctx.wallNow()) + 1);
          expiryTimer.unref();
        }
      };
      const off = watcher.subscribe(evaluate);
      // A service watched after the first read gets the current state (still asynchronously).
      if (watcher.state) queueMicrotask(evaluate);
      return () => {
        closed = true;
        clearTimeout(expiryTimer);
        off();
      };
    },
    { logger: ctx.logger, refresh: () => void watcher.refresh() },
  );
}

export interface FileRegistry extends AdapterInstance {
  resolver: WatchResolver;
  registrar: FileRegistrar;
  listServices(): Promise<string[]>;
  /** The validated options in force (durations in ms). */
  options: Readonly<ResolvedOptions>;
  /**
   * Counters of the resolver's file watcher, a diagnostic for tests and benchmarks: poll ticks,
   * full reads of the file, and fs.watch notifications received (always 0 with `watch: false`).
   */
  watchStats(): { polls: number; reads: number; events: number };
}

/**
 * A resolver and registrar over one registry file. Options as in the URL (`ttl: '1.5s'` or ms);
 * invalid ones throw ConfigError naming the field.
 */
export function createFileRegistry(
  options: Partial<Record<keyof FileOptions, unknown>> = {},
  ctx: FileContextIn = {},
): FileRegistry {
  const o = validateOptions<FileOptions>('file', SCHEMA, options);
  checkCrossFields(o);
  return openFile(o, ctx);
}

/** The registry over validated, defaulted options. */
function openFile(o: FileOptions, context: FileContextIn): FileRegistry {
  const opts = withHeartbeat(o);
  const ctx: FileContext = {
    logger: context.logger ?? silentLogger,
    wallNow: context.wallNow ?? Date.now,
    now: context.now ?? (() => performance.now()),
    random: context.random ?? Math.random,
  };
  const { logger } = ctx;
  const store = fileStore(opts.path);
  store.setLogger(logger);
  store.setClock(ctx.wallNow, ctx.random);
  const watcher = new FileWatcher(opts.path, { pollMs: opts.poll, fsWatch: opts.watch, logger, now: ctx.now });
  return {
    resolver: createResolver(opts, ctx, watcher),
    watchStats: () => ({ polls: watcher.polls, reads: watcher.reads, events: watcher.events }),
    watchAll: fileWatchAll(watcher, opts.ttl),
    registrar: new FileRegistrar(store, opts, ctx, () => watcher.refresh()),
    options: opts,
    listServices: async () => {
      let text = '';
      try {
        text = await fsp.readFile(opts.path, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
          throw new RegistryUnavailableError(`file: cannot read ${opts.path}: ${(e as Error).message}`, { cause: e });
      }
      try {
        return liveServices(parseDoc(text), ctx.wallNow(), opts.ttl);
      } catch (e) {
        throw new RegistryUnavailableError(`file: ${opts.path} is unreadable: ${(e as Error).message}`, { cause: e });
      }
    },
  };
}

export const fileAdapter = defineAdapter<FileOptions>({
  scheme: 'file',
  description:
    'The embedded default: a JSON registry file shared by the processes of one host (heartbeats, TTL, fs.watch). file:///abs/path/registry.json',
  capabilities: {
    watch: 'push',
    register: true,
    ttl: true,
    weights: true,
    zones: true,
    metadata: true,
    listServices: true,
    registryWatch: true,
  },
  options: SCHEMA,
  fromUrl(url) {
    for (const k of ['path', 'hosts']) {
      if (k in url.params)
        throw new ConfigError(
          `file: "${k}" goes in the URL itself (file:///abs/path/registry.json), not as a ?${k}= parameter`,
          { field: k },
        );
    }
    if (url.hosts.length > 1 || (url.hosts[0] && url.hosts[0].host !== 'localhost') || url.hosts[0]?.port) {
      throw new ConfigError(
        `file: the registry is a local file; write file:///abs/path/registry.json (got ${url.redacted})`,
        { field: 'path' },
      );
    }
    const raw: Record<string, unknown> = { ...url.params };
    if (url.path && url.path !== '/') raw.path = url.path;
    return raw;
  },
  validate: checkCrossFields,
  create(options, ctx) {
    return openFile(options, ctx);
  },
});

/** Registers the file:// scheme. Idempotent. */
export function setup(): void {
  registerAdapter(fileAdapter);
}
setup();
