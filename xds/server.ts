import '../builtins'; // the built-in registries and balancers
import type * as grpc from '@grpc/grpc-js';
import { endpointKey, silentLogger, type Logger, type Snapshot, type Watch } from '../core';
import { ipAddresses, RegistryServer, type EndpointFeed, type RegistryServerOptions } from '../grpc/control-plane';
import { clientQuirks, NO_QUIRKS, type ClientQuirks } from './client-quirks';
import { checkXdsConfig, loadXdsConfig, resolvePolicy, type ResolvedPolicy, type XdsConfig } from './config';
import {
  adsService,
  durationOf,
  lrsService,
  TYPE,
  TYPE_URLS,
  xdsRoot,
  type Any,
  type DiscoveryRequest,
  type DiscoveryResponse,
  type LoadStatsRequest,
  type LoadStatsResponse,
  type NodeMsg,
  type TypeUrl,
} from './protocol';
import {
  buildAssignment,
  buildCluster,
  buildListener,
  buildRoute,
  serviceOfListener,
  type AddressedEndpoint,
} from './resources';
import { LoadStatsAggregator, type XdsLoadTotals } from './lrs';

export interface XdsServerOptions extends RegistryServerOptions {
  /** Per-service policy (lb policy, ring hash, outlier detection, max requests): an object or a .json/.yaml path. */
  config?: XdsConfig | string;
  /** Routes inline in the Listener instead of served over RDS. Default false (RDS). */
  inlineRoutes?: boolean;
  /** Ask clients for load reports (Cluster.lrs_server = self). Default true. */
  loadReporting?: boolean;
  /** load_reporting_interval asked of clients, ms. Default 10000. */
  loadReportIntervalMs?: number;
  /**
   * How long an LDS/CDS answer waits for a subscribed service whose registry has not answered yet
   * (the first snapshot), before it is sent without that service. Default 1000 ms.
   */
  pendingWaitMs?: number;
  /**
   * Clients whose ring_hash crashes them (C-core 1.50/1.51, told by their Node's user agent; see
   * client-quirks.ts) get ring_hash services as round_robin, with one warning per stream and
   * service. Default true; false for fleets whose C-core carries the fix (grpc/grpc#32012).
   */
  cCoreRingHashGuard?: boolean;
  /** Called with every NACK: the client's node id, the type, the rejected nonce and the client's error text. */
  onNack?(nack: XdsNack): void;
  logger?: Logger;
}

export interface XdsNack {
  node: string;
  typeUrl: string;
  nonce: string;
  version: string;
  message: string;
}

export interface XdsServer {
  readonly port: number;
  readonly host: string;
  /** ADS streams open now. */
  readonly streams: number;
  /** Services watched now (subscribed by at least one stream). */
  readonly services: number;
  /** Replace the per-service policy; subscribed clients get the changed resources now. */
  setConfig(config: XdsConfig | string): void;
  /** Aggregated load reports of one service (cluster), or of every service. */
  stats(service: string): XdsLoadTotals;
  stats(): Record<string, XdsLoadTotals>;
  /**
   * Ends every stream (clients keep their configuration and reconnect), waits up to 1 s for them to
   * close, then shuts down.
   */
  stop(): Promise<void>;
  /** A crash: connections cut now. */
  kill(): void;
}

const DEFAULT_LRS_INTERVAL_MS = 10_000;
const DEFAULT_PENDING_WAIT_MS = 1000;
/** stop(): how long streams may take to close after being ended before connections are cut. */
const STOP_GRACE_MS = 1000;
/** LDS and CDS responses carry every subscribed resource; RDS and EDS may carry only changed ones. */
const COMPLETE: ReadonlySet<string> = new Set([TYPE.listener, TYPE.cluster]);
/** Flush order when several types changed at once (make before break): CDS, EDS, LDS, RDS. */
const ORDER: readonly TypeUrl[] = [TYPE.cluster, TYPE.endpoint, TYPE.listener, TYPE.route];

interface Built {
  any: Any;
  /** Changes whenever the encoded resource changes (server-wide counter). */
  version: number;
  /** A client-specific substitute for the shared resource (ring_hash sent as round_robin). */
  substitute?: true;
}

