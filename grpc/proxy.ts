import type * as grpc from '@grpc/grpc-js';
import { dirname, join } from 'node:path';

/**
 * Keeps grpc-js's HTTP CONNECT proxy mapping away from our schemes.
 *
 * What grpc-js 1.14 does (http_proxy.ts mapProxyName, called by every Channel constructor): unless
 * the channel sets `grpc.enable_http_proxy: 0` or the scheme is `unix`, when grpc_proxy /
 * https_proxy / http_proxy is set it splits the target's *path* as host[:port] (`echo`,
 * `echo?prefix=/x` both parse as a host), and unless that "host" matches no_proxy it replaces the
 * whole target with `dns:<proxy>` and tunnels to the original target string. For our targets the
 * path is a service name, not a host: our resolver would never run and every call would go to the
 * proxy. The resolver cannot prevent this (it is never created), so we wrap mapProxyName once:
 * targets whose scheme is ours are returned unmapped; everything else is untouched. Connections to
 * the resolved backends are plain (the proxy applies to a channel's target, not its addresses).
 * If the internal module cannot be found (a grpc-js layout change), install() returns false and
 * channels must set `grpc.enable_http_proxy: 0` themselves.
 */
const PATCHED = Symbol.for('wayfinder.grpc.proxyGuard');
const ourSchemes = new Set<string>();

type MapProxyName = (
  target: grpc.experimental.GrpcUri,
  options: grpc.ChannelOptions,
) => { target: grpc.experimental.GrpcUri; extraOptions: grpc.ChannelOptions };

export function guardSchemesFromProxy(schemes: Iterable<string>): boolean {
  for (const s of schemes) ourSchemes.add(s.toLowerCase());
  let mod: { mapProxyName?: MapProxyName & { [PATCHED]?: true } };
  try {
    mod = require(join(dirname(require.resolve('@grpc/grpc-js')), 'http_proxy.js'));
  } catch {
    return false;
  }
  const original = mod.mapProxyName;
  if (typeof original !== 'function') return false;
  if (original[PATCHED]) return true;
  const guarded: MapProxyName & { [PATCHED]?: true } = (target, options) => {
    if (target.scheme !== undefined && ourSchemes.has(target.scheme.toLowerCase())) return { target, extraOptions: {} };
    return original(target, options);
  };
  guarded[PATCHED] = true;
  mod.mapProxyName = guarded;
  return true;
}
