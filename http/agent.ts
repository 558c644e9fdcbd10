import '../builtins'; // the built-in registries and balancers
import type { Duplex } from 'node:stream';
import { Agent, Dispatcher, Pool, errors as undiciErrors } from 'undici';
import {
  ClosedError,
  endpointKey,
  hostPort,
  monotonicNow,
  silentLogger,
  type ConfigSource,
  type Endpoint,
  type Logger,
  type PickDone,
} from '../core';
import { toLegacyHandler, type LegacyHandler } from './handler';
import { checkHostRule, isServiceHost, type HostRule } from './hosts';
import {
  RetryBudget,
  isAbort,
  isConnectError,
  isIdempotent,
  isReplayable,
  isResetError,
  isUnreachableError,
  type RetryOptions,
} from './retry';
import {
  DEFAULT_RESOLVE_TIMEOUT_MS,
  DiscoveryHandle,
  ServiceView,
  balancerFactory,
  type BalancerSpec,
  type DiscoveryLike,
} from './service';

export interface WayfinderAgentOptions {
  /**
   * The registry: a Discovery (not closed by the agent), or a config source for
   * Discovery.fromConfig() (built on first use, closed by agent.close()). Default: fromConfig()
   * (env WAYFINDER_REGISTRY, else the default file registry).
   */
  discovery?: DiscoveryLike | ConfigSource;
  /** Any registered balancer by name, or `{ name, ...options }` with decorator options. Default round_robin. */
  balancer?: BalancerSpec;
  /** Most connections per endpoint (undici Pool `connections`). Default: no limit. */
  connections?: number;
  /** Other options for every endpoint's undici Pool (keepAliveTimeout, connect: { ca, ... }, ...). */
  pool?: Omit<Pool.Options, 'connections'>;
  /** Options of the plain undici Agent that serves pass-through hosts. */
  passThroughAgent?: Agent.Options;
  /** Hosts that name services although they contain a dot (see isServiceHost()). */
  services?: HostRule;
  /** Hosts that never name services, checked first (see isServiceHost()). */
  passThrough?: HostRule;
  /** Retry of requests that failed before reaching a server; false: never retry. */
  retry?: RetryOptions | false;
  /** How long a request waits for a service's first snapshot. Default 10000 ms. */
  resolveTimeoutMs?: number;
  logger?: Logger;
  /** Injected for deterministic tests. */
  now?: () => number;
  random?: () => number;
}

interface EndpointPool {
  endpoint: Endpoint;
  pool: Pool;
}

interface Route {
  service: string;
  protocol: string;
  /** The URL's host (with port), sent as the Host header. */
  host: string;
}

const kDispatch = Symbol('dispatch');

/**
 * A service of the agent: its view (watch + picker) and one undici Pool per endpoint.
 * An endpoint that leaves the set gets pool.close(): its queued and running requests finish,
 * then its connections close. No request is dispatched to it after that (picks and pool lookups
 * happen in the same tick, against the same set).
 */
class HttpService {
  readonly view: ServiceView;
  private readonly pools = new Map<string, EndpointPool>();
  private byEndpoint = new Map<Endpoint, EndpointPool>();

  constructor(
    readonly agent: WayfinderAgent,
    discovery: DiscoveryLike,
    service: string,
    private readonly protocol: string,
  ) {
    this.view = new ServiceView(discovery, service, {
      balancer: agent.newBalancer(),
      logger: agent.logger,
      now: agent.now,
      random: agent.random,
      resolveTimeoutMs: agent.resolveTimeoutMs,
      onEndpoints: (eps) => this.onEndpoints(eps),
    });
  }

  pool(e: Endpoint): EndpointPool | undefined {
    return this.byEndpoint.get(e) ?? this.pools.get(endpointKey(e));
  }

  private onEndpoints(eps: Endpoint[]): void {
    const next = new Map<Endpoint, EndpointPool>();
    const keep = new Set<string>();
    for (const e of eps) {
      const key = endpointKey(e);
      keep.add(key);
      let p = this.pools.get(key);
      if (!p) {
        p = { endpoint: e, pool: this.agent.newPool(`${this.protocol}//${hostPort(e.host, e.port)}`) };
        this.pools.set(key, p);
      }
      p.endpoint = e;
      next.set(e, p);
    }
    for (const [key, p] of this.pools) {
      if (keep.has(key)) continue;
      this.pools.delete(key);
      this.agent.retire(p.pool);
    }
    this.byEndpoint = next;
  }

