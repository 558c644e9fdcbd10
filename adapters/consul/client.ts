/*
 * VENDOR INTERNALS FENCE (consul, pinned ~2.0.x in package.json). Every place this file reaches
 * past the consul client's public API; check each when upgrading:
 *  1. register(): the private `_put(request, middleware)` of the Consul instance (the public
 *     agent.service.register drops `Weights`), with the middleware shape `(request, next)` where
 *     `request.err` / `request.res` are papi's internals.
 *  2. every call passes papi's per-request options the typings do not declare (`ctx` with
 *     includeResponse and a 'cancel' event, `timeout`, `index`, `wait`): typed once as
 *     VendorCallOptions, with no cast.
 * The one cast left, `as unknown as` in register(), is item 1 (a private method has no typing).
 */
import { EventEmitter } from 'node:events';
import Consul = require('consul');

/**
 * A thin wrapper over the `consul` npm client (v2), exposing only the calls the adapter makes and
 * the response headers blocking queries need. The ACL token lives in a private field and is sent
 * only as the X-Consul-Token header; errors are rebuilt without the vendor's request/response
 * objects (which carry the request headers, hence the token).
 */

/**
 * The options every call hands the vendor: papi's per-request `ctx` (an emitter whose 'cancel' aborts
 * the request, includeResponse for the headers), `timeout` and the token, plus the call's own
 * fields. The consul typings declare only the call's fields; papi reads the rest (fence item 2).
 */
interface VendorCallOptions {
  ctx: EventEmitter & { includeResponse: boolean };
  token?: string;
  timeout?: number;
  [field: string]: unknown;
}

/** A failed Consul call: HTTP status (0 for transport failures) and Consul's message. Never holds the token. */
export class ConsulCallError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly kind: 'http' | 'timeout' | 'aborted' | 'network',
  ) {
    super(message);
    this.name = 'ConsulCallError';
  }
}

export interface HealthEntry {
  Node?: { Node?: string; Address?: string; Datacenter?: string } | null;
  Service?: {
    ID?: string;
    Service?: string;
    Tags?: string[] | null;
    Address?: string;
    Port?: number;
    Meta?: Record<string, string> | null;
    Weights?: { Passing?: number; Warning?: number } | null;
  } | null;
  Checks?: { CheckID?: string; Status?: string }[] | null;
}

/** One entry of /v1/health/state/:state (the fields the registry-wide watch reads). */
export interface CheckEntry {
  Node?: string;
  CheckID?: string;
  Status?: string;
  ServiceID?: string;
  ServiceName?: string;
  CreateIndex?: number;
  ModifyIndex?: number;
}

export interface BlockingResult<T> {
  body: T;
  /** X-Consul-Index, or undefined when absent or not an integer. */
  index?: bigint;
  /** X-Consul-Results-Filtered-By-ACLs: true */
  filteredByAcls: boolean;
}

export interface ConsulClientOptions {
  host: string;
  port: number;
  secure: boolean;
  /** Returns the current token ('' for none); called per request so rotated token files apply. */
  token: () => string;
}

export interface ServiceRegistration {
  ID: string;
  Name: string;
  Address: string;
  Port: number;
  Tags: string[];
  Meta: Record<string, string>;
  Weights: { Passing: number; Warning: number };
  Check: { CheckID: string; Name: string; TTL: string; Status: 'passing'; DeregisterCriticalServiceAfter: string };
}

/** Formats ms as a Go duration string Consul accepts ("10s", "250ms"). */
export function goDuration(ms: number): string {
  const n = Math.max(0, Math.round(ms));
  return n % 1000 === 0 ? `${n / 1000}s` : `${n}ms`;
}

/** The blocking-query fields of a read: `index` and `wait` when index > 0, and `dc`. */
function blockingExtra(q: { dc?: string; index?: bigint; waitMs?: number }): Record<string, unknown> {
  const extra: Record<string, unknown> = {};
  if (q.index !== undefined && q.index > 0n) {
    extra.index = q.index.toString();
    extra.wait = goDuration(q.waitMs ?? 300_000);
  }
  if (q.dc) extra.dc = q.dc;
  return extra;
}

