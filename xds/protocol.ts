import type * as grpc from '@grpc/grpc-js';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';

/**
 * The xDS v3 protocol: the Envoy API protos vendored under proto/ (copied next to the compiled code
 * by scripts/copy-assets.js), loaded once with protobufjs. Messages are plain objects with the
 * protos' snake_case field names (keepCase); enums are strings, 64-bit integers strings, bytes
 * Buffers. Resources are encoded once into `Any` values and reused by every response that carries
 * them; only the DiscoveryResponse envelope is encoded per response.
 */

export const XDS_PROTO_DIR = path.join(__dirname, 'proto');

export const TYPE = {
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  endpoint: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
} as const;
export type TypeUrl = (typeof TYPE)[keyof typeof TYPE];
export const TYPE_URLS: readonly TypeUrl[] = [TYPE.listener, TYPE.route, TYPE.cluster, TYPE.endpoint];

export const HCM_TYPE =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const ROUTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

export const ADS_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
export const LRS_PATH = '/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats';

const ROOT_FILES = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/service/load_stats/v3/lrs.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
];

export interface Any {
  type_url: string;
  value: Buffer | Uint8Array;
}

export interface Locality {
  region?: string;
  zone?: string;
  sub_zone?: string;
}

export interface NodeMsg {
  id?: string;
  cluster?: string;
  locality?: Locality;
  user_agent_name?: string;
  user_agent_version?: string;
}

export interface DiscoveryRequest {
  version_info?: string;
  node?: NodeMsg;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string };
}

export interface DiscoveryResponse {
  version_info: string;
  resources: Any[];
  type_url: string;
  nonce: string;
}

export interface UpstreamLocalityStats {
  locality?: Locality;
  total_successful_requests?: string | number;
  total_requests_in_progress?: string | number;
  total_error_requests?: string | number;
  total_issued_requests?: string | number;
}

export interface ClusterStats {
  cluster_name?: string;
  cluster_service_name?: string;
  upstream_locality_stats?: UpstreamLocalityStats[];
  total_dropped_requests?: string | number;
  dropped_requests?: { category?: string; dropped_count?: string | number }[];
}

export interface LoadStatsRequest {
  node?: NodeMsg;
  cluster_stats?: ClusterStats[];
}

export interface LoadStatsResponse {
  clusters?: string[];
  send_all_clusters?: boolean;
  load_reporting_interval?: { seconds: number; nanos?: number };
}

let root: protobuf.Root | undefined;

/** The protobufjs root holding every message the server and its tests use (loaded on first use, ~1 s). */
export function xdsRoot(): protobuf.Root {
  if (root) return root;
  const r = new protobuf.Root();
  // Every import resolves inside proto/; google/protobuf/{any,duration,...} are protobufjs built-ins.
  r.resolvePath = (_origin, target) => path.join(XDS_PROTO_DIR, target);
  r.loadSync(ROOT_FILES, { keepCase: true });
  r.resolveAll();
  root = r;
  return r;
}

export function messageType(name: string): protobuf.Type {
  return xdsRoot().lookupType(name);
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: String, bytes: Buffer, defaults: false };

/** Encodes a message given as a plain object (validated by protobufjs's fromObject). */
export function encode(typeName: string, obj: object): Buffer {
  const t = messageType(typeName);
  return Buffer.from(t.encode(t.fromObject(obj)).finish());
}

export function decode<T>(typeName: string, buf: Uint8Array): T {
  const t = messageType(typeName);
  return t.toObject(t.decode(buf), TO_OBJECT) as T;
}

/** A resource as an `Any` whose type_url names its message type. */
export function pack(typeUrl: string, obj: object): Any {
  return { type_url: typeUrl, value: encode(typeUrl.slice(typeUrl.lastIndexOf('/') + 1), obj) };
}

/** Decodes an `Any` by its type_url (tests and diagnostics). */
export function unpack<T>(any: Any): T {
  return decode<T>(any.type_url.slice(any.type_url.lastIndexOf('/') + 1), any.value);
}

function method<Req, Res>(
  pathName: string,
  reqType: string,
  resType: string,
): grpc.MethodDefinition<Req, Res> & { originalName: string } {
  return {
    path: pathName,
    requestStream: true,
    responseStream: true,
    originalName: pathName.slice(pathName.lastIndexOf('/') + 1),
    requestSerialize: (m: Req) => encode(reqType, m as object),
    requestDeserialize: (b: Buffer) => decode<Req>(reqType, b),
    responseSerialize: (m: Res) => encode(resType, m as object),
    responseDeserialize: (b: Buffer) => decode<Res>(resType, b),
  };
}

/** envoy.service.discovery.v3.AggregatedDiscoveryService (StreamAggregatedResources only). */
export function adsService(): grpc.ServiceDefinition {
  return {
    StreamAggregatedResources: method<DiscoveryRequest, DiscoveryResponse>(
      ADS_PATH,
      'envoy.service.discovery.v3.DiscoveryRequest',
      'envoy.service.discovery.v3.DiscoveryResponse',
    ),
  };
}

/** envoy.service.load_stats.v3.LoadReportingService. */
export function lrsService(): grpc.ServiceDefinition {
  return {
    StreamLoadStats: method<LoadStatsRequest, LoadStatsResponse>(
      LRS_PATH,
      'envoy.service.load_stats.v3.LoadStatsRequest',
      'envoy.service.load_stats.v3.LoadStatsResponse',
    ),
  };
}

export function durationOf(ms: number): { seconds: number; nanos: number } {
  return { seconds: Math.floor(ms / 1000), nanos: Math.round(ms % 1000) * 1e6 };
}