  close(): Promise<unknown> {
    this.view.close();
    const all = [...this.pools.values()].map((p) => p.pool.close());
    this.pools.clear();
    this.byEndpoint.clear();
    return Promise.allSettled(all);
  }

  destroy(err: Error): Promise<unknown> {
    this.view.close();
    const all = [...this.pools.values()].map((p) => p.pool.destroy(err));
    this.pools.clear();
    this.byEndpoint.clear();
    return Promise.allSettled(all);
  }
}

/**
 * One request through the agent, across its attempts. It is the handler undici's Pool drives for
 * each attempt; it forwards to the caller's handler and feeds every attempt's outcome to the
 * balancer. An attempt fails over to a new pick, within the agent's retry budget, when
 *  - it failed while connecting (nothing of the request was written), any method; or
 *  - its socket was reset/closed after the request was written but before any response byte, the
 *    method is idempotent (RFC 9110, or opts.idempotent) and the body is in memory.
 * Nothing else is retried: once the caller saw a response header it sees whatever follows.
 */
class Call implements LegacyHandler {
  private attempts = 0;
  private written = false;
  private headers = false;
  private status = 0;
  private t0 = 0;
  private done?: PickDone;
  private endpoint?: Endpoint;
  private connected = false;
  private abortAttempt?: (err?: Error) => void;
  private aborted?: Error;
  private readonly idempotent: boolean;
  private readonly replayable: boolean;

  constructor(
    private readonly svc: HttpService,
    readonly opts: Dispatcher.DispatchOptions,
    private readonly user: LegacyHandler,
  ) {
    this.idempotent = isIdempotent(opts.method, opts.idempotent);
    this.replayable = isReplayable(opts.body);
  }

  /** Picks and dispatches one attempt. */
  start(): boolean {
    const agent = this.svc.agent;
    if (agent.finished) {
      this.fail(new undiciErrors.ClientClosedError());
      return true;
    }
    const view = this.svc.view;
    const key = view.usesPickInfo ? headerValue(this.opts.headers, PICK_KEY_HEADER) : undefined;
    const out = view.pick(key !== undefined ? { key } : undefined);
    if (out.error) {
      const err = out.error;
      void this.svc.view.explainNoEndpoints(err).then((e) => this.fail(e));
      return true;
    }
    const { pick } = out;
    const entry = this.svc.pool(pick.endpoint);
    if (!entry) {
      pick.done({ ok: true, latencyMs: 0 });
      this.fail(new ClosedError(`endpoint ${endpointKey(pick.endpoint)} of service "${this.svc.view.service}"`));
      return true;
    }
    this.attempts++;
    this.written = false;
    this.status = 0;
    this.endpoint = pick.endpoint;
    this.done = pick.done;
    pick.started?.();
    this.t0 = agent.now();
    return entry.pool.dispatch(this.opts, this);
  }

  private finish(ok: boolean): void {
    const done = this.done;
    if (!done) return;
    this.done = undefined;
    try {
      done({ ok, latencyMs: this.svc.agent.now() - this.t0 });
    } catch (err) {
      this.svc.agent.logger.error({ err }, 'WayfinderAgent: a pick done() threw; ignored');
    }
  }

  private fail(err: Error): void {
    if (this.user.onError) this.user.onError(err);
    else throw err;
  }

  private userAbort = (err?: Error): void => {
    this.aborted ??= err ?? new undiciErrors.RequestAbortedError();
    this.abortAttempt?.(err);
  };

  onConnect(abort: (err?: Error) => void, context?: unknown): void {
    this.written = true;
    this.abortAttempt = abort;
    if (this.aborted) {
      abort(this.aborted);
      return;
    }
    if (this.connected) return;
    this.connected = true;
    this.user.onConnect?.(this.userAbort, context);
  }

  onResponseStarted(): void {
    this.user.onResponseStarted?.();
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (!this.headers && this.endpoint) this.svc.view.markReachable(this.endpoint);
    this.headers = true;
    this.status = statusCode;
    return this.user.onHeaders ? this.user.onHeaders(statusCode, rawHeaders, resume, statusText) : true;
  }