let builtCounter = 0;
function rebuilt(prev: Built | undefined, any: Any): Built {
  if (prev && Buffer.compare(prev.any.value, any.value) === 0) return prev;
  return { any, version: ++builtCounter };
}

/**
 * One service's resources, shared by every stream that subscribes to any of them: one feed watch,
 * one build per change, fanned out to the subscribed streams. Closed with its last subscriber.
 */
class ServiceEntry {
  /**
   * pending: the registry has not answered yet; absent: the registry does not hold the service and
   * it is not configured.
   */
  state: 'pending' | 'present' | 'absent' = 'pending';
  readonly pendingSince = Date.now();
  private watch?: Watch;
  private endpoints?: AddressedEndpoint[];
  /** Whether the registry holds the service (its feed says so). */
  private listed = false;
  private seq = 0;
  private listeners = new Map<string, Built>();
  private route?: Built;
  private cluster?: Built;
  private assignment?: Built;
  /** The Cluster and assignment of a ring_hash service as round_robin, for clients ring_hash crashes (built on first use). */
  private roundRobin?: { cluster: Built; assignment: Built };
  /** Streams subscribed to resources of this service, with how many (type, name) subscriptions each. */
  readonly streams = new Map<AdsStream, number>();

  constructor(
    readonly service: string,
    private readonly ctx: ServerContext,
  ) {}

  start(): void {
    this.watch ??= this.ctx.feed.watch(this.service, (s, listed) => this.onSnapshot(s, listed));
  }

  close(): void {
    this.watch?.close();
    this.watch = undefined;
    this.seq++;
  }

  private get policy(): ResolvedPolicy {
    return resolvePolicy(this.ctx.config, this.service);
  }

  resource(type: TypeUrl, name: string, quirks: ClientQuirks = NO_QUIRKS): Built | undefined {
    if (this.state !== 'present') return undefined;
    if (quirks.ringHashCrash && (type === TYPE.cluster || type === TYPE.endpoint)) {
      const policy = this.policy;
      if (policy.lbPolicy === 'ring_hash') {
        const rr = (this.roundRobin ??= this.buildRoundRobin(policy));
        return type === TYPE.cluster ? rr.cluster : rr.assignment;
      }
    }
    switch (type) {
      case TYPE.listener: {
        let l = this.listeners.get(name);
        if (!l) this.listeners.set(name, (l = rebuilt(undefined, buildListener(name, this.policy, this.ctx.routes))));
        return l;
      }
      case TYPE.route:
        return (this.route ??= rebuilt(undefined, buildRoute(this.service, this.policy)));
      case TYPE.cluster:
        return (this.cluster ??= rebuilt(undefined, buildCluster(this.service, this.policy, this.ctx)));
      default:
        return (this.assignment ??= rebuilt(
          undefined,
          buildAssignment(this.service, this.endpoints ?? [], this.policy),
        ));
    }
  }

  /** A ring_hash policy's Cluster and assignment as round_robin's (same endpoints, round_robin's weight mapping). */
  private buildRoundRobin(policy: ResolvedPolicy, prev?: { cluster: Built; assignment: Built }) {
    const rr: ResolvedPolicy = { ...policy, lbPolicy: 'round_robin' };
    const cluster = rebuilt(prev?.cluster, buildCluster(this.service, rr, this.ctx));
    const assignment = rebuilt(prev?.assignment, buildAssignment(this.service, this.endpoints ?? [], rr));
    cluster.substitute = assignment.substitute = true;
    return { cluster, assignment };
  }

  private onSnapshot(s: Snapshot, listed: boolean): void {
    if (s.error) this.ctx.logger.warn({ service: this.service, code: s.error.code }, `xds server: ${s.error.message}`);
    // An outage keeps what the service was (pending before any good set: clients keep what they have).
    if (s.error && s.error.code !== 'BAD_ENTRY') {
      if (!this.endpoints && s.endpoints.length === 0) return;
      listed = this.endpoints ? this.listed : listed;
    }
    void this.resolveAndApply(s, listed);
  }

