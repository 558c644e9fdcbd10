import { ConfigError, checkServiceName } from '../core';

/**
 * gRPC target names understood by the bridge, and how each maps to a registry URL and a service.
 *
 *   wayfinder:///<service>                      the default discovery given to installGrpc() (else
 *                                               Discovery.fromConfig(): env WAYFINDER_REGISTRY, else
 *                                               the file registry). No authority, no query.
 *   <scheme>://<authority>/<service>?<options>  registry URL = <scheme>://<authority><path>?<options>
 *   wayfinder+<scheme>://...                    the same, for schemes grpc-js keeps for itself (dns)
 *
 * The rule for the scheme forms: the target's path is the service name (one segment, no "/");
 * the authority and the query build the registry URL; a `path` query option becomes the registry
 * URL's path, because the target's own path is taken by the service. Examples:
 *
 *   etcd://127.0.0.1:2379/echo?prefix=/services  -> etcd://127.0.0.1:2379?prefix=/services, "echo"
 *   memory://name/echo                           -> memory://name, "echo"
 *   file:///echo?path=/tmp/reg.json              -> file:///tmp/reg.json, "echo"
 *   zk://h1:2181,h2:2181/echo?path=/services     -> zk://h1:2181,h2:2181/services, "echo"
 *   wayfinder+dns://127.0.0.1:53/_grpc._tcp.echo -> dns://127.0.0.1:53, "_grpc._tcp.echo"
 */

/** The pieces of a grpc-js target URI (its GrpcUri). */
export interface TargetUri {
  scheme?: string;
  authority?: string;
  path: string;
}

export interface BridgeTarget {
  /** The scheme as written in the target ("etcd", "wayfinder+dns", "wayfinder"). */
  scheme: string;
  /** The registry adapter's scheme; undefined for `wayfinder:` (the default discovery). */
  adapterScheme?: string;
  service: string;
  /** The registry URL built from authority and query; undefined for `wayfinder:`. May hold secrets: never log it. */
  registryUrl?: string;
}

export const DEFAULT_SCHEME = 'wayfinder';
export const PREFIXED_SCHEME = 'wayfinder+';

/** Same grammar as grpc-js's uri-parser, for parsing targets given as strings. */
const URI_REGEX = /^(?:([A-Za-z0-9+.-]+):)?(?:\/\/([^/]*)\/)?(.+)$/;

export function parseTargetString(target: string): TargetUri {
  const m = URI_REGEX.exec(target);
  if (!m) throw new ConfigError(`gRPC target ${JSON.stringify(target)} is not a URI`, { field: 'target' });
  return { scheme: m[1], authority: m[2], path: m[3] };
}

export function parseBridgeTarget(target: TargetUri | string): BridgeTarget {
  const uri = typeof target === 'string' ? parseTargetString(target) : target;
  const scheme = (uri.scheme ?? '').toLowerCase();
  if (!scheme)
    throw new ConfigError(
      `gRPC target "${uri.path}" has no scheme; use wayfinder:///<service> or <scheme>://<registry>/<service>`,
      { field: 'target' },
    );
  const q = uri.path.indexOf('?');
  const rawService = q >= 0 ? uri.path.slice(0, q) : uri.path;
  const query = q >= 0 ? uri.path.slice(q + 1) : '';
  let service: string;
  try {
    service = decodeURIComponent(rawService);
  } catch {
    throw new ConfigError(`gRPC target ${scheme}: the service name is not validly percent-encoded`, {
      field: 'service',
    });
  }
  if (service.includes('/')) {
    throw new ConfigError(
      `gRPC target ${scheme}: the service name must be one path segment, got ${JSON.stringify(service)}; put a registry path in ?path=`,
      { field: 'service' },
    );
  }
  try {
    checkServiceName(service, `gRPC target ${scheme}:`);
  } catch (e) {
    throw new ConfigError((e as Error).message, { field: 'service' });
  }

  if (scheme === DEFAULT_SCHEME) {
    if (uri.authority)
      throw new ConfigError(
        `gRPC target wayfinder: takes no authority (use wayfinder:///${service}); the registry is the default discovery`,
        { field: 'target' },
      );
    if (query)
      throw new ConfigError(
        'gRPC target wayfinder: takes no ?options; configure the default discovery with installGrpc({ discovery }) or WAYFINDER_REGISTRY',
        { field: 'target' },
      );
    return { scheme, service };
  }

  const adapterScheme = scheme.startsWith(PREFIXED_SCHEME) ? scheme.slice(PREFIXED_SCHEME.length) : scheme;
  if (!adapterScheme) throw new ConfigError(`gRPC target ${scheme}: names no registry scheme`, { field: 'target' });
  const params = new URLSearchParams(query);
  let regPath = '';
  const p = params.getAll('path');
  if (p.length > 1)
    throw new ConfigError(`${adapterScheme}: parameter "path" is given more than once`, { field: 'path' });
  if (p.length === 1) {
    if (!p[0].startsWith('/'))
      throw new ConfigError(`${adapterScheme}: "path" must start with "/" (got ${JSON.stringify(p[0])})`, {
        field: 'path',
      });
    regPath = p[0]
      .split('/')
      .map((s) => encodeURIComponent(s))
      .join('/');
    params.delete('path');
  }
  const rest = params.toString();
  const registryUrl = `${adapterScheme}:${uri.authority !== undefined ? `//${uri.authority}` : ''}${regPath}${rest ? `?${rest}` : ''}`;
  return { scheme, adapterScheme, service, registryUrl };
}
