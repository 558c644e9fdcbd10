import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { type FilterError, parseFilter } from './fake-consul-filter';

/**
 * A protocol-faithful fake of one Consul agent (which is also its datacenter's server), built from
 * Consul's HTTP API documentation, implementing exactly what Wayfinder's consul adapter uses:
 *
 *  - PUT /v1/agent/service/register (TTL checks, Status, DeregisterCriticalServiceAfter, Weights, Meta)
 *  - PUT /v1/agent/service/deregister/:id, GET /v1/agent/services
 *  - PUT /v1/agent/check/pass|warn|fail/:id (?note=)
 *  - GET /v1/health/service/:service (passing, tag, filter, dc), GET /v1/catalog/services and
 *    GET /v1/health/state/:state (any|passing|warning|critical; filter, dc)
 *  - blocking queries: `index` + `wait` (default 5m, max 10m, plus up to wait/16 of jitter),
 *    X-Consul-Index monotonic per service, X-Consul-KnownLeader / LastContact headers. As in
 *    Consul's state store, /v1/catalog/services answers with the index of the services table
 *    (moved by a service registered, changed or deregistered, not by a check status) and
 *    /v1/health/state with the index of the checks table (moved by a check created, removed, or
 *    changed: a re-registration that leaves a check as it was does not move it)
 *  - TTL expiry turning checks critical ("TTL expired") and a reaper deregistering services whose
 *    check stayed critical longer than DeregisterCriticalServiceAfter (min 1m, reaped every 30s)
 *  - ACLs: X-Consul-Token (also `Authorization: Bearer` and the legacy ?token=), 403 "ACL not found"
 *    for unknown tokens, 403 "Permission denied" on writes, read results filtered with
 *    `X-Consul-Results-Filtered-By-ACLs: true`
 *
 * Only TTL checks exist here (script/HTTP/TCP checks are refused with a 400 naming the limit).
 * Test controls (resetIndex, stall, ignoreBlocking, stop/start/restart, the request log) simulate the
 * failures the adapter must survive. Everything listens on a free 127.0.0.1 port.
 */

export type AclPolicy = 'read' | 'write' | 'deny';
/** A token's rules, shaped like Consul's HCL rules (`service "x"`, `service_prefix ""`, ...). */
export interface AclRules {
  management?: boolean;
  service?: Record<string, AclPolicy>;
  servicePrefix?: Record<string, AclPolicy>;
  node?: Record<string, AclPolicy>;
  nodePrefix?: Record<string, AclPolicy>;
}
export interface FakeAclConfig {
  /** Applies when no rule matches (Consul's acl.default_policy). */
  defaultPolicy: 'allow' | 'deny';
  /** Token SecretID -> rules. */
  tokens: Record<string, AclRules>;
  /** Rules of requests without a token (Consul's anonymous token). Default: none. */
  anonymous?: AclRules;
}

export interface FakeConsulOptions {
  datacenter?: string;
  nodeName?: string;
  /** The node's address (a service registered without Address is reached at it). */
  nodeAddress?: string;
  acl?: FakeAclConfig;
  /** How often critical services are reaped (Consul: 30 s). Lower it in tests. */
  reapIntervalMs?: number;
  /** Floor on DeregisterCriticalServiceAfter (Consul: 1 min). Lower it in tests. */
  minDeregisterCriticalMs?: number;
  /**
   * Compresses agent time for DeregisterCriticalServiceAfter (after the minimum is applied): 0.01
   * makes Consul's 1 min minimum reap in 600 ms. Default 1.
   */
  deregisterTimeScale?: number;
  /** Source of the blocking-query jitter (default Math.random). */
  random?: () => number;
  /** Bind to this port (default: a free one). */
  port?: number;
}

export interface FakeRequest {
  method: string;
  path: string;
  /** Query parameters; a `token` parameter's value is replaced by '***'. */
  query: Record<string, string>;
  /** The full request line as sent, for asserting what a client put in its URL. */
  rawUrl: string;
  tokenVia: 'header' | 'bearer' | 'query' | 'none';
  at: number;
}