  private async resolveAndApply(s: Snapshot, listed: boolean): Promise<void> {
    const seq = ++this.seq;
    const eps = await addressed(s, this.service, this.ctx.logger);
    if (seq !== this.seq) return;
    this.endpoints = eps;
    this.listed = listed;
    this.update(true);
  }

  /** Rebuilds every resource (endpoints changed, or the policy) and tells the streams what changed. */
  update(endpointsChanged: boolean): void {
    if (!this.endpoints) return;
    const wasPresent = this.state === 'present';
    const state = this.listed || this.ctx.config.services?.[this.service] ? 'present' : 'absent';
    const stateChanged = this.state !== state;
    this.state = state;
    const changed = new Set<TypeUrl>();
    if (this.state === 'present') {
      const policy = this.policy;
      const prev = { route: this.route, cluster: this.cluster, assignment: this.assignment };
      if (!wasPresent || !endpointsChanged) {
        for (const [name, l] of this.listeners)
          this.listeners.set(name, rebuilt(l, buildListener(name, policy, this.ctx.routes)));
        this.route = rebuilt(this.route, buildRoute(this.service, policy));
        this.cluster = rebuilt(this.cluster, buildCluster(this.service, policy, this.ctx));
        if (this.route !== prev.route) changed.add(TYPE.route);
        if (this.cluster !== prev.cluster) changed.add(TYPE.cluster);
        changed.add(TYPE.listener);
      }
      this.assignment = rebuilt(this.assignment, buildAssignment(this.service, this.endpoints, policy));
      if (this.assignment !== prev.assignment) changed.add(TYPE.endpoint);
      if (this.roundRobin) {
        const before = this.roundRobin;
        this.roundRobin = policy.lbPolicy === 'ring_hash' ? this.buildRoundRobin(policy, before) : undefined;
        if (this.roundRobin?.cluster !== before.cluster) changed.add(TYPE.cluster);
        if (this.roundRobin?.assignment !== before.assignment) changed.add(TYPE.endpoint);
      }
    }
    if (stateChanged) for (const t of TYPE_URLS) changed.add(t);
    if (this.state === 'absent') {
      // Built again if the service comes back, under new versions (a client may still hold these).
      this.listeners.clear();
      this.route = this.cluster = this.assignment = this.roundRobin = undefined;
    }
    if (changed.size === 0) return;
    for (const stream of this.streams.keys()) stream.changed(this.service, changed);
  }
}

/** Hostnames resolved to IP literals (EDS requires them); duplicates by address dropped. */
async function addressed(s: Snapshot, service: string, logger: Logger): Promise<AddressedEndpoint[]> {
  const ips = await ipAddresses(
    s.endpoints.map((e) => e.host),
    (host, err) =>
      logger.warn(
        { service, host, err: err.message },
        'xds server: cannot resolve an endpoint host; left out of the assignment',
      ),
  );
  const out = new Map<string, AddressedEndpoint>();
  for (const e of s.endpoints) {
    const ip = ips.get(e.host);
    if (ip === undefined) continue;
    const key = endpointKey({ host: ip, port: e.port });
    if (!out.has(key)) out.set(key, { ...e, ip });
  }
  return [...out.values()];
}

interface ServerContext {
  feed: EndpointFeed;
  config: XdsConfig;
  routes: { inline: boolean };
  loadReporting: boolean;
  cCoreRingHashGuard: boolean;
  logger: Logger;
  pendingWaitMs: number;
  entry(service: string): ServiceEntry;
  release(entry: ServiceEntry): void;
  onNack?(nack: XdsNack): void;
}

interface TypeState {
  /** Subscribed names -> their service entry. */
  subs: Map<string, ServiceEntry>;
  /** What the last responses carried, per name (version), for RDS/EDS diffs and LDS/CDS change detection. */
  sent: Map<string, number>;
  /** Set when the subscription changed since the last response: the next flush answers even if empty. */
  answerDue: boolean;
  nonce: string;
  versionCounter: number;
  pendingTimer?: NodeJS.Timeout;
}

