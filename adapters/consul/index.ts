import { readFileSync, statSync } from 'node:fs';
import {
  AuthFailedError,
  ConfigError,
  RegistrarBase,
  RegistrationBase,
  RegistrationLostError,
  RegistryUnavailableError,
  TokenBucket,
  WatchResolver,
  collectEndpoints,
  defineAdapter,
  registerAdapter,
  silentLogger,
  validateOptions,
  type AdapterContext,
  type AdapterInstance,
  type BadEntry,
  type CheckedSpec,
  type Endpoint,
  type Health,
  type Logger,
  type OptionsSchema,
  type SourceSink,
  type WayfinderError,
} from '../../core';
import { delay, parseHostList, retryLoop, scalarText, Waker, secretFileError, trimSecret } from '../../core/kit';
import { ConsulCallError, ConsulClient, goDuration, type HealthEntry, type ServiceRegistration } from './client';
import { ConsulRegistryWatch } from './watch-all';

export { ConsulCallError, ConsulClient } from './client';

/** Validated options of the consul adapter (see the schema below for docs and defaults). */
export interface ConsulOptions {
  hosts: string[];
  dc?: string;
  'token-file'?: string;
  token?: string;
  tls: boolean;
  wait: number;
  rate: number;
  burst: number;
  tag: string[];
  meta: string[];
  'include-warning': boolean;
  'zone-key': string;
  ttl: number;
  'deregister-after': number;
  'register-tags': string[];
  timeout: number;
}

export const consulCapabilities = {
  watch: 'push',
  register: true,
  ttl: true,
  weights: true,
  zones: true,
  metadata: true,
  listServices: true,
  registryWatch: true,
} as const;

const META_KEY = /^[a-zA-Z0-9_-]{1,128}$/;

/**
 * Where the ACL token comes from: the `token` option, else `token-file` (re-read when the file
 * changes, at most once a second, so rotated tokens apply), else CONSUL_HTTP_TOKEN_FILE /
 * CONSUL_HTTP_TOKEN like Consul's own CLI. The value never leaves this object except as the
 * X-Consul-Token header.
 */