interface Check {
  CheckID: string;
  Name: string;
  Status: 'passing' | 'warning' | 'critical';
  Notes: string;
  Output: string;
  ServiceID: string;
  ServiceName: string;
  ttlMs: number;
  /** As registered (after the minimum), before any time scale. */
  deregisterAfterMs?: number;
  criticalSince?: number;
  timer?: NodeJS.Timeout;
  CreateIndex: bigint;
  ModifyIndex: bigint;
}
interface Service {
  ID: string;
  Service: string;
  Tags: string[];
  Address: string;
  Meta: Record<string, string> | null;
  Port: number;
  Weights: { Passing: number; Warning: number };
  EnableTagOverride: boolean;
  checks: string[];
  CreateIndex: bigint;
  ModifyIndex: bigint;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The fields a /v1/health/state filter may select (Consul's HealthCheck). */
const CHECK_FIELDS = [
  'Node',
  'CheckID',
  'Name',
  'Status',
  'Notes',
  'Output',
  'ServiceID',
  'ServiceName',
  'ServiceTags',
  'Type',
] as const;

const MAX_WAIT = 10 * 60_000;
const DEFAULT_WAIT = 5 * 60_000;
const GO_DURATION = /^(?:(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h))+$/;

/** Go's time.ParseDuration, in ms ("1m30s", "250ms", "10s"). */
export function parseGoDuration(s: string): number | undefined {
  if (s === '0') return 0;
  if (!GO_DURATION.test(s)) return undefined;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) total += Number(m[1]) * unit[m[2]];
  return total;
}

/** Case- and underscore-insensitive field lookup: the register endpoint accepts CamelCase and snake_case. */
function field(obj: Record<string, unknown> | undefined, name: string): unknown {
  if (!obj) return undefined;
  const want = name.toLowerCase();
  for (const [k, v] of Object.entries(obj)) if (k.replace(/_/g, '').toLowerCase() === want) return v;
  return undefined;
}

const META_KEY = /^[a-zA-Z0-9_-]+$/;

/** One datacenter's state: the agent's services and checks, and the raft-like index. */
class State {
  services = new Map<string, Service>();
  checks = new Map<string, Check>();
  index = 1n;
  /** Per service name: the index of its last change (a deleted service keeps its tombstone index). */
  serviceIndex = new Map<string, bigint>();
  /** Index of the last change to any service (Consul's "services" table: /v1/catalog/services). */
  tableIndex = 1n;
  /** Index of the last change to any check (Consul's "checks" table: /v1/health/state/:state). */
  checksIndex = 1n;
  waiters = new Set<() => void>();
  readonly nodeId = randomUUID();
  constructor(
    readonly dc: string,
    readonly node: string,
    readonly nodeAddress: string,
  ) {}

  /** A new raft index for a change of `serviceName`, moving the services and/or the checks table. */
  bump(serviceName: string, tables: { services?: boolean; checks?: boolean } = { services: true }): bigint {
    this.index += 1n;
    this.serviceIndex.set(serviceName, this.index);
    if (tables.services) this.tableIndex = this.index;
    if (tables.checks) this.checksIndex = this.index;
    // Waiters run after the caller finished mutating (bump may come before the write it indexes).
    queueMicrotask(() => {
      for (const w of [...this.waiters]) w();
    });
    return this.index;
  }
  clear(): void {
    for (const c of this.checks.values()) clearTimeout(c.timer);
    this.services.clear();
    this.checks.clear();
    this.serviceIndex.clear();
    this.index = 1n;
    this.tableIndex = 1n;
    this.checksIndex = 1n;
  }
}

export class FakeConsul {
  readonly host = '127.0.0.1';
  port = 0;
  readonly datacenter: string;
  /** Every request received, oldest first. */
  readonly requests: FakeRequest[] = [];
  private state: State;
  private server?: http.Server;
  private readonly sockets = new Set<Socket>();
  private reaper?: NodeJS.Timeout;
  private stalled = false;
  private noBlocking = false;
  private readonly wan = new Map<string, FakeConsul>();
  private readonly random: () => number;
  private readonly reapIntervalMs: number;
  private readonly minDeregisterMs: number;
  private readonly deregisterScale: number;
  private acl?: FakeAclConfig;
  private readonly pending = new Set<() => void>();

  constructor(private readonly opts: FakeConsulOptions = {}) {
    this.datacenter = opts.datacenter ?? 'dc1';
    this.state = new State(this.datacenter, opts.nodeName ?? 'fake-node', opts.nodeAddress ?? '127.0.0.1');
    this.random = opts.random ?? Math.random;
    this.reapIntervalMs = opts.reapIntervalMs ?? 30_000;
    this.minDeregisterMs = opts.minDeregisterCriticalMs ?? 60_000;
    this.deregisterScale = opts.deregisterTimeScale ?? 1;
    this.acl = opts.acl ? { ...opts.acl, tokens: { ...opts.acl.tokens } } : undefined;
    this.seed();
  }

  /** `127.0.0.1:<port>`, the form CONSUL_HTTP_ADDR and consul:// URLs take. */
  get address(): string {
    return `${this.host}:${this.port}`;
  }
  get url(): string {
    return `http://${this.address}`;
  }
  /** The current raft index of this datacenter. */
  get index(): bigint {
    return this.state.index;
  }
  get nodeName(): string {
    return this.state.node;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const server = http.createServer((req, res) => this.handle(req, res));
    server.keepAliveTimeout = 65_000;
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port || this.opts.port || 0, this.host, () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    this.reaper = setInterval(() => this.reap(), this.reapIntervalMs);
    this.reaper.unref();
  }

