import { isIP } from 'node:net';
import { namespaceWatchClass } from './watch-all';
import {
  AuthFailedError,
  ConfigError,
  RegistryUnavailableError,
  WatchResolver,
  collectEndpoints,
  defineAdapter,
  registerAdapter,
  silentLogger,
  validateOptions,
  type AdapterContext,
  type AdapterInstance,
  type BadEntry,
  type Logger,
  type SourceSink,
  type WayfinderError,
} from '../../core';
import { monotonicNow } from '../../core/util';
import { retryLoop, scalarText, Waker } from '../../core/kit';
import { KubeClient, KubeRequestError, SERVICE_ACCOUNT_DIR, type WatchHandle } from './client';

/**
 * Kubernetes: resolves `service[.namespace][:port-or-portname]` by list+watch of the service's
 * discovery.k8s.io/v1 EndpointSlices (label kubernetes.io/service-name), like grpc-go's kuberesolver
 * but without DNS. Read-only: Kubernetes registers pods itself.
 */

/** Options as in the URL or config object (validated by the schema below). */
export interface K8sOptions {
  namespace?: string;
  kubeconfig?: string;
  context?: string;
  'token-file'?: string;
  'token-refresh': number;
  'service-account-dir': string;
  'watch-timeout': number;
  'idle-timeout': number;
  'backoff-base': number;
  'backoff-max': number;
  'terminating-fallback': boolean;
}

/** A parsed target: `echo`, `echo.prod`, `echo.prod:grpc`, `echo:8080`, `echo.prod.svc.cluster.local:grpc`. */
export interface K8sTarget {
  service: string;
  namespace: string;
  portName?: string;
  portNumber?: number;
}

const DNS1035 = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS1123 = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const PORT_NAME = /^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/;

export function parseK8sTarget(name: string, defaultNamespace: string): K8sTarget {
  const colon = name.lastIndexOf(':');
  const host = colon >= 0 ? name.slice(0, colon) : name;
  const port = colon >= 0 ? name.slice(colon + 1) : undefined;
  const labels = host.split('.');
  const service = labels[0];
  const namespace = labels.length > 1 ? labels[1] : defaultNamespace;
  if (labels.length > 2 && labels[2] !== 'svc') {
    throw new ConfigError(`k8s: target ${JSON.stringify(name)} must be service[.namespace[.svc...]][:port]`, {
      field: 'service',
    });
  }
  if (!DNS1035.test(service))
    throw new ConfigError(
      `k8s: service name ${JSON.stringify(service)} in ${JSON.stringify(name)} is not a Kubernetes service name (lowercase letters, digits, '-', starting with a letter, at most 63)`,
      { field: 'service' },
    );
  if (!DNS1123.test(namespace))
    throw new ConfigError(
      `k8s: namespace ${JSON.stringify(namespace)} in ${JSON.stringify(name)} is not a Kubernetes namespace name`,
      { field: 'namespace' },
    );
  const t: K8sTarget = { service, namespace };
  if (port !== undefined) {
    if (/^\d+$/.test(port)) {
      const n = Number(port);
      if (n < 1 || n > 65535)
        throw new ConfigError(`k8s: port in ${JSON.stringify(name)} must be in 1..65535`, { field: 'port' });
      t.portNumber = n;
    } else if (PORT_NAME.test(port)) t.portName = port;
    else
      throw new ConfigError(
        `k8s: port ${JSON.stringify(port)} in ${JSON.stringify(name)} is neither a number nor a port name`,
        { field: 'port' },
      );
  }
  return t;
}

interface RawPort {
  name?: string;
  port?: number;
}