function safeBigInt(v: unknown): bigint | undefined {
  if (typeof v !== 'string' || !/^\d+$/.test(v)) return undefined;
  return BigInt(v);
}

export class ConsulClient {
  private readonly consul: InstanceType<typeof Consul>;
  readonly #token: () => string;
  /** host:port, for messages. */
  readonly address: string;

  constructor(o: ConsulClientOptions) {
    const host = o.host.includes(':') && !o.host.startsWith('[') ? `[${o.host}]` : o.host;
    this.address = `${host}:${o.port}`;
    // The vendor builds baseUrl `http(s)://<host>:<port>/v1` from these (host bracketed for IPv6 above).
    this.consul = new Consul({ host, port: o.port, secure: o.secure });
    this.#token = o.token;
  }

  private opts(
    extra: Record<string, unknown>,
    signal?: AbortSignal,
    timeoutMs?: number,
  ): { opts: VendorCallOptions; ctx: EventEmitter & { includeResponse: boolean }; cleanup(): void } {
    const ctx = Object.assign(new EventEmitter(), { includeResponse: true });
    const token = this.#token();
    const opts: VendorCallOptions = { ...extra, ctx };
    if (token) opts.token = token;
    if (timeoutMs !== undefined) opts.timeout = timeoutMs;
    const onAbort = () => ctx.emit('cancel');
    signal?.addEventListener('abort', onAbort, { once: true });
    return { opts, ctx, cleanup: () => signal?.removeEventListener('abort', onAbort) };
  }

