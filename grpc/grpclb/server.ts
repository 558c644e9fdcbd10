import * as grpc from '@grpc/grpc-js';
import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';
import {
  Discovery,
  endpointKey,
  hostPort,
  silentLogger,
  type Endpoint,
  type Logger,
  type Resolver,
  type Snapshot,
  type Watch,
} from '../../core';
import {
  buildServerList,
  LoadReportAggregator,
  type LoadReport,
  type LoadTotals,
  type ServerListOptions,
} from '../../balancers/grpclb';
import {
  loadBalancerService,
  msToDuration,
  packIp,
  type LoadBalanceRequest,
  type LoadBalanceResponse,
  type ServerMsg,
} from './protocol';

export interface BalancerServerOptions {
  /** Where service names are resolved: a Discovery (or anything with a resolver), owned by the caller. */
  discovery?: { resolver: Resolver };
  /** Or a registry URL / config (Discovery.fromConfig); that Discovery is closed by stop(). */
  registry?: string;
  /** Port to bind; 0 (default) picks a free one. */
  port?: number;
  /** Address to bind. Default 0.0.0.0. */
  host?: string;
  credentials?: grpc.ServerCredentials;
  /** Repeat each endpoint in proportion to its weight. Default false. */
  expandByWeight?: boolean;
  /**
   * Give endpoints with a higher observed load fewer entries. `true` reads the endpoint metadata
   * key `loadMetadataKey` (a positive number the backend publishes, e.g. with
   * Registration.update); a function supplies the load itself. Default false.
   */
  expandByLoad?: boolean | ((e: Endpoint) => number | undefined);
  /** Default "load". */
  loadMetadataKey?: string;
  /** Upper bound of entries per endpoint when expanding. Default 10. */
  maxEntriesPerEndpoint?: number;
  /** Fraction of calls clients should drop (0..1), for every service or per service name. Default 0. */
  dropRate?: number | Record<string, number>;
  /** Token of drop entries. Default "drop". */
  dropToken?: string;
  /** client_stats_report_interval sent to clients, ms; 0 asks for no reports. Default 10000. */
  statsIntervalMs?: number;
  /** Called with every load report received (after it is added to the totals). */
  onReport?(service: string, report: LoadReport): void;
  logger?: Logger;
}

export interface BalancerServer {
  readonly port: number;
  readonly host: string;
  /** Aggregated load reports of one service, or of every service. */
  stats(service: string): LoadTotals;
  stats(): Record<string, LoadTotals>;
  /** BalanceLoad streams open now. */
  readonly streams: number;
  /** Change the drop rate of one service (or of all, with service undefined); clients get a new list now. */
  setDropRate(service: string | undefined, rate: number): void;
  /** Ends every stream (clients move to another replica or keep their list), then shuts down. */
  stop(): Promise<void>;
  /** A crash: connections cut now. */
  kill(): void;
}

const DEFAULT_STATS_INTERVAL_MS = 10_000;
const MAX_NAME_LENGTH = 256;

/** `echo:443` -> `echo`: the protocol leaves a port in the name to the balancer; ours ignores it. */
export function serviceOfName(name: string): string {
  return name.replace(/:\d+$/, '');
}

type Subscriber = (servers: ServerMsg[]) => void;

/**
 * One service's server list, shared by every stream asking for it: one resolver watch, one list
 * build per change (hostnames resolved to IPs, since the protocol carries packed addresses),
 * fanned out to the streams. Closed with its last stream.
 */
class ServiceFeed {
  private readonly subscribers = new Set<Subscriber>();
  private watch?: Watch;
  private endpoints?: Endpoint[];
  private current?: ServerMsg[];
  private currentKey = '';
  private seq = 0;

  constructor(
    readonly service: string,
    private readonly resolver: Resolver,
    private readonly listOptions: () => ServerListOptions,
    private readonly logger: Logger,
    private readonly onClose: () => void,
  ) {}

  add(sub: Subscriber): void {
    this.subscribers.add(sub);
    if (this.current) sub(this.current);
    this.watch ??= this.resolver.watch(this.service, (s) => this.onSnapshot(s));
  }

  remove(sub: Subscriber): void {
    this.subscribers.delete(sub);
    if (this.subscribers.size > 0) return;
    this.watch?.close();
    this.watch = undefined;
    this.onClose();
  }

  private onSnapshot(s: Snapshot): void {
    if (s.error) this.logger.warn({ service: this.service, code: s.error.code }, `grpclb balancer: ${s.error.message}`);
    // A registry outage before any good set sends nothing (clients keep their fallback or last list).
    if (s.error && s.error.code !== 'BAD_ENTRY' && s.endpoints.length === 0 && !this.endpoints) return;
    this.endpoints = s.endpoints;
    void this.rebuild();
  }