/** One ADS stream: its node, and per type its subscription, what it was sent and the last nonce. */
class AdsStream {
  node = '';
  /** What this client's build needs worked around (client-quirks.ts), told from its Node. */
  private quirks: ClientQuirks = NO_QUIRKS;
  /** Services this stream got a substitute for (one warning each). */
  private readonly substituted = new Set<string>();
  private readonly types = new Map<TypeUrl, TypeState>();
  private readonly dirty = new Set<TypeUrl>();
  private flushScheduled = false;
  private nonceCounter = 0;
  closed = false;

  constructor(
    private readonly call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>,
    private readonly ctx: ServerContext,
  ) {}

  onRequest(req: DiscoveryRequest): void {
    if (this.closed) return;
    if (req.node && !this.node) {
      this.node = nodeName(req.node);
      if (this.ctx.cCoreRingHashGuard) this.quirks = clientQuirks(req.node);
    }
    const type = req.type_url as TypeUrl;
    if (!TYPE_URLS.includes(type)) {
      this.ctx.logger.debug(
        { node: this.node, typeUrl: req.type_url },
        'xds server: request for an unknown type ignored',
      );
      return;
    }
    let ts = this.types.get(type);
    if (!ts) {
      ts = { subs: new Map(), sent: new Map(), answerDue: false, nonce: '', versionCounter: 0 };
      this.types.set(type, ts);
    }
    const nonce = req.response_nonce ?? '';
    // A request answering an older response is stale: the client sends another after the latest one.
    // (A nonce before anything was sent on this stream comes from a previous stream: not stale.)
    if (nonce !== '' && ts.nonce !== '' && nonce !== ts.nonce) return;
    if (req.error_detail && nonce !== '') {
      const nack: XdsNack = {
        node: this.node,
        typeUrl: type,
        nonce,
        version: req.version_info ?? '',
        message: req.error_detail.message ?? '',
      };
      this.ctx.logger.warn(nack, `xds server: client ${this.node} rejected ${type} (nonce ${nonce}): ${nack.message}`);
      try {
        this.ctx.onNack?.(nack);
      } catch (err) {
        this.ctx.logger.warn({ err }, 'xds server: onNack threw; ignored');
      }
      // The rejected resources are not resent: they are sent again only when they change.
    }
    this.subscribe(type, ts, req.resource_names ?? []);
  }

  private subscribe(type: TypeUrl, ts: TypeState, names: string[]): void {
    const wanted = new Set(names);
    let changed = false;
    for (const [name, entry] of ts.subs) {
      if (wanted.has(name)) continue;
      ts.subs.delete(name);
      ts.sent.delete(name);
      this.unref(entry);
      changed = true;
    }
    for (const name of wanted) {
      if (ts.subs.has(name)) continue;
      const entry = this.ctx.entry(type === TYPE.listener ? serviceOfListener(name) : name);
      ts.subs.set(name, entry);
      entry.streams.set(this, (entry.streams.get(this) ?? 0) + 1);
      entry.start();
      changed = true;
    }
    if (!changed) return;
    ts.answerDue = true;
    this.markDirty(type);
  }

  private unref(entry: ServiceEntry): void {
    const n = (entry.streams.get(this) ?? 1) - 1;
    if (n > 0) entry.streams.set(this, n);
    else {
      entry.streams.delete(this);
      this.ctx.release(entry);
    }
  }

  /** Called by a service entry: these types of its resources changed. */
  changed(service: string, types: ReadonlySet<TypeUrl>): void {
    for (const t of types) {
      const ts = this.types.get(t);
      if (!ts) continue;
      for (const entry of ts.subs.values())
        if (entry.service === service) {
          this.markDirty(t);
          break;
        }
    }
  }

  private markDirty(type: TypeUrl): void {
    this.dirty.add(type);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    for (const t of ORDER) {
      if (!this.dirty.has(t)) continue;
      this.dirty.delete(t);
      this.flushType(t);
    }
  }