  private async call<T>(
    what: string,
    fn: (opts: VendorCallOptions) => Promise<unknown>,
    extra: Record<string, unknown>,
    signal?: AbortSignal,
    timeoutMs?: number,
  ): Promise<{ body: T; headers: Record<string, string | string[] | undefined> }> {
    // Every request this client makes is idempotent (GETs, and PUTs that set state), so one reset
    // of a reused keep-alive socket (e.g. the agent restarted since) is retried once on a new one.
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) throw new ConsulCallError(`${what}: aborted`, 0, 'aborted');
      const { opts, cleanup } = this.opts(extra, signal, timeoutMs);
      try {
        const r = (await fn(opts)) as [{ headers: Record<string, string | string[] | undefined> }, T] | undefined;
        const [res, body] = Array.isArray(r) ? r : [undefined, undefined as T];
        return { body, headers: res?.headers ?? {} };
      } catch (e) {
        const err = sanitize(what, e, signal);
        if (attempt === 0 && err.kind === 'network' && /ECONNRESET|EPIPE|socket hang up/.test(err.message)) continue;
        throw err;
      } finally {
        cleanup();
      }
    }
  }

  /** GET /v1/health/service/:service, blocking when index > 0. */
  async healthService(
    q: {
      service: string;
      passing: boolean;
      index: bigint;
      waitMs: number;
      dc?: string;
      filter?: string;
      timeoutMs: number;
    },
    signal?: AbortSignal,
  ): Promise<BlockingResult<HealthEntry[]>> {
    const extra: Record<string, unknown> = { service: q.service, passing: q.passing };
    if (q.index > 0n) {
      extra.index = q.index.toString();
      extra.wait = goDuration(q.waitMs);
    }
    if (q.dc) extra.dc = q.dc;
    if (q.filter) extra.filter = q.filter;
    const { body, headers } = await this.call<HealthEntry[]>(
      `health.service ${q.service}`,
      (o) => this.consul.health.service({ ...o, service: q.service }),
      extra,
      signal,
      q.timeoutMs,
    );
    return {
      body: Array.isArray(body) ? body : [],
      index: safeBigInt(headers['x-consul-index']),
      filteredByAcls: headers['x-consul-results-filtered-by-acls'] === 'true',
    };
  }

  /** GET /v1/catalog/services (name -> tags), blocking when index > 0. */
  async catalogServices(
    q: { dc?: string; timeoutMs: number; index?: bigint; waitMs?: number },
    signal?: AbortSignal,
  ): Promise<BlockingResult<Record<string, string[]>>> {
    const extra = blockingExtra(q);
    const { body, headers } = await this.call<Record<string, string[]>>(
      'catalog.services',
      (o) => this.consul.catalog.service.list(o),
      extra,
      signal,
      q.timeoutMs,
    );
    return {
      body: body && typeof body === 'object' && !Array.isArray(body) ? body : {},
      index: safeBigInt(headers['x-consul-index']),
      filteredByAcls: headers['x-consul-results-filtered-by-acls'] === 'true',
    };
  }

  /** GET /v1/health/state/any: every check of the datacenter, blocking when index > 0. */
  async healthStateAny(
    q: { dc?: string; timeoutMs: number; index: bigint; waitMs: number },
    signal?: AbortSignal,
  ): Promise<BlockingResult<CheckEntry[]>> {
    const extra = blockingExtra(q);
    const { body, headers } = await this.call<CheckEntry[]>(
      'health.state any',
      (o) => this.consul.health.state({ ...o, state: 'any' }),
      { ...extra, state: 'any' },
      signal,
      q.timeoutMs,
    );
    return {
      body: Array.isArray(body) ? body : [],
      index: safeBigInt(headers['x-consul-index']),
      filteredByAcls: headers['x-consul-results-filtered-by-acls'] === 'true',
    };
  }

  /**
   * PUT /v1/agent/service/register with the body as Consul documents it. The vendor's register()
   * drops `Weights`, so this goes through the same client's request pipeline with a full body.
   */
  async register(reg: ServiceRegistration, timeoutMs: number): Promise<void> {
    // Fence item 1: the private _put has no typing, hence the one cast in this file.
    const raw = this.consul as unknown as {
      _put(
        req: object,
        mw: (request: { err?: unknown; res?: unknown }, next: (...a: unknown[]) => void) => void,
      ): Promise<unknown>;
    };
    const mw = (request: { err?: unknown; res?: unknown }, next: (...a: unknown[]) => void) =>
      request.err ? next(false, request.err) : next(false, undefined, [request.res, undefined]);
    await this.call(
      'agent.service.register',
      (o) => {
        const headers: Record<string, string> = {};
        if (typeof o.token === 'string') headers['x-consul-token'] = o.token;
        return raw._put(
          {
            name: 'agent.service.register',
            path: '/agent/service/register',
            type: 'json',
            body: reg,
            headers,
            ctx: o.ctx,
            timeout: o.timeout,
          },
          mw,
        );
      },
      {},
      undefined,
      timeoutMs,
    );
  }

  async deregister(id: string, timeoutMs: number): Promise<void> {
    await this.call(
      'agent.service.deregister',
      (o) => this.consul.agent.service.deregister({ ...o, id }),
      { id },
      undefined,
      timeoutMs,
    );
  }

  async passCheck(checkId: string, timeoutMs: number): Promise<void> {
    await this.call(
      'agent.check.pass',
      (o) => this.consul.agent.check.pass({ ...o, id: checkId }),
      { id: checkId },
      undefined,
      timeoutMs,
    );
  }

  close(): void {
    this.consul.destroy();
  }
}

/** Rebuilds a vendor error as a ConsulCallError carrying only status and Consul's message. */
function sanitize(what: string, e: unknown, signal?: AbortSignal): ConsulCallError {
  const err = e as {
    message?: string;
    isAbort?: boolean;
    isTimeout?: boolean;
    isResponse?: boolean;
    response?: { statusCode?: number; body?: unknown };
    code?: string;
  };
  if (signal?.aborted || err?.isAbort) return new ConsulCallError(`${what}: aborted`, 0, 'aborted');
  if (err?.isTimeout)
    return new ConsulCallError(`${what}: no answer in time (${stripPrefix(err.message)})`, 0, 'timeout');
  if (err?.isResponse && err.response) {
    const status = err.response.statusCode ?? 0;
    const body = err.response.body;
    const text = typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : '';
    return new ConsulCallError(
      `${what}: HTTP ${status}${text ? `: ${text.trim().slice(0, 300)}` : ''}`,
      status,
      'http',
    );
  }
  return new ConsulCallError(
    `${what}: ${stripPrefix(err?.message ?? String(e))}${err?.code ? ` (${err.code})` : ''}`,
    0,
    'network',
  );
}

function stripPrefix(m: string | undefined): string {
  return (m ?? '').replace(/^consul: [\w.]+: /, '');
}