/** The port a slice's endpoints serve the target on, or why the slice cannot be used. */
function slicePort(t: K8sTarget, ports: unknown): { port?: number; reason?: string } {
  if (t.portNumber !== undefined) return { port: t.portNumber };
  const list = Array.isArray(ports) ? (ports as RawPort[]).filter((p) => p && typeof p === 'object') : [];
  if (t.portName !== undefined) {
    const p = list.find((x) => (x.name ?? '') === t.portName);
    // A slice without the named port belongs to another port set of the service: not an error.
    if (!p) return {};
    return typeof p.port === 'number' ? { port: p.port } : { reason: `port "${t.portName}" has no number` };
  }
  if (list.length === 1 && typeof list[0].port === 'number') return { port: list[0].port };
  if (list.length === 0) return { reason: 'the slice lists no port; give one in the target (service.namespace:port)' };
  return {
    reason: `the slice has ${list.length} ports (${list.map((p) => p.name || p.port).join(', ')}); name one in the target (service.namespace:name)`,
  };
}

const FQDN =
  /^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$/;

/**
 * Merges a service's slices into one endpoint set: `ready` endpoints (a missing condition counts as
 * ready, as the API says), or, when none is ready and `terminatingFallback`, those that are
 * `serving && terminating` (pods draining during a rollout). Malformed entries are reported.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- untrusted API JSON, every field is checked where it is read
export function endpointsFromSlices(t: K8sTarget, slices: Iterable<any>, terminatingFallback = true) {
  const ready: { key: string; value: unknown }[] = [];
  const draining: { key: string; value: unknown }[] = [];
  const bad: BadEntry[] = [];
  for (const s of slices) {
    const key = `endpointslices/${scalarText(s?.metadata?.namespace)}/${scalarText(s?.metadata?.name)}`;
    const type = s?.addressType;
    if (!Array.isArray(s?.endpoints)) {
      if (s?.endpoints != null) bad.push({ key, reason: '"endpoints" is not a list' });
      continue;
    }
    if (s.endpoints.length === 0) continue;
    if (type !== 'IPv4' && type !== 'IPv6' && type !== 'FQDN') {
      bad.push({ key, reason: `unknown addressType ${JSON.stringify(type)}` });
      continue;
    }
    const { port, reason } = slicePort(t, s.ports);
    if (reason) {
      bad.push({ key, reason });
      continue;
    }
    if (port === undefined) continue;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untrusted API JSON, every field is checked where it is read
    s.endpoints.forEach((e: any, i: number) => {
      const ekey = `${key}/endpoints[${i}]`;
      const addr = Array.isArray(e?.addresses) ? e.addresses[0] : undefined;
      if (typeof addr !== 'string')
        return bad.push({ key: ekey, reason: '"addresses" must be a non-empty list of strings' });
      const fits = type === 'IPv4' ? isIP(addr) === 4 : type === 'IPv6' ? isIP(addr) === 6 : FQDN.test(addr);
      if (!fits)
        return bad.push({ key: ekey, reason: `address ${JSON.stringify(addr)} is not a valid ${type} address` });
      const c = e.conditions && typeof e.conditions === 'object' ? e.conditions : {};
      const isReady = c.ready !== false;
      const serving = c.serving ?? isReady;
      const terminating = c.terminating === true;
      const zone = typeof e.zone === 'string' && e.zone ? e.zone : e.hints?.forZones?.[0]?.name;
      const metadata: Record<string, string> = {};
      if (typeof e.targetRef?.name === 'string' && e.targetRef.kind === 'Pod') metadata['k8s.pod'] = e.targetRef.name;
      if (typeof e.nodeName === 'string') metadata['k8s.node'] = e.nodeName;
      if (typeof e.hostname === 'string') metadata['k8s.hostname'] = e.hostname;
      const value = { host: addr, port, zone: typeof zone === 'string' ? zone : undefined, metadata };
      if (isReady) ready.push({ key: ekey, value });
      else if (serving && terminating)
        draining.push({ key: ekey, value: { ...value, metadata: { ...metadata, 'k8s.terminating': 'true' } } });
    });
  }
  const r = collectEndpoints(ready);
  if (r.endpoints.length > 0 || !terminatingFallback) return { endpoints: r.endpoints, bad: [...bad, ...r.bad] };
  const d = collectEndpoints(draining);
  return { endpoints: d.endpoints, bad: [...bad, ...r.bad, ...d.bad] };
}

type WatchEnd =
  | { kind: 'closed'; events: number; ms: number }
  | { kind: 'idle' }
  | { kind: 'expired' }
  | { kind: 'failed'; err: KubeRequestError | (Error & { statusCode?: number }) };

/** How a SliceWatch round ended other than by a healthy watch: with or without a backoff wait. */
class RoundEnd {
  constructor(readonly backoff: boolean) {}
}

