import { checkServiceName, type BadEntry, type Endpoint, type RegistrySink } from '../../core';
import type { EtcdClient } from './client';
import { assemble, ServiceWatch, type Decoded, type ServiceWatchOptions } from './watch';

/** `<service>` of a key `<prefix>/<service>/<id>`, or undefined for a key that is no instance. */
function serviceOf(rest: string): string | undefined {
  const slash = rest.indexOf('/');
  if (slash <= 0 || slash === rest.length - 1) return undefined;
  const service = rest.slice(0, slash);
  try {
    checkServiceName(service);
    return service;
  } catch {
    return undefined;
  }
}

/**
 * The registry-wide watch: one range read of `<prefix>/` and one watch stream over it, whatever the
 * number of services (the same loop as ServiceWatch: re-read on compaction, on a revision going
 * backwards, on a dead stream; one progress request per quiet stream, so liveness costs O(1)).
 * A change event recomputes only the services of its keys.
 */
export class RegistryWatch extends ServiceWatch {
  /** service -> its keys in `entries`. */
  private readonly keysOf = new Map<string, Set<string>>();

  constructor(
    client: EtcdClient,
    root: string,
    private readonly out: RegistrySink,
    o: ServiceWatchOptions,
  ) {
    super(client, root, { error: (e) => out.error(e) }, o);
  }

  protected override idOf(key: string): string {
    const rest = key.slice(this.prefix.length);
    return rest.slice(rest.indexOf('/') + 1);
  }

  protected override emit(revision: number, changed?: string[]): void {
    const rev = String(revision);
    if (!changed) {
      this.keysOf.clear();
      for (const key of this.entries.keys()) this.index(key);
      const all = new Map<string, Endpoint[]>();
      const bad = new Map<string, BadEntry[]>();
      for (const service of this.keysOf.keys()) {
        const v = this.view(service);
        all.set(service, v.endpoints);
        if (v.bad.length) bad.set(service, v.bad);
      }
      this.out.reset(all, { revision: rev, bad });
      return;
    }
    const services = new Set<string>();
    for (const key of changed) {
      const service = this.index(key);
      if (service) services.add(service);
    }
    for (const service of services) {
      const v = this.view(service);
      this.out.update(service, v.endpoints, { revision: rev, bad: v.bad });
    }
  }

  /** Adds or removes `key` in its service's index (following `entries`); returns its service. */
  private index(key: string): string | undefined {
    const service = serviceOf(key.slice(this.prefix.length));
    if (!service) return undefined;
    let keys = this.keysOf.get(service);
    if (this.entries.has(key)) {
      if (!keys) this.keysOf.set(service, (keys = new Set()));
      keys.add(key);
    } else if (keys) {
      keys.delete(key);
      if (keys.size === 0) this.keysOf.delete(service);
    }
    return service;
  }

  private view(service: string): { endpoints: Endpoint[]; bad: BadEntry[] } {
    const keys = this.keysOf.get(service);
    if (!keys) return { endpoints: [], bad: [] };
    return assemble([...keys].map((k) => [k, this.entries.get(k)!] as [string, Decoded]));
  }
}