class TokenSource {
  #value = '';
  #file?: string;
  #mtime = 0;
  #checked = 0;
  constructor(
    token: string | undefined,
    file: string | undefined,
    env: Record<string, string | undefined>,
    private readonly now: () => number,
  ) {
    if (token) this.#value = token;
    else if (file ?? env.CONSUL_HTTP_TOKEN_FILE) {
      this.#file = file ?? env.CONSUL_HTTP_TOKEN_FILE;
      this.load(true);
    } else if (env.CONSUL_HTTP_TOKEN) this.#value = env.CONSUL_HTTP_TOKEN;
  }
  private load(initial: boolean): void {
    const file = this.#file!;
    try {
      const st = statSync(file);
      if (!initial && st.mtimeMs === this.#mtime) return;
      this.#value = trimSecret(readFileSync(file, 'utf8'));
      this.#mtime = st.mtimeMs;
    } catch (e) {
      // Never echo the file's contents; its path and the OS error are safe.
      if (initial) throw secretFileError('consul', 'token-file', file, e);
    }
  }
  /** Forces a re-read on the next get() (after the agent said the token is unknown). */
  invalidate(): void {
    this.#checked = 0;
    this.#mtime = -1;
  }
  get(): string {
    if (this.#file && this.now() - this.#checked >= 1000) {
      this.#checked = this.now();
      this.load(false);
    }
    return this.#value;
  }
  toJSON(): string {
    return this.#value ? '***' : '';
  }
}

/** Consul's filter expression for the configured tag and metadata filters (undefined when none). */
export function buildFilter(tags: string[], meta: [string, string][]): string | undefined {
  const parts = [
    ...tags.map((t) => `${JSON.stringify(t)} in Service.Tags`),
    ...meta.map(([k, v]) => `Service.Meta[${JSON.stringify(k)}] == ${JSON.stringify(v)}`),
  ];
  return parts.length ? parts.join(' and ') : undefined;
}

export function parseMeta(items: string[]): [string, string][] {
  return items.map((item) => {
    const m = /^([^:=]+)[:=](.*)$/.exec(item);
    if (!m || !META_KEY.test(m[1]))
      throw new ConfigError(
        `consul: "meta" entries must be key:value with a key of [A-Za-z0-9_-] (got ${JSON.stringify(item)})`,
        { field: 'meta' },
      );
    return [m[1], m[2]];
  });
}

/** Worst status of an instance's checks (node checks included), as Consul aggregates it. */
function aggregate(checks: HealthEntry['Checks']): Health {
  let h: Health = 'passing';
  for (const c of Array.isArray(checks) ? checks : []) {
    if (c?.Status === 'critical' || c?.Status === 'maintenance') return 'critical';
    if (c?.Status === 'warning') h = 'warning';
  }
  return h;
}

/**
 * Maps one /v1/health/service entry to the raw endpoint form checkEndpoint() validates, or null
 * when the instance is deliberately excluded (a warning instance whose Weights.Warning is 0).
 */
export function entryToRaw(e: HealthEntry, zoneKey: string): { key: string; value: unknown } | null {
  const key = `${scalarText(e?.Node?.Node)}/${scalarText(e?.Service?.ID)}`;
  const s = e?.Service;
  if (!s || typeof s !== 'object') return { key, value: null };
  // A Checks that is not a list makes this one entry bad (reported), never the whole response.
  if (e.Checks != null && !Array.isArray(e.Checks)) return { key, value: null };
  const health = aggregate(e.Checks);
  const w = s.Weights ?? {};
  const weight = health === 'warning' ? (w.Warning ?? 1) : (w.Passing ?? 1);
  if (weight === 0) return null;
  const metadata: Record<string, unknown> = { ...(s.Meta ?? {}) };
  const zone = metadata[zoneKey];
  delete metadata[zoneKey];
  return {
    key,
    value: { id: s.ID, host: s.Address || e.Node?.Address || '', port: s.Port, weight, zone, metadata, health },
  };
}

/** Slack on top of wait + wait/16 before a blocking request is declared hung. */
const BLOCKING_GRACE_MS = 1000;

interface Shared {
  client: ConsulClient;
  tokens: TokenSource;
  o: ConsulOptions;
  /** The Consul filter expression of the tag and meta options, built once. */
  filter?: string;
  logger: Logger;
  ctx: AdapterContext;
}

/** One health read of a service, mapped as every watch path maps it. */
export interface HealthRead {
  endpoints: Endpoint[];
  bad: BadEntry[];
  /** X-Consul-Index (0 when absent). */
  index: bigint;
  /** Nodes of the instances read (a node check change concerns these services). */
  nodes: Set<string>;
  /** The ACLs hid every instance: keep the last set, report this. */
  denied?: AuthFailedError;
  /** The ACLs hid some instances. */
  filteredSome: boolean;
}

/**
 * GET /v1/health/service/:service with the adapter's passing/tag/meta filters, blocking from
 * `index` when > 0, mapped to endpoints. Shared by the per-service loop and the registry-wide
 * watch, so both give the same snapshot for the same registry.
 */
async function readHealth(sh: Shared, service: string, index: bigint, signal: AbortSignal): Promise<HealthRead> {
  const { client, o } = sh;
  const r = await client.healthService(
    {
      service,
      passing: !o['include-warning'],
      index,
      waitMs: o.wait,
      dc: o.dc,
      filter: sh.filter,
      timeoutMs: index > 0n ? blockingTimeout(o.wait) : o.timeout,
    },
    signal,
  );
  const nodes = new Set<string>();
  for (const e of r.body) if (typeof e?.Node?.Node === 'string') nodes.add(e.Node.Node);
  const raws = r.body
    .map((e) => entryToRaw(e, o['zone-key']))
    .filter((x): x is { key: string; value: unknown } => x !== null);
  const { endpoints, bad } = collectEndpoints(raws);
  const out: HealthRead = { endpoints, bad, index: r.index ?? 0n, nodes, filteredSome: r.filteredByAcls };
  if (r.filteredByAcls && r.body.length === 0) {
    sh.tokens.invalidate(); // a rotated token file may be the fix: read it again
    out.denied = new AuthFailedError(
      `consul: the ACL token may not read "${service}" (results filtered by ACLs; needs service:read and node:read); keeping the last known endpoints`,
    );
  }
  return out;
}

/** How long a blocking request may stay silent before it is abandoned: wait + wait/16 (Consul's jitter) + slack. */
export function blockingTimeout(waitMs: number): number {
  return waitMs + Math.ceil(waitMs / 16) + BLOCKING_GRACE_MS;
}

/**
 * One blocking-query loop per watched service (the core shares it between watchers):
 * GET /v1/health/service/:name?passing&index=I&wait=W. The index is a BigInt; when it goes
 * backwards the loop restarts from 0, and after any failure it re-reads without blocking (an agent
 * restart resets indexes). A token bucket (rate/burst) bounds the loop however fast the agent
 * answers; failures back off with jitter and keep the last good set. A response emptied by ACL
 * filtering never replaces a set: it is reported as AUTH_FAILED instead.
 */
function subscribe(sh: Shared, service: string, sink: SourceSink, wakers: Map<string, Waker>): () => void {
  const { client, o, logger, ctx } = sh;
  const ac = new AbortController();
  const bucket = new TokenBucket(o.rate, o.burst, ctx.now);
  let index = 0n;
  let warnedFiltered = false;

  // Only a loop sleeping in backoff is woken by refresh(); the token bucket's waits are not.
  const waker = new Waker();
  wakers.set(service, waker);
  const pause = (ms: number) => delay(ms, ac.signal).catch(() => undefined);

  const round = async (): Promise<void> => {
    for (let w = bucket.take(); w > 0 && !ac.signal.aborted; w = bucket.take()) await pause(w);
    if (ac.signal.aborted) return;
    const blocking = index > 0n;
    const r = await readHealth(sh, service, index, ac.signal);
    if (ac.signal.aborted) return;
    const got = r.index;
    if (blocking && got < index) {
      logger.info(
        { service, from: index.toString(), to: got.toString() },
        'consul: X-Consul-Index went backwards; restarting the blocking loop',
      );
      index = 0n;
    } else {
      // Consul's rule: an index below 1 would not block, so wait on 1 instead.
      index = got < 1n ? 1n : got;
    }
    if (r.denied) return sink.error(r.denied);
    if (r.filteredSome && !warnedFiltered) {
      warnedFiltered = true;
      logger.warn(
        { service },
        'consul: some instances were filtered out by ACLs (X-Consul-Results-Filtered-By-ACLs); using the visible ones',
      );
    }
    sink.update(r.endpoints, { revision: got.toString(), bad: r.bad });
  };
  const failed = (e: unknown): void => {
    const err = e as ConsulCallError;
    let wf: WayfinderError;
    if (err.status === 403) {
      sh.tokens.invalidate();
      wf = new AuthFailedError(`consul: watching "${service}" was refused by ${client.address}: ${err.message}`);
    } else {
      wf = new RegistryUnavailableError(`consul: watching "${service}" at ${client.address} failed: ${err.message}`);
    }
    sink.error(wf);
    // Re-read without blocking next time: the agent may have restarted with a lower index.
    index = 0n;
  };
  void retryLoop({
    signal: ac.signal,
    run: round,
    onError: failed,
    backoff: { baseMs: 250, maxMs: 15_000, random: ctx.random },
    sleep: (ms, signal) => waker.sleep(ms, signal),
  }).catch((e) => logger.error({ service, err: (e as Error).message }, 'consul: watch loop crashed'));
  return () => {
    ac.abort();
    if (wakers.get(service) === waker) wakers.delete(service);
  };
}

/** Throws TypeError for metadata Consul would refuse (so the caller learns why before any call). */
function checkMeta(meta: Record<string, string>): void {
  const entries = Object.entries(meta);
  if (entries.length > 63)
    throw new TypeError('register(): Consul allows at most 64 metadata pairs (one is kept for the zone)');
  for (const [k, v] of entries) {
    if (!META_KEY.test(k) || k.startsWith('consul-'))
      throw new TypeError(
        `register(): metadata key ${JSON.stringify(k)} is not accepted by Consul (needs [A-Za-z0-9_-], at most 128 characters, no "consul-" prefix)`,
      );
    if (v.length > 512)
      throw new TypeError(`register(): metadata value of ${JSON.stringify(k)} is longer than Consul's 512 characters`);
  }
}

function mapWriteError(what: string, e: unknown): Error {
  const err = e as ConsulCallError;
  if (err?.status === 403) return new AuthFailedError(`consul: ${what} was refused: ${err.message}`);
  if (err?.status === 400) return new TypeError(`consul: ${what} was rejected: ${err.message}`);
  return new RegistryUnavailableError(`consul: ${what} failed: ${err?.message ?? String(e)}`, {
    cause: e instanceof ConsulCallError ? e : undefined,
  });
}

/**
 * An agent service with a TTL check kept passing every ttl/3. When the agent forgets the service
 * (404 on the check: an agent restart) or is unreachable for longer than the TTL, the registration
 * emits `lost`, re-registers, and emits `restored` once the agent has it again.
 */
export class ConsulRegistration extends RegistrationBase {
  private timer?: NodeJS.Timeout;
  private busy = false;
  private lastOk: number;
  private readonly checkId: string;