/**
 * One service's list+watch loop. Contract: list, then watch from the list's resourceVersion with
 * bookmarks; a clean server-side end re-watches at once from the last resourceVersion; 410 Expired
 * re-lists; a watch silent for `idle-timeout` (no event, no bookmark) is aborted and restarted; any
 * failure is reported (last good set kept) and retried with backoff through a fresh list.
 */
export class SliceWatch {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untrusted API JSON, every field is checked where it is read
  protected readonly slices = new Map<string, any>();
  protected rv = '';
  protected stopped = false;
  private current?: WatchHandle;
  private readonly waker = new Waker();
  private readonly ac = new AbortController();
  private relist = true;
  private emitScheduled = false;
  private readonly path: string;
  private readonly selector: string;

  constructor(
    private readonly client: KubeClient,
    protected readonly t: K8sTarget,
    private readonly sink: Pick<SourceSink, 'error'> & { update?: SourceSink['update'] },
    protected readonly o: K8sOptions,
    private readonly logger: Logger,
    private readonly random: () => number,
  ) {
    this.path = `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(t.namespace)}/endpointslices`;
    this.selector = t.service ? `kubernetes.io/service-name=${t.service}` : 'kubernetes.io/service-name';
  }

  /** Called for each slice an event adds, changes or deletes, before the slice map changes. */
  protected touched(_name: string): void {}

  start(): void {
    // A round: a list when needed, then one watch. A round resolves (resetting the backoff) only when
    // its watch closed normally after events or after >= 1 s; every other end throws a RoundEnd saying
    // whether to wait the backoff's next delay or go again at once with the backoff unmoved.
    void retryLoop({
      signal: this.ac.signal,
      run: (_signal, healthy) => this.round(healthy),
      onError: (e, next) => {
        if (e instanceof RoundEnd) return e.backoff ? next() : 0;
        this.logger.error({ err: e }, 'k8s: watch loop crashed');
        this.stop();
      },
      backoff: { baseMs: this.o['backoff-base'], maxMs: this.o['backoff-max'], random: this.random },
      sleep: (ms, signal) => this.waker.sleep(ms, signal),
    });
  }

  stop(): void {
    this.stopped = true;
    this.ac.abort();
    this.current?.abort();
    this.waker.wake();
  }

  private async round(healthy: () => void): Promise<void> {
    if (this.relist) {
      try {
        await this.list();
        this.relist = false;
      } catch (err) {
        if (this.stopped) return;
        throw new RoundEnd(!(await this.fail(err as KubeRequestError)));
      }
    }
    if (this.stopped) return;
    const end = await this.watchOnce(healthy);
    if (this.stopped) return;
    switch (end.kind) {
      case 'closed':
        // A normal server-side end (timeoutSeconds). One that ends at once, with nothing on it,
        // again and again (a misbehaving proxy) must not become a hot loop.
        if (end.events > 0 || end.ms >= 1000) return;
        throw new RoundEnd(true);
      case 'idle':
        this.logger.warn(
          { service: this.t.service, namespace: this.t.namespace, idleMs: this.o['idle-timeout'] },
          'k8s: watch silent past idle-timeout; restarting it',
        );
        throw new RoundEnd(true);
      case 'expired':
        this.logger.info(
          { service: this.t.service, namespace: this.t.namespace },
          'k8s: resourceVersion expired (410); re-listing',
        );
        this.rv = '';
        this.relist = true;
        throw new RoundEnd(false);
      case 'failed':
        this.relist = true;
        if (!end.err.statusCode) {
          // A dropped stream (reset, proxy cut) is routine: re-list at once; only a failing list is reported.
          this.logger.warn(
            { service: this.t.service, namespace: this.t.namespace, err: end.err.message },
            'k8s: watch stream failed; re-listing',
          );
          throw new RoundEnd(false);
        }
        throw new RoundEnd(!(await this.fail(end.err)));
    }
  }

