import '../builtins';
import { Discovery, TokenBucket, normalizeConfig, resolveRegistry, silentLogger, type Logger } from '../core';
import type { BridgeTarget } from './target';

/**
 * Process-wide state of the bridge: the installed options, the shared registries and counters.
 *
 * Sharing: every resolver (one per grpc channel) acquires the registry its target names. Targets
 * naming equal registry configs (same adapter, same validated options) share one Discovery, so a
 * process holds one registry client and, through the Discovery's WatchResolver, one watch per
 * service. The Discovery is closed when the last resolver releases it (a channel closing or going
 * idle); a later acquire builds a new one. A Discovery given to installGrpc() is shared the same way
 * but never closed by the bridge: its owner closes it.
 */

export interface BridgeSettings {
  logger: Logger;
  /** The `wayfinder:` discovery given by the user (not owned), if any. */
  discovery?: Discovery;
  /** Bumped when the default discovery changes, so new channels use the new one. */
  defaultGeneration: number;
  reresolveRatePerSec: number;
  reresolveBurst: number;
  /** The LB config put in our resolvers' service config when the channel names none. */
  defaultLbConfig: Record<string, object>;
}

export const settings: BridgeSettings = {
  logger: silentLogger,
  defaultGeneration: 0,
  reresolveRatePerSec: 1,
  reresolveBurst: 2,
  defaultLbConfig: { wayfinder_round_robin: {} },
};

/** Counters for diagnostics and tests. */
export const stats = {
  /** updateResolution() calls grpc-js made on our resolvers. */
  resolutionRequests: 0,
  /** resolver.refresh() calls forwarded to registries after rate limiting. */
  refreshes: 0,
  /** Per-endpoint child balancers created / destroyed by wayfinder_* LB policies. */
  childrenCreated: 0,
  childrenDestroyed: 0,
  /** Results (endpoint lists or errors) our resolvers reported to grpc-js. */
  reports: 0,
};

export interface SharedRegistry {
  readonly key: string;
  refs: number;
  readonly discovery: Promise<Discovery>;
  /** The resolved Discovery once available (for synchronous refresh). */
  ready?: Discovery;
  /** Safe to log. */
  readonly display: string;
  readonly owned: boolean;
  /** One re-resolution budget per service, shared by every channel on this registry. */
  bucket(service: string): TokenBucket;
}

const shared = new Map<string, SharedRegistry>();

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

function makeEntry(key: string, display: string, owned: boolean, create: () => Promise<Discovery>): SharedRegistry {
  const buckets = new Map<string, TokenBucket>();
  const entry: SharedRegistry = {
    key,
    refs: 0,
    display,
    owned,
    discovery: create(),
    bucket(service) {
      let b = buckets.get(service);
      if (!b) buckets.set(service, (b = new TokenBucket(settings.reresolveRatePerSec, settings.reresolveBurst)));
      return b;
    },
  };
  entry.discovery.then(
    (d) => {
      entry.ready = d;
    },
    () => {
      // A registry that failed to build is not shared: the next acquire tries again.
      if (shared.get(key) === entry) shared.delete(key);
    },
  );
  return entry;
}

/**
 * Acquires the shared registry for a target. Throws ConfigError synchronously for an invalid
 * registry config (so channel construction fails fast); connection failures surface as a rejected
 * `discovery` promise.
 */
export function acquireRegistry(target: BridgeTarget): SharedRegistry {
  let key: string;
  let display: string;
  let owned = true;
  let create: () => Promise<Discovery>;
  if (target.registryUrl === undefined) {
    key = `${target.scheme}#${settings.defaultGeneration}`;
    const given = settings.discovery;
    owned = !given;
    // The lazy default is described (and its config validated) now, from the environment.
    display = given ? given.description : resolveRegistry(normalizeConfig(undefined).registry).display;
    create = given ? () => Promise.resolve(given) : () => Discovery.fromConfig(undefined, { logger: settings.logger });
  } else {
    const { def, options, display: shown, cache } = resolveRegistry(target.registryUrl);
    // cache= is a core option outside the adapter's options: a cached and an uncached target are
    // two Discoveries (only one of them keeps the last-known-good file).
    key = `${def.scheme}#${stableJson(options)}#${cache ?? ''}`;
    display = shown;
    const url = target.registryUrl;
    create = () => Discovery.fromConfig(url, { logger: settings.logger });
  }
  let entry = shared.get(key);
  if (!entry) shared.set(key, (entry = makeEntry(key, display, owned, create)));
  entry.refs++;
  return entry;
}

export function releaseRegistry(entry: SharedRegistry): void {
  entry.refs--;
  if (entry.refs > 0) return;
  if (shared.get(entry.key) === entry) shared.delete(entry.key);
  if (!entry.owned) return;
  entry.discovery
    .then(
      (d) => d.close(),
      () => undefined,
    )
    .catch((err) => settings.logger.warn({ err }, `grpc bridge: closing registry ${entry.display} failed`));
}

/** Registries currently shared by live resolvers (for diagnostics and tests). */
export function sharedRegistries(): { registry: string; channels: number }[] {
  return [...shared.values()].map((e) => ({ registry: e.display, channels: e.refs }));
}
