import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Socket } from 'node:net';
import { makeTestPki, type TestPki } from './etcd';
import { tempDir } from './process';

/**
 * A request body as a client sent it, before validation. `any` on purpose: the fake reads it field
 * by field the way the apiserver's lax decoding does (every access is optional-chained or checked
 * by validateSlice before use), and a typed shape would only restate those checks.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type RawJson = any;

/**
 * A protocol-faithful fake of the part of the Kubernetes API server that the k8s adapter uses, for
 * tests: HTTPS on a free loopback port with a throwaway CA, bearer-token auth, discovery documents
 * (enough for kubectl), and discovery.k8s.io/v1 EndpointSlices with list (label/field selectors,
 * limit/continue, resourceVersion/resourceVersionMatch) and watch (resourceVersion semantics,
 * ADDED/MODIFIED/DELETED/BOOKMARK, sendInitialEvents, timeoutSeconds, 410 Expired once history is
 * compacted), following https://kubernetes.io/docs/reference/using-api/api-concepts/.
 *
 * Writes go through the in-process admin API, which plays the EndpointSlice controller: endpoints
 * of a service are grouped into slices by address type and port set, at most
 * `maxEndpointsPerSlice` (100, like the controller) per slice.
 */

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

interface Slice {
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

interface HistoryEvent {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  key: string;
  object: Slice;
  prev?: Slice;
}

interface WatchStream {
  id: number;
  namespace?: string;
  selector: Selector;
  fields: FieldSelector;
  res: ServerResponse;
  bookmarks: boolean;
  stalled: boolean;
  closed: boolean;
  timers: NodeJS.Timeout[];
}

type Selector = (labels: Record<string, string>) => boolean;
type FieldSelector = (s: Slice) => boolean;

class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export interface FakeKubeApi {
  /** https://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  /** PEM of the CA that signed the server certificate, and its file. */
  readonly caPem: string;
  readonly caFile: string;
  /** The token accepted now (the newest one). */
  readonly token: string;
  /** The current (global) resourceVersion, as the API reports it. */
  readonly resourceVersion: string;
  /** Every request served, in order (for fidelity assertions). */
  readonly requests: FakeKubeRequest[];
  /** A kubeconfig (YAML) for this server: token inline, or `tokenFile` (kubectl's `tokenFile`). */
  kubeconfig(opts?: { token?: string; tokenFile?: string; namespace?: string; context?: string }): string;
  /** Writes kubeconfig() to a file (default: in the fake's temp dir) and returns its path. */
  writeKubeconfig(opts?: {
    token?: string;
    tokenFile?: string;
    namespace?: string;
    context?: string;
    file?: string;
  }): string;

  // ---- admin API (in-process, bypasses auth and validation, like writing to the store) ----
  /** Adds or replaces the endpoint with this address and port set in `service`'s slices. */
  upsertEndpoint(namespace: string, service: string, ep: FakeKubeEndpoint): void;
  /** Removes the endpoint with this address (and port set, when given). Returns whether it existed. */
  deleteEndpoint(namespace: string, service: string, address: string, ports?: FakeKubePort[]): boolean;
  /** Makes `service`'s endpoints exactly these, with one event per changed slice. */
  setEndpoints(namespace: string, service: string, eps: FakeKubeEndpoint[]): void;
  /** Writes a raw slice object as given (name/namespace from its metadata): for malformed data. */
  putSlice(slice: Record<string, unknown>): void;
  deleteSlice(namespace: string, name: string): boolean;
  /** Copies of the stored slices, optionally of one namespace/service. */
  slices(namespace?: string, service?: string): Slice[];
  /** Forgets history up to now: a watch or paged list from an older resourceVersion gets 410 Expired. */
  compact(): void;
  /** Open watches go silent (no events, no bookmarks, no timeout close) with their connection left open. */
  stallWatches(): number;
  /** Ends every open watch, stalled or not, with a clean end of stream (as at a server-side timeout). */
  closeWatches(): number;
  /** Accepts a new token (default random) and, unless keepOld, refuses the previous ones. */
  rotateToken(next?: string, opts?: { keepOld?: boolean; closeWatches?: boolean }): string;
  /** Open (not stalled, not closed) watch streams. */
  openWatches(): number;
  stop(): Promise<void>;
}

const GROUP = 'discovery.k8s.io';
const SVC_LABEL = 'kubernetes.io/service-name';

function status(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/** Label selector syntax of the API: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`. */
export function parseLabelSelector(sel: string | undefined): Selector {
  if (!sel || sel.trim() === '') return () => true;
  const terms: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of sel) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      terms.push(cur);
      cur = '';
    } else cur += ch;
  }
  terms.push(cur);
  const KEY = '([A-Za-z0-9][-A-Za-z0-9_./]*)';
  const preds: Selector[] = terms.map((raw) => {
    const t = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^${KEY}\\s+(in|notin)\\s+\\(([^)]*)\\)$`).exec(t))) {
      const [, k, op, list] = m;
      const vals = list.split(',').map((v) => v.trim());
      return op === 'in' ? (l) => k in l && vals.includes(l[k]) : (l) => !(k in l) || !vals.includes(l[k]);
    }
    if ((m = new RegExp(`^${KEY}\\s*(==|=|!=)\\s*([-A-Za-z0-9_.]*)$`).exec(t))) {
      const [, k, op, v] = m;
      return op === '!=' ? (l) => l[k] !== v : (l) => l[k] === v;
    }
    if ((m = new RegExp(`^!\\s*${KEY}$`).exec(t))) {
      const k = m[1];
      return (l) => !(k in l);
    }
    if ((m = new RegExp(`^${KEY}$`).exec(t))) {
      const k = m[1];
      return (l) => k in l;
    }
    throw new HttpError(400, 'BadRequest', `unable to parse requirement: found '${t}', expected: identifier`);
  });
  return (l) => preds.every((p) => p(l));
}

function parseFieldSelector(sel: string | undefined): FieldSelector {
  if (!sel || sel.trim() === '') return () => true;
  const preds = sel.split(',').map((raw) => {
    const m = /^\s*([a-zA-Z.]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(raw);
    if (!m) throw new HttpError(400, 'BadRequest', `invalid selector: '${sel}'; can't understand '${raw}'`);
    const [, field, op, v] = m;
    const get =
      field === 'metadata.name'
        ? (s: Slice) => s.metadata.name
        : field === 'metadata.namespace'
          ? (s: Slice) => s.metadata.namespace
          : undefined;
    if (!get)
      throw new HttpError(
        400,
        'BadRequest',
        `"${field}" is not a known field selector: only "metadata.name", "metadata.namespace"`,
      );
    return op === '!=' ? (s: Slice) => get(s) !== v : (s: Slice) => get(s) === v;
  });
  return (s) => preds.every((p) => p(s));
}