  /** Closes the listener and every connection (in-flight blocking queries see a reset). State is kept. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    clearInterval(this.reaper);
    for (const p of [...this.pending]) p();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * An agent restart on the same port. By default the agent forgets everything (a dev agent, or a
   * new machine): services and checks are gone and the index starts low again, so clients see
   * their index go backwards. `persist: true` keeps services, checks and the index.
   */
  async restart(opts: { persist?: boolean } = {}): Promise<void> {
    await this.stop();
    if (!opts.persist) {
      this.state.clear();
      this.seed();
    }
    await this.start();
  }

  /** Stops and releases every timer. */
  async close(): Promise<void> {
    await this.stop();
    for (const c of this.state.checks.values()) clearTimeout(c.timer);
  }

  /**
   * Moves every index back to `to` (as a raft snapshot restore with older data does). Data is kept;
   * blocking queries waiting on a higher index keep waiting until their `wait` runs out, as in Consul.
   */
  resetIndex(to: bigint | number = 1n): void {
    const v = BigInt(to);
    this.state.index = v;
    this.state.tableIndex = v;
    this.state.checksIndex = v;
    for (const k of this.state.serviceIndex.keys()) this.state.serviceIndex.set(k, v);
  }

  /** While on, new requests are accepted but never answered (a hung agent or proxy). */
  stall(on = true): void {
    this.stalled = on;
  }

  /** While on, blocking queries answer at once whatever their index (a broken proxy or agent). */
  ignoreBlocking(on = true): void {
    this.noBlocking = on;
  }

  /** Makes `other`'s datacenter reachable through `?dc=` here, and this one's there (WAN federation). */
  joinWan(other: FakeConsul): void {
    this.wan.set(other.datacenter, other);
    other.wan.set(this.datacenter, this);
  }

  /** Replaces (or with `undefined`, revokes) a token's rules. */
  setToken(secret: string, rules: AclRules | undefined): void {
    if (!this.acl) throw new Error('fake consul: ACLs are not enabled');
    if (rules) this.acl.tokens[secret] = rules;
    else delete this.acl.tokens[secret];
  }

  /** The agent's service IDs. */
  serviceIds(): string[] {
    return [...this.state.services.keys()].sort();
  }
  /** A check's status, for assertions. */
  checkStatus(checkId: string): string | undefined {
    return this.state.checks.get(checkId)?.Status;
  }
  /** A check's status and timing as the agent holds them (durations in ms). */
  checkInfo(checkId: string): { status: string; ttlMs: number; deregisterCriticalServiceAfterMs?: number } | undefined {
    const c = this.state.checks.get(checkId);
    return c && { status: c.Status, ttlMs: c.ttlMs, deregisterCriticalServiceAfterMs: c.deregisterAfterMs };
  }

  /** Blocking queries waiting for a change right now (each is renewed once per `wait` at rest). */
  blockingOpen(): number {
    return this.pending.size;
  }

  /** Health-query requests for `service` (blocking or not), for rate assertions. */
  healthRequests(service?: string): FakeRequest[] {
    return this.requests.filter(
      (r) =>
        r.path.startsWith('/v1/health/service/') &&
        (service === undefined || r.path === `/v1/health/service/${service}`),
    );
  }

  // ---- HTTP ----

  private seed(): void {
    // A server agent registers the "consul" service for itself.
    const s = this.state;
    s.services.set('consul', {
      ID: 'consul',
      Service: 'consul',
      Tags: [],
      Address: '',
      Meta: null,
      Port: 8300,
      Weights: { Passing: 1, Warning: 1 },
      EnableTagOverride: false,
      checks: [],
      CreateIndex: s.index,
      ModifyIndex: s.index,
    });
    s.bump('consul');
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    const query: Record<string, string> = {};
    const multi = new Map<string, string[]>();
    for (const [k, v] of url.searchParams) {
      query[k] = k === 'token' ? '***' : v;
      multi.set(k, [...(multi.get(k) ?? []), v]);
    }
    const headerToken = req.headers['x-consul-token'];
    const auth = req.headers.authorization;
    const bearer = typeof auth === 'string' && /^bearer\s+/i.test(auth) ? auth.replace(/^bearer\s+/i, '') : undefined;
    const queryToken = url.searchParams.get('token') ?? undefined;
    const token =
      (typeof headerToken === 'string' && headerToken !== '' ? headerToken : undefined) ?? bearer ?? queryToken;
    this.requests.push({
      method: req.method ?? 'GET',
      path: url.pathname,
      query,
      rawUrl: req.url ?? '',
      tokenVia: headerToken ? 'header' : bearer ? 'bearer' : queryToken ? 'query' : 'none',
      at: Date.now(),
    });
    if (this.requests.length > 100_000) this.requests.splice(0, 50_000);
    if (this.stalled) {
      // Hold the request open without answering; released only when the client gives up or we stop.
      const release = () => {
        this.pending.delete(release);
        req.socket.destroy();
      };
      this.pending.add(release);
      res.on('close', () => this.pending.delete(release));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      this.route(req.method ?? 'GET', url.pathname, multi, token, body, res, req).catch((e: unknown) => {
        const err = e instanceof HttpError ? e : new HttpError(500, (e as Error).message);
        if (!res.headersSent) {
          res.writeHead(err.status, { 'Content-Type': 'text/plain; charset=utf-8' });
          res.end(err.message);
        }
      });
    });
  }