  onData(chunk: Buffer): boolean {
    return this.user.onData ? this.user.onData(chunk) : true;
  }

  onComplete(trailers: Buffer[] | string[] | null): void {
    this.finish(this.status < 500);
    this.user.onComplete?.(trailers);
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[] | string[] | null, socket: Duplex): void {
    this.headers = true;
    this.finish(true);
    this.user.onUpgrade?.(statusCode, rawHeaders, socket);
  }

  onBodySent(chunk: unknown): void {
    this.user.onBodySent?.(chunk);
  }

  onRequestSent(): void {
    this.user.onRequestSent?.();
  }

  onError(err: Error): void {
    const agent = this.svc.agent;
    const retryable =
      !this.aborted &&
      !this.headers &&
      !agent.finished &&
      (this.written ? isResetError(err) && this.idempotent && this.replayable : isConnectError(err));
    if (!this.written && this.endpoint && isUnreachableError(err)) this.svc.view.markUnreachable(this.endpoint);
    this.finish(!!this.aborted || isAbort(err));
    if (retryable && this.attempts < agent.maxAttempts && agent.budget?.tryWithdraw()) {
      agent.stats.retries++;
      agent.logger.debug(
        {
          service: this.svc.view.service,
          endpoint: this.endpoint && endpointKey(this.endpoint),
          code: (err as NodeJS.ErrnoException).code,
        },
        'WayfinderAgent: retrying on another endpoint',
      );
      // Deferred: undici may be inside a loop erroring a whole queue.
      queueMicrotask(() => this.start());
      return;
    }
    this.fail(err);
  }
}

/**
 * An undici Dispatcher that routes requests for service names through the registry:
 * `fetch('http://billing/invoices', { dispatcher: agent })`. Works with fetch() (undici's or
 * Node's global, also through setGlobalDispatcher(agent)) and undici's request/stream/pipeline.
 *
 * A URL's host names a service unless isServiceHost() says it passes through (IP literals,
 * localhost, dotted names not listed in `services`, anything in `passThrough`); pass-through
 * requests go to a plain undici Agent. Each service request is picked separately by the
 * service's balancer (one instance per service and protocol) and its outcome fed back:
 * 5xx responses and connection errors are failures, latency is measured to the response's end.
 * The Host header keeps the URL's host (`billing:8080`); the URL's port is not used for routing
 * (each endpoint's registered port is). See docs/http.md.
 */
export class WayfinderAgent extends Dispatcher {
  readonly logger: Logger;
  readonly now: () => number;
  readonly random: () => number;
  readonly resolveTimeoutMs: number;
  readonly maxAttempts: number;
  readonly budget?: RetryBudget;
  /** Counters for diagnostics and tests. */
  readonly stats = { requests: 0, retries: 0, passThrough: 0 };
  /** No new requests (close() or destroy() called). */
  closed = false;
  /** Services and pools are closing: accepted requests not yet dispatched fail. */
  finished = false;
  private readonly queued = new Set<Promise<unknown>>();
  private readonly services = new Map<string, HttpService>();
  private readonly routes = new Map<string, Route | null>();
  private readonly retiring = new Set<Promise<unknown>>();
  private readonly makeBalancer: ReturnType<typeof balancerFactory>;
  private readonly discovery: DiscoveryHandle;
  private passAgent?: Agent;
  private closing?: Promise<void>;

  constructor(private readonly options: WayfinderAgentOptions = {}) {
    super();
    if (!options || typeof options !== 'object') throw new TypeError('WayfinderAgent: options must be an object');
    checkHostRule(options.services, 'services');
    checkHostRule(options.passThrough, 'passThrough');
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? monotonicNow;
    this.random = options.random ?? Math.random;
    this.resolveTimeoutMs = options.resolveTimeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS;
    if (!(this.resolveTimeoutMs > 0)) throw new TypeError('WayfinderAgent: resolveTimeoutMs must be positive');
    if (options.connections !== undefined && !(Number.isInteger(options.connections) && options.connections > 0))
      throw new TypeError('WayfinderAgent: connections must be a positive integer');
    this.makeBalancer = balancerFactory(options.balancer);
    const retry = options.retry === false ? undefined : (options.retry ?? {});
    this.maxAttempts = retry ? (retry.maxAttempts ?? 3) : 1;
    if (!(Number.isInteger(this.maxAttempts) && this.maxAttempts >= 1))
      throw new TypeError('WayfinderAgent: retry.maxAttempts must be an integer >= 1');
    if (retry) this.budget = new RetryBudget(retry.budgetRatio ?? 0.2, retry.minPerSec ?? 10, this.now);
    this.discovery = new DiscoveryHandle(options.discovery, this.logger);
  }