  /** Reports a failure. Returns true when it should be retried at once (a 401 cured by a new token). */
  private async fail(err: KubeRequestError | (Error & { statusCode?: number })): Promise<boolean> {
    const code = err.statusCode ?? 0;
    if (code === 401 && this.client.refreshToken(true)) {
      this.logger.info(
        { service: this.t.service },
        'k8s: 401 with the old token; retrying with the token re-read from its file',
      );
      return true;
    }
    this.sink.error(this.toError(err));
    return false;
  }

  private toError(err: Error & { statusCode?: number }): WayfinderError {
    const code = err.statusCode ?? 0;
    const where = `k8s: endpointslices of ${this.t.namespace}/${this.t.service} at ${this.client.server}`;
    if (code === 401)
      return new AuthFailedError(
        `${where}: the API server refused the credentials (401 Unauthorized)${this.client.hasTokenFile ? '; the token file was re-read and did not help' : ''}`,
        { cause: err },
      );
    if (code === 403)
      return new AuthFailedError(
        `${where}: forbidden (403): the identity needs get/list/watch on endpointslices.discovery.k8s.io in namespace "${this.t.namespace}" (see docs/adapters/k8s.md)`,
        { cause: err },
      );
    return new RegistryUnavailableError(`${where}: ${code ? `HTTP ${code}: ` : ''}${err.message}`, { cause: err });
  }

  private async list(): Promise<void> {
    const ac = new AbortController();
    const stopNow = { abort: () => ac.abort() };
    this.current = stopNow;
    const q = new URLSearchParams({ labelSelector: this.selector });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untrusted API JSON, every field is checked where it is read
    const items: any[] = [];
    let rv: string;
    let cont = '';
    // Paged like kubectl and client-go (500 per page); a page chain is one consistent snapshot.
    do {
      if (cont) q.set('continue', cont);
      q.set('limit', '500');
      const body = await this.client.getJson(`${this.path}?${q}`, ac.signal);
      if (!Array.isArray(body?.items)) throw new KubeRequestError(0, 'the list response has no "items"');
      items.push(...body.items);
      rv = String(body.metadata?.resourceVersion ?? '');
      cont = typeof body.metadata?.continue === 'string' ? body.metadata.continue : '';
    } while (cont && !this.stopped);
    if (this.stopped) return;
    this.slices.clear();
    for (const s of items) if (s?.metadata?.name) this.slices.set(String(s.metadata.name), s);
    this.rv = rv;
    this.emit(true);
  }