  /** Builds and sends the list again (drop rate changed, or a new snapshot). Later builds win. */
  async rebuild(): Promise<void> {
    const endpoints = this.endpoints;
    if (!endpoints) return;
    const seq = ++this.seq;
    const entries = buildServerList(endpoints, this.listOptions());
    const ips = new Map<string, string | undefined>();
    await Promise.all(
      [...new Set(entries.flatMap((e) => (e.drop ? [] : [e.endpoint.host])))].map(async (h) => {
        if (isIP(h)) return ips.set(h, h);
        try {
          ips.set(h, (await dns.lookup(h)).address);
        } catch (err) {
          this.logger.warn(
            { service: this.service, host: h, err: (err as Error).message },
            'grpclb balancer: cannot resolve an endpoint host; left out of the list',
          );
          ips.set(h, undefined);
        }
      }),
    );
    if (seq !== this.seq) return;
    const servers: ServerMsg[] = [];
    for (const e of entries) {
      if (e.drop) {
        servers.push({ drop: true, loadBalanceToken: e.token });
        continue;
      }
      const ip = ips.get(e.endpoint.host);
      const packed = ip !== undefined ? packIp(ip) : undefined;
      if (!packed) continue;
      servers.push({ ipAddress: packed, port: e.endpoint.port, loadBalanceToken: e.token });
    }
    const key = JSON.stringify(
      servers.map((s) => [
        s.drop ? 'drop' : endpointKey({ host: [...(s.ipAddress ?? [])].join('.'), port: s.port ?? 0 }),
        s.loadBalanceToken,
      ]),
    );
    if (this.current && key === this.currentKey) return;
    this.current = servers;
    this.currentKey = key;
    for (const sub of this.subscribers) sub(servers);
  }
}

function reportOf(m: NonNullable<LoadBalanceRequest['clientStats']>): LoadReport {
  const drops: Record<string, number> = {};
  for (const d of m.callsFinishedWithDrop ?? []) {
    const token = d.loadBalanceToken ?? '';
    drops[token] = (drops[token] ?? 0) + Number(d.numCalls ?? 0);
  }
  return {
    callsStarted: Number(m.numCallsStarted ?? 0),
    callsFinished: Number(m.numCallsFinished ?? 0),
    callsFailedToSend: Number(m.numCallsFinishedWithClientFailedToSend ?? 0),
    callsKnownReceived: Number(m.numCallsFinishedKnownReceived ?? 0),
    drops,
  };
}

/**
 * Starts a grpclb balancer: `grpc.lb.v1.LoadBalancer/BalanceLoad` over any Wayfinder registry.
 *
 * Per stream: the first message must be an initial request naming the service (else
 * INVALID_ARGUMENT); the balancer answers with an initial response carrying
 * client_stats_report_interval, then sends the complete ServerList whenever the service's
 * endpoint set (or its drop rate) changes, and adds each ClientStats report to the service's
 * totals. Streams of the same service share one registry watch. A registry outage keeps the last
 * list (nothing is sent); an empty set is sent as an empty list.
 */
