import type * as grpc from '@grpc/grpc-js';
import { endpointKey, type Endpoint } from '../core';

type GrpcEndpoint = grpc.experimental.Endpoint;

/**
 * Where our Endpoint (weight, zone, metadata, id) rides on grpc-js's Endpoint (`{ addresses }`).
 * A registered symbol, so copies of this module agree, and own enumerable so object spreads by
 * intermediate policies keep it.
 */
export const WAYFINDER_ENDPOINT: unique symbol = Symbol.for('wayfinder.endpoint');

export type BridgeEndpoint = GrpcEndpoint & { [WAYFINDER_ENDPOINT]?: Endpoint };

export function toGrpcEndpoint(e: Endpoint): BridgeEndpoint {
  return { addresses: [{ host: e.host, port: e.port }], [WAYFINDER_ENDPOINT]: e };
}

/**
 * Our Endpoint for a grpc-js endpoint: the one the resolver attached, or one synthesised from its
 * first TCP address (when a wayfinder_* policy runs under another resolver, e.g. dns:).
 */
export function wayfinderEndpointOf(e: GrpcEndpoint): Endpoint {
  const attached = (e as BridgeEndpoint)[WAYFINDER_ENDPOINT];
  if (attached) return attached;
  const a = e.addresses[0] as { host?: string; port?: number; path?: string } | undefined;
  const host = a?.host ?? a?.path ?? 'unknown';
  const port = a?.port ?? 0;
  return { id: a?.host !== undefined ? endpointKey({ host, port }) : host, host, port, metadata: {} };
}