  /** @internal */
  newBalancer() {
    return this.makeBalancer();
  }

  /** @internal */
  newPool(origin: string): Pool {
    const pool = new Pool(origin, { ...this.options.pool, connections: this.options.connections ?? null });
    pool.on('connect', (o, targets) => this.emit('connect', o, [this, ...targets]));
    pool.on('disconnect', (o, targets, err) => this.emit('disconnect', o, [this, ...targets], err));
    pool.on('connectionError', (o, targets, err) => this.emit('connectionError', o, [this, ...targets], err));
    pool.on('drain', (o: URL) => void this.emit('drain', o));
    return pool;
  }

  /** @internal An endpoint left its service: finish what it runs, then close. */
  retire(pool: Pool): void {
    const p = pool.close().catch((err) => this.logger.warn({ err }, 'WayfinderAgent: closing a pool failed'));
    this.retiring.add(p);
    void p.finally(() => this.retiring.delete(p));
  }

  /** The route for an origin: a service, or null to pass through. Cached per origin string. */
  private route(origin: string | URL | undefined): Route | null {
    if (origin === undefined) return null;
    const key = typeof origin === 'string' ? origin : origin.origin;
    let r = this.routes.get(key);
    if (r !== undefined) return r;
    let url: URL;
    try {
      url = typeof origin === 'string' ? new URL(origin) : origin;
    } catch {
      return null; // the pass-through agent reports the bad origin
    }
    r =
      (url.protocol === 'http:' || url.protocol === 'https:') &&
      isServiceHost(url.hostname, { services: this.options.services, passThrough: this.options.passThrough })
        ? { service: url.hostname.toLowerCase(), protocol: url.protocol, host: url.host }
        : null;
    if (this.routes.size >= 1024) this.routes.clear();
    this.routes.set(key, r);
    return r;
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if (!handler || typeof handler !== 'object')
      throw new undiciErrors.InvalidArgumentError('handler must be an object');
    const user = toLegacyHandler(handler);
    try {
      if (!opts || typeof opts !== 'object') throw new undiciErrors.InvalidArgumentError('opts must be an object.');
      if (this.closed) throw new undiciErrors.ClientClosedError();
      const route = this.route(opts.origin);
      if (!route) {
        this.stats.passThrough++;
        this.passAgent ??= new Agent(this.options.passThroughAgent);
        return this.passAgent.dispatch(opts, handler);
      }
      return this[kDispatch](route, opts, user);
    } catch (err) {
      if (!user.onError) throw err;
      user.onError(err as Error);
      return false;
    }
  }

  private [kDispatch](route: Route, opts: Dispatcher.DispatchOptions, user: LegacyHandler): boolean {
    this.stats.requests++;
    this.budget?.deposit();
    const svcKey = `${route.protocol}//${route.service}`;
    let svc = this.services.get(svcKey);
    const call = (s: HttpService) => new Call(s, { ...opts, headers: withHost(opts.headers, route.host) }, user);
    if (svc?.view.isReady) return call(svc).start();
    const pending = (async () => {
      if (!svc) {
        const d = await this.discovery.get();
        svc = this.services.get(svcKey);
        if (!svc) {
          if (this.finished) throw new undiciErrors.ClientClosedError();
          this.services.set(svcKey, (svc = new HttpService(this, d, route.service, route.protocol)));
        }
      }
      if (!(await svc.view.whenReady()))
        throw this.finished ? new undiciErrors.ClientClosedError() : svc.view.timeoutError();
      return svc;
    })();
    // Accepted: close() waits for it to be dispatched (or to fail) before closing the pools.
    const queued = pending.then(
      (s) => call(s).start(),
      (err: Error) => (user.onError ? user.onError(err) : this.logger.error({ err }, 'WayfinderAgent: request failed')),
    );
    this.queued.add(queued);
    void queued.finally(() => this.queued.delete(queued));
    return true;
  }

