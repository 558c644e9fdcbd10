import * as grpc from '@grpc/grpc-js';
import { dirname, join } from 'node:path';
import {
  resolveRegistry,
  sameEndpoints,
  toWayfinderError,
  type Discovery,
  type Endpoint,
  type Snapshot,
  type Watch,
  type WayfinderError,
} from '../core';
import { toGrpcEndpoint } from './endpoints';
import { validateLbConfigList } from './policy-config';
import { acquireRegistry, releaseRegistry, settings, stats, type SharedRegistry } from './shared';
import { parseBridgeTarget, type BridgeTarget } from './target';

type ServiceConfig = grpc.ServiceConfig;
type StatusOr<T> = grpc.experimental.StatusOr<T>;

// grpc-js does not export validateServiceConfig publicly; we need it to merge our LB default into a
// channel's own service config the way grpc-js would have parsed it (timeouts, retry policies).
let validateServiceConfig: ((o: unknown) => ServiceConfig) | undefined;
try {
  validateServiceConfig = require(
    join(dirname(require.resolve('@grpc/grpc-js')), 'service-config.js'),
  ).validateServiceConfig;
} catch {
  validateServiceConfig = undefined;
}

/**
 * The service config our resolvers report, decided once per channel from its options:
 * - the channel sets no service config: ours, with the default wayfinder LB policy;
 * - the channel's service config has no LB choice: the channel's, plus our default LB policy;
 * - the channel chooses an LB policy: null (grpc-js uses the channel's own), after validating a
 *   wayfinder_* choice with the balancer's options schema. An invalid one is reported as a service
 *   config error, so calls fail with the message instead of grpc-js silently using pick_first.
 */
export function serviceConfigFor(options: grpc.ChannelOptions): StatusOr<ServiceConfig> | null {
  const lb = [settings.defaultLbConfig];
  const raw = options['grpc.service_config'];
  if (typeof raw !== 'string' || raw === '')
    return grpc.experimental.statusOrFromValue<ServiceConfig>({ loadBalancingConfig: lb, methodConfig: [] });
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return null; // grpc-js rejects the channel itself
  }
  const list = parsed.loadBalancingConfig;
  if ((Array.isArray(list) && list.length > 0) || parsed.loadBalancingPolicy) {
    const problem = Array.isArray(list) ? validateLbConfigList(list) : undefined;
    if (problem)
      return grpc.experimental.statusOrFromError({
        code: grpc.status.UNAVAILABLE,
        details: `invalid service config: ${problem}`,
      });
    return null;
  }
  if (!validateServiceConfig) return null;
  try {
    return grpc.experimental.statusOrFromValue(validateServiceConfig({ ...parsed, loadBalancingConfig: lb }));
  } catch {
    return null;
  }
}

/** grpclb's policy name in other gRPC languages, and ours (grpc/grpclb; not imported: it imports this module). */
const GRPCLB = 'grpclb';
const WAYFINDER_GRPCLB = 'wayfinder_grpclb';

/**
 * Whether a channel takes the service config its registry publishes (Snapshot.serviceConfig, i.e.
 * the dns adapter's `_grpc_config` TXT record). As in grpc-js's and C-core's own resolvers, it
 * does unless `grpc.service_config_disable_resolution` is 1: a published config replaces the
 * channel's own `grpc.service_config`, which stays the default while the registry publishes none.
 */
export function takesRegistryServiceConfig(options: grpc.ChannelOptions): boolean {
  return options['grpc.service_config_disable_resolution'] !== 1;
}

/**
 * A service config published by the registry, made ready for grpc-js, or the problem with it:
 * - `grpclb` (the name C-core, grpc-go and grpc-java know) becomes `wayfinder_grpclb`, and a
 *   `wayfinder_grpclb` entry naming no balancers finds them as C-core does: the SRV record
 *   `_grpclb._tcp.<host>` looked up in the target's own DNS registry (a dns target only);
 * - no LB choice: our default LB policy is added (as for a channel's own service config);
 * - then it is validated as grpc-js would (and a wayfinder_* choice with its balancer's schema).
 */
export function prepareRegistryServiceConfig(
  published: Record<string, unknown>,
  target: Pick<BridgeTarget, 'adapterScheme' | 'registryUrl' | 'service'>,
): { value: ServiceConfig } | { problem: string } {
  const sc: Record<string, unknown> = { ...published };
  const list = sc.loadBalancingConfig;
  if (Array.isArray(list) && list.length > 0) {
    sc.loadBalancingConfig = list.map((entry: unknown) => grpclbEntry(entry, target));
    const problem = validateLbConfigList(sc.loadBalancingConfig as unknown[]);
    if (problem) return { problem };
    const names = (sc.loadBalancingConfig as unknown[]).flatMap((e) =>
      e && typeof e === 'object' ? Object.keys(e) : [],
    );
    if (!names.some((n) => grpc.experimental.isLoadBalancerNameRegistered(n)))
      return { problem: `no load-balancing policy in ${JSON.stringify(names)} is known to this client` };
  } else if (!sc.loadBalancingPolicy) sc.loadBalancingConfig = [settings.defaultLbConfig];
  if (!validateServiceConfig) return { problem: "grpc-js's service config validator is not available" };
  try {
    return { value: validateServiceConfig(sc) };
  } catch (e) {
    return { problem: (e as Error).message };
  }
}

