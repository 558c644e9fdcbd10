import * as net from 'node:net';
import * as os from 'node:os';
import {
  ConfigError,
  RegistryUnavailableError,
  WatchResolver,
  checkServiceName,
  collectEndpoints,
  defineAdapter,
  endpointKey,
  registerAdapter,
  silentLogger,
  validateOptions,
  type AdapterContext,
  type AdapterInstance,
  type BadEntry,
  type Endpoint,
  type Logger,
  type Snapshot,
  type SourceSink,
  type Watch,
} from '../../core';
import { parseHostList, retryLoop, type HostAddress } from '../../core/kit';
import { DnsClient, DnsQueryError, type AddressRecord, type SrvAnswer } from './client';
import { ServiceConfigTracker, grpcConfigName, type ClientIdentity } from './service-config';

/**
 * The DNS adapter (read-only): A/AAAA lookups for `name:port` and SRV lookups for `_svc._proto.name`,
 * re-resolved on a timer that follows the records' TTLs within [min-refresh, max-refresh], and on
 * demand (resolver.refresh, rate-limited to one lookup per min-refresh per service).
 *
 * Unlike grpc-js's built-in dns: resolver, which resolves again only when a connection drops, this
 * one polls, so scale-ups are seen within max-refresh even when every connection stays healthy.
 *
 * With `service-config` (default on), each lookup also reads the gRPC service config from the TXT
 * record `_grpc_config.<name>` (gRFC A2, see service-config.ts) and delivers it as
 * Snapshot.serviceConfig; a TXT failure or a malformed record never fails the lookup.
 */

export interface DnsOptions {
  /** Nameservers, `ip[:port]`; empty = the system's (/etc/resolv.conf). */
  hosts: string[];
  'min-refresh': number;
  'max-refresh': number;
  timeout: number;
  tries: number;
  family: 'any' | 'ipv4' | 'ipv6';
  /** SRV prefix for plain names, e.g. `_grpc._tcp`: `echo` is looked up as `_grpc._tcp.echo`. */
  srv?: string;
  /** Default port for plain names (A/AAAA) when `srv` is not set. */
  port?: number;
  /** Appended to single-label names (`echo` -> `echo.<domain>`), like a resolv.conf search domain. */
  domain?: string;
  /** Probe SRV priority groups by TCP connect to fail over to the next group. */
  probe: boolean;
  /** Read the gRPC service config from `_grpc_config.<name>` TXT records (gRFC A2). */
  'service-config': boolean;
}

/** The DNS name whose `_grpc_config` TXT record holds a query's service config (none for IP literals). */
export function serviceConfigName(q: DnsQuery): string | undefined {
  if (q.kind === 'literal') return undefined;
  return grpcConfigName(q.kind === 'srv' ? q.name.replace(/^(_[^.]+\.)+/, '') : q.name);
}

const LABEL = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
function isDnsName(name: string): boolean {
  return name.length > 0 && name.length <= 253 && name.split('.').every((l) => LABEL.test(l));
}

function checkNameserver(s: string): string | undefined {
  let server: HostAddress;
  try {
    [server] = parseHostList('dns', [s], { defaultPort: 53 });
  } catch (e) {
    if (e instanceof ConfigError && /port outside/.test(e.message)) return `port in "${s}" must be in 1..65535`;
    server = { host: '', port: 53 };
  }
  if (!net.isIP(server.host))
    return `must be IP addresses with an optional port (ip, ip:port or [ipv6]:port), got "${s}"`;
  return undefined;
}

/** What one service name asks DNS for. */
export type DnsQuery =
  | { kind: 'address'; name: string; port: number }
  | { kind: 'literal'; host: string; port: number }
  | { kind: 'srv'; name: string };

/**
 * Maps a service name to a query: `name:port` (A/AAAA), `_svc._proto.name` (SRV), or a plain
 * `name`, which needs the `srv` or `port` option. Throws TypeError for names DNS cannot ask for.
 */