const portsKey = (ports: FakeKubePort[]) =>
  JSON.stringify(
    [...ports].map((p) => [p.name ?? '', p.port ?? null, p.protocol ?? 'TCP', p.appProtocol ?? '']).sort(),
  );
const addressType = (a: string) => (net.isIPv4(a) ? 'IPv4' : net.isIPv6(a) ? 'IPv6' : 'FQDN');

function age(from: string): string {
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(from)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  return `${Math.floor(s / 3600)}h`;
}

const clone = <T>(o: T): T => JSON.parse(JSON.stringify(o));

let pkiCache: TestPki | undefined;
/** One throwaway CA and server cert per process (RSA key generation costs about a second). */
function sharedPki(): TestPki {
  if (!pkiCache) {
    const dir = tempDir('wayfinder-kube-pki-');
    process.once('exit', () => dir.remove());
    pkiCache = makeTestPki(dir.dir, 'wayfinder-fake-kube-ca');
  }
  return pkiCache;
}

export async function startFakeKubeApi(opts: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
  const tmp = tempDir('wayfinder-kube-');
  const pki = sharedPki();
  const caPem = readFileSync(pki.ca, 'utf8');
  const maxPerSlice = opts.maxEndpointsPerSlice ?? 100;
  const bookmarkMs = opts.bookmarkIntervalMs ?? 60_000;
  const defaultTimeoutMs = opts.defaultWatchTimeoutMs ?? 30 * 60_000;

  const tokens: string[] = [opts.token ?? randomBytes(16).toString('hex')];
  const accepted = new Set<number>([0]);
  const requests: FakeKubeRequest[] = [];

  // The store: current objects, the state at the compaction point, and events since then.
  let rv = 1000;
  let compactedRv = rv;
  const objects = new Map<string, Slice>();
  let base = new Map<string, Slice>();
  const history: HistoryEvent[] = [];
  const watches = new Set<WatchStream>();
  let watchSerial = 0;
  const sockets = new Set<Socket>();

  const keyOf = (ns: string, name: string) => `${ns}/${name}`;

  function commit(type: HistoryEvent['type'], key: string, next: Slice, prev?: Slice): void {
    rv++;
    next.metadata.resourceVersion = String(rv);
    if (type === 'DELETED') objects.delete(key);
    else objects.set(key, next);
    const ev: HistoryEvent = { rv, type, key, object: clone(next), prev: prev ? clone(prev) : undefined };
    history.push(ev);
    for (const w of watches) deliver(w, ev);
  }

  function stateAt(at: number): Map<string, Slice> {
    if (at < compactedRv) throw new HttpError(410, 'Expired', `too old resource version: ${at} (${compactedRv})`);
    const m = new Map(base);
    for (const ev of history) {
      if (ev.rv > at) break;
      if (ev.type === 'DELETED') m.delete(ev.key);
      else m.set(ev.key, ev.object);
    }
    return m;
  }

  function send(w: WatchStream, type: string, object: unknown): void {
    if (w.closed || w.stalled) return;
    w.res.write(JSON.stringify({ type, object }) + '\n');
  }

  function matches(w: WatchStream, s: Slice | undefined): boolean {
    return (
      !!s &&
      (w.namespace === undefined || s.metadata.namespace === w.namespace) &&
      w.selector(s.metadata.labels ?? {}) &&
      w.fields(s)
    );
  }

  /** Like the apiserver's watch cache: an object leaving (entering) the selection is DELETED (ADDED). */
  function deliver(w: WatchStream, ev: HistoryEvent): void {
    const now = matches(w, ev.object);
    const before = ev.type === 'ADDED' ? false : ev.prev ? matches(w, ev.prev) : now;
    if (ev.type === 'DELETED') {
      if (before || now) send(w, 'DELETED', ev.object);
    } else if (now && !before) send(w, 'ADDED', ev.object);
    else if (now && before) send(w, 'MODIFIED', ev.object);
    else if (!now && before) send(w, 'DELETED', ev.object);
  }

  function endWatch(w: WatchStream): void {
    if (w.closed) return;
    w.closed = true;
    for (const t of w.timers) clearTimeout(t);
    watches.delete(w);
    w.res.end();
  }

  const bookmark = (w: WatchStream, annotations?: Record<string, string>) =>
    send(w, 'BOOKMARK', {
      kind: 'EndpointSlice',
      apiVersion: `${GROUP}/v1`,
      metadata: { resourceVersion: String(rv), ...(annotations ? { annotations } : {}) },
    });

  // ---- the controller's slicing, for the admin API ----

  function serviceSlices(ns: string, service: string): Slice[] {
    return [...objects.values()].filter(
      (s) => s.metadata.namespace === ns && s.metadata.labels?.[SVC_LABEL] === service,
    );
  }

  function endpointObject(ns: string, ep: FakeKubeEndpoint): Record<string, unknown> {
    const ready = ep.ready ?? true;
    const o: Record<string, unknown> = {
      addresses: [ep.address],
      conditions: { ready, serving: ep.serving ?? ready, terminating: ep.terminating ?? false },
      targetRef: {
        kind: 'Pod',
        namespace: ns,
        name: ep.pod ?? `pod-${ep.address.replace(/[^A-Za-z0-9]/g, '-')}`,
        uid: randomUUID(),
      },
    };
    if (ep.hostname) o.hostname = ep.hostname;
    if (ep.nodeName) o.nodeName = ep.nodeName;
    if (ep.zone) o.zone = ep.zone;
    if (ep.hintZones) o.hints = { forZones: ep.hintZones.map((name) => ({ name })) };
    return o;
  }

  function newSlice(ns: string, service: string, type: string, ports: FakeKubePort[]): Slice {
    return {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `${service}-${randomBytes(4)
          .toString('base64url')
          .toLowerCase()
          .replace(/[^a-z0-9]/g, 'x')
          .slice(0, 5)}`,
        generateName: `${service}-`,
        namespace: ns,
        uid: randomUUID(),
        resourceVersion: '',
        generation: 1,
        creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        labels: { [SVC_LABEL]: service, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
        annotations: {
          'endpoints.kubernetes.io/last-change-trigger-time': new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        },
      },
      addressType: type,
      endpoints: [],
      ports: ports.map((p) => ({
        name: p.name ?? '',
        port: p.port,
        protocol: p.protocol ?? 'TCP',
        ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
      })),
    };
  }

  const sliceHas = (s: Slice, address: string) =>
    s.endpoints.some((e) => (e.addresses as string[] | undefined)?.[0] === address);
  const slicePortsKey = (s: Slice) => portsKey((s.ports ?? []).map((p) => ({ ...p, name: p.name || undefined })));

  /** Applies changes to a draft of the service's slices, then commits one event per changed slice. */
  function mutate(ns: string, service: string, fn: (draft: Map<string, Slice>, touched: Set<string>) => void): void {
    const draft = new Map(serviceSlices(ns, service).map((s) => [keyOf(ns, s.metadata.name), clone(s)]));
    const touched = new Set<string>();
    fn(draft, touched);
    for (const key of touched) {
      const prev = objects.get(key);
      const next = draft.get(key);
      if (!next) {
        if (prev) commit('DELETED', key, clone(prev), prev);
      } else if (next.endpoints.length === 0) {
        if (prev) commit('DELETED', key, clone(prev), prev);
        draft.delete(key);
      } else if (!prev) commit('ADDED', key, next);
      else {
        next.metadata.generation = prev.metadata.generation + 1;
        commit('MODIFIED', key, next, prev);
      }
    }
  }

  function upsertInto(
    ns: string,
    service: string,
    draft: Map<string, Slice>,
    touched: Set<string>,
    ep: FakeKubeEndpoint,
  ): void {
    const type = addressType(ep.address);
    const pk = portsKey(ep.ports);
    const obj = endpointObject(ns, ep);
    for (const [key, s] of draft) {
      if (s.addressType === type && slicePortsKey(s) === pk && sliceHas(s, ep.address)) {
        const i = s.endpoints.findIndex((e) => (e.addresses as string[])[0] === ep.address);
        if (
          JSON.stringify({ ...s.endpoints[i], targetRef: undefined }) !==
          JSON.stringify({ ...obj, targetRef: undefined })
        ) {
          (obj.targetRef as { uid: string }).uid =
            (s.endpoints[i].targetRef as { uid: string } | undefined)?.uid ?? randomUUID();
          s.endpoints[i] = obj;
          touched.add(key);
        }
        return;
      }
    }
    for (const [key, s] of draft) {
      if (s.addressType === type && slicePortsKey(s) === pk && s.endpoints.length < maxPerSlice) {
        s.endpoints.push(obj);
        touched.add(key);
        return;
      }
    }
    const s = newSlice(ns, service, type, ep.ports);
    s.endpoints.push(obj);
    const key = keyOf(ns, s.metadata.name);
    draft.set(key, s);
    touched.add(key);
  }

  function deleteFrom(
    draft: Map<string, Slice>,
    touched: Set<string>,
    address: string,
    ports?: FakeKubePort[],
  ): boolean {
    let found = false;
    for (const [key, s] of draft) {
      if (ports && slicePortsKey(s) !== portsKey(ports)) continue;
      const before = s.endpoints.length;
      s.endpoints = s.endpoints.filter((e) => (e.addresses as string[] | undefined)?.[0] !== address);
      if (s.endpoints.length !== before) {
        found = true;
        touched.add(key);
      }
    }
    return found;
  }

  // ---- writes through the API (what a real client can do; the admin API is the store's back door) ----

  const namespaces = new Map<string, string>([['default', new Date().toISOString().replace(/\.\d+Z$/, 'Z')]]);
  const nsObject = (name: string, phase = 'Active') => ({
    kind: 'Namespace',
    apiVersion: 'v1',
    metadata: {
      name,
      uid: randomUUID(),
      creationTimestamp: namespaces.get(name) ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      labels: { 'kubernetes.io/metadata.name': name },
    },
    spec: { finalizers: ['kubernetes'] },
    status: { phase },
  });

  function readBody(req: IncomingMessage): Promise<RawJson> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('error', reject);
      req.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
        } catch (e) {
          reject(
            new HttpError(
              400,
              'BadRequest',
              `the body of the request was in an unknown format: ${(e as Error).message}`,
            ),
          );
        }
      });
    });
  }

  async function handleNamespaces(
    req: IncomingMessage,
    res: ServerResponse,
    name: string | undefined,
    log: FakeKubeRequest,
    fail: (c: number, r: string, m: string) => void,
  ): Promise<void> {
    try {
      if (req.method === 'GET' && name === undefined) {
        log.verb = 'list';
        const names = new Set([...namespaces.keys(), ...[...objects.values()].map((s) => s.metadata.namespace)]);
        return json(res, 200, {
          kind: 'NamespaceList',
          apiVersion: 'v1',
          metadata: { resourceVersion: String(rv) },
          items: [...names].sort().map((n) => nsObject(n)),
        });
      }
      if (req.method === 'GET') {
        log.verb = 'get';
        if (!namespaces.has(name!)) return fail(404, 'NotFound', `namespaces "${name}" not found`);
        return json(res, 200, nsObject(name!));
      }
      if (req.method === 'POST' && name === undefined) {
        const body = await readBody(req);
        const n = body?.metadata?.name;
        if (typeof n !== 'string' || !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(n))
          return fail(422, 'Invalid', `Namespace "${n}" is invalid: metadata.name: Invalid value`);
        if (namespaces.has(n)) return fail(409, 'AlreadyExists', `namespaces "${n}" already exists`);
        namespaces.set(n, new Date().toISOString().replace(/\.\d+Z$/, 'Z'));
        return json(res, 201, nsObject(n));
      }
      if (req.method === 'DELETE' && name !== undefined) {
        if (!namespaces.has(name)) return fail(404, 'NotFound', `namespaces "${name}" not found`);
        for (const s of [...objects.values()])
          if (s.metadata.namespace === name) commit('DELETED', keyOf(name, s.metadata.name), clone(s), s);
        const obj = nsObject(name, 'Terminating');
        namespaces.delete(name);
        return json(res, 200, obj);
      }
      return fail(
        405,
        'MethodNotAllowed',
        `the server does not allow this method on the requested resource (${req.method})`,
      );
    } catch (e) {
      if (e instanceof HttpError) return fail(e.code, e.reason, e.message);
      return fail(500, 'InternalError', (e as Error).message);
    }
  }

  async function handleWrite(
    req: IncomingMessage,
    res: ServerResponse,
    ns: string | undefined,
    name: string | undefined,
    fail: (c: number, r: string, m: string) => void,
  ): Promise<void> {
    try {
      if (ns === undefined) return fail(405, 'MethodNotAllowed', 'writes need a namespace');
      if (!namespaces.has(ns)) return fail(404, 'NotFound', `namespaces "${ns}" not found`);
      if (req.method === 'DELETE' && name !== undefined) {
        const prev = objects.get(keyOf(ns, name));
        if (!prev) return fail(404, 'NotFound', `endpointslices.${GROUP} "${name}" not found`);
        commit('DELETED', keyOf(ns, name), clone(prev), prev);
        return json(res, 200, {
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Success',
          details: { name, group: GROUP, kind: 'endpointslices', uid: prev.metadata.uid },
        });
      }
      if (req.method !== 'POST' && req.method !== 'PUT')
        return fail(
          405,
          'MethodNotAllowed',
          `the server does not allow this method on the requested resource (${req.method})`,
        );
      const body = await readBody(req);
      const invalid = validateSlice(body);
      if (invalid)
        return fail(422, 'Invalid', `EndpointSlice.${GROUP} "${body?.metadata?.name ?? ''}" is invalid: ${invalid}`);
      const md = body.metadata ?? {};
      if (md.namespace !== undefined && md.namespace !== ns)
        return fail(
          400,
          'BadRequest',
          'the namespace of the provided object does not match the namespace sent on the request',
        );
      if (req.method === 'POST') {
        if (name !== undefined) return fail(405, 'MethodNotAllowed', 'POST goes to the collection');
        const n =
          md.name ?? (md.generateName ? `${md.generateName}${randomBytes(4).toString('hex').slice(0, 5)}` : undefined);
        if (typeof n !== 'string')
          return fail(422, 'Invalid', 'metadata.name: Required value: name or generateName is required');
        if (objects.has(keyOf(ns, n)))
          return fail(409, 'AlreadyExists', `endpointslices.${GROUP} "${n}" already exists`);
        const s: Slice = {
          ...clone(body),
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSlice',
          metadata: {
            ...md,
            name: n,
            namespace: ns,
            uid: randomUUID(),
            generation: 1,
            resourceVersion: '',
            creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
            labels: md.labels ?? {},
          },
        };
        commit('ADDED', keyOf(ns, n), s);
        return json(res, 201, clone(s));
      }
      if (name === undefined || md.name !== name)
        return fail(400, 'BadRequest', 'the name of the object does not match the name on the URL');
      const prev = objects.get(keyOf(ns, name));
      if (!prev) return fail(404, 'NotFound', `endpointslices.${GROUP} "${name}" not found`);
      if (md.resourceVersion && md.resourceVersion !== prev.metadata.resourceVersion) {
        return fail(
          409,
          'Conflict',
          `Operation cannot be fulfilled on endpointslices.${GROUP} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        );
      }
      const s: Slice = {
        ...clone(body),
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: {
          ...md,
          name,
          namespace: ns,
          uid: prev.metadata.uid,
          creationTimestamp: prev.metadata.creationTimestamp,
          generation: prev.metadata.generation + 1,
          resourceVersion: '',
          labels: md.labels ?? {},
        },
      };
      commit('MODIFIED', keyOf(ns, name), s, prev);
      return json(res, 200, clone(s));
    } catch (e) {
      if (e instanceof HttpError) return fail(e.code, e.reason, e.message);
      return fail(500, 'InternalError', (e as Error).message);
    }
  }

  /** The apiserver's validation of what clients write (the admin API skips it, to store malformed data). */
  function validateSlice(b: RawJson): string | undefined {
    if (!b || typeof b !== 'object') return 'body must be an object';
    if (!['IPv4', 'IPv6', 'FQDN'].includes(b.addressType))
      return `addressType: Unsupported value: ${JSON.stringify(b.addressType)}: supported values: "FQDN", "IPv4", "IPv6"`;
    if (!Array.isArray(b.endpoints)) return 'endpoints: Required value';
    if (b.endpoints.length > 1000) return 'endpoints: Too many: must have at most 1000 items';
    for (const [i, e] of b.endpoints.entries()) {
      if (!Array.isArray(e?.addresses) || e.addresses.length < 1 || e.addresses.length > 100)
        return `endpoints[${i}].addresses: Required value: must contain at least 1 address`;
      for (const a of e.addresses) {
        const ok =
          b.addressType === 'IPv4'
            ? net.isIPv4(a)
            : b.addressType === 'IPv6'
              ? net.isIPv6(a)
              : typeof a === 'string' && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(a);
        if (!ok)
          return `endpoints[${i}].addresses[0]: Invalid value: ${JSON.stringify(a)}: must be a valid ${b.addressType} address`;
      }
    }
    if (b.ports != null && (!Array.isArray(b.ports) || b.ports.length > 20000)) return 'ports: Invalid value';
    return undefined;
  }

  // ---- HTTP ----

  function authenticate(req: IncomingMessage): number {
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    if (!m) return -1;
    const i = tokens.lastIndexOf(m[1]);
    return i >= 0 && accepted.has(i) ? i : -1;
  }

  function json(res: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, {
      'Content-Type': 'application/json',
      'Cache-Control': 'no-cache, private',
      'Content-Length': Buffer.byteLength(text),
      'Audit-Id': randomUUID(),
    });
    res.end(text);
  }

  function table(items: Slice[], listRv: string, cont?: string): Record<string, unknown> {
    return {
      kind: 'Table',
      apiVersion: 'meta.k8s.io/v1',
      metadata: { resourceVersion: listRv, ...(cont ? { continue: cont } : {}) },
      columnDefinitions: [
        {
          name: 'Name',
          type: 'string',
          format: 'name',
          description: 'Name must be unique within a namespace.',
          priority: 0,
        },
        {
          name: 'AddressType',
          type: 'string',
          format: '',
          description: 'addressType specifies the type of address carried by this EndpointSlice.',
          priority: 0,
        },
        {
          name: 'Ports',
          type: 'string',
          format: '',
          description: 'ports specifies the list of network ports exposed by each endpoint in this slice.',
          priority: 0,
        },
        {
          name: 'Endpoints',
          type: 'string',
          format: '',
          description: 'endpoints is a list of unique endpoints in this slice.',
          priority: 0,
        },
        {
          name: 'Age',
          type: 'string',
          format: '',
          description: 'CreationTimestamp is a timestamp representing the server time when this object was created.',
          priority: 0,
        },
      ],
      rows: items.map((s) => {
        const addrs = s.endpoints.flatMap((e) => (e.addresses as string[] | undefined) ?? []);
        const shown =
          addrs.length === 0
            ? '<none>'
            : addrs.slice(0, 3).join(',') + (addrs.length > 3 ? ` + ${addrs.length - 3} more...` : '');
        const ports =
          !s.ports || s.ports.length === 0
            ? '<unset>'
            : s.ports.map((p) => (p.port === undefined ? '<unset>' : String(p.port))).join(',');
        return {
          cells: [s.metadata.name, s.addressType, ports, shown, age(s.metadata.creationTimestamp)],
          object: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: s.metadata },
        };
      }),
    };
  }

  const wantsTable = (req: IncomingMessage) => /as=Table/.test(req.headers.accept ?? '');

  function handleList(
    req: IncomingMessage,
    res: ServerResponse,
    ns: string | undefined,
    q: Record<string, string>,
  ): void {
    const selector = parseLabelSelector(q.labelSelector);
    const fields = parseFieldSelector(q.fieldSelector);
    const limit = q.limit ? Number(q.limit) : 0;
    if (q.limit && (!Number.isInteger(limit) || limit < 0))
      throw new HttpError(400, 'BadRequest', `limit: Invalid value: "${q.limit}"`);
    let at = rv;
    let after = '';
    if (q.continue) {
      let tok: { rv: number; start: string };
      try {
        tok = JSON.parse(Buffer.from(q.continue, 'base64').toString('utf8'));
      } catch {
        throw new HttpError(400, 'BadRequest', 'continue key is not valid: illegal base64 data');
      }
      if (tok.rv < compactedRv) {
        throw new HttpError(
          410,
          'Expired',
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
        );
      }
      at = tok.rv;
      after = tok.start;
    } else if (q.resourceVersion && q.resourceVersion !== '0') {
      const want = Number(q.resourceVersion);
      if (!Number.isInteger(want) || want < 0)
        throw new HttpError(
          400,
          'BadRequest',
          `resourceVersion: Invalid value: "${q.resourceVersion}": must be a valid resourceVersion`,
        );
      if (q.resourceVersionMatch === 'Exact') at = want;
      else if (want > rv) throw new HttpError(504, 'Timeout', `Too large resource version: ${want}, current: ${rv}`);
    }
    const state = at === rv ? objects : stateAt(at);
    const all = [...state.entries()]
      .filter(
        ([, s]) => (ns === undefined || s.metadata.namespace === ns) && selector(s.metadata.labels ?? {}) && fields(s),
      )
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .filter(([k]) => k > after);
    const page = limit > 0 ? all.slice(0, limit) : all;
    const more = limit > 0 && all.length > limit;
    const cont = more
      ? Buffer.from(JSON.stringify({ rv: at, start: page[page.length - 1][0] })).toString('base64')
      : undefined;
    const items = page.map(([, s]) => clone(s));
    if (wantsTable(req)) return json(res, 200, table(items, String(at), cont));
    json(res, 200, {
      kind: 'EndpointSliceList',
      apiVersion: `${GROUP}/v1`,
      metadata: {
        resourceVersion: String(at),
        ...(cont ? { continue: cont, remainingItemCount: all.length - limit } : {}),
      },
      items,
    });
  }

  function handleWatch(
    res: ServerResponse,
    ns: string | undefined,
    q: Record<string, string>,
    log: FakeKubeRequest,
  ): void {
    const selector = parseLabelSelector(q.labelSelector);
    const fields = parseFieldSelector(q.fieldSelector);
    const w: WatchStream = {
      id: ++watchSerial,
      namespace: ns,
      selector,
      fields,
      res,
      bookmarks: q.allowWatchBookmarks === 'true' || q.allowWatchBookmarks === '1',
      stalled: false,
      closed: false,
      timers: [],
    };
    const fromRaw = q.resourceVersion ?? '';
    const sendInitial = q.sendInitialEvents === 'true';
    if (sendInitial && (q.resourceVersionMatch !== 'NotOlderThan' || !w.bookmarks)) {
      throw new HttpError(
        422,
        'Invalid',
        'sendInitialEvents requires resourceVersionMatch=NotOlderThan and allowWatchBookmarks=true',
      );
    }
    let from: number | undefined;
    if (fromRaw !== '' && fromRaw !== '0') {
      from = Number(fromRaw);
      if (!Number.isInteger(from) || from < 0)
        throw new HttpError(400, 'BadRequest', `resourceVersion: Invalid value: "${fromRaw}"`);
    }
    const timeoutMs = q.timeoutSeconds !== undefined ? Number(q.timeoutSeconds) * 1000 : defaultTimeoutMs;
    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Cache-Control': 'no-cache, private',
      'Transfer-Encoding': 'chunked',
      'Audit-Id': randomUUID(),
    });
    res.flushHeaders();
    res.on('close', () => endWatch(w));
    // Watching from a compacted resourceVersion: 200, one ERROR event with a 410 Status, then the end.
    if (from !== undefined && from < compactedRv) {
      log.expired = true;
      send(w, 'ERROR', status(410, 'Expired', `too old resource version: ${from} (${compactedRv})`));
      w.closed = true;
      res.end();
      return;
    }
    watches.add(w);
    if (from === undefined || sendInitial) {
      // "Get State and Start at Most Recent" (or the streaming list): synthetic ADDED for what exists.
      for (const s of [...objects.values()].sort(
        (a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion),
      )) {
        if (matches(w, s)) send(w, 'ADDED', clone(s));
      }
      if (sendInitial) bookmark(w, { 'k8s.io/initial-events-end': 'true' });
    } else {
      for (const ev of history) if (ev.rv > from) deliver(w, ev);
    }
    if (w.bookmarks) {
      const tick = () => {
        if (w.closed) return;
        bookmark(w);
        w.timers.push(setTimeout(tick, bookmarkMs));
      };
      w.timers.push(setTimeout(tick, bookmarkMs));
    }
    if (Number.isFinite(timeoutMs) && timeoutMs > 0) {
      w.timers.push(
        setTimeout(() => {
          if (w.stalled) return; // a silent stall does not end by itself
          if (w.bookmarks) bookmark(w);
          endWatch(w);
        }, timeoutMs),
      );
    }
  }

  function discovery(res: ServerResponse, p: string, host: string): boolean {
    if (p === '/version') {
      json(res, 200, {
        major: '1',
        minor: '32',
        gitVersion: 'v1.32.0-wayfinder-fake',
        gitCommit: '0000000',
        gitTreeState: 'clean',
        buildDate: '2025-01-01T00:00:00Z',
        goVersion: 'go1.23',
        compiler: 'gc',
        platform: 'linux/amd64',
      });
    } else if (p === '/api') {
      json(res, 200, {
        kind: 'APIVersions',
        versions: ['v1'],
        serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: host }],
      });
    } else if (p === '/apis') {
      const gv = { groupVersion: `${GROUP}/v1`, version: 'v1' };
      json(res, 200, {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [{ name: GROUP, versions: [gv], preferredVersion: gv }],
      });
    } else if (p === '/api/v1') {
      json(res, 200, {
        kind: 'APIResourceList',
        groupVersion: 'v1',
        resources: [
          {
            name: 'namespaces',
            singularName: 'namespace',
            namespaced: false,
            kind: 'Namespace',
            verbs: ['create', 'delete', 'get', 'list'],
            shortNames: ['ns'],
          },
        ],
      });
    } else if (p === `/apis/${GROUP}`) {
      const gv = { groupVersion: `${GROUP}/v1`, version: 'v1' };
      json(res, 200, { kind: 'APIGroup', apiVersion: 'v1', name: GROUP, versions: [gv], preferredVersion: gv });
    } else if (p === `/apis/${GROUP}/v1`) {
      json(res, 200, {
        kind: 'APIResourceList',
        apiVersion: 'v1',
        groupVersion: `${GROUP}/v1`,
        resources: [
          {
            name: 'endpointslices',
            singularName: 'endpointslice',
            namespaced: true,
            kind: 'EndpointSlice',
            verbs: ['create', 'delete', 'get', 'list', 'update', 'watch'],
          },
        ],
      });
    } else return false;
    return true;
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const u = new URL(req.url ?? '/', 'https://fake');
    const q: Record<string, string> = {};
    for (const [k, v] of u.searchParams) q[k] = v;
    const p = u.pathname.replace(/\/+$/, '') || '/';
    const log: FakeKubeRequest = {
      method: req.method ?? 'GET',
      path: p,
      query: q,
      status: 200,
      verb: 'other',
      tokenGeneration: authenticate(req),
    };
    requests.push(log);
    const fail = (code: number, reason: string, message: string) => {
      log.status = code;
      json(res, code, status(code, reason, message));
    };
    try {
      if (log.tokenGeneration < 0) return fail(401, 'Unauthorized', 'Unauthorized');
      const isWatch = q.watch === 'true' || q.watch === '1';
      if (req.method === 'GET' && !isWatch && discovery(res, p, `127.0.0.1:${port}`)) {
        log.verb = 'discovery';
        return;
      }
      const nsm = /^\/api\/v1\/namespaces(?:\/([^/]+))?$/.exec(p);
      if (nsm)
        return void handleNamespaces(
          req,
          res,
          nsm[1] !== undefined ? decodeURIComponent(nsm[1]) : undefined,
          log,
          fail,
        );
      const m = new RegExp(
        `^/apis/${GROUP.replace('.', '\\.')}/v1(?:/namespaces/([^/]+))?/endpointslices(?:/([^/]+))?$`,
      ).exec(p);
      if (!m) return fail(404, 'NotFound', 'the server could not find the requested resource');
      const ns = m[1] !== undefined ? decodeURIComponent(m[1]) : undefined;
      const name = m[2] !== undefined ? decodeURIComponent(m[2]) : undefined;
      if (req.method !== 'GET') {
        log.verb = 'other';
        return void handleWrite(req, res, ns, name, fail);
      }
      if (name !== undefined) {
        if (ns === undefined) return fail(404, 'NotFound', 'the server could not find the requested resource');
        log.verb = 'get';
        const s = objects.get(keyOf(ns, name));
        if (!s) return fail(404, 'NotFound', `endpointslices.${GROUP} "${name}" not found`);
        return json(res, 200, clone(s));
      }
      if (isWatch) {
        log.verb = 'watch';
        return handleWatch(res, ns, q, log);
      }
      log.verb = 'list';
      return handleList(req, res, ns, q);
    } catch (e) {
      if (e instanceof HttpError) return fail(e.code, e.reason, e.message);
      return fail(500, 'InternalError', `Internal error occurred: ${(e as Error).message}`);
    }
  }

  const server = https.createServer({ key: readFileSync(pki.serverKey), cert: readFileSync(pki.serverCert) }, handle);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
  const url = `https://127.0.0.1:${port}`;

  const kubeconfig = (o: { token?: string; tokenFile?: string; namespace?: string; context?: string } = {}) => {
    const ctx = o.context ?? 'fake';
    const user = o.tokenFile
      ? `    tokenFile: ${JSON.stringify(o.tokenFile)}`
      : `    token: ${JSON.stringify(o.token ?? tokens[tokens.length - 1])}`;
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      `- name: ${ctx}-cluster`,
      '  cluster:',
      `    server: ${url}`,
      `    certificate-authority-data: ${Buffer.from(caPem).toString('base64')}`,
      'users:',
      `- name: ${ctx}-user`,
      '  user:',
      user,
      'contexts:',
      `- name: ${ctx}`,
      '  context:',
      `    cluster: ${ctx}-cluster`,
      `    user: ${ctx}-user`,
      ...(o.namespace ? [`    namespace: ${o.namespace}`] : []),
      `current-context: ${ctx}`,
      '',
    ].join('\n');
  };

  const api: FakeKubeApi = {
    url,
    port,
    caPem,
    caFile: pki.ca,
    get token() {
      return tokens[tokens.length - 1];
    },
    get resourceVersion() {
      return String(rv);
    },
    requests,
    kubeconfig,
    writeKubeconfig(o = {}) {
      const file = o.file ?? path.join(tmp.dir, `kubeconfig-${randomBytes(3).toString('hex')}.yaml`);
      writeFileSync(file, kubeconfig(o), { mode: 0o600 });
      return file;
    },
    upsertEndpoint(ns, service, ep) {
      mutate(ns, service, (d, t) => upsertInto(ns, service, d, t, ep));
    },
    deleteEndpoint(ns, service, address, ports) {
      let found = false;
      mutate(ns, service, (d, t) => {
        found = deleteFrom(d, t, address, ports);
      });
      return found;
    },
    setEndpoints(ns, service, eps) {
      mutate(ns, service, (d, t) => {
        const want = new Set(eps.map((e) => `${e.address}|${portsKey(e.ports)}`));
        for (const [k, s] of d) {
          const keep = s.endpoints.filter((e) => want.has(`${(e.addresses as string[])[0]}|${slicePortsKey(s)}`));
          if (keep.length !== s.endpoints.length) {
            s.endpoints = keep;
            t.add(k);
          }
        }
        for (const ep of eps) upsertInto(ns, service, d, t, ep);
      });
    },
    putSlice(raw) {
      const md = raw.metadata as { namespace?: unknown; name?: unknown } | undefined;
      const ns = md?.namespace;
      const name = md?.name;
      if (typeof ns !== 'string' || typeof name !== 'string')
        throw new TypeError('putSlice(): metadata.namespace and metadata.name are required');
      const key = keyOf(ns, name);
      const prev = objects.get(key);
      const s: Slice = clone(raw as RawJson); // stored as given: malformed on purpose
      s.apiVersion = 'discovery.k8s.io/v1';
      s.kind = 'EndpointSlice';
      const given = (s.metadata ?? {}) as Partial<Slice['metadata']>;
      s.metadata = {
        ...given,
        namespace: ns,
        name,
        uid: given.uid ?? prev?.metadata.uid ?? randomUUID(),
        creationTimestamp:
          given.creationTimestamp ??
          prev?.metadata.creationTimestamp ??
          new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        labels: given.labels ?? {},
        generation: (prev?.metadata.generation ?? 0) + 1,
        resourceVersion: '',
      };
      commit(prev ? 'MODIFIED' : 'ADDED', key, s, prev);
    },
    deleteSlice(ns, name) {
      const key = keyOf(ns, name);
      const prev = objects.get(key);
      if (!prev) return false;
      commit('DELETED', key, clone(prev), prev);
      return true;
    },
    slices(ns, service) {
      return [...objects.values()]
        .filter(
          (s) =>
            (ns === undefined || s.metadata.namespace === ns) &&
            (service === undefined || s.metadata.labels?.[SVC_LABEL] === service),
        )
        .map(clone);
    },
    compact() {
      base = new Map(objects);
      history.length = 0;
      compactedRv = rv;
    },
    stallWatches() {
      let n = 0;
      for (const w of watches) {
        if (!w.stalled) {
          w.stalled = true;
          n++;
        }
      }
      return n;
    },
    closeWatches() {
      let n = 0;
      for (const w of [...watches]) {
        endWatch(w);
        n++;
      }
      return n;
    },
    rotateToken(next, o = {}) {
      const t = next ?? randomBytes(16).toString('hex');
      tokens.push(t);
      if (!o.keepOld) accepted.clear();
      accepted.add(tokens.length - 1);
      if (o.closeWatches) api.closeWatches();
      return t;
    },
    openWatches() {
      return [...watches].filter((w) => !w.stalled && !w.closed).length;
    },
    async stop() {
      for (const w of [...watches]) {
        w.closed = true;
        for (const t of w.timers) clearTimeout(t);
      }
      watches.clear();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      tmp.remove();
    },
  };
  return api;
}