  private async route(
    method: string,
    path: string,
    q: Map<string, string[]>,
    token: string | undefined,
    body: string,
    res: http.ServerResponse,
    req: http.IncomingMessage,
  ): Promise<void> {
    const one = (k: string) => q.get(k)?.[0];
    const authz = this.authorizer(token);
    const seg = path.split('/').filter(Boolean).map(decodeURIComponent);
    const onlyMethod = (m: string) => {
      if (method !== m) throw new HttpError(405, `method ${method} not allowed`);
    };
    if (seg[0] !== 'v1') throw new HttpError(404, 'Not Found');
    const p = seg.slice(1).join('/');

    if (p === 'agent/service/register') {
      onlyMethod('PUT');
      this.register(body, authz);
      return this.json(res, null);
    }
    if (seg[1] === 'agent' && seg[2] === 'service' && seg[3] === 'deregister' && seg.length === 5) {
      onlyMethod('PUT');
      this.deregister(seg[4], authz);
      return this.json(res, null);
    }
    if (seg[1] === 'agent' && seg[2] === 'check' && ['pass', 'warn', 'fail'].includes(seg[3]) && seg.length === 5) {
      onlyMethod('PUT');
      const status = seg[3] === 'pass' ? 'passing' : seg[3] === 'warn' ? 'warning' : 'critical';
      this.updateTtl(seg[4], status, one('note') ?? '', authz);
      return this.json(res, null);
    }
    if (p === 'agent/services') {
      onlyMethod('GET');
      const out: Record<string, unknown> = {};
      let filtered = false;
      for (const s of this.state.services.values()) {
        if (!authz.service(s.Service, 'read')) {
          filtered = true;
          continue;
        }
        out[s.ID] = {
          ID: s.ID,
          Service: s.Service,
          Tags: s.Tags,
          Meta: s.Meta ?? {},
          Port: s.Port,
          Address: s.Address,
          Weights: s.Weights,
          EnableTagOverride: s.EnableTagOverride,
          Datacenter: this.datacenter,
        };
      }
      return this.json(res, out, { filtered });
    }
    if (p === 'status/leader') {
      onlyMethod('GET');
      return this.json(res, '127.0.0.1:8300');
    }
    if (seg[1] === 'health' && seg[2] === 'service' && seg.length === 4) {
      onlyMethod('GET');
      const state = this.dcState(one('dc'));
      const passing = parseBoolParam(q, 'passing');
      const tags = q.get('tag') ?? [];
      const filter = one('filter');
      let match: ((o: unknown) => boolean) | undefined;
      if (filter) {
        try {
          match = parseFilter(filter, ['Node', 'Service', 'Checks']);
        } catch (e) {
          throw new HttpError(400, `Failed to create boolean expression evaluator: ${(e as FilterError).message}`);
        }
      }
      const name = seg[3];
      return this.blocking(
        req,
        res,
        q,
        state,
        () => state.serviceIndex.get(name) ?? state.tableIndex,
        () => {
          let filtered = false;
          const out: unknown[] = [];
          for (const s of [...state.services.values()]
            .filter((x) => x.Service === name)
            .sort((a, b) => (a.ID < b.ID ? -1 : 1))) {
            if (!authz.service(s.Service, 'read') || !authz.node(state.node, 'read')) {
              filtered = true;
              continue;
            }
            const entry = this.healthEntry(state, s);
            if (passing && !entry.Checks.every((c) => c.Status === 'passing')) continue;
            if (!tags.every((t) => s.Tags.includes(t))) continue;
            if (match && !match(entry)) continue;
            out.push(entry);
          }
          return { body: out, filtered };
        },
      );
    }
    if (seg[1] === 'health' && seg[2] === 'state' && seg.length === 4) {
      onlyMethod('GET');
      const want = seg[3];
      if (!['any', 'passing', 'warning', 'critical'].includes(want))
        throw new HttpError(400, `Unsupported state: ${want}`);
      const state = this.dcState(one('dc'));
      const filter = one('filter');
      let match: ((o: unknown) => boolean) | undefined;
      if (filter) {
        try {
          match = parseFilter(filter, [...CHECK_FIELDS]);
        } catch (e) {
          throw new HttpError(400, `Failed to create boolean expression evaluator: ${(e as FilterError).message}`);
        }
      }
      return this.blocking(
        req,
        res,
        q,
        state,
        () => state.checksIndex,
        () => {
          let filtered = false;
          const out: unknown[] = [];
          const all = [
            this.nodeCheck(state),
            ...[...state.checks.values()]
              .sort((a, b) => (a.CheckID < b.CheckID ? -1 : 1))
              .map((c) => this.checkEntry(state, c, state.services.get(c.ServiceID)?.Tags ?? [])),
          ];
          for (const c of all) {
            const readable = c.ServiceName
              ? authz.service(c.ServiceName, 'read') && authz.node(state.node, 'read')
              : authz.node(state.node, 'read');
            if (!readable) {
              filtered = true;
              continue;
            }
            if (want !== 'any' && c.Status !== want) continue;
            if (match && !match(c)) continue;
            out.push(c);
          }
          return { body: out, filtered };
        },
      );
    }
    if (p === 'catalog/services') {
      onlyMethod('GET');
      const state = this.dcState(one('dc'));
      return this.blocking(
        req,
        res,
        q,
        state,
        () => state.tableIndex,
        () => {
          let filtered = false;
          const out: Record<string, string[]> = {};
          for (const s of state.services.values()) {
            if (!authz.service(s.Service, 'read')) {
              filtered = true;
              continue;
            }
            const tags = new Set([...(out[s.Service] ?? []), ...s.Tags]);
            out[s.Service] = [...tags].sort();
          }
          return { body: out, filtered };
        },
      );
    }
    throw new HttpError(404, `Not Found`);
  }