export function parseDnsService(service: string, o: Pick<DnsOptions, 'srv' | 'port' | 'domain'> = {}): DnsQuery {
  const fail = (why: string): never => {
    throw new TypeError(`dns: service ${JSON.stringify(service)} ${why}`);
  };
  const addDomain = (name: string) => {
    const abs = name.endsWith('.');
    const n = abs ? name.slice(0, -1) : name;
    const base = n.replace(/^(_[^.]+\.)+/, '');
    return !abs && o.domain && !base.includes('.') ? `${n}.${o.domain}` : n;
  };
  let q: DnsQuery;
  const colon = service.lastIndexOf(':');
  if (colon >= 0) {
    const name = service.slice(0, colon);
    const portText = service.slice(colon + 1);
    const port = Number(portText);
    if (!/^\d+$/.test(portText) || port < 1 || port > 65535) fail('has a port that is not in 1..65535');
    if (name.startsWith('_')) fail('is an SRV name (_svc._proto.name), which carries its own ports: drop ":port"');
    if (net.isIPv4(name)) return { kind: 'literal', host: name, port };
    q = { kind: 'address', name: addDomain(name), port };
  } else if (service.startsWith('_')) {
    q = { kind: 'srv', name: addDomain(service) };
  } else if (o.srv) {
    q = { kind: 'srv', name: `${o.srv}.${addDomain(service)}` };
  } else if (o.port) {
    q = { kind: 'address', name: addDomain(service), port: o.port };
  } else {
    return fail('needs a port (name:port), an SRV name (_grpc._tcp.name), or the registry\'s "srv" or "port" option');
  }
  if (!isDnsName(q.name)) fail(`is not a valid DNS name (${q.name})`);
  return q;
}

interface Lookup {
  endpoints: Endpoint[];
  bad: BadEntry[];
  /** Smallest TTL seen (s), undefined when no record carried one. */
  ttl?: number;
}

/** TCP connect probe: true when host:port accepts within timeoutMs. */
function tcpProbe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Resolves true as soon as one endpoint accepts a TCP connection, false when none does. */
function anyReachable(eps: Endpoint[], timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let left = eps.length;
    if (left === 0) return resolve(false);
    for (const e of eps) {
      void tcpProbe(e.host, e.port, timeoutMs).then((ok) => {
        left--;
        if (ok) resolve(true);
        else if (left === 0) resolve(false);
      });
    }
  });
}

/** Exported for the fuzz tests (test/fuzz): turns DNS answers into endpoint sets. */
export class DnsLookups {
  constructor(
    private readonly client: DnsClient,
    private readonly o: DnsOptions,
  ) {}

  private families(): (4 | 6)[] {
    return this.o.family === 'ipv4' ? [4] : this.o.family === 'ipv6' ? [6] : [4, 6];
  }

  /**
   * A and/or AAAA of one name, both asked in parallel. A family whose query fails (REFUSED,
   * SERVFAIL, timeout...) while another one answered with addresses is left out and reported in
   * `failed`, as getaddrinfo and Go's resolver return the family that answered. Throws the first
   * DnsQueryError when no family gave an address and one failed: an empty answer then proves
   * nothing, so the caller keeps its last good set.
   */
  private async addresses(name: string): Promise<{ records: AddressRecord[]; failed: BadEntry[] }> {
    const rs = await Promise.allSettled(this.families().map((f) => this.client.addresses(name, f)));
    const records = rs.flatMap((r) => (r.status === 'fulfilled' ? r.value.records : []));
    const errors = rs.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (errors.length && (records.length === 0 || errors.some((e) => !(e instanceof DnsQueryError)))) throw errors[0];
    const failed = (errors as DnsQueryError[]).map((e) => ({
      key: `${e.query} ${e.type}`,
      reason: `query failed with ${e.code}; the other family's addresses are used`,
    }));
    return { records, failed };
  }

  async lookup(q: DnsQuery): Promise<Lookup> {
    switch (q.kind) {
      case 'literal':
        return { endpoints: [{ id: endpointKey(q), host: q.host, port: q.port, metadata: {} }], bad: [] };
      case 'address': {
        const { records: recs, failed } = await this.addresses(q.name);
        const { endpoints, bad } = collectEndpoints(
          recs.map((r) => ({
            key: `${q.name} ${r.family === 4 ? 'A' : 'AAAA'} ${r.address}`,
            value: { host: r.address, port: q.port },
          })),
        );
        return { endpoints, bad: [...failed, ...bad], ttl: minTtl(recs) };
      }
      case 'srv':
        return this.srv(q.name);
    }
  }