  constructor(
    spec: CheckedSpec,
    private readonly sh: Shared,
  ) {
    super(spec, sh.logger);
    this.checkId = `service:${spec.id}`;
    this.lastOk = this.sh.ctx.now();
  }

  body(spec: CheckedSpec): ServiceRegistration {
    const o = this.sh.o;
    const meta: Record<string, string> = { ...spec.metadata };
    if (spec.zone) meta[o['zone-key']] = spec.zone;
    return {
      ID: spec.id,
      Name: spec.service,
      Address: spec.host,
      Port: spec.port,
      Tags: o['register-tags'],
      Meta: meta,
      Weights: { Passing: spec.weight, Warning: 1 },
      Check: {
        CheckID: this.checkId,
        Name: 'wayfinder TTL',
        TTL: goDuration(o.ttl),
        Status: 'passing',
        DeregisterCriticalServiceAfter: goDuration(o['deregister-after']),
      },
    };
  }

  /** Called by the registrar once the first registration succeeded. */
  startKeepAlive(): void {
    this.lastOk = this.sh.ctx.now();
    this.timer = setInterval(() => void this.tick(), Math.max(200, Math.floor(this.sh.o.ttl / 3)));
    this.timer.unref();
  }

  /** Stops TTL updates without deregistering: the agent will see this instance die. For tests and drills. */
  suspendKeepAlive(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async tick(): Promise<void> {
    if (this.busy || this.deregistered || !this.timer) return;
    this.busy = true;
    const t = this.sh.o.timeout;
    try {
      if (this.isLost) {
        await this.sh.client.register(this.body(this.spec), t);
        this.lastOk = this.sh.ctx.now();
        this.emitRestored();
        return;
      }
      await this.sh.client.passCheck(this.checkId, t);
      this.lastOk = this.sh.ctx.now();
    } catch (e) {
      if (this.deregistered) return;
      const err = e as ConsulCallError;
      if (err.status === 404) {
        this.emitLost(
          new RegistrationLostError(
            `consul: the agent at ${this.sh.client.address} no longer knows "${this.id}" (agent restarted?); re-registering`,
          ),
        );
        try {
          await this.sh.client.register(this.body(this.spec), t);
          this.lastOk = this.sh.ctx.now();
          this.emitRestored();
        } catch (e2) {
          this.logger.warn(
            { service: this.service, id: this.id, err: (e2 as Error).message },
            'consul: re-registration failed; retrying',
          );
        }
      } else {
        this.logger.warn({ service: this.service, id: this.id, err: err.message }, 'consul: TTL update failed');
        if (this.sh.ctx.now() - this.lastOk > this.sh.o.ttl) {
          this.emitLost(
            new RegistrationLostError(
              `consul: no TTL update reached ${this.sh.client.address} for longer than the ${this.sh.o.ttl} ms TTL: ${err.message}`,
            ),
          );
        }
      }
    } finally {
      this.busy = false;
    }
  }

  protected async write(spec: CheckedSpec): Promise<void> {
    checkMeta(spec.metadata);
    try {
      await this.sh.client.register(this.body(spec), this.sh.o.timeout);
    } catch (e) {
      throw mapWriteError(`updating "${spec.id}"`, e);
    }
  }

  protected async remove(): Promise<void> {
    this.suspendKeepAlive();
    try {
      await this.sh.client.deregister(this.id, this.sh.o.timeout);
    } catch (e) {
      // Unknown to the agent already (reaped, or an agent restart): nothing left to remove.
      if ((e as ConsulCallError).status === 404) return;
      throw mapWriteError(`deregistering "${this.id}"`, e);
    }
  }
}

class ConsulRegistrar extends RegistrarBase<ConsulRegistration> {
  constructor(private readonly sh: Shared) {
    super('consul');
  }
  protected async create(spec: CheckedSpec): Promise<ConsulRegistration> {
    checkMeta(spec.metadata);
    const reg = new ConsulRegistration(spec, this.sh);
    try {
      await this.sh.client.register(reg.body(spec), this.sh.o.timeout);
    } catch (e) {
      throw mapWriteError(`registering "${spec.id}" of "${spec.service}"`, e);
    }
    reg.startKeepAlive();
    return reg;
  }
}

/** What createConsulRegistry takes besides options: any of the AdapterContext, and the environment. */
export type ConsulRegistryContext = Partial<AdapterContext> & { env?: Record<string, string | undefined> };

/**
 * Resolver, registrar and service listing over one Consul agent. Options as in the URL (`wait: '5s'`
 * or ms); invalid ones throw ConfigError naming the field.
 */
export function createConsulRegistry(
  options: Partial<Record<keyof ConsulOptions, unknown>> = {},
  ctx: ConsulRegistryContext = {},
): ConsulRegistry {
  const o = validateOptions<ConsulOptions>('consul', consulOptionsSchema, options);
  checkConsulOptions(o);
  return openConsul(o, ctx);
}

type ConsulRegistry = AdapterInstance & { client: ConsulClient };

/** Cross-field checks on validated options (the adapter's validate()). */
function checkConsulOptions(o: ConsulOptions): void {
  if (o.token && o['token-file'])
    throw new ConfigError('consul: give "token" or "token-file", not both', { field: 'token' });
  parseMeta(o.meta);
}

/** The registry over validated, defaulted options. */
function openConsul(o: ConsulOptions, ctx: ConsulRegistryContext): ConsulRegistry {
  const logger = ctx.logger ?? silentLogger;
  const fullCtx: AdapterContext = {
    logger,
    now: ctx.now ?? (() => performance.now()),
    random: ctx.random ?? Math.random,
  };
  const [agent] = parseHostList('consul', o.hosts.slice(0, 1), { defaultPort: 8500 });
  const tokens = new TokenSource(o.token, o['token-file'], ctx.env ?? process.env, fullCtx.now);
  const client = new ConsulClient({
    host: agent.host,
    port: agent.port,
    secure: o.tls,
    token: () => tokens.get(),
  });
  const sh: Shared = { client, tokens, o, filter: buildFilter(o.tag, parseMeta(o.meta)), logger, ctx: fullCtx };
  const wakers = new Map<string, Waker>();
  const resolver = new WatchResolver('consul', (service, sink) => subscribe(sh, service, sink, wakers), {
    logger,
    // grpc-js asks for re-resolution when a backend fails: a live blocking query is already current,
    // so only a loop sleeping in backoff is woken (still subject to the token bucket).
    refresh: (service) => void wakers.get(service)?.wake(),
  });
  return {
    client,
    resolver,
    registrar: new ConsulRegistrar(sh),
    watchAll: (sink) => {
      const w = new ConsulRegistryWatch(
        {
          client,
          o,
          read: (service, signal) => readHealth(sh, service, 0n, signal),
          blockingTimeout,
          logger,
          ctx: fullCtx,
        },
        sink,
      );
      w.start();
      return () => w.stop();
    },
    async listServices() {
      try {
        const r = await client.catalogServices({ dc: o.dc, timeoutMs: o.timeout });
        return Object.keys(r.body).sort();
      } catch (e) {
        const err = e as ConsulCallError;
        if (err.status === 403) throw new AuthFailedError(`consul: listing services was refused: ${err.message}`);
        throw new RegistryUnavailableError(`consul: listing services at ${client.address} failed: ${err.message}`);
      }
    },
    async close() {
      client.close();
    },
  };
}

export const consulOptionsSchema: OptionsSchema = {
  hosts: {
    type: 'list',
    default: ['127.0.0.1:8500'],
    doc: 'The Consul agent, host:port (one agent; default 127.0.0.1:8500).',
    check: (v: string[]) => (v.length === 1 ? undefined : 'must name exactly one agent (host:port)'),
  },
  dc: {
    type: 'string',
    doc: "Datacenter to query (default: the agent's own).",
    check: (v: string) => (/^[A-Za-z0-9_-]+$/.test(v) ? undefined : 'must match [A-Za-z0-9_-]+'),
  },
  'token-file': {
    type: 'string',
    doc: 'File holding the ACL token (re-read when it changes). Else CONSUL_HTTP_TOKEN_FILE / CONSUL_HTTP_TOKEN.',
  },
  token: {
    type: 'string',
    secret: true,
    doc: 'ACL token (prefer token-file: URLs end up in logs). Sent only as the X-Consul-Token header.',
  },
  tls: { type: 'boolean', default: false, doc: 'Talk HTTPS to the agent.' },
  wait: {
    type: 'duration',
    default: 300_000,
    min: 1000,
    max: 600_000,
    doc: "Blocking-query wait (Consul's default 5m, max 10m); a request silent for wait + wait/16 + 1s is abandoned.",
  },
  rate: {
    type: 'number',
    default: 1,
    min: 0.01,
    max: 1000,
    doc: 'Blocking requests per second per watched service once the burst is spent (token bucket).',
  },
  burst: {
    type: 'integer',
    default: 3,
    min: 1,
    max: 1000,
    doc: 'Requests allowed back to back before the rate applies.',
  },
  tag: { type: 'list', default: [], doc: 'Only instances carrying all these tags (sent as a Consul filter).' },
  meta: {
    type: 'list',
    default: [],
    doc: 'Only instances whose service meta has these key:value pairs (sent as a Consul filter).',
  },
  'include-warning': {
    type: 'boolean',
    default: false,
    doc: 'Also use instances whose checks warn (at Weights.Warning; 0 excludes them). Default: passing only.',
  },
  'zone-key': {
    type: 'string',
    default: 'zone',
    doc: 'Service meta key holding the zone.',
    check: (v: string) => (META_KEY.test(v) ? undefined : 'must match [A-Za-z0-9_-]{1,128}'),
  },
  ttl: {
    type: 'duration',
    default: 10_000,
    min: 1000,
    max: 3_600_000,
    doc: 'TTL of the check a registration keeps passing (updated every ttl/3).',
  },
  'deregister-after': {
    type: 'duration',
    default: 60_000,
    min: 60_000,
    doc: "DeregisterCriticalServiceAfter: a crashed instance is reaped after this (Consul's minimum 1m).",
  },
  'register-tags': { type: 'list', default: [], doc: 'Tags given to registered instances.' },
  timeout: {
    type: 'duration',
    default: 10_000,
    min: 100,
    max: 600_000,
    doc: 'Timeout of non-blocking calls (registration, TTL updates, first reads).',
  },
};

export const consulAdapter = defineAdapter<ConsulOptions>({
  scheme: 'consul',
  description:
    'HashiCorp Consul: blocking queries on /v1/health/service, agent registration with a TTL check. consul://127.0.0.1:8500?dc=dc1&token-file=/path',
  capabilities: consulCapabilities,
  options: consulOptionsSchema,
  validate: checkConsulOptions,
  create(options, ctx) {
    return openConsul(options, ctx);
  },
});

/** Registers the consul:// scheme. Idempotent. */
export function setup(): void {
  registerAdapter(consulAdapter);
}
setup();
