import {
  RegistrarBase,
  RegistrationBase,
  RegistryUnavailableError,
  WatchResolver,
  collectEndpoints,
  instanceToJson,
  type CheckedSpec,
  type Registration,
} from '../core';
import type { ConformanceOptions, ConformanceSubject } from './conformance';

/**
 * A small in-process registry with heartbeats, a TTL and an outage switch, used to test the
 * conformance kit itself: the `good` variant passes it; each broken variant carries one bug the
 * kit must catch.
 *
 *   noop-remove     deregister() does nothing (the entry only disappears when its TTL expires)
 *   empty-on-error  a transport failure is delivered as an empty set instead of sink.error()
 */
export type ToyVariant = 'good' | 'noop-remove' | 'empty-on-error';

export const TOY_TTL_MS = 1500;
const HEARTBEAT_MS = TOY_TTL_MS / 3;

class ToyStore {
  readonly entries = new Map<string, Map<string, { value: unknown; beat: number }>>();
  readonly listeners = new Set<() => void>();
  down = false;
  changed(): void {
    for (const l of [...this.listeners]) l();
  }
}

class ToyRegistration extends RegistrationBase {
  private timer?: NodeJS.Timeout;
  constructor(
    spec: CheckedSpec,
    private readonly store: ToyStore,
    private readonly variant: ToyVariant,
  ) {
    super(spec);
    this.beat();
  }
  private beat(): void {
    let m = this.store.entries.get(this.service);
    if (!m) this.store.entries.set(this.service, (m = new Map()));
    m.set(this.id, { value: { ...instanceToJson(this.spec) }, beat: Date.now() });
    this.store.changed();
    this.timer = setTimeout(() => this.beat(), HEARTBEAT_MS);
    this.timer.unref();
  }
  crash(): void {
    clearTimeout(this.timer);
  }
  protected async write(spec: CheckedSpec): Promise<void> {
    this.spec = spec;
    clearTimeout(this.timer);
    this.beat();
  }
  protected async remove(): Promise<void> {
    clearTimeout(this.timer);
    if (this.variant === 'noop-remove') return;
    this.store.entries.get(this.service)?.delete(this.id);
    this.store.changed();
  }
}

class ToyRegistrar extends RegistrarBase<ToyRegistration> {
  constructor(
    private readonly store: ToyStore,
    private readonly variant: ToyVariant,
  ) {
    super('toy');
  }
  protected async create(spec: CheckedSpec): Promise<ToyRegistration> {
    return new ToyRegistration(spec, this.store, this.variant);
  }
}

function toyResolver(store: ToyStore, variant: ToyVariant): WatchResolver {
  return new WatchResolver('toy', (service, sink) => {
    const evaluate = () => {
      if (store.down) {
        if (variant === 'empty-on-error') return sink.update([]);
        return sink.error(new RegistryUnavailableError('toy: registry unreachable (connection refused)'));
      }
      const now = Date.now();
      const live = [...(store.entries.get(service) ?? new Map()).entries()]
        .filter(([, e]) => now - e.beat < TOY_TTL_MS)
        .map(([key, e]) => ({ key, value: e.value }));
      sink.update(collectEndpoints(live).endpoints);
    };
    store.listeners.add(evaluate);
    const poll = setInterval(evaluate, 50); // expiry without a write
    poll.unref();
    queueMicrotask(evaluate);
    return () => {
      store.listeners.delete(evaluate);
      clearInterval(poll);
    };
  });
}

/** A conformance subject over a fresh toy registry of the given variant. */
export async function toySubject(variant: ToyVariant): Promise<ConformanceSubject> {
  const store = new ToyStore();
  const resolver = toyResolver(store, variant);
  const registrar = new ToyRegistrar(store, variant);
  return {
    resolver,
    registrar,
    crash: async (r: Registration) => (r as ToyRegistration).crash(),
    faults: {
      outage: async () => {
        store.down = true;
        store.changed();
      },
      heal: async () => {
        store.down = false;
        store.changed();
      },
      writesDuringOutage: true,
    },
    cleanup: async () => {
      await registrar.close();
      await resolver.close();
    },
  };
}

/** The kit's options for a toy variant (minus it/describe). */
export function toyOptions(variant: ToyVariant): Omit<ConformanceOptions, 'it' | 'describe'> {
  return {
    name: `toy ${variant}`,
    factory: () => toySubject(variant),
    capabilities: {
      watch: 'push',
      register: true,
      ttl: true,
      weights: true,
      zones: true,
      metadata: true,
      listServices: false,
    },
    timing: { propagationMs: 1000, ttlMs: TOY_TTL_MS, outageMs: 1000 },
  };
}