  private async srv(name: string): Promise<Lookup> {
    const { records } = await this.client.srv(name);
    const targets = [...new Set(records.map((r) => r.name).filter((t) => t !== '' && t !== '.'))];
    const addrs = new Map<string, AddressRecord[]>();
    const bad: BadEntry[] = [];
    await Promise.all(
      targets.map(async (t) => {
        if (net.isIP(t)) addrs.set(t, [{ address: t, ttl: Number.POSITIVE_INFINITY, family: net.isIP(t) as 4 | 6 }]);
        else {
          const { records, failed } = await this.addresses(t);
          addrs.set(t, records);
          bad.push(...failed);
        }
      }),
    );
    // Group by priority; within a group, every address of a target is an endpoint with the SRV weight.
    const groups = new Map<number, { key: string; value: unknown }[]>();
    let ttl = minTtl([...addrs.values()].flat());
    for (const r of records) {
      const key = `${name} SRV ${r.priority} ${r.weight} ${r.port} ${r.name || '.'}`;
      if (r.name === '' || r.name === '.') continue; // "." target: the service is decidedly not available there
      const as = addrs.get(r.name) ?? [];
      if (as.length === 0) {
        bad.push({
          key,
          reason: `target ${r.name} has no ${this.o.family === 'ipv4' ? 'A' : this.o.family === 'ipv6' ? 'AAAA' : 'A or AAAA'} record`,
        });
        continue;
      }
      let g = groups.get(r.priority);
      if (!g) groups.set(r.priority, (g = []));
      for (const a of as) g.push({ key, value: srvEndpoint(r, a.address) });
    }
    const ordered = [...groups.keys()].sort((a, b) => a - b).map((p) => collectEndpoints(groups.get(p)!));
    for (const g of ordered) bad.push(...g.bad);
    const usable = ordered.filter((g) => g.endpoints.length > 0);
    let chosen = usable[0]?.endpoints ?? [];
    // Lowest priority group only, unless none of its endpoints is reachable (then the next, and so on).
    if (this.o.probe && usable.length > 1) {
      for (const g of usable) {
        if (await anyReachable(g.endpoints, this.o.timeout)) {
          chosen = g.endpoints;
          break;
        }
      }
      // With no group reachable, keep the lowest: it is the one the operator prefers.
    }
    if (ttl === Number.POSITIVE_INFINITY) ttl = undefined;
    return { endpoints: chosen, bad, ttl };
  }
}

function srvEndpoint(r: SrvAnswer, address: string): Record<string, unknown> {
  // SRV weight 0 means "rarely, when others exist" (RFC 2782); endpoint weights are >= 1.
  return { host: address, port: r.port, weight: Math.max(1, r.weight), metadata: { 'dns.target': r.name } };
}

function minTtl(recs: AddressRecord[]): number | undefined {
  if (recs.length === 0) return undefined;
  return Math.min(...recs.map((r) => r.ttl));
}

function describeFailure(e: unknown, q: DnsQuery, servers: string[]): RegistryUnavailableError {
  const via = servers.length ? servers.join(',') : 'the system nameservers';
  const what = q.kind === 'srv' ? `SRV ${q.name}` : q.kind === 'address' ? q.name : q.host;
  const detail =
    e instanceof DnsQueryError
      ? `${e.type} ${e.query} failed with ${e.code}`
      : e instanceof Error
        ? e.message
        : String(e);
  return new RegistryUnavailableError(`dns: resolving ${what} via ${via}: ${detail}`, { cause: e });
}

/** The DNS resolver: a WatchResolver that also rejects names DNS cannot ask for, synchronously. */
class DnsResolver extends WatchResolver {
  constructor(
    subscribe: (service: string, sink: SourceSink) => () => void,
    private readonly parse: (service: string) => DnsQuery,
    opts: ConstructorParameters<typeof WatchResolver>[2],
  ) {
    super('dns', subscribe, opts);
  }
  override watch(service: string, onSnapshot: (s: Snapshot) => void): Watch {
    checkServiceName(service);
    this.parse(service);
    return super.watch(service, onSnapshot);
  }
  override resolve(service: string, opts?: { signal?: AbortSignal }): Promise<Endpoint[]> {
    checkServiceName(service, 'resolve()');
    this.parse(service);
    return super.resolve(service, opts);
  }
}

