import '../builtins';
import * as grpc from '@grpc/grpc-js';
import { ConfigError, listAdapterSchemes, listBalancers, type Discovery, type Logger } from '../core';
import { POLICY_PREFIX, registerPolicy } from './policy';
import { registeredPolicies, validateLbConfigList } from './policy-config';
import { registerGrpclbPolicy } from './grpclb/policy';
import { guardSchemesFromProxy } from './proxy';
import { BridgeResolver } from './resolver';
import { settings, sharedRegistries, stats } from './shared';
import { DEFAULT_SCHEME, PREFIXED_SCHEME } from './target';

export { WAYFINDER_ENDPOINT, wayfinderEndpointOf, toGrpcEndpoint, type BridgeEndpoint } from './endpoints';
export { PICK_KEY_METADATA } from './picker';
export { POLICY_PREFIX } from './policy';
export { BridgeResolver } from './resolver';
export { serve, type ServeOptions, type Served } from './serve';
export { HealthService, healthServiceDefinition, type ServingStatus } from './health';
export { GRPCLB_POLICY, startBalancerServer, type BalancerServer, type BalancerServerOptions } from './grpclb';
export type { EndpointFeed, FeedMode, FeedSource } from './control-plane';
export { parseBridgeTarget, type BridgeTarget } from './target';
export { checkChannel, checkGrpcTarget, checkServiceConfig } from './diagnostics';
import { noteInstalledSchemes } from './diagnostics';

/**
 * Schemes grpc-js resolves itself. Registering ours under them would take over, e.g., every
 * `dns:` and bare `host:port` target in the process; these registries are reached as
 * `wayfinder+<scheme>://...` instead.
 */
const RESERVED_SCHEMES = new Set(['dns', 'unix', 'unix-abstract', 'ipv4', 'ipv6', 'xds', 'google-c2p']);

export interface GrpcChannelDefaults {
  /**
   * The balancer of channels on our resolvers whose service config chooses no LB policy: a
   * balancer name or `{ name, ...options }` (validated by the balancer's schema). Default
   * "round_robin", i.e. `{"loadBalancingConfig":[{"wayfinder_round_robin":{}}]}`.
   */
  balancer?: string | ({ name: string } & Record<string, unknown>);
  /**
   * Re-resolution budget per registry and service, shared by every channel: tokens per second
   * (default 1) and burst (default 2). Requests beyond it are coalesced into one deferred refresh.
   */
  reresolveRatePerSec?: number;
  reresolveBurst?: number;
}

export interface InstallGrpcOptions {
  /**
   * The registry behind `wayfinder:///<service>`, owned (and closed) by the caller. Default, or
   * null to go back to it: Discovery.fromConfig() on first use, closed with its last channel.
   */
  discovery?: Discovery | null;
  channelDefaults?: GrpcChannelDefaults;
  logger?: Logger;
  /**
   * Opt in to serving grpc-js's own `dns:` scheme, and so every bare `host:port` target of the
   * process, with Wayfinder's DNS adapter: it re-resolves on record TTLs within bounds (grpc-js's
   * resolver never re-polls, so scale-ups go unseen until a connection drops) and reads SRV.
   * `dns://127.0.0.1:53/echo.svc.test:50051` then asks that nameserver. `false` gives `dns:` back
   * to grpc-js. Default: leave `dns:` to grpc-js (use `wayfinder+dns:` for ours).
   */
  replaceDns?: boolean;
}

export interface GrpcInstallation {
  /** Target schemes handled by the bridge. */
  schemes: string[];
  /** LB policy names registered with grpc-js. */
  policies: string[];
  /** False if grpc-js's proxy mapping could not be guarded (then set grpc.enable_http_proxy: 0). */
  proxyGuarded: boolean;
}

const installedSchemes = new Set<string>();
let dnsReplaced = false;

/**
 * Registers with grpc-js: a resolver for `wayfinder:` and for every registry scheme known to the
 * core (`<scheme>:` unless grpc-js owns it, and always `wayfinder+<scheme>:`), and an LB policy
 * `wayfinder_<name>` for every balancer. Idempotent: call it again after registering a new adapter
 * or balancer to make it usable from grpc, or to change the defaults. Options given replace the
 * previous ones; options left out keep them. A new `discovery` applies to channels created after
 * the call.
 */