export async function startBalancerServer(opts: BalancerServerOptions): Promise<BalancerServer> {
  if (!opts || typeof opts !== 'object') throw new TypeError('startBalancerServer(): options must be an object');
  if (!opts.discovery === !opts.registry)
    throw new TypeError('startBalancerServer(): give exactly one of "discovery" and "registry"');
  const statsIntervalMs = opts.statsIntervalMs ?? DEFAULT_STATS_INTERVAL_MS;
  if (!(Number.isFinite(statsIntervalMs) && statsIntervalMs >= 0))
    throw new TypeError('startBalancerServer(): "statsIntervalMs" must be a non-negative number');
  const dropRates: Record<string, number> = {};
  let defaultDrop = 0;
  const checkRate = (r: unknown, what: string) => {
    if (!(typeof r === 'number' && r >= 0 && r <= 1))
      throw new TypeError(`startBalancerServer(): ${what} must be a number within 0..1 (got ${JSON.stringify(r)})`);
    return r;
  };
  if (typeof opts.dropRate === 'number') defaultDrop = checkRate(opts.dropRate, '"dropRate"');
  else if (opts.dropRate)
    for (const [s, r] of Object.entries(opts.dropRate)) dropRates[s] = checkRate(r, `"dropRate.${s}"`);

  const logger = opts.logger ?? silentLogger;
  const owned = opts.registry ? await Discovery.fromConfig(opts.registry, { logger }) : undefined;
  const resolver = owned ? owned.resolver : opts.discovery!.resolver;
  const loadKey = opts.loadMetadataKey ?? 'load';
  const loadOf =
    typeof opts.expandByLoad === 'function'
      ? opts.expandByLoad
      : opts.expandByLoad
        ? (e: Endpoint) => {
            const v = Number(e.metadata[loadKey]);
            return Number.isFinite(v) && v > 0 ? v : undefined;
          }
        : undefined;
  const listOptionsFor = (service: string) => (): ServerListOptions => ({
    expandByWeight: !!opts.expandByWeight,
    loadOf,
    maxEntriesPerEndpoint: opts.maxEntriesPerEndpoint,
    dropRate: dropRates[service] ?? defaultDrop,
    dropToken: opts.dropToken,
  });

  const aggregator = new LoadReportAggregator();
  const feeds = new Map<string, ServiceFeed>();
  const calls = new Set<grpc.ServerDuplexStream<LoadBalanceRequest, LoadBalanceResponse>>();

  function balanceLoad(call: grpc.ServerDuplexStream<LoadBalanceRequest, LoadBalanceResponse>): void {
    calls.add(call);
    let service: string | undefined;
    let feed: ServiceFeed | undefined;
    let closed = false;
    const send: Subscriber = (servers) => {
      if (!closed) call.write({ serverList: { servers } });
    };
    const cleanup = () => {
      if (closed) return;
      closed = true;
      calls.delete(call);
      if (service !== undefined) aggregator.clientClosed(service);
      feed?.remove(send);
    };
    call.on('data', (req: LoadBalanceRequest) => {
      if (closed) return;
      if (service === undefined) {
        const name = req.initialRequest?.name;
        if (req.loadBalanceRequestType !== 'initialRequest' || !name || name.length >= MAX_NAME_LENGTH) {
          cleanup();
          call.emit('error', {
            code: grpc.status.INVALID_ARGUMENT,
            details:
              'grpclb balancer: the first message must be an initial_request with a service name (under 256 bytes)',
          });
          return;
        }
        service = serviceOfName(name);
        aggregator.clientOpened(service);
        call.write({
          initialResponse: statsIntervalMs > 0 ? { clientStatsReportInterval: msToDuration(statsIntervalMs) } : {},
        });
        const s = service;
        feed = feeds.get(s);
        if (!feed) {
          feed = new ServiceFeed(s, resolver, listOptionsFor(s), logger, () => feeds.delete(s));
          feeds.set(s, feed);
        }
        feed.add(send);
        return;
      }
      if (req.clientStats) {
        const report = reportOf(req.clientStats);
        aggregator.add(service, report);
        try {
          opts.onReport?.(service, report);
        } catch (err) {
          logger.warn({ err }, 'grpclb balancer: onReport threw; ignored');
        }
      }
    });
    call.on('end', () => {
      cleanup();
      call.end();
    });
    call.on('cancelled', cleanup);
    call.on('error', cleanup);
    call.on('close', cleanup);
  }

  const server = new grpc.Server();
  server.addService(loadBalancerService(), { BalanceLoad: balanceLoad });
  const host = opts.host ?? '0.0.0.0';
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        hostPort(host, opts.port ?? 0),
        opts.credentials ?? grpc.ServerCredentials.createInsecure(),
        (err, p) => (err ? reject(err) : resolve(p)),
      ),
    );
  } catch (e) {
    await owned?.close();
    throw e;
  }

  let stopping: Promise<void> | undefined;
  const release = async () => {
    await owned?.close().catch((err) => logger.warn({ err }, 'grpclb balancer: closing the registry failed'));
  };
  function stats(): Record<string, LoadTotals>;
  function stats(service: string): LoadTotals;
  function stats(service?: string): LoadTotals | Record<string, LoadTotals> {
    return service === undefined ? aggregator.all() : aggregator.get(service);
  }
  return {
    port,
    host,
    stats,
    get streams() {
      return calls.size;
    },
    setDropRate(service, rate) {
      checkRate(rate, 'the drop rate');
      if (service === undefined) defaultDrop = rate;
      else dropRates[service] = rate;
      for (const f of feeds.values()) if (service === undefined || f.service === service) void f.rebuild();
    },
    stop() {
      stopping ??= (async () => {
        for (const c of [...calls]) c.end();
        await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
        await release();
      })();
      return stopping;
    },
    kill() {
      server.forceShutdown();
      stopping ??= release();
    },
  };
}