export interface DnsRegistryContext {
  logger?: Logger;
  /** Uniform in [0, 1): backoff jitter. */
  random?: () => number;
  /** ms, monotonic: refresh scheduling. */
  now?: () => number;
  /** This client's host name for `clientHostname` choices of a TXT service config. Default os.hostname(). */
  hostname?: string;
}

/**
 * A DNS resolver over the given (or the system's) nameservers.
 *
 * Timing contract, per watched service: one lookup at watch start; after a good answer the next one
 * is due after clamp(smallest TTL, min-refresh, max-refresh) (min-refresh when no TTL is known:
 * NXDOMAIN, empty answers); after a failure the last good set is kept, REGISTRY_UNAVAILABLE is
 * reported and the lookup is retried with jittered backoff from min(1 s, min-refresh) up to
 * max-refresh. refresh(service) brings the next lookup forward to no earlier than min-refresh
 * after the previous one started. Lookups of one service never overlap.
 */
export function createDnsRegistry(options: Partial<DnsOptions> = {}, ctx: DnsRegistryContext = {}): DnsRegistry {
  const o = validateOptions<DnsOptions>('dns', dnsAdapter.options, options);
  checkDnsOptions(o);
  return openDns(
    o,
    {
      logger: ctx.logger ?? silentLogger,
      random: ctx.random ?? Math.random,
      now: ctx.now ?? (() => performance.now()),
    },
    ctx.hostname,
  );
}

type DnsRegistry = AdapterInstance & { resolver: WatchResolver };

function checkDnsOptions(o: DnsOptions): void {
  if (o['min-refresh'] > o['max-refresh'])
    throw new ConfigError(
      `dns: "min-refresh" (${o['min-refresh']}ms) must not exceed "max-refresh" (${o['max-refresh']}ms)`,
      { field: 'min-refresh' },
    );
}

/** The registry over validated, defaulted options. */
function openDns(
  o: DnsOptions,
  ctx: Pick<AdapterContext, 'logger' | 'random' | 'now'>,
  hostname = os.hostname(),
): DnsRegistry {
  const { logger, random, now } = ctx;
  const client = new DnsClient({ servers: o.hosts, timeoutMs: o.timeout, tries: o.tries });
  const lookups = new DnsLookups(client, o);
  // gRFC A2 `percentage`: one draw per registry (per client), 0..99.
  const who: ClientIdentity = { percentile: Math.min(99, Math.floor(random() * 100)), hostname };
  const refreshers = new Map<string, () => void>();
  const parse = (service: string) => parseDnsService(service, o);

  const subscribe = (service: string, sink: SourceSink) => {
    const q = parse(service);
    const txtName = o['service-config'] ? serviceConfigName(q) : undefined;
    const config = txtName ? new ServiceConfigTracker(client, txtName, who) : undefined;
    const ac = new AbortController();
    let running = false;
    let dueAt = 0;
    let lastStart = Number.NEGATIVE_INFINITY;
    let wanted = false; // refresh() asked while a lookup was running
    let reschedule: ((ms: number) => void) | undefined; // set while sleeping

    // The wait before the next lookup, which refresh() may bring forward (never before min-refresh).
    const sleep = (ms: number, signal: AbortSignal) =>
      new Promise<void>((resolve) => {
        if (wanted) ms = Math.min(ms, Math.max(0, lastStart + o['min-refresh'] - now()));
        let timer: NodeJS.Timeout | undefined;
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          reschedule = undefined;
          resolve();
        };
        reschedule = (d: number) => {
          clearTimeout(timer);
          dueAt = now() + d;
          timer = setTimeout(done, d);
          timer.unref?.();
        };
        signal.addEventListener('abort', done, { once: true });
        reschedule(ms);
      });
    const poll = async (): Promise<number> => {
      running = true;
      wanted = false;
      lastStart = now();
      try {
        // The TXT query runs beside the address/SRV ones; it never throws (failures become BAD_ENTRY).
        const [r, sc] = await Promise.all([lookups.lookup(q), config?.lookup()]);
        if (ac.signal.aborted) return 0;
        sink.update(r.endpoints, { bad: [...r.bad, ...(sc?.bad ?? [])], serviceConfig: sc?.serviceConfig });
        const ttlMs = r.ttl === undefined ? o['min-refresh'] : r.ttl * 1000;
        return Math.min(o['max-refresh'], Math.max(o['min-refresh'], ttlMs));
      } finally {
        running = false;
      }
    };
    const refresh = () => {
      if (ac.signal.aborted) return;
      if (running) {
        wanted = true;
        return;
      }
      const earliest = Math.max(now(), lastStart + o['min-refresh']);
      if (earliest < dueAt) reschedule?.(earliest - now());
    };
    refreshers.set(service, refresh);
    void retryLoop({
      signal: ac.signal,
      run: poll,
      onError: (e) => void sink.error(describeFailure(e, q, o.hosts)),
      backoff: { baseMs: Math.min(1000, o['min-refresh']), maxMs: o['max-refresh'], random },
      sleep,
    });
    return () => {
      ac.abort();
      if (refreshers.get(service) === refresh) refreshers.delete(service);
    };
  };

  const resolver = new DnsResolver(subscribe, parse, {
    logger,
    refresh: (service) => refreshers.get(service)?.(),
    onClose: () => client.cancel(),
  });
  return { resolver };
}

