import * as grpc from '@grpc/grpc-js';
import { silentLogger, type Endpoint, type Logger } from '../../core';
import { LoadReportAggregator, type LoadReport, type LoadTotals, type ServerListOptions } from '../../balancers/grpclb';
import { loadBalancerService, msToDuration, type LoadBalanceRequest, type LoadBalanceResponse } from './protocol';
import { ServiceFeed, type Subscriber } from './service-feed';
import { RegistryServer, type RegistryServerOptions } from '../control-plane';

export interface BalancerServerOptions extends RegistryServerOptions {
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
 * totals. Endpoint sets come from the registry's catalog (one registry-wide stream) or one watch
 * per service (`feed`); streams of the same service share one list. A registry outage keeps the
 * last list (nothing is sent); an empty set, or a service the registry does not hold, is sent as an
 * empty list.
 */
export async function startBalancerServer(opts: BalancerServerOptions): Promise<BalancerServer> {
  const fn = 'startBalancerServer()';
  if (!opts || typeof opts !== 'object') throw new TypeError(`${fn}: options must be an object`);
  const statsIntervalMs = opts.statsIntervalMs ?? DEFAULT_STATS_INTERVAL_MS;
  if (!(Number.isFinite(statsIntervalMs) && statsIntervalMs >= 0))
    throw new TypeError(`${fn}: "statsIntervalMs" must be a non-negative number`);
  const drops = new DropRates(opts.dropRate);
  const logger = opts.logger ?? silentLogger;
  const rs = await RegistryServer.open(fn, 'grpclb balancer', opts, logger);
  const st = streamState(opts, rs, drops, statsIntervalMs, logger);
  rs.server.addService(loadBalancerService(), { BalanceLoad: (call: BalanceLoadCall) => balanceLoad(call, st) });
  await rs.listen(opts);
  return balancerHandle(rs, st, drops);
}

/** What the streams share: the totals, one ServiceFeed per asked service, how lists are built. */
function streamState(
  opts: BalancerServerOptions,
  rs: RegistryServer,
  drops: DropRates,
  statsIntervalMs: number,
  logger: Logger,
): StreamState {
  const loadOf = loadFunction(opts);
  return {
    statsIntervalMs,
    logger,
    onReport: opts.onReport,
    aggregator: new LoadReportAggregator(),
    feeds: new Map(),
    rs,
    listOptionsFor: (service) => () => ({
      expandByWeight: !!opts.expandByWeight,
      loadOf,
      maxEntriesPerEndpoint: opts.maxEntriesPerEndpoint,
      dropRate: drops.of(service),
      dropToken: opts.dropToken,
    }),
  };
}

/** The BalancerServer API over a listening server. */
function balancerHandle(rs: RegistryServer, st: StreamState, drops: DropRates): BalancerServer {
  const { aggregator, feeds } = st;
  function stats(): Record<string, LoadTotals>;
  function stats(service: string): LoadTotals;
  function stats(service?: string): LoadTotals | Record<string, LoadTotals> {
    return service === undefined ? aggregator.all() : aggregator.get(service);
  }
  return {
    port: rs.port,
    host: rs.host,
    stats,
    get streams() {
      return rs.streams;
    },
    setDropRate(service, rate) {
      drops.set(service, rate);
      for (const f of feeds.values()) if (service === undefined || f.service === service) void f.rebuild();
    },
    stop: () => rs.stop(),
    kill: () => rs.kill(),
  };
}

function checkRate(r: unknown, what: string): number {
  if (!(typeof r === 'number' && r >= 0 && r <= 1))
    throw new TypeError(`startBalancerServer(): ${what} must be a number within 0..1 (got ${JSON.stringify(r)})`);
  return r;
}

/** The drop rate per service (and the default for the others), validated on every write. */
class DropRates {
  private readonly rates: Record<string, number> = {};
  private fallback = 0;
  constructor(given: BalancerServerOptions['dropRate']) {
    if (typeof given === 'number') this.fallback = checkRate(given, '"dropRate"');
    else if (given) for (const [s, r] of Object.entries(given)) this.rates[s] = checkRate(r, `"dropRate.${s}"`);
  }
  of(service: string): number {
    return this.rates[service] ?? this.fallback;
  }
  set(service: string | undefined, rate: number): void {
    checkRate(rate, 'the drop rate');
    if (service === undefined) this.fallback = rate;
    else this.rates[service] = rate;
  }
}

/** The load of an endpoint for expandByLoad: the given function, or the metadata key's number. */
function loadFunction(opts: BalancerServerOptions): ServerListOptions['loadOf'] {
  if (typeof opts.expandByLoad === 'function') return opts.expandByLoad;
  if (!opts.expandByLoad) return undefined;
  const loadKey = opts.loadMetadataKey ?? 'load';
  return (e: Endpoint) => {
    const v = Number(e.metadata[loadKey]);
    return Number.isFinite(v) && v > 0 ? v : undefined;
  };
}

type BalanceLoadCall = grpc.ServerDuplexStream<LoadBalanceRequest, LoadBalanceResponse>;

/** What the streams of one balancer server share. */
interface StreamState {
  statsIntervalMs: number;
  logger: Logger;
  onReport: BalancerServerOptions['onReport'];
  aggregator: LoadReportAggregator;
  feeds: Map<string, ServiceFeed>;
  rs: RegistryServer;
  listOptionsFor(service: string): () => ServerListOptions;
}

/** One BalanceLoad stream: an initial request naming the service, then client stats reports. */
function balanceLoad(call: BalanceLoadCall, st: StreamState): void {
  const { aggregator, feeds, logger } = st;
  let service: string | undefined;
  let feed: ServiceFeed | undefined;
  let closed = false;
  const send: Subscriber = (servers) => {
    if (!closed) call.write({ serverList: { servers } });
  };
  const cleanup = st.rs.track(call, () => {
    closed = true;
    if (service !== undefined) aggregator.clientClosed(service);
    feed?.remove(send);
  });
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
        initialResponse: st.statsIntervalMs > 0 ? { clientStatsReportInterval: msToDuration(st.statsIntervalMs) } : {},
      });
      const s = service;
      feed = feeds.get(s);
      if (!feed) {
        feed = new ServiceFeed(s, st.rs.feed, st.listOptionsFor(s), logger, () => feeds.delete(s));
        feeds.set(s, feed);
      }
      feed.add(send);
      return;
    }
    if (req.clientStats) {
      const report = reportOf(req.clientStats);
      aggregator.add(service, report);
      try {
        st.onReport?.(service, report);
      } catch (err) {
        logger.warn({ err }, 'grpclb balancer: onReport threw; ignored');
      }
    }
  });
}
