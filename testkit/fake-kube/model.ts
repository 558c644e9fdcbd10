import * as net from 'node:net';

/** The objects the fake serves, and the small helpers every route shares. */

/**
 * A request body as a client sent it, before validation. `any` on purpose: the fake reads it field
 * by field the way the apiserver's lax decoding does (every access is optional-chained or checked
 * by validateSlice before use), and a typed shape would only restate those checks.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type RawJson = any;

export interface FakeKubePort {
  name?: string;
  /** Omitted means "all ports" in the EndpointSlice API. */
  port?: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  appProtocol?: string;
}

/** One endpoint as the controller would write it (one address). */
export interface FakeKubeEndpoint {
  address: string;
  ports: FakeKubePort[];
  /** Defaults: ready true, serving = ready, terminating false. */
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  zone?: string;
  hintZones?: string[];
  nodeName?: string;
  hostname?: string;
  /** Pod name (targetRef); default derived from the address. */
  pod?: string;
}

export interface FakeKubeApiOptions {
  /** The bearer token accepted at start (default: random). */
  token?: string;
  /** Endpoints per slice before a new slice is made (the controller's default is 100). */
  maxEndpointsPerSlice?: number;
  /** How often open watches that asked for bookmarks get one (default 60 s, like the apiserver). */
  bookmarkIntervalMs?: number;
  /** Server-side watch timeout when the client gives no timeoutSeconds (default 30 min). */
  defaultWatchTimeoutMs?: number;
}

export interface FakeKubeRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  status: number;
  verb: 'list' | 'watch' | 'get' | 'discovery' | 'other';
  /** Which accepted token was used (index into tokens ever issued), or -1 when refused. */
  tokenGeneration: number;
  /** A watch answered with the ERROR 410 Expired event (HTTP status 200, as the apiserver does). */
  expired?: boolean;
}

export interface Slice {
  apiVersion: 'discovery.k8s.io/v1';
  kind: 'EndpointSlice';
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    resourceVersion: string;
    generation: number;
    creationTimestamp: string;
    generateName?: string;
    labels: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: unknown[];
  };
  addressType: string;
  endpoints: Record<string, unknown>[];
  ports: FakeKubePort[] | null;
}

export interface HistoryEvent {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  key: string;
  object: Slice;
  prev?: Slice;
}

export class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export const GROUP = 'discovery.k8s.io';
export const SVC_LABEL = 'kubernetes.io/service-name';

export function status(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

export const clone = <T>(o: T): T => JSON.parse(JSON.stringify(o));

/** A timestamp as the API writes it (RFC 3339, whole seconds). */
export const kubeTime = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

export const keyOf = (ns: string, name: string): string => `${ns}/${name}`;

export const portsKey = (ports: FakeKubePort[]): string =>
  JSON.stringify(
    [...ports].map((p) => [p.name ?? '', p.port ?? null, p.protocol ?? 'TCP', p.appProtocol ?? '']).sort(),
  );

export const slicePortsKey = (s: Slice): string =>
  portsKey((s.ports ?? []).map((p) => ({ ...p, name: p.name || undefined })));

export const addressType = (a: string): string => (net.isIPv4(a) ? 'IPv4' : net.isIPv6(a) ? 'IPv6' : 'FQDN');