  private watchOnce(healthy: () => void): Promise<WatchEnd> {
    return new Promise((resolve) => {
      const started = monotonicNow();
      let events = 0;
      let settled = false;
      let idle: NodeJS.Timeout | undefined;
      const finish = (end: WatchEnd) => {
        if (settled) return;
        settled = true;
        clearTimeout(idle);
        handle.abort();
        resolve(end);
      };
      const arm = () => {
        clearTimeout(idle);
        idle = setTimeout(() => finish({ kind: 'idle' }), this.o['idle-timeout']);
        idle.unref?.();
      };
      // client-go's habit: a server-side timeout jittered in [t, 1.25 t] so watches do not expire together.
      const timeoutSeconds = Math.max(1, Math.round((this.o['watch-timeout'] * (1 + this.random() / 4)) / 1000));
      const handle = this.client.watch(
        this.path,
        { labelSelector: this.selector, resourceVersion: this.rv, allowWatchBookmarks: true, timeoutSeconds },
        (type, obj) => {
          arm();
          // A watch that delivers is healthy: failures after it start their backoff afresh.
          if (events++ === 0) healthy();
          this.onEvent(type, obj, finish);
        },
        (err) => {
          if (!err) return finish({ kind: 'closed', events, ms: monotonicNow() - started });
          if (err.statusCode === 410) return finish({ kind: 'expired' });
          finish({ kind: 'failed', err });
        },
      );
      this.current = { abort: () => finish({ kind: 'closed', events, ms: 0 }) };
      arm();
    });
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untrusted API JSON, every field is checked where it is read
  private onEvent(type: string, obj: any, finish: (e: WatchEnd) => void): void {
    const objRv = obj?.metadata?.resourceVersion;
    switch (type) {
      case 'ADDED':
      case 'MODIFIED':
        if (obj?.metadata?.name) {
          this.touched(String(obj.metadata.name));
          this.slices.set(String(obj.metadata.name), obj);
        }
        break;
      case 'DELETED':
        if (obj?.metadata?.name) {
          this.touched(String(obj.metadata.name));
          this.slices.delete(String(obj.metadata.name));
        }
        break;
      case 'BOOKMARK':
        if (typeof objRv === 'string' && objRv) this.rv = objRv;
        return;
      case 'ERROR':
        if (obj?.code === 410) return finish({ kind: 'expired' });
        return finish({
          kind: 'failed',
          err: new KubeRequestError(
            typeof obj?.code === 'number' ? obj.code : 0,
            `watch error: ${obj?.message ?? 'unknown'}`,
            obj?.reason,
          ),
        });
      default:
        return;
    }
    if (typeof objRv === 'string' && objRv) this.rv = objRv;
    this.emit(false);
  }

  /** Coalesces the events of one burst (e.g. several slices rewritten together) into one update. */
  private emit(now: boolean): void {
    const run = () => {
      this.emitScheduled = false;
      if (this.stopped) return;
      this.report(now);
    };
    if (now) return run();
    if (this.emitScheduled) return;
    this.emitScheduled = true;
    setImmediate(run);
  }

  /** Reports the set: after a list (`full`) or after a burst of events. */
  protected report(_full: boolean): void {
    const { endpoints, bad } = endpointsFromSlices(
      this.t,
      [...this.slices.keys()].sort().map((k) => this.slices.get(k)),
      this.o['terminating-fallback'],
    );
    this.sink.update?.(endpoints, { revision: this.rv || undefined, bad });
  }
}

const NamespaceWatch = namespaceWatchClass(SliceWatch);

/** Resolver over the Kubernetes API. `client` is shared by every service watched. */
export function createK8sRegistry(
  options: Partial<K8sOptions> = {},
  ctx: { logger?: Logger; random?: () => number; env?: Record<string, string | undefined> } = {},
): K8sRegistry {
  const o = validateOptions<K8sOptions>('k8s', k8sAdapter.options, options);
  checkK8sOptions(o);
  return openK8s(o, { logger: ctx.logger ?? silentLogger, random: ctx.random ?? Math.random }, ctx.env);
}

type K8sRegistry = AdapterInstance & { client: KubeClient; namespace: string };

/** The registry over validated, defaulted options. */
function openK8s(
  o: K8sOptions,
  ctx: Pick<AdapterContext, 'logger' | 'random'>,
  env?: Record<string, string | undefined>,
): K8sRegistry {
  const { logger, random } = ctx;
  const client = new KubeClient({
    kubeconfig: o.kubeconfig,
    context: o.context,
    tokenFile: o['token-file'],
    serviceAccountDir: o['service-account-dir'],
    tokenRefreshMs: o['token-refresh'],
    env,
    logger,
    now: monotonicNow,
  });
  const namespace = o.namespace ?? client.namespace ?? 'default';
  const resolver = new WatchResolver(
    'k8s',
    (service, sink) => {
      const t = parseK8sTarget(service, namespace);
      const w = new SliceWatch(client, t, sink, o, logger, random);
      w.start();
      return () => w.stop();
    },
    { logger },
  );
  return {
    resolver,
    client,
    namespace,
    // One EndpointSlice list+watch of the namespace; serves the targets that name a service of it alone.
    watchAll: (sink) => {
      const w = new NamespaceWatch(client, namespace, sink, o, logger, random);
      w.start();
      return () => w.stop();
    },
    registryWatchCovers: (service) => DNS1123.test(service),
  };
}

function checkK8sOptions(o: K8sOptions): void {
  if (o['backoff-max'] < o['backoff-base'])
    throw new ConfigError('k8s: "backoff-max" must not be below "backoff-base"', { field: 'backoff-max' });
}

export const k8sAdapter = defineAdapter<K8sOptions>({
  scheme: 'k8s',
  aliases: ['kubernetes'],
  description:
    'Kubernetes EndpointSlices (discovery.k8s.io/v1) by list+watch; targets service[.namespace][:port|:portname]. Read-only.',
  examples: ['k8s://', 'k8s://?namespace=prod', 'kubernetes://?kubeconfig=/home/me/.kube/config&context=staging'],
  capabilities: {
    watch: 'push',
    register: false,
    ttl: false,
    weights: false,
    zones: true,
    metadata: false,
    listServices: false,
    registryWatch: true,
  },
  options: {
    namespace: {
      type: 'string',
      doc: 'Namespace of targets that name none (service:port). Default: the kubeconfig context\'s namespace, the service account\'s namespace in a pod, else "default".',
      check: (v: string) => (DNS1123.test(v) ? undefined : 'must be a Kubernetes namespace name'),
    },
    kubeconfig: {
      type: 'string',
      doc: 'Path of a kubeconfig file. Default: in a pod, the service account (in-cluster config); else $KUBECONFIG, else ~/.kube/config.',
    },
    context: { type: 'string', doc: "kubeconfig context to use (default: the file's current-context)." },
    'token-file': {
      type: 'string',
      doc: "Bearer token file, re-read every token-refresh and after a 401. Default: the service account token in a pod, or the kubeconfig user's tokenFile.",
    },
    'token-refresh': {
      type: 'duration',
      default: 60_000,
      min: 1000,
      doc: 'How often the token file is re-read (bound service-account tokens rotate hourly).',
    },
    'service-account-dir': {
      type: 'string',
      default: SERVICE_ACCOUNT_DIR,
      doc: 'Where the in-cluster token, ca.crt and namespace files are.',
    },
    'watch-timeout': {
      type: 'duration',
      default: 300_000,
      min: 1000,
      doc: 'Server-side watch timeout asked for (timeoutSeconds, jittered up to +25%); the watch is then resumed from its resourceVersion.',
    },
    'idle-timeout': {
      type: 'duration',
      default: 180_000,
      min: 100,
      doc: 'A watch with no event and no bookmark for this long is presumed dead and restarted (the API server sends bookmarks about every minute).',
    },
    'backoff-base': {
      type: 'duration',
      default: 200,
      min: 1,
      doc: 'First retry delay after a failure (exponential, jittered).',
    },
    'backoff-max': { type: 'duration', default: 30_000, min: 1, doc: 'Longest retry delay.' },
    'terminating-fallback': {
      type: 'boolean',
      default: true,
      doc: 'When no endpoint is ready, use those still serving while terminating (graceful shutdown) instead of none.',
    },
  },
  validate: checkK8sOptions,
  create(options, ctx) {
    return openK8s(options, ctx);
  },
});

/** Registers the k8s:// and kubernetes:// schemes. Idempotent. */
export function setup(): void {
  registerAdapter(k8sAdapter);
}
setup();