  private dcState(dc: string | undefined): State {
    if (!dc || dc === this.datacenter) return this.state;
    const other = this.wan.get(dc);
    if (!other) throw new HttpError(500, 'No path to datacenter');
    return other.state;
  }

  /** Runs a read, blocking per Consul's rules when `index` > 0, then answers with the index headers. */
  private blocking(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    q: Map<string, string[]>,
    state: State,
    indexOf: () => bigint,
    read: () => { body: unknown; filtered: boolean },
  ): Promise<void> {
    const rawIndex = q.get('index')?.[0];
    let minIndex = 0n;
    if (rawIndex !== undefined && rawIndex !== '') {
      if (!/^\d+$/.test(rawIndex)) throw new HttpError(400, 'Invalid index');
      minIndex = BigInt(rawIndex);
    }
    let waitMs = DEFAULT_WAIT;
    const rawWait = q.get('wait')?.[0];
    if (rawWait !== undefined && rawWait !== '') {
      const w = parseGoDuration(rawWait);
      if (w === undefined) throw new HttpError(400, 'Invalid wait time');
      waitMs = Math.min(w, MAX_WAIT);
    }
    const current = () => {
      const i = indexOf();
      return i < 1n ? 1n : i;
    };
    const answer = () => {
      const { body, filtered } = read();
      this.json(res, body, { index: current(), filtered });
    };
    if (minIndex === 0n || this.noBlocking || current() > minIndex) {
      answer();
      return Promise.resolve();
    }
    // Block until the index passes minIndex or wait (+ up to wait/16 of jitter) runs out.
    const timeoutMs = waitMs + this.random() * (waitMs / 16);
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        state.waiters.delete(check);
        this.pending.delete(abort);
        resolve();
      };
      const check = () => {
        if (current() > minIndex) {
          done();
          answer();
        }
      };
      const abort = () => {
        done();
        req.socket.destroy();
      };
      const timer = setTimeout(() => {
        done();
        answer();
      }, timeoutMs);
      state.waiters.add(check);
      this.pending.add(abort);
      // The client gave up (its own timeout, or an abort): stop waiting for it.
      res.on('close', () => {
        if (!res.writableEnded) done();
      });
    });
  }

  private json(res: http.ServerResponse, body: unknown, o: { index?: bigint; filtered?: boolean } = {}): void {
    if (res.writableEnded || res.destroyed) return;
    const headers: Record<string, string> = { 'Content-Type': 'application/json', Vary: 'Accept-Encoding' };
    if (o.index !== undefined) {
      headers['X-Consul-Index'] = o.index.toString();
      headers['X-Consul-KnownLeader'] = 'true';
      headers['X-Consul-LastContact'] = '0';
      headers['X-Consul-Effective-Consistency'] = 'leader';
    }
    if (o.filtered) headers['X-Consul-Results-Filtered-By-ACLs'] = 'true';
    res.writeHead(200, headers);
    res.end(body === null ? '' : JSON.stringify(body, (_, v) => (typeof v === 'bigint' ? Number(v) : v)));
  }

  /** The node's serfHealth check (this fake's agent is always alive to itself). */
  private nodeCheck(state: State) {
    return {
      Node: state.node,
      CheckID: 'serfHealth',
      Name: 'Serf Health Status',
      Status: 'passing',
      Notes: '',
      Output: 'Agent alive and reachable',
      ServiceID: '',
      ServiceName: '',
      ServiceTags: [] as string[],
      Type: '',
      Interval: '',
      Timeout: '',
      ExposedPort: 0,
      Definition: {},
      CreateIndex: 1n,
      ModifyIndex: 1n,
    };
  }

  /** A check as Consul's health endpoints show it. */
  private checkEntry(state: State, c: Check, serviceTags: string[]) {
    return {
      Node: state.node,
      CheckID: c.CheckID,
      Name: c.Name,
      Status: c.Status,
      Notes: c.Notes,
      Output: c.Output,
      ServiceID: c.ServiceID,
      ServiceName: c.ServiceName,
      ServiceTags: serviceTags,
      Type: 'ttl',
      Interval: '',
      Timeout: '',
      ExposedPort: 0,
      Definition: {},
      CreateIndex: c.CreateIndex,
      ModifyIndex: c.ModifyIndex,
    };
  }

  private healthEntry(state: State, s: Service) {
    const tagged = {
      lan: state.nodeAddress,
      lan_ipv4: state.nodeAddress,
      wan: state.nodeAddress,
      wan_ipv4: state.nodeAddress,
    };
    const checks = s.checks
      .map((id) => state.checks.get(id))
      .filter((c): c is Check => !!c)
      .map((c) => this.checkEntry(state, c, s.Tags));
    return {
      Node: {
        ID: state.nodeId,
        Node: state.node,
        Address: state.nodeAddress,
        Datacenter: state.dc,
        TaggedAddresses: tagged,
        Meta: { 'consul-network-segment': '' },
        CreateIndex: 1n,
        ModifyIndex: 1n,
      },
      Service: {
        ID: s.ID,
        Service: s.Service,
        Tags: s.Tags,
        Address: s.Address,
        Meta: s.Meta,
        Port: s.Port,
        Weights: s.Weights,
        EnableTagOverride: s.EnableTagOverride,
        Proxy: { Mode: '', MeshGateway: {}, Expose: {} },
        Connect: {},
        CreateIndex: s.CreateIndex,
        ModifyIndex: s.ModifyIndex,
      },
      Checks: [this.nodeCheck(state), ...checks],
    };
  }

  // ---- agent writes ----

  private register(raw: string, authz: Authorizer): void {
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(raw || 'null');
    } catch {
      throw new HttpError(400, 'Request decode failed: invalid JSON');
    }
    if (!body || typeof body !== 'object' || Array.isArray(body))
      throw new HttpError(400, 'Request decode failed: expected an object');
    const name = field(body, 'Name');
    if (typeof name !== 'string' || name === '') throw new HttpError(400, 'Missing service name');
    if (!authz.service(name, 'write')) throw authz.denied('service:write', name);
    const idRaw = field(body, 'ID');
    const id = typeof idRaw === 'string' && idRaw !== '' ? idRaw : name;
    const port = field(body, 'Port') ?? 0;
    if (typeof port !== 'number' || !Number.isInteger(port))
      throw new HttpError(400, 'Request decode failed: Port must be an integer');
    const address = field(body, 'Address') ?? '';
    if (typeof address !== 'string') throw new HttpError(400, 'Request decode failed: Address must be a string');
    const tags = field(body, 'Tags') ?? [];
    if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string'))
      throw new HttpError(400, 'Request decode failed: Tags must be a list of strings');
    const metaRaw = field(body, 'Meta');
    let meta: Record<string, string> | null = null;
    if (metaRaw !== undefined && metaRaw !== null) {
      if (typeof metaRaw !== 'object' || Array.isArray(metaRaw))
        throw new HttpError(400, 'Request decode failed: Meta must be a map');
      meta = {};
      const entries = Object.entries(metaRaw as Record<string, unknown>);
      if (entries.length > 64)
        throw new HttpError(400, 'Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs');
      for (const [k, v] of entries) {
        if (typeof v !== 'string')
          throw new HttpError(400, `Request decode failed: Meta value of ${JSON.stringify(k)} must be a string`);
        if (k === '' || k.length > 128 || !META_KEY.test(k))
          throw new HttpError(400, `Invalid Service Meta: Key contains invalid characters: ${JSON.stringify(k)}`);
        if (k.startsWith('consul-'))
          throw new HttpError(400, `Invalid Service Meta: Key prefix 'consul-' is reserved for internal use`);
        if (v.length > 512) throw new HttpError(400, `Invalid Service Meta: Value is too long (limit: 512 characters)`);
        meta[k] = v;
      }
    }
    const w = field(body, 'Weights') as Record<string, unknown> | undefined;
    const weights = { Passing: 1, Warning: 1 };
    if (w) {
      const ps = field(w, 'Passing');
      const wa = field(w, 'Warning');
      if (ps !== undefined) weights.Passing = ps as number;
      if (wa !== undefined) weights.Warning = wa as number;
      if (!Number.isInteger(weights.Passing) || weights.Passing < 1)
        throw new HttpError(400, 'Invalid Weights: Passing must be greater than 0');
      if (!Number.isInteger(weights.Warning) || weights.Warning < 0)
        throw new HttpError(400, 'Invalid Weights: Warning must be greater or equal than 0');
    }
    const single = field(body, 'Check') as Record<string, unknown> | undefined;
    const many = field(body, 'Checks') as Record<string, unknown>[] | undefined;
    const defs = many && many.length ? many : single ? [single] : [];
    const state = this.state;
    const previous = state.services.get(id);
    if (previous && previous.Service !== name) {
      if (!authz.service(previous.Service, 'write')) throw authz.denied('service:write', previous.Service);
    }
    const checks: Check[] = defs.map((d, i) => {
      const ttlRaw = field(d, 'TTL');
      for (const k of [
        'HTTP',
        'TCP',
        'GRPC',
        'Args',
        'Script',
        'H2PING',
        'UDP',
        'AliasService',
        'AliasNode',
        'DockerContainerID',
      ]) {
        if (field(d, k)) throw new HttpError(400, `fake consul: only TTL checks are implemented (got ${k})`);
      }
      if (typeof ttlRaw !== 'string')
        throw new HttpError(400, 'Invalid check: TTL must be set (only TTL checks are implemented by the fake)');
      const ttlMs = parseGoDuration(ttlRaw);
      if (ttlMs === undefined || ttlMs <= 0)
        throw new HttpError(400, `Invalid check: TTL ${JSON.stringify(ttlRaw)} is not a valid duration`);
      const checkId =
        (field(d, 'CheckID') as string) ||
        (field(d, 'ID') as string) ||
        (defs.length > 1 ? `service:${id}:${i + 1}` : `service:${id}`);
      const status = field(d, 'Status');
      if (status !== undefined && status !== '' && !['passing', 'warning', 'critical'].includes(status as string))
        throw new HttpError(400, `Invalid check: Status ${JSON.stringify(status)}`);
      const dcsaRaw = field(d, 'DeregisterCriticalServiceAfter');
      let deregisterAfterMs: number | undefined;
      if (dcsaRaw !== undefined && dcsaRaw !== '') {
        const v = typeof dcsaRaw === 'string' ? parseGoDuration(dcsaRaw) : undefined;
        if (v === undefined)
          throw new HttpError(
            400,
            `Invalid check: DeregisterCriticalServiceAfter ${JSON.stringify(dcsaRaw)} is not a valid duration`,
          );
        // Consul raises values under the minimum to it (and logs a warning).
        deregisterAfterMs = v > 0 ? Math.max(v, this.minDeregisterMs) : undefined;
      }
      const existing = state.checks.get(checkId);
      const st = (status as Check['Status']) || existing?.Status || 'critical';
      return {
        CheckID: checkId,
        Name:
          (field(d, 'Name') as string) ||
          (defs.length > 1 ? `Service '${name}' check ${i + 1}` : `Service '${name}' check`),
        Status: st,
        Notes: (field(d, 'Notes') as string) ?? '',
        Output: existing?.Output ?? '',
        ServiceID: id,
        ServiceName: name,
        ttlMs,
        deregisterAfterMs,
        criticalSince: st === 'critical' ? (existing?.criticalSince ?? Date.now()) : undefined,
        CreateIndex: existing?.CreateIndex ?? 0n,
        ModifyIndex: 0n,
      };
    });
    // As Consul's ensureCheckTxn: a check left exactly as it was keeps its ModifyIndex and does not
    // move the checks table; a new or changed one (status, name, notes, owner, tags) does.
    const prevTags = previous?.Tags ?? [];
    const sameTags = prevTags.length === tags.length && prevTags.every((t, i) => t === tags[i]);
    const checkMoved = (c: Check) => {
      const e = state.checks.get(c.CheckID);
      return (
        !e ||
        !sameTags ||
        e.Status !== c.Status ||
        e.Name !== c.Name ||
        e.Notes !== c.Notes ||
        e.ServiceID !== c.ServiceID ||
        e.ServiceName !== c.ServiceName
      );
    };
    const moved = new Set(checks.filter(checkMoved).map((c) => c.CheckID));
    const idx = state.bump(name, { services: true, checks: moved.size > 0 || (!!previous && !sameTags) });
    if (previous && previous.Service !== name) state.bump(previous.Service, { services: true, checks: true });
    const svc: Service = {
      ID: id,
      Service: name,
      Tags: tags as string[],
      Address: address,
      Meta: meta,
      Port: port,
      Weights: weights,
      EnableTagOverride: field(body, 'EnableTagOverride') === true,
      checks: [...new Set([...(previous?.checks ?? []), ...checks.map((c) => c.CheckID)])],
      CreateIndex: previous?.CreateIndex ?? idx,
      ModifyIndex: idx,
    };
    state.services.set(id, svc);
    for (const c of checks) {
      clearTimeout(state.checks.get(c.CheckID)?.timer);
      c.CreateIndex = c.CreateIndex || idx;
      c.ModifyIndex = moved.has(c.CheckID) ? idx : state.checks.get(c.CheckID)!.ModifyIndex;
      state.checks.set(c.CheckID, c);
      this.armTtl(state, c);
    }
  }

  private deregister(id: string, authz: Authorizer): void {
    const state = this.state;
    const s = state.services.get(id);
    if (!s) throw new HttpError(404, `Unknown service ID ${JSON.stringify(id)}`);
    if (!authz.service(s.Service, 'write')) throw authz.denied('service:write', s.Service);
    this.removeService(state, s);
  }

  private removeService(state: State, s: Service): void {
    for (const cid of s.checks) {
      clearTimeout(state.checks.get(cid)?.timer);
      state.checks.delete(cid);
    }
    state.services.delete(s.ID);
    state.bump(s.Service, { services: true, checks: s.checks.length > 0 });
  }

  private updateTtl(checkId: string, status: Check['Status'], note: string, authz: Authorizer): void {
    const state = this.state;
    const c = state.checks.get(checkId);
    if (!c)
      throw new HttpError(
        404,
        `Unknown check ID ${JSON.stringify(checkId)}. Ensure that the check ID is passed, not the check name.`,
      );
    if (!authz.service(c.ServiceName, 'write')) throw authz.denied('service:write', c.ServiceName);
    this.setStatus(state, c, status, note);
    this.armTtl(state, c);
  }

  /** Only a change of status or output is a catalog change (bumps the index, wakes blocking queries). */
  private setStatus(state: State, c: Check, status: Check['Status'], output: string): void {
    if (c.Status === status && c.Output === output) return;
    if (status === 'critical' && c.Status !== 'critical') c.criticalSince = Date.now();
    if (status !== 'critical') c.criticalSince = undefined;
    c.Status = status;
    c.Output = output;
    c.ModifyIndex = state.bump(c.ServiceName, { checks: true });
  }

  private armTtl(state: State, c: Check): void {
    clearTimeout(c.timer);
    c.timer = setTimeout(() => {
      if (state.checks.get(c.CheckID) !== c) return;
      this.setStatus(state, c, 'critical', 'TTL expired');
    }, c.ttlMs);
    c.timer.unref();
  }

  /** Deregisters services with a check critical for longer than its DeregisterCriticalServiceAfter. */
  private reap(): void {
    const state = this.state;
    const now = Date.now();
    for (const c of [...state.checks.values()]) {
      if (c.Status !== 'critical' || c.deregisterAfterMs === undefined || c.criticalSince === undefined) continue;
      if (now - c.criticalSince < c.deregisterAfterMs * this.deregisterScale) continue;
      const s = state.services.get(c.ServiceID);
      if (s) this.removeService(state, s);
    }
  }

  // ---- ACLs ----

  private authorizer(token: string | undefined): Authorizer {
    const acl = this.acl;
    if (!acl) return allowAll;
    let rules: AclRules | undefined;
    if (token === undefined || token === '' || token === 'anonymous') rules = acl.anonymous ?? {};
    else {
      rules = acl.tokens[token];
      if (!rules) throw new HttpError(403, 'ACL not found');
    }
    const accessor = token ? `fake-accessor-${hashish(token)}` : '00000000-0000-0000-0000-000000000002';
    const decide = (
      exact: Record<string, AclPolicy> | undefined,
      prefix: Record<string, AclPolicy> | undefined,
      name: string,
      want: 'read' | 'write',
    ): boolean => {
      if (rules!.management) return true;
      let pol: AclPolicy | undefined = exact?.[name];
      if (!pol && prefix) {
        let best = -1;
        for (const [pfx, p] of Object.entries(prefix))
          if (name.startsWith(pfx) && pfx.length > best) [best, pol] = [pfx.length, p];
      }
      if (!pol) return acl.defaultPolicy === 'allow';
      return pol === 'write' || (pol === 'read' && want === 'read');
    };
    return {
      service: (name, want) => decide(rules!.service, rules!.servicePrefix, name, want),
      node: (name, want) => decide(rules!.node, rules!.nodePrefix, name, want),
      denied: (perm, name) =>
        new HttpError(
          403,
          `Permission denied: token with AccessorID '${accessor}' lacks permission '${perm}' on ${JSON.stringify(name)}`,
        ),
    };
  }
}

interface Authorizer {
  service(name: string, want: 'read' | 'write'): boolean;
  node(name: string, want: 'read' | 'write'): boolean;
  denied(perm: string, name: string): HttpError;
}
const allowAll: Authorizer = {
  service: () => true,
  node: () => true,
  denied: (p, n) => new HttpError(403, `Permission denied: lacks permission '${p}' on ${JSON.stringify(n)}`),
};

/** A stable, non-reversible tag for a token in messages (never the token itself). */
function hashish(s: string): string {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return (h >>> 0).toString(16).padStart(8, '0');
}

/** Consul's boolean query parameters: present and empty means true; otherwise strconv.ParseBool. */
function parseBoolParam(q: Map<string, string[]>, key: string): boolean {
  const v = q.get(key);
  if (!v) return false;
  const s = v[0];
  if (s === '') return true;
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  throw new HttpError(400, `Invalid value for ?${key}`);
}

/** Starts a fake Consul agent on a free 127.0.0.1 port. Stop it with close() in an after() hook. */
export async function startFakeConsul(opts: FakeConsulOptions = {}): Promise<FakeConsul> {
  const f = new FakeConsul(opts);
  await f.start();
  return f;
}
