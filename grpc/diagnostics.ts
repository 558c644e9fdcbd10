import * as grpc from '@grpc/grpc-js';
import { ConfigError, listAdapterSchemes, listBalancers } from '../core';
import { POLICY_PREFIX } from './policy';
import { DEFAULT_SCHEME } from './target';

/**
 * Checks for the gRPC mistakes grpc-js itself reports obscurely (what it cannot intercept is
 * listed in docs/grpc.md, "Troubleshooting"):
 *
 * - a Wayfinder target (`wayfinder:///echo`, `etcd://...`, `wayfinder+dns:...`) used before
 *   installGrpc(): grpc-js falls back to its default scheme and says
 *   `Failed to parse DNS address dns:wayfinder:///echo`;
 * - a `wayfinder_*` policy name that does not exist (a typo): grpc-js skips unknown names in
 *   loadBalancingConfig and silently uses the next one or its default;
 * - a malformed `healthCheckConfig` (grpc-js ignores the field; the wayfinder_* policies read it).
 */

const installed = new Set<string>();

/** Called by installGrpc() with the schemes it registered. */
export function noteInstalledSchemes(schemes: Iterable<string>): void {
  for (const s of schemes) installed.add(s);
}

function schemeOf(target: string): string | undefined {
  return /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(target)?.[1]?.toLowerCase();
}

/** True when `scheme` names a Wayfinder resolver (whether installed or not). */
function isWayfinderScheme(scheme: string): boolean {
  if (scheme === DEFAULT_SCHEME || scheme.startsWith(`${DEFAULT_SCHEME}+`)) return true;
  return listAdapterSchemes().includes(scheme) && !['dns', 'unix', 'ipv4', 'ipv6'].includes(scheme);
}

/**
 * Throws a ConfigError naming the fix when `target` needs Wayfinder's resolver and installGrpc()
 * has not registered it in this process. Other targets pass.
 */
export function checkGrpcTarget(target: string): void {
  const scheme = schemeOf(target);
  if (!scheme || !isWayfinderScheme(scheme) || installed.has(scheme)) return;
  throw new ConfigError(
    `grpc: the target ${JSON.stringify(target)} needs Wayfinder's "${scheme}:" resolver, which is not installed: ` +
      `call installGrpc({ discovery }) from 'wayfinder-discovery/grpc' before creating the channel ` +
      `(otherwise grpc-js reports "Failed to parse DNS address dns:${target}")`,
    { field: 'target' },
  );
}

/**
 * Throws a ConfigError naming the known policies when a service config's loadBalancingConfig names
 * a `wayfinder_*` policy that does not exist (grpc-js would silently fall back to another policy).
 * `serviceConfig` is the JSON string or object given as the `grpc.service_config` channel option.
 */
export function checkServiceConfig(serviceConfig: string | object | undefined): void {
  if (serviceConfig === undefined) return;
  let cfg: unknown = serviceConfig;
  if (typeof serviceConfig === 'string') {
    try {
      cfg = JSON.parse(serviceConfig);
    } catch (e) {
      throw new ConfigError(`grpc: "grpc.service_config" is not valid JSON: ${(e as Error).message}`, {
        field: 'grpc.service_config',
      });
    }
  }
  const hc = (cfg as { healthCheckConfig?: unknown }).healthCheckConfig;
  if (
    hc !== undefined &&
    (hc === null ||
      typeof hc !== 'object' ||
      Array.isArray(hc) ||
      !['string', 'undefined'].includes(typeof (hc as { serviceName?: unknown }).serviceName))
  )
    throw new ConfigError(
      'grpc: "healthCheckConfig" must be an object like {"serviceName": "<name>"} (serviceName a string)',
      { field: 'healthCheckConfig.serviceName' },
    );
  const list = (cfg as { loadBalancingConfig?: unknown }).loadBalancingConfig;
  if (!Array.isArray(list)) return;
  for (const entry of list) {
    if (!entry || typeof entry !== 'object') continue;
    for (const name of Object.keys(entry)) {
      if (!name.startsWith(POLICY_PREFIX) || grpc.experimental.isLoadBalancerNameRegistered(name)) continue;
      const known = listBalancers().map((b) => POLICY_PREFIX + b.replace(/-/g, '_').toLowerCase());
      const hint = installed.size === 0 ? ' (installGrpc() was not called: it registers them)' : '';
      throw new ConfigError(
        `grpc: unknown load-balancing policy "${name}"${hint}; known: ${known.join(', ')}. ` +
          `grpc-js would silently fall back to another policy`,
        { field: 'loadBalancingConfig' },
      );
    }
  }
}

/** Both checks, for a channel about to be created with `target` and `options`. */
export function checkChannel(target: string, options?: grpc.ChannelOptions): void {
  checkGrpcTarget(target);
  checkServiceConfig(options?.['grpc.service_config'] as string | undefined);
}
