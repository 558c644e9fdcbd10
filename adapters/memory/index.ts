import { EventEmitter } from 'node:events';
import {
  ConfigError,
  RegistrarBase,
  RegistrationBase,
  WatchResolver,
  collectEndpoints,
  defineAdapter,
  instanceToJson,
  registerAdapter,
  silentLogger,
  type AdapterContext,
  type AdapterInstance,
  type CheckedSpec,
  type Logger,
  type OptionsSchema,
} from '../../core';

/**
 * An in-process registry: for tests, examples and single-process apps. Everything lives in a
 * MemoryStore; `memory://name` URLs in one process share the store of that name.
 */
export class MemoryStore {
  private readonly services = new Map<string, Map<string, unknown>>();
  private readonly events = new EventEmitter();
  private revision = 0;

  constructor() {
    this.events.setMaxListeners(0);
  }

  /** Writes a raw entry (any JSON value, valid or not: tests use this to inject bad entries). */
  put(service: string, key: string, value: unknown): void {
    let m = this.services.get(service);
    if (!m) this.services.set(service, (m = new Map()));
    m.set(key, value);
    this.changed(service);
  }
  delete(service: string, key: string): boolean {
    const ok = this.services.get(service)?.delete(key) ?? false;
    if (ok) this.changed(service);
    return ok;
  }
  entries(service: string): { key: string; value: unknown }[] {
    return [...(this.services.get(service) ?? new Map()).entries()].map(([key, value]) => ({ key, value }));
  }
  serviceNames(): string[] {
    return [...this.services.entries()]
      .filter(([, m]) => m.size > 0)
      .map(([s]) => s)
      .sort();
  }
  get currentRevision(): number {
    return this.revision;
  }
  onChange(service: string, fn: () => void): () => void {
    this.events.on(service, fn);
    return () => this.events.off(service, fn);
  }
  private changed(service: string): void {
    this.revision++;
    this.events.emit(service);
  }
}

const stores = new Map<string, MemoryStore>();
/** The process-wide store behind `memory://<name>` (created on first use). */
export function memoryStore(name = 'default'): MemoryStore {
  let s = stores.get(name);
  if (!s) stores.set(name, (s = new MemoryStore()));
  return s;
}

export interface MemoryOptions {
  /** Store name; `memory://name` or `?name=`. */
  name: string;
}

class MemoryRegistration extends RegistrationBase {
  constructor(
    spec: CheckedSpec,
    private readonly store: MemoryStore,
    logger: Logger,
  ) {
    super(spec, logger);
  }
  protected async write(spec: CheckedSpec): Promise<void> {
    this.store.put(spec.service, spec.id, instanceToJson(spec));
  }
  protected async remove(): Promise<void> {
    this.store.delete(this.service, this.id);
  }
}

class MemoryRegistrar extends RegistrarBase<MemoryRegistration> {
  constructor(
    private readonly store: MemoryStore,
    private readonly logger: Logger,
  ) {
    super('memory');
  }
  protected async create(spec: CheckedSpec): Promise<MemoryRegistration> {
    const r = new MemoryRegistration(spec, this.store, this.logger);
    this.store.put(spec.service, spec.id, instanceToJson(spec));
    return r;
  }
}

export const memoryOptionsSchema: OptionsSchema = {
  name: {
    type: 'string',
    default: 'default',
    doc: 'Store name; registries with the same name in one process share entries.',
    check: (v: string) => (/^[A-Za-z0-9._-]+$/.test(v) ? undefined : 'must match [A-Za-z0-9._-]+'),
  },
};

/** Resolver and registrar over a MemoryStore (a fresh private one by default). */
export function createMemoryRegistry(
  store: MemoryStore = new MemoryStore(),
  ctx: Partial<Pick<AdapterContext, 'logger'>> = {},
): AdapterInstance & { store: MemoryStore } {
  const logger = ctx.logger ?? silentLogger;
  const resolver = new WatchResolver(
    'memory',
    (service, sink) => {
      const emit = () => {
        const { endpoints, bad } = collectEndpoints(store.entries(service));
        sink.update(endpoints, { revision: String(store.currentRevision), bad });
      };
      const off = store.onChange(service, emit);
      emit();
      return off;
    },
    { logger },
  );
  return {
    store,
    resolver,
    registrar: new MemoryRegistrar(store, logger),
    listServices: async () => store.serviceNames(),
  };
}

export const memoryAdapter = defineAdapter<MemoryOptions>({
  scheme: 'memory',
  description:
    'In-process registry: tests, examples, single-process apps. memory://name shares a store within the process.',
  capabilities: {
    watch: 'push',
    register: true,
    ttl: false,
    weights: true,
    zones: true,
    metadata: true,
    listServices: true,
  },
  options: memoryOptionsSchema,
  fromUrl(url) {
    const raw: Record<string, unknown> = { ...url.params };
    if (url.hosts.length > 1)
      throw new ConfigError(`memory: give one store name (got ${url.hosts.length})`, { field: 'name' });
    if (url.hosts[0]) raw.name = url.hosts[0].host;
    return raw;
  },
  create(options, ctx) {
    return createMemoryRegistry(memoryStore(options.name), ctx);
  },
});

/** Registers the memory:// scheme. Idempotent. */
export function setup(): void {
  registerAdapter(memoryAdapter);
}
setup();