export function installGrpc(opts: InstallGrpcOptions = {}): GrpcInstallation {
  if (!opts || typeof opts !== 'object') throw new TypeError('installGrpc(): options must be an object');
  if (opts.logger) settings.logger = opts.logger;

  for (const name of listBalancers()) registerPolicy(name);
  registerGrpclbPolicy();

  const d = opts.channelDefaults;
  if (d) {
    if (d.reresolveRatePerSec !== undefined) {
      if (!(typeof d.reresolveRatePerSec === 'number' && d.reresolveRatePerSec > 0))
        throw new ConfigError(
          `grpc: "reresolveRatePerSec" must be a positive number (got ${JSON.stringify(d.reresolveRatePerSec)})`,
          { field: 'reresolveRatePerSec' },
        );
      settings.reresolveRatePerSec = d.reresolveRatePerSec;
    }
    if (d.reresolveBurst !== undefined) {
      if (!(Number.isInteger(d.reresolveBurst) && d.reresolveBurst >= 1))
        throw new ConfigError(
          `grpc: "reresolveBurst" must be an integer of at least 1 (got ${JSON.stringify(d.reresolveBurst)})`,
          { field: 'reresolveBurst' },
        );
      settings.reresolveBurst = d.reresolveBurst;
    }
    if (d.balancer !== undefined) {
      const { name, ...options } = typeof d.balancer === 'string' ? { name: d.balancer } : d.balancer;
      if (typeof name !== 'string')
        throw new ConfigError('grpc: "balancer" must be a name or { name, ...options }', { field: 'balancer' });
      const policy = registerPolicy(name.replace(/-/g, '_').toLowerCase());
      const entry = { [policy]: options };
      const problem = validateLbConfigList([entry]);
      if (problem) throw new ConfigError(`grpc: channelDefaults.balancer: ${problem}`, { field: 'balancer' });
      settings.defaultLbConfig = entry;
    }
  }
  if (opts.discovery !== undefined) {
    if (opts.discovery !== null && (typeof opts.discovery !== 'object' || !opts.discovery.resolver))
      throw new TypeError('installGrpc(): "discovery" must be a Discovery (or null for the default)');
    const next = opts.discovery ?? undefined;
    if (next !== settings.discovery) {
      settings.discovery = next;
      settings.defaultGeneration++;
    }
  }

  const schemes = [DEFAULT_SCHEME];
  for (const s of listAdapterSchemes()) {
    if (!RESERVED_SCHEMES.has(s)) schemes.push(s);
    schemes.push(PREFIXED_SCHEME + s);
  }
  for (const s of schemes) {
    if (installedSchemes.has(s)) continue;
    grpc.experimental.registerResolver(s, BridgeResolver);
    installedSchemes.add(s);
  }
  noteInstalledSchemes(installedSchemes);
  // Not added to installedSchemes: a replaced dns: stays subject to grpc-js's proxy mapping, as
  // grpc-js's own dns: is (the proxy's name is then resolved by our adapter).
  if (opts.replaceDns === true && !dnsReplaced) {
    grpc.experimental.registerResolver('dns', BridgeResolver);
    dnsReplaced = true;
  } else if (opts.replaceDns === false && dnsReplaced) {
    restoreGrpcDnsResolver();
    dnsReplaced = false;
  }
  const proxyGuarded = guardSchemesFromProxy(installedSchemes);
  if (!proxyGuarded)
    settings.logger.warn(
      {},
      'grpc bridge: could not guard grpc-js proxy mapping; set channel option grpc.enable_http_proxy: 0 when http_proxy is set',
    );
  return {
    schemes: [...installedSchemes, ...(dnsReplaced ? ['dns'] : [])].sort(),
    policies: registeredPolicies(),
    proxyGuarded,
  };
}

/** Re-registers grpc-js's own DNS resolver (its module's setup() does exactly that). */
function restoreGrpcDnsResolver(): void {
  const dnsModule = require('@grpc/grpc-js/build/src/resolver-dns') as { setup(): void };
  dnsModule.setup();
}

/** Counters and shared registries, for diagnostics and tests. */
export function grpcBridgeStats(): typeof stats & { registries: { registry: string; channels: number }[] } {
  return { ...stats, registries: sharedRegistries() };
}

export function isWayfinderPolicy(name: string): boolean {
  return name.startsWith(POLICY_PREFIX) && grpc.experimental.isLoadBalancerNameRegistered(name);
}
