import type { BadEntry, Endpoint, Logger, RegistrySink } from '../../core';
import type { KubeClient } from './client';
// index.ts calls namespaceWatchClass() after its module body ran, so this cycle is safe.
import { endpointsFromSlices, type K8sOptions, type SliceWatch } from './index';

/** What index.ts builds from namespaceWatchClass: one namespace's registry-wide watch. */
export type NamespaceWatchClass = new (
  client: KubeClient,
  namespace: string,
  out: RegistrySink,
  o: K8sOptions,
  logger: Logger,
  random: () => number,
) => { start(): void; stop(): void };

/**
 * The Kubernetes registry-wide watch: one EndpointSlice list+watch of the namespace (label
 * selector `kubernetes.io/service-name`, any value) instead of one per service, with SliceWatch's
 * loop (bookmarks, 410 re-list, one idle watchdog for the one stream). A burst of events
 * recomputes only the services whose slices it touched. Made from the SliceWatch class (passed in,
 * so this file has no runtime import of index.ts).
 */
export function namespaceWatchClass(Base: typeof SliceWatch): NamespaceWatchClass {
  return class NamespaceWatch extends Base {
    /** slice name -> its service; service -> its slice names. */
    private readonly serviceOf = new Map<string, string>();
    private readonly slicesOf = new Map<string, Set<string>>();
    private readonly touchedNames = new Set<string>();

    constructor(
      client: KubeClient,
      namespace: string,
      private readonly out: RegistrySink,
      o: K8sOptions,
      logger: Logger,
      random: () => number,
    ) {
      super(client, { service: '', namespace }, { error: (e) => out.error(e) }, o, logger, random);
    }

    protected override touched(name: string): void {
      this.touchedNames.add(name);
    }

    protected override report(full: boolean): void {
      const rv = this.rv || undefined;
      if (full) {
        this.serviceOf.clear();
        this.slicesOf.clear();
        this.touchedNames.clear();
        for (const name of this.slices.keys()) this.index(name);
        const all = new Map<string, Endpoint[]>();
        const bad = new Map<string, BadEntry[]>();
        for (const service of this.slicesOf.keys()) {
          const v = this.view(service);
          all.set(service, v.endpoints);
          if (v.bad.length) bad.set(service, v.bad);
        }
        this.out.reset(all, { revision: rv, bad });
        return;
      }
      const dirty = new Set<string>();
      for (const name of this.touchedNames) {
        const was = this.serviceOf.get(name);
        if (was) dirty.add(was);
        const now = this.index(name);
        if (now) dirty.add(now);
      }
      this.touchedNames.clear();
      for (const service of dirty) {
        const v = this.view(service);
        this.out.update(service, v.endpoints, { revision: rv, bad: v.bad });
      }
    }

    /** Files slice `name` under its service (as it is in `slices` now); returns that service. */
    private index(name: string): string | undefined {
      const was = this.serviceOf.get(name);
      if (was) {
        this.serviceOf.delete(name);
        const set = this.slicesOf.get(was);
        set?.delete(name);
        if (set && set.size === 0) this.slicesOf.delete(was);
      }
      const s = this.slices.get(name);
      const service = s?.metadata?.labels?.['kubernetes.io/service-name'];
      if (typeof service !== 'string' || service === '') return undefined;
      this.serviceOf.set(name, service);
      let set = this.slicesOf.get(service);
      if (!set) this.slicesOf.set(service, (set = new Set()));
      set.add(name);
      return service;
    }

    private view(service: string) {
      const names = [...(this.slicesOf.get(service) ?? [])].sort();
      return endpointsFromSlices(
        { service, namespace: this.t.namespace },
        names.map((n) => this.slices.get(n)),
        this.o['terminating-fallback'],
      );
    }
  };
}