  /** Resolves when every pool finished its requests and closed. Idempotent. */
  /**
   * `fetch(input, { ...init, dispatcher: this })` with Node's global fetch. The same call written
   * out needs a cast in TypeScript: the undici types bundled with @types/node (and the DOM lib's
   * RequestInit) differ from undici 7's, whose Dispatcher this agent is.
   */
  fetch(input: string | URL, init: RequestInit = {}): Promise<Response> {
    // The one cast the undici type skew needs (see above): the object is a valid undici RequestInit.
    const withAgent: object = { ...init, dispatcher: this };
    return globalThis.fetch(input, withAgent as RequestInit);
  }

  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | void {
    this.closing ??= this.shutdown(
      (s) => s.close(),
      () => this.passAgent?.close(),
      true,
    );
    if (callback) {
      void this.closing.then(() => callback());
      return;
    }
    return this.closing;
  }

  override destroy(): Promise<void>;
  override destroy(err: Error | null): Promise<void>;
  override destroy(callback: () => void): void;
  override destroy(err: Error | null, callback: () => void): void;
  override destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    const err = typeof a === 'function' ? null : (a ?? null);
    const callback = typeof a === 'function' ? a : b;
    const reason = err ?? new undiciErrors.ClientDestroyedError();
    const p = this.shutdown(
      (s) => s.destroy(reason),
      () => this.passAgent?.destroy(reason),
      false,
    );
    this.closing ??= p;
    if (callback) {
      void p.then(() => callback());
      return;
    }
    return p;
  }

  private async shutdown(
    each: (s: HttpService) => Promise<unknown>,
    pass: () => unknown,
    graceful: boolean,
  ): Promise<void> {
    this.closed = true;
    if (graceful) await Promise.allSettled([...this.queued]);
    this.finished = true;
    const services = [...this.services.values()];
    this.services.clear();
    await Promise.allSettled([...services.map(each), pass(), ...this.retiring]);
    await this.discovery.close();
  }

  /** What the agent routes: per service, the endpoints it balances over. JSON-able. */
  status(): { service: string; protocol: string; endpoints: string[] }[] {
    return [...this.services.entries()].map(([key, s]) => ({
      service: s.view.service,
      protocol: key.slice(0, key.indexOf('//')),
      endpoints: s.view.current().map(endpointKey),
    }));
  }
}

/** Request header whose value is the pick key of sticky balancers (ring_hash), as in the gRPC bridge. */
export const PICK_KEY_HEADER = 'wayfinder-pick-key';

/** The first value of a header in undici's object or flat-array form (as withHost() leaves them). */
function headerValue(headers: Dispatcher.DispatchOptions['headers'], name: string): string | undefined {
  if (headers == null) return undefined;
  if (Array.isArray(headers)) {
    for (let i = 0; i < headers.length; i += 2)
      if (String(headers[i]).toLowerCase() === name) return String(headers[i + 1]);
    return undefined;
  }
  for (const [k, v] of Object.entries(headers as Record<string, string | string[] | undefined>))
    if (k.toLowerCase() === name && v !== undefined) return Array.isArray(v) ? v[0] : v;
  return undefined;
}

/** The headers with `host` set to the URL's host, unless the caller set one. */
export function withHost(
  headers: Dispatcher.DispatchOptions['headers'],
  host: string,
): Dispatcher.DispatchOptions['headers'] {
  if (headers == null) return { host };
  if (Array.isArray(headers)) {
    for (let i = 0; i < headers.length; i += 2) if (String(headers[i]).toLowerCase() === 'host') return headers;
    return [...(headers as string[]), 'host', host];
  }
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    // Copied (an iterator may be one-shot), then treated as a flat array.
    const flat: string[] = [];
    for (const [k, v] of headers as Iterable<[string, string | string[] | undefined]>)
      if (v !== undefined) flat.push(k, v as string);
    return withHost(flat, host);
  }
  const obj = headers as Record<string, string | string[] | undefined>;
  if ('host' in obj) return headers;
  for (const k in obj) if (k.toLowerCase() === 'host') return headers;
  return { ...obj, host } as Record<string, string | string[]>;
}