export const dnsAdapter = defineAdapter<DnsOptions>({
  scheme: 'dns',
  description:
    'DNS A/AAAA (name:port) and SRV (_svc._proto.name) records, re-resolved by TTL within bounds. Read-only.',
  capabilities: {
    watch: 'poll',
    register: false,
    ttl: false,
    weights: true,
    zones: false,
    metadata: false,
    listServices: false,
  },
  options: {
    hosts: {
      type: 'list',
      default: [],
      doc: 'Nameservers as ip[:port] (the URL authority, dns://127.0.0.1:53); none = the system nameservers.',
      check: (v: string[]) => v.map(checkNameserver).find(Boolean),
    },
    'min-refresh': {
      type: 'duration',
      default: 5000,
      min: 100,
      doc: 'Shortest interval between lookups of one service, whatever the TTL; also the rate limit of on-demand refreshes.',
    },
    'max-refresh': {
      type: 'duration',
      default: 30_000,
      min: 100,
      doc: 'Longest interval between lookups of one service, whatever the TTL: the bound on seeing a scale-up.',
    },
    timeout: {
      type: 'duration',
      default: 2000,
      min: 10,
      max: 60_000,
      doc: 'Per-try query timeout (c-ares doubles it on each retry round); also the TCP probe timeout.',
    },
    tries: {
      type: 'integer',
      default: 2,
      min: 1,
      max: 10,
      doc: 'Query attempts per nameserver before a lookup fails.',
    },
    family: {
      type: 'enum',
      values: ['any', 'ipv4', 'ipv6'],
      default: 'any',
      doc: 'Which address records to ask for: A and AAAA, A only, or AAAA only.',
    },
    srv: {
      type: 'string',
      doc: 'SRV prefix for plain service names, e.g. "_grpc._tcp": service "echo" is looked up as _grpc._tcp.echo.',
      check: (v: string) =>
        /^(_[A-Za-z0-9-]+\.)*_[A-Za-z0-9-]+$/.test(v) ? undefined : 'must be SRV labels such as "_grpc._tcp"',
    },
    port: {
      type: 'integer',
      min: 1,
      max: 65535,
      doc: 'Port for plain service names looked up as A/AAAA (when "srv" is not set).',
    },
    domain: {
      type: 'string',
      doc: 'Appended to single-label names, like a search domain: "echo" -> "echo.<domain>".',
      check: (v: string) =>
        isDnsName(v.replace(/\.$/, '')) ? undefined : 'must be a DNS name such as "default.svc.cluster.local"',
    },
    probe: {
      type: 'boolean',
      default: true,
      doc: 'With several SRV priority groups, TCP-probe the lowest and fall back to the next when none of its endpoints accepts a connection.',
    },
    'service-config': {
      type: 'boolean',
      default: true,
      doc: 'Read the gRPC service config from the TXT record _grpc_config.<name> (gRFC A2) with every lookup; false: no TXT query, no service config.',
    },
  },
  validate: checkDnsOptions,
  create(options, ctx) {
    return openDns(options, ctx);
  },
});

/** Registers the dns:// scheme. Idempotent. */
export function setup(): void {
  registerAdapter(dnsAdapter);
}
setup();