  private flushType(type: TypeUrl): void {
    const ts = this.types.get(type)!;
    const resources: Any[] = [];
    // Answer once the registry has spoken for every subscribed service (or the wait is over), so a
    // new subscription is answered with its resource rather than without it first.
    const now = Date.now();
    let waitUntil = 0;
    for (const entry of ts.subs.values())
      if (entry.state === 'pending' && now - entry.pendingSince < this.ctx.pendingWaitMs)
        waitUntil = Math.max(waitUntil, entry.pendingSince + this.ctx.pendingWaitMs);
    if (waitUntil > 0) {
      clearTimeout(ts.pendingTimer);
      ts.pendingTimer = setTimeout(() => this.markDirty(type), waitUntil - now);
      return;
    }
    if (COMPLETE.has(type)) {
      // LDS/CDS: every subscribed resource that exists, or nothing if nothing changed.
      const versions = new Map<string, number>();
      for (const [name, entry] of ts.subs) {
        const r = entry.resource(type, name, this.quirks);
        if (!r) continue;
        if (r.substitute) this.warnSubstitute(entry.service);
        versions.set(name, r.version);
        resources.push(r.any);
      }
      const same = versions.size === ts.sent.size && [...versions].every(([n, v]) => ts.sent.get(n) === v);
      if (same && !ts.answerDue) return;
      ts.sent = versions;
    } else {
      for (const [name, entry] of ts.subs) {
        const r = entry.resource(type, name, this.quirks);
        if (!r || ts.sent.get(name) === r.version) continue;
        ts.sent.set(name, r.version);
        resources.push(r.any);
      }
      if (resources.length === 0 && !ts.answerDue) return;
    }
    ts.answerDue = false;
    ts.nonce = String(++this.nonceCounter);
    ts.versionCounter++;
    this.call.write({ version_info: String(ts.versionCounter), resources, type_url: type, nonce: ts.nonce });
  }

  private warnSubstitute(service: string): void {
    if (this.substituted.has(service)) return;
    this.substituted.add(service);
    const why = this.quirks.ringHashCrash;
    this.ctx.logger.warn(
      { node: this.node, service, reason: why },
      `xds server: client ${this.node} gets service ${service} as round_robin instead of ring_hash: ${why}`,
    );
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ts of this.types.values()) {
      clearTimeout(ts.pendingTimer);
      for (const entry of ts.subs.values()) this.unref(entry);
      ts.subs.clear();
    }
  }
}

function nodeName(n: NodeMsg): string {
  return n.id || `${n.user_agent_name ?? 'unknown'}${n.user_agent_version ? ` ${n.user_agent_version}` : ''}`;
}

/**
 * Starts an xDS control plane: State-of-the-World ADS v3 (`StreamAggregatedResources`) and LRS
 * (`StreamLoadStats`) over any Wayfinder registry. See docs/xds.md for the resource mapping.
 *
 * Per stream and per type the server keeps the client's subscription, what it last sent and the
 * last nonce: a request whose response_nonce is older than the last response is stale and ignored;
 * a NACK (error_detail) is logged with the client's text and nothing is resent until the resource
 * changes; LDS/CDS responses carry every subscribed resource that exists, RDS/EDS only changed ones.
 * Endpoint sets come from the registry's catalog or one watch per service (`feed`); streams
 * subscribed to the same service share one service entry, closed with the last of them. A service
 * exists while the registry holds it (or the config names it); else it is answered as absent.
 */