function grpclbEntry(entry: unknown, target: Pick<BridgeTarget, 'adapterScheme' | 'registryUrl' | 'service'>): unknown {
  if (!entry || typeof entry !== 'object' || Array.isArray(entry)) return entry;
  const [name] = Object.keys(entry);
  if (name !== GRPCLB && name !== WAYFINDER_GRPCLB) return entry;
  const cfg = { ...((entry as Record<string, unknown>)[name] as Record<string, unknown> | undefined) };
  if (name === GRPCLB) delete cfg.childPolicy; // always round-robin over the list (docs/grpclb.md)
  if (cfg.balancers === undefined && cfg.balancerRegistry === undefined && target.adapterScheme === 'dns') {
    cfg.balancerRegistry = target.registryUrl;
    // The target's DNS name: `echo.svc.test:443` or `_grpc._tcp.echo.svc.test` -> echo.svc.test.
    cfg.balancerName ??= `_grpclb._tcp.${target.service.replace(/:\d+$/, '').replace(/^(_[^.]+\.)+/, '')}`;
  }
  return { [WAYFINDER_GRPCLB]: cfg };
}

/** The resolver attribute (and LB-policy channel option) carrying the target's service name. */
export const SERVICE_ATTRIBUTE = 'wayfinder.service';

/**
 * The :authority for a service name. grpc-js builds a URL from it (`http://<authority>`), so a
 * named port as in `echo.default:grpc` (Kubernetes) must not look like a port: drop it.
 */
export function authorityFor(service: string): string {
  const i = service.lastIndexOf(':');
  return i >= 0 && !/^\d+$/.test(service.slice(i + 1)) ? service.slice(0, i) : service;
}

/**
 * The grpc-js resolver for our schemes. One per channel (grpc-js creates it); all resolvers on
 * equal registries share one Discovery and one watch per service (see shared.ts).
 *
 * Contract with grpc-js: the listener is never called synchronously from the constructor or from
 * updateResolution() (Resolver.watch delivers asynchronously). The first updateResolution() starts
 * the watch; later ones are re-resolution requests, rate-limited by a token bucket shared by every
 * channel on the same registry and service, and forwarded to resolver.refresh() (poll-based
 * registries poll now; push-based ones ignore it). They never re-report an unchanged list: a report
 * resets grpc-js's re-resolution backoff, which is what makes a naive resolver spin at ~700/s
 * while a backend is down. destroy() stops the watch and releases the registry; a later
 * updateResolution() starts again.
 *
 * What is reported: every change of the complete endpoint set (an empty set too: the policy then
 * goes TRANSIENT_FAILURE, so calls fail fast with UNAVAILABLE, or wait with waitForReady). A
 * registry error with a last good set keeps that set (nothing is reported). A registry error
 * before any good set is reported as UNAVAILABLE.
 */
export class BridgeResolver implements grpc.experimental.Resolver {
  private readonly target?: BridgeTarget;
  private readonly targetError?: WayfinderError;
  private readonly serviceConfig: StatusOr<ServiceConfig> | null;
  private readonly takesRegistryConfig: boolean;
  /** The registry's service config last handed to grpc-js (JSON as published), and what it became. */
  private published?: { json: string; config: StatusOr<ServiceConfig> | null };
  private session?: { registry: SharedRegistry; watch?: Watch; gen: number };
  private gen = 0;
  private last?: Endpoint[];
  private pendingRefresh?: NodeJS.Timeout;

  static getDefaultAuthority(target: grpc.experimental.GrpcUri): string {
    // Called synchronously by the Channel constructor: a malformed target or registry config
    // (ConfigError naming the field) fails there, before anything connects.
    const t = parseBridgeTarget(target);
    if (t.registryUrl !== undefined) resolveRegistry(t.registryUrl);
    return authorityFor(t.service);
  }

  constructor(
    uri: grpc.experimental.GrpcUri,
    private readonly listener: grpc.experimental.ResolverListener,
    options: grpc.ChannelOptions,
  ) {
    try {
      this.target = parseBridgeTarget(uri);
    } catch (e) {
      this.targetError = toWayfinderError(e, 'grpc target');
    }
    this.serviceConfig = serviceConfigFor(options);
    this.takesRegistryConfig = takesRegistryServiceConfig(options);
  }

  updateResolution(): void {
    stats.resolutionRequests++;
    if (!this.session) this.start();
    else this.refreshLimited();
  }

  destroy(): void {
    this.gen++;
    clearTimeout(this.pendingRefresh);
    this.pendingRefresh = undefined;
    const s = this.session;
    this.session = undefined;
    this.last = undefined;
    this.published = undefined;
    if (s) {
      s.watch?.close();
      releaseRegistry(s.registry);
    }
  }

