import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as https from 'node:https';
import type * as net from 'node:net';
import type { Socket } from 'node:net';
import * as path from 'node:path';
import { makeTestPki, type TestPki } from './etcd';
import { SliceController } from './fake-kube/controller';
import { discoveryDocument } from './fake-kube/discovery';
import { failWith, json, newCall, TokenRing, type Call } from './fake-kube/http';
import { kubeconfigYaml, type KubeconfigOptions } from './fake-kube/kubeconfig';
import {
  GROUP,
  type FakeKubeApiOptions,
  type FakeKubeEndpoint,
  type FakeKubePort,
  type FakeKubeRequest,
  type Slice,
} from './fake-kube/model';
import { Namespaces } from './fake-kube/namespaces';
import { getSlice, listSlices } from './fake-kube/slice-reads';
import { watchSlices, type WatchTiming } from './fake-kube/slice-watch';
import { writeSlice } from './fake-kube/slice-writes';
import { SliceStore } from './fake-kube/store';
import { WatchHub } from './fake-kube/watches';
import { tempDir } from './process';

export type { FakeKubeApiOptions, FakeKubeEndpoint, FakeKubePort, FakeKubeRequest } from './fake-kube/model';
export { parseLabelSelector } from './fake-kube/selectors';

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
 *
 * The parts live in testkit/fake-kube/: the store (objects, resourceVersions, history) and the
 * watch fan-out, the controller behind the admin API, and one module per route (EndpointSlice
 * reads, watches and writes, namespaces, discovery documents).
 */

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

const SLICE_PATH = new RegExp(
  `^/apis/${GROUP.replace('.', '\\.')}/v1(?:/namespaces/([^/]+))?/endpointslices(?:/([^/]+))?$`,
);
const NAMESPACE_PATH = /^\/api\/v1\/namespaces(?:\/([^/]+))?$/;
const segment = (s: string | undefined) => (s !== undefined ? decodeURIComponent(s) : undefined);

/** The HTTPS server and the admin API over the store, the watch hub and the routes. */
class FakeKubeServer implements FakeKubeApi {
  url = '';
  port = 0;
  readonly caPem: string;
  readonly caFile: string;
  readonly requests: FakeKubeRequest[] = [];
  private readonly tmp = tempDir('wayfinder-kube-');
  private readonly tokens: TokenRing;
  private readonly store = new SliceStore();
  private readonly hub = new WatchHub(this.store);
  private readonly namespaces = new Namespaces(this.store);
  private readonly controller: SliceController;
  private readonly timing: WatchTiming;
  private readonly sockets = new Set<Socket>();
  private readonly server: https.Server;

  constructor(opts: FakeKubeApiOptions) {
    const pki = sharedPki();
    this.caFile = pki.ca;
    this.caPem = readFileSync(pki.ca, 'utf8');
    this.tokens = new TokenRing(opts.token);
    this.controller = new SliceController(this.store, opts.maxEndpointsPerSlice ?? 100);
    this.timing = {
      bookmarkMs: opts.bookmarkIntervalMs ?? 60_000,
      defaultTimeoutMs: opts.defaultWatchTimeoutMs ?? 30 * 60_000,
    };
    const tls = { key: readFileSync(pki.serverKey), cert: readFileSync(pki.serverCert) };
    this.server = https.createServer(tls, (req, res) => this.handle(req, res));
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async listen(): Promise<void> {
    this.port = await new Promise<number>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => resolve((this.server.address() as net.AddressInfo).port));
    });
    this.url = `https://127.0.0.1:${this.port}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const call = newCall(req, res, this.tokens.authenticate(req));
    this.requests.push(call.log);
    try {
      this.route(call);
    } catch (e) {
      failWith(call, e, 'Internal error occurred: ');
    }
  }

  private route(call: Call): void {
    const { req, path: p, log } = call;
    if (log.tokenGeneration < 0) return call.fail(401, 'Unauthorized', 'Unauthorized');
    const isWatch = call.query.watch === 'true' || call.query.watch === '1';
    const doc = req.method === 'GET' && !isWatch ? discoveryDocument(p, `127.0.0.1:${this.port}`) : undefined;
    if (doc !== undefined) {
      log.verb = 'discovery';
      return json(call.res, 200, doc);
    }
    const nsm = NAMESPACE_PATH.exec(p);
    if (nsm) return void this.namespaces.route(call, segment(nsm[1]));
    const m = SLICE_PATH.exec(p);
    if (!m) return call.fail(404, 'NotFound', 'the server could not find the requested resource');
    const ns = segment(m[1]);
    const name = segment(m[2]);
    if (req.method !== 'GET') {
      log.verb = 'other';
      return void writeSlice(call, this.store, this.namespaces, ns, name);
    }
    if (name !== undefined) return getSlice(call, this.store, ns, name);
    if (isWatch) {
      log.verb = 'watch';
      return watchSlices(call, this.store, this.hub, this.timing, ns);
    }
    log.verb = 'list';
    listSlices(call, this.store, ns);
  }

  get token(): string {
    return this.tokens.current;
  }

  get resourceVersion(): string {
    return String(this.store.rv);
  }

  kubeconfig(o: KubeconfigOptions = {}): string {
    return kubeconfigYaml(this.url, this.caPem, this.tokens.current, o);
  }

  writeKubeconfig(o: KubeconfigOptions & { file?: string } = {}): string {
    const file = o.file ?? path.join(this.tmp.dir, `kubeconfig-${randomBytes(3).toString('hex')}.yaml`);
    writeFileSync(file, this.kubeconfig(o), { mode: 0o600 });
    return file;
  }

  upsertEndpoint(ns: string, service: string, ep: FakeKubeEndpoint): void {
    this.controller.upsertEndpoint(ns, service, ep);
  }

  deleteEndpoint(ns: string, service: string, address: string, ports?: FakeKubePort[]): boolean {
    return this.controller.deleteEndpoint(ns, service, address, ports);
  }

  setEndpoints(ns: string, service: string, eps: FakeKubeEndpoint[]): void {
    this.controller.setEndpoints(ns, service, eps);
  }

  putSlice(raw: Record<string, unknown>): void {
    this.controller.putSlice(raw);
  }

  deleteSlice(ns: string, name: string): boolean {
    return this.controller.deleteSlice(ns, name);
  }

  slices(ns?: string, service?: string): Slice[] {
    return this.controller.slices(ns, service);
  }

  compact(): void {
    this.store.compact();
  }

  stallWatches(): number {
    return this.hub.stall();
  }

  closeWatches(): number {
    return this.hub.closeAll();
  }

  rotateToken(next?: string, o: { keepOld?: boolean; closeWatches?: boolean } = {}): string {
    const t = this.tokens.rotate(next, o.keepOld);
    if (o.closeWatches) this.hub.closeAll();
    return t;
  }

  openWatches(): number {
    return this.hub.openCount();
  }

  async stop(): Promise<void> {
    this.hub.drop();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
    this.tmp.remove();
  }
}

export async function startFakeKubeApi(opts: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
  const server = new FakeKubeServer(opts);
  await server.listen();
  return server;
}