export async function startXdsServer(opts: XdsServerOptions): Promise<XdsServer> {
  const fn = 'startXdsServer()';
  if (!opts || typeof opts !== 'object') throw new TypeError(`${fn}: options must be an object`);
  const loadReportIntervalMs = opts.loadReportIntervalMs ?? DEFAULT_LRS_INTERVAL_MS;
  if (!(Number.isFinite(loadReportIntervalMs) && loadReportIntervalMs > 0))
    throw new TypeError(`${fn}: "loadReportIntervalMs" must be a positive number`);
  if (opts.cCoreRingHashGuard !== undefined && typeof opts.cCoreRingHashGuard !== 'boolean')
    throw new TypeError(`${fn}: "cCoreRingHashGuard" must be a boolean`);
  const pendingWaitMs = opts.pendingWaitMs ?? DEFAULT_PENDING_WAIT_MS;
  if (!(Number.isFinite(pendingWaitMs) && pendingWaitMs >= 0))
    throw new TypeError(`${fn}: "pendingWaitMs" must be a non-negative number`);
  const config = configOf(opts.config);
  xdsRoot(); // load the protos now: a broken install fails here, not on the first client

  const logger = opts.logger ?? silentLogger;
  const rs = await RegistryServer.open(fn, 'xds server', opts, logger);
  const entries = new Map<string, ServiceEntry>();
  const ctx: ServerContext = {
    feed: rs.feed,
    config,
    routes: { inline: !!opts.inlineRoutes },
    loadReporting: opts.loadReporting ?? true,
    cCoreRingHashGuard: opts.cCoreRingHashGuard ?? true,
    logger,
    pendingWaitMs,
    onNack: opts.onNack,
    entry(service) {
      let e = entries.get(service);
      if (!e) entries.set(service, (e = new ServiceEntry(service, ctx)));
      return e;
    },
    release(entry) {
      if (entry.streams.size > 0) return;
      entry.close();
      entries.delete(entry.service);
    },
  };
  const streams = new Set<AdsStream>();
  const aggregator = new LoadStatsAggregator();
  rs.server.addService(adsService(), {
    StreamAggregatedResources: (call: AdsCall) => streamAggregatedResources(call, rs, ctx, streams),
  });
  rs.server.addService(lrsService(), {
    StreamLoadStats: (call: LrsCall) => streamLoadStats(call, rs, aggregator, loadReportIntervalMs),
  });
  rs.onClose(() => {
    for (const s of [...streams]) s.close();
    for (const e of entries.values()) e.close();
    entries.clear();
  });
  await rs.listen(opts);
  return xdsHandle(rs, ctx, streams, entries, aggregator);
}

function configOf(c: XdsConfig | string | undefined): XdsConfig {
  return typeof c === 'string' ? loadXdsConfig(c) : checkXdsConfig(c);
}

type AdsCall = grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>;
type LrsCall = grpc.ServerDuplexStream<LoadStatsRequest, LoadStatsResponse>;

/** One ADS stream, served by an AdsStream until it ends. */
function streamAggregatedResources(call: AdsCall, rs: RegistryServer, ctx: ServerContext, streams: Set<AdsStream>) {
  const s = new AdsStream(call, ctx);
  streams.add(s);
  rs.track(call, () => {
    streams.delete(s);
    s.close();
  });
  call.on('data', (req: DiscoveryRequest) => s.onRequest(req));
}

/** One LRS stream: answered once (report every cluster, at this interval), then reports summed. */
function streamLoadStats(call: LrsCall, rs: RegistryServer, aggregator: LoadStatsAggregator, intervalMs: number) {
  const stream = aggregator.open();
  let answered = false;
  rs.track(call, () => stream.close());
  call.on('data', (req: LoadStatsRequest) => {
    if (!answered) {
      answered = true;
      call.write({ send_all_clusters: true, load_reporting_interval: durationOf(intervalMs) });
    }
    for (const cs of req.cluster_stats ?? []) stream.add(cs);
  });
}

/** The XdsServer API over a listening server. */
function xdsHandle(
  rs: RegistryServer,
  ctx: ServerContext,
  streams: Set<AdsStream>,
  entries: Map<string, ServiceEntry>,
  aggregator: LoadStatsAggregator,
): XdsServer {
  function stats(): Record<string, XdsLoadTotals>;
  function stats(service: string): XdsLoadTotals;
  function stats(service?: string): XdsLoadTotals | Record<string, XdsLoadTotals> {
    return service === undefined ? aggregator.all() : aggregator.get(service);
  }
  return {
    port: rs.port,
    host: rs.host,
    get streams() {
      return streams.size;
    },
    get services() {
      return entries.size;
    },
    setConfig(c) {
      ctx.config = configOf(c);
      for (const e of entries.values()) e.update(false);
    },
    stats,
    // Clients keep their xDS client (and its stream) beyond their channels: bound the wait.
    stop: () => rs.stop(STOP_GRACE_MS),
    kill: () => rs.kill(),
  };
}