  private start(): void {
    const gen = ++this.gen;
    if (!this.target) return this.reportErrorAsync(this.targetError!, gen);
    const target = this.target;
    let registry: SharedRegistry;
    try {
      registry = acquireRegistry(target);
    } catch (e) {
      return this.reportErrorAsync(toWayfinderError(e, `grpc target ${target.scheme}:`), gen);
    }
    const session: { registry: SharedRegistry; watch?: Watch; gen: number } = { registry, gen };
    this.session = session;
    registry.discovery.then(
      (d: Discovery) => {
        if (gen !== this.gen) return;
        try {
          session.watch = d.resolver.watch(target.service, (s) => {
            if (gen === this.gen) this.onSnapshot(s, registry);
          });
        } catch (e) {
          this.failSession(session, toWayfinderError(e, `${registry.display}`));
        }
      },
      (e: unknown) => {
        if (gen === this.gen) this.failSession(session, toWayfinderError(e, `${registry.display}`));
      },
    );
  }

  /** The registry could not be built or watched: report it, and let the next updateResolution() retry. */
  private failSession(session: { registry: SharedRegistry }, err: WayfinderError): void {
    if (this.session === session) {
      this.session = undefined;
      releaseRegistry(session.registry);
    }
    this.reportError(err, session.registry.display);
  }

  private onSnapshot(s: Snapshot, registry: SharedRegistry): void {
    if (s.error)
      settings.logger.warn(
        { service: s.service, code: s.error.code, registry: registry.display },
        `grpc bridge: ${s.error.message}`,
      );
    const good = !s.error || s.error.code === 'BAD_ENTRY' || s.endpoints.length > 0 || this.last !== undefined;
    if (!good) return this.reportError(s.error!, registry.display);
    const configChanged = this.takesRegistryConfig && JSON.stringify(s.serviceConfig) !== this.published?.json;
    // the last good set, kept across a registry error
    if (this.last && sameEndpoints(this.last, s.endpoints) && !configChanged) return;
    if (configChanged) this.publishedConfig(s.serviceConfig, registry);
    this.last = s.endpoints;
    stats.reports++;
    this.listener(
      grpc.experimental.statusOrFromValue(s.endpoints.map(toGrpcEndpoint)),
      // grpc-js hands resolver attributes to the LB policy with the channel options: policies that
      // need the service name (wayfinder_grpclb) read it here.
      { [SERVICE_ATTRIBUTE]: s.service },
      this.currentServiceConfig(),
      `${s.endpoints.length} endpoint(s) for "${s.service}" from ${registry.display}${s.revision ? ` at revision ${s.revision}` : ''}`,
    );
  }

  /** The service config handed to grpc-js: the registry's when it publishes one this channel takes. */
  private currentServiceConfig(): StatusOr<ServiceConfig> | null {
    return this.published?.config ?? this.serviceConfig;
  }

  /**
   * Takes a newly published service config. An unusable one is logged and the previous one stays
   * (or the channel's when there was none): a bad TXT record never breaks a working channel.
   */
  private publishedConfig(published: Record<string, unknown> | undefined, registry: SharedRegistry): void {
    const json = JSON.stringify(published);
    if (!published || !this.target) {
      this.published = { json, config: null };
      return;
    }
    const r = prepareRegistryServiceConfig(published, this.target);
    if ('value' in r) {
      settings.logger.info(
        { service: this.target.service, registry: registry.display, serviceConfig: published },
        'grpc bridge: using the service config published by the registry',
      );
      this.published = { json, config: grpc.experimental.statusOrFromValue(r.value) };
      return;
    }
    settings.logger.warn(
      { service: this.target.service, registry: registry.display, serviceConfig: published },
      `grpc bridge: ignoring the service config published by the registry: ${r.problem}`,
    );
    this.published = { json, config: this.published?.config ?? null };
  }

  private reportErrorAsync(err: WayfinderError, gen: number): void {
    queueMicrotask(() => {
      if (gen === this.gen) this.reportError(err);
    });
  }

  private reportError(err: WayfinderError, registry?: string): void {
    stats.reports++;
    const where = this.target ? `"${this.target.service}"${registry ? ` from ${registry}` : ''}` : 'target';
    this.listener(
      grpc.experimental.statusOrFromError({
        code: grpc.status.UNAVAILABLE,
        details: `wayfinder: resolving ${where} failed: ${err.code}: ${err.message}`,
      }),
      {},
      this.currentServiceConfig(),
      err.message,
    );
  }

  private refreshLimited(): void {
    const s = this.session;
    if (!s || this.pendingRefresh || !this.target) return;
    const wait = s.registry.bucket(this.target.service).take();
    if (wait > 0) {
      // Coalesce every request made while out of tokens into one refresh when a token is due.
      this.pendingRefresh = setTimeout(() => {
        this.pendingRefresh = undefined;
        if (this.session === s) this.refreshLimited();
      }, wait);
      this.pendingRefresh.unref?.();
      return;
    }
    const d = s.registry.ready;
    if (!d?.resolver.refresh) return;
    stats.refreshes++;
    try {
      d.resolver.refresh(this.target.service);
    } catch (err) {
      settings.logger.warn({ err, registry: s.registry.display }, 'grpc bridge: resolver.refresh() threw; ignored');
    }
  }
}
