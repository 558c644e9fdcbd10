import type { Resolver, Snapshot, Watch } from '../core';

/**
 * Where the xDS server gets endpoint sets from. One method, so that the registry-wide catalog view
 * (design.md, "Catalog") can replace the per-service watches without touching the server: the server
 * asks for the services clients subscribe to and drops them when the last subscriber leaves.
 * Callbacks carry complete snapshots and are never called from inside watch().
 */
export interface EndpointFeed {
  watch(service: string, onSnapshot: (s: Snapshot) => void): Watch;
  close(): Promise<void>;
}

/** The feed over a Resolver: one watch per subscribed service (the resolver shares it per service). */
export function resolverFeed(resolver: Pick<Resolver, 'watch'>): EndpointFeed {
  return {
    watch: (service, onSnapshot) => resolver.watch(service, onSnapshot),
    close: async () => {},
  };
}
