import * as grpc from '@grpc/grpc-js';
import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';
import { Backoff, ConfigError, endpointKey, validateOptions, type OptionsSchema, type Watch } from '../../core';
import { wayfinderEndpointOf } from '../endpoints';
import { registerPolicyConfig } from '../policy-config';
import { SERVICE_ATTRIBUTE } from '../resolver';
import { acquireRegistry, releaseRegistry, settings, type SharedRegistry } from '../shared';
import {
  BALANCE_LOAD_PATH,
  LB_TOKEN_METADATA,
  balanceLoadMethod,
  durationToMs,
  unpackIp,
  type ClientStatsMsg,
  type LoadBalanceRequest,
  type LoadBalanceResponse,
  type ServerMsg,
} from './protocol';
import { ChildSet } from '../child-set';
import {
  ConnectivityState,
  PickResultType,
  QueuePicker,
  UnavailablePicker,
  type ChannelControlHelper,
  type GrpcEndpoint,
  type GrpcPicker,
  type PickArgs,
  type PickResult,
} from '../grpcjs';

export const GRPCLB_POLICY = 'wayfinder_grpclb';

/** The `wayfinder_grpclb` policy config, validated in one place (grpclbPolicyOptions). */
export interface GrpclbPolicyConfig {
  serviceName?: string;
  balancers?: string[];
  balancerRegistry?: string;
  balancerName?: string;
  fallbackTimeout: number;
  reconnectBackoff: number;
  maxReconnectBackoff: number;
}

function checkHostPorts(list: string[]): string | undefined {
  for (const s of list)
    if (!parseHostPort(s)) return `must hold host:port entries ("[::1]:7000" for IPv6); got ${JSON.stringify(s)}`;
  if (list.length === 0) return 'must not be empty';
  return undefined;
}

export const grpclbPolicyOptions: OptionsSchema = {
  serviceName: {
    type: 'string',
    doc: 'The name sent to the balancer. Default: the channel option grpc.default_authority, else the service of a Wayfinder target (wayfinder:///echo -> "echo").',
  },
  balancers: { type: 'list', doc: 'Balancer addresses (host:port), tried in turn.', check: checkHostPorts },
  balancerRegistry: {
    type: 'string',
    doc: 'A registry URL where the balancers are found instead, e.g. "dns://127.0.0.1:53" for the _grpclb._tcp SRV record.',
  },
  balancerName: {
    type: 'string',
    doc: 'The name looked up in balancerRegistry. Default "_grpclb._tcp.<serviceName>".',
  },
  fallbackTimeout: {
    type: 'duration',
    default: 10_000,
    min: 0,
    doc: "Use the resolver's backend addresses when no balancer has sent a server list this long after start.",
  },
  reconnectBackoff: {
    type: 'duration',
    default: 100,
    min: 1,
    doc: 'First delay before reopening a broken balancer stream (exponential, with jitter).',
  },
  maxReconnectBackoff: { type: 'duration', default: 5_000, min: 1, doc: 'Upper bound of that delay.' },
};

export function parseHostPort(s: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1] ?? m[2], port };
}

class GrpclbLbConfig implements grpc.experimental.TypedLoadBalancingConfig {
  constructor(readonly options: GrpclbPolicyConfig) {}
  getLoadBalancerName(): string {
    return GRPCLB_POLICY;
  }
  toJsonObject(): object {
    return { [GRPCLB_POLICY]: this.options };
  }
  /** Throws ConfigError naming the field. */
  static createFromJson(obj: unknown): GrpclbLbConfig {
    return new GrpclbLbConfig(parseGrpclbConfig(obj));
  }
}

export function parseGrpclbConfig(obj: unknown): GrpclbPolicyConfig {
  if (obj !== undefined && obj !== null && (typeof obj !== 'object' || Array.isArray(obj)))
    throw new TypeError(`${GRPCLB_POLICY}: config must be an object`);
  const o = validateOptions<GrpclbPolicyConfig>(
    GRPCLB_POLICY,
    grpclbPolicyOptions,
    (obj ?? {}) as Record<string, unknown>,
  );
  if (!o.balancers === !o.balancerRegistry)
    throw new ConfigError(
      `${GRPCLB_POLICY}: give exactly one of "balancers" (host:port list) and "balancerRegistry" (a registry URL)`,
      { field: 'balancers' },
    );
  if (o.maxReconnectBackoff < o.reconnectBackoff)
    throw new ConfigError(`${GRPCLB_POLICY}: "maxReconnectBackoff" must be at least "reconnectBackoff"`, {
      field: 'maxReconnectBackoff',
    });
  return o;
}

/** Counts since the last report (the protocol's ClientStats), reset when sent. */
class CallStats {
  started = 0;
  finished = 0;
  failedToSend = 0;
  knownReceived = 0;
  drops = new Map<string, number>();
  private lastWasZero = false;

  drop(token: string): void {
    this.started++;
    this.finished++;
    this.drops.set(token, (this.drops.get(token) ?? 0) + 1);
  }

  /** The report to send now, or undefined when this and the previous one are all zero. */
  take(now = Date.now()): ClientStatsMsg | undefined {
    const zero = this.started === 0 && this.finished === 0 && this.drops.size === 0;
    if (zero && this.lastWasZero) return undefined;
    this.lastWasZero = zero;
    const msg: ClientStatsMsg = {
      timestamp: { seconds: Math.floor(now / 1000), nanos: (now % 1000) * 1e6 },
      numCallsStarted: this.started,
      numCallsFinished: this.finished,
      numCallsFinishedWithClientFailedToSend: this.failedToSend,
      numCallsFinishedKnownReceived: this.knownReceived,
      callsFinishedWithDrop: [...this.drops].map(([loadBalanceToken, numCalls]) => ({ loadBalanceToken, numCalls })),
    };
    this.started = this.finished = this.failedToSend = this.knownReceived = 0;
    this.drops = new Map();
    return msg;
  }
}

/** One position of the round-robin list: a backend (with its token) or a drop. */
type Entry = { drop: true; token: string } | { drop: false; key: string; token: string };

type Mode = 'waiting' | 'balancer' | 'fallback';

/**
 * The `wayfinder_grpclb` LB policy: grpclb lookaside balancing in grpc-js.
 *
 * Lifecycle: the first address list starts (1) a BalanceLoad stream to a balancer (addresses from
 * the config, or watched in `balancerRegistry`; tried in turn, reconnecting with backoff) and (2)
 * the fallback timer. Modes:
 *  - waiting: no server list yet; calls queue (CONNECTING), nothing else is connected;
 *  - balancer: round-robin over the last ServerList in its order, drop entries dropping calls;
 *    a broken stream keeps this list while the policy reconnects;
 *  - fallback: `fallbackTimeout` passed without a list: round-robin over the resolver's backend
 *    addresses, until a balancer sends a list (back to balancer mode).
 * Backends are grpc-js leaf (pick_first) children keyed by host:port, so a connection survives a
 * mode switch or a new list that still holds its address. Each call picked from a balancer list
 * carries that entry's token as `lb-token` metadata (set on the pick's metadata, which grpc-js
 * clones per pick and then sends), and is counted in the ClientStats sent every
 * client_stats_report_interval.
 */
class GrpclbLoadBalancer implements grpc.experimental.LoadBalancer {
  private readonly children: ChildSet<undefined>;
  private config?: GrpclbPolicyConfig;
  private configJson = '';
  private channelOptions: grpc.ChannelOptions = {};
  private service?: string;
  private fallbackEndpoints: GrpcEndpoint[] = [];
  private mode: Mode = 'waiting';
  private entries: Entry[] = [];
  private destroyed = false;
  /** The last error of a backend connection or of the balancer stream. */
  private lastError: string | null = null;
  private readonly stats = new CallStats();
  // balancer stream
  private started = false;
  private balancerAddrs: { host: string; port: number }[] = [];
  private nextBalancer = 0;
  private client?: grpc.Client;
  /** The open stream, or a placeholder while the balancer's name resolves; only cancel() is used through it. */
  private call?: { cancel(): void };
  private backoff = new Backoff();
  private reconnectTimer?: NodeJS.Timeout;
  private fallbackTimer?: NodeJS.Timeout;
  private statsTimer?: NodeJS.Timeout;
  private registry?: SharedRegistry;
  private balancerWatch?: Watch;
  private generation = 0;

  constructor(private readonly helper: ChannelControlHelper) {
    this.children = new ChildSet(helper, {
      onChange: (_state, errorMessage) => {
        if (errorMessage) this.lastError = errorMessage;
        this.recalculate();
      },
      requestReresolution: () => {
        if (this.mode !== 'balancer') this.helper.requestReresolution();
      },
    });
  }

  updateAddressList(
    list: grpc.experimental.StatusOr<GrpcEndpoint[]>,
    lbConfig: grpc.experimental.TypedLoadBalancingConfig,
    options: grpc.ChannelOptions,
    _resolutionNote: string,
  ): boolean {
    if (!(lbConfig instanceof GrpclbLbConfig)) return false;
    this.channelOptions = options;
    if (list.ok) this.fallbackEndpoints = list.value;
    const service =
      lbConfig.options.serviceName ??
      (options['grpc.default_authority'] as string | undefined) ??
      (options[SERVICE_ATTRIBUTE] as string | undefined);
    const json = JSON.stringify(lbConfig.options);
    if (this.started && (json !== this.configJson || service !== this.service)) this.stopBalancer();
    this.config = lbConfig.options;
    this.configJson = json;
    this.service = service;
    if (!this.started && service) this.startBalancer();
    if (this.mode === 'fallback') this.syncChildren(this.fallbackChildren());
    this.recalculate();
    return true;
  }

  exitIdle(): void {
    this.children.exitIdle();
  }

  resetBackoff(): void {
    this.backoff.reset();
    if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
      this.connect();
    }
  }

  destroy(): void {
    this.destroyed = true;
    this.stopBalancer();
    this.children.destroy();
  }

  getTypeName(): string {
    return GRPCLB_POLICY;
  }

  // ---- the balancer stream ----

  private startBalancer(): void {
    const cfg = this.config!;
    this.started = true;
    const gen = ++this.generation;
    this.mode = this.mode === 'balancer' ? 'balancer' : 'waiting';
    this.backoff = new Backoff(cfg.reconnectBackoff, cfg.maxReconnectBackoff);
    if (this.mode === 'waiting') {
      this.fallbackTimer = setTimeout(() => this.enterFallback(), cfg.fallbackTimeout);
      this.fallbackTimer.unref?.();
    }
    if (cfg.balancers) {
      this.balancerAddrs = cfg.balancers.map((s) => parseHostPort(s)!);
      this.connect();
      return;
    }
    const name = cfg.balancerName ?? `_grpclb._tcp.${this.service}`;
    try {
      this.registry = acquireRegistry({ scheme: 'grpclb', service: name, registryUrl: cfg.balancerRegistry });
    } catch (e) {
      this.lastError = `${GRPCLB_POLICY}: balancerRegistry: ${(e as Error).message}`;
      return;
    }
    const reg = this.registry;
    reg.discovery.then(
      (d) => {
        if (gen !== this.generation) return;
        this.balancerWatch = d.resolver.watch(name, (s) => {
          if (gen !== this.generation) return;
          if (s.error)
            settings.logger.warn(
              { name, code: s.error.code },
              `${GRPCLB_POLICY}: looking up balancers: ${s.error.message}`,
            );
          if (s.endpoints.length === 0 && s.error) return; // keep the last balancer addresses
          this.balancerAddrs = s.endpoints.map((e) => ({ host: e.host, port: e.port }));
          if (!this.call && !this.reconnectTimer) this.connect();
        });
      },
      (err: Error) => {
        if (gen === this.generation) this.lastError = `${GRPCLB_POLICY}: balancerRegistry: ${err.message}`;
      },
    );
  }

  private stopBalancer(): void {
    this.generation++;
    this.started = false;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.fallbackTimer);
    clearInterval(this.statsTimer);
    this.reconnectTimer = this.fallbackTimer = this.statsTimer = undefined;
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.client?.close();
    this.client = undefined;
    this.balancerWatch?.close();
    this.balancerWatch = undefined;
    if (this.registry) releaseRegistry(this.registry);
    this.registry = undefined;
  }

  /** Opens a stream to the next balancer address. At most one stream at a time. */
  private connect(): void {
    if (this.destroyed || !this.started || this.call || this.reconnectTimer || !this.service) return;
    if (this.balancerAddrs.length === 0) return; // the balancer watch calls again
    const addr = this.balancerAddrs[this.nextBalancer++ % this.balancerAddrs.length];
    const gen = this.generation;
    const service = this.service;
    // A placeholder stream slot while the balancer's name resolves, so connect() stays single.
    const pending = { cancel() {} };
    this.call = pending;
    const resolved = isIP(addr.host) ? Promise.resolve(addr.host) : dns.lookup(addr.host).then((r) => r.address);
    resolved.then(
      (ip) => {
        if (gen !== this.generation || this.call !== pending) return;
        this.openStream(ip, addr.port, service, gen);
      },
      (err: Error) => {
        if (gen !== this.generation || this.call !== pending) return;
        this.call = undefined;
        this.lastError = `${GRPCLB_POLICY}: balancer ${addr.host}: ${err.message}`;
        this.scheduleReconnect();
      },
    );
  }

  private openStream(ip: string, port: number, service: string, gen: number): void {
    const target = isIP(ip) === 6 ? `ipv6:[${ip}]:${port}` : `ipv4:${ip}:${port}`;
    // A channel of its own (local subchannel pool), so a restarted balancer is reached at once
    // rather than after a shared subchannel's connection backoff.
    const client = new grpc.Client(target, grpc.credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.enable_http_proxy': 0,
    });
    const m = balanceLoadMethod();
    const call = client.makeBidiStreamRequest<LoadBalanceRequest, LoadBalanceResponse>(
      BALANCE_LOAD_PATH,
      m.requestSerialize,
      m.responseDeserialize,
      new grpc.Metadata(),
      {},
    );
    this.client = client;
    this.call = call;
    let initial = false;
    call.on('data', (resp: LoadBalanceResponse) => {
      if (gen !== this.generation || this.call !== call) return;
      if (!initial) {
        if (resp.loadBalanceResponseType !== 'initialResponse') {
          this.lastError = `${GRPCLB_POLICY}: balancer ${target} answered without an initial response`;
          call.cancel();
          return;
        }
        initial = true;
        this.backoff.reset();
        if (resp.initialResponse?.loadBalancerDelegate)
          settings.logger.warn(
            { delegate: resp.initialResponse.loadBalancerDelegate },
            `${GRPCLB_POLICY}: load_balancer_delegate is not supported; ignored`,
          );
        const interval = durationToMs(resp.initialResponse?.clientStatsReportInterval);
        clearInterval(this.statsTimer);
        this.statsTimer = undefined;
        if (interval > 0) {
          this.statsTimer = setInterval(() => this.sendStats(call), interval);
          this.statsTimer.unref?.();
        }
        return;
      }
      if (resp.serverList) this.onServerList(resp.serverList.servers ?? []);
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (gen === this.generation) this.lastError = `${GRPCLB_POLICY}: balancer stream to ${target}: ${err.message}`;
    });
    call.on('status', () => {
      if (gen !== this.generation || this.call !== call) return;
      // The stream broke: the last list keeps serving; report what the stream did not send yet
      // is lost (counts restart with the next stream).
      clearInterval(this.statsTimer);
      this.statsTimer = undefined;
      this.call = undefined;
      client.close();
      if (this.client === client) this.client = undefined;
      this.scheduleReconnect();
    });
    call.write({ initialRequest: { name: service } });
  }

  private scheduleReconnect(): void {
    if (this.destroyed || !this.started || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect();
    }, this.backoff.next());
    this.reconnectTimer.unref?.();
  }

  private sendStats(call: grpc.ClientDuplexStream<LoadBalanceRequest, LoadBalanceResponse>): void {
    if (this.call !== call) return;
    const msg = this.stats.take();
    if (msg) call.write({ clientStats: msg });
  }

  private onServerList(servers: ServerMsg[]): void {
    const entries: Entry[] = [];
    for (const s of servers) {
      const token = s.loadBalanceToken ?? '';
      if (s.drop) {
        entries.push({ drop: true, token });
        continue;
      }
      const ip = unpackIp(s.ipAddress);
      if (!ip || !s.port || s.port < 1 || s.port > 65535) {
        settings.logger.warn({ port: s.port }, `${GRPCLB_POLICY}: a server entry with an invalid address was skipped`);
        continue;
      }
      entries.push({ drop: false, key: endpointKey({ host: ip, port: s.port }), token });
    }
    clearTimeout(this.fallbackTimer);
    this.fallbackTimer = undefined;
    this.mode = 'balancer';
    this.entries = entries;
    const seen = new Map<string, GrpcEndpoint>();
    for (const e of entries) {
      if (e.drop || seen.has(e.key)) continue;
      const [host, port] = splitKey(e.key);
      seen.set(e.key, { addresses: [{ host, port }] });
    }
    this.syncChildren(seen);
    this.recalculate();
  }

  private enterFallback(): void {
    this.fallbackTimer = undefined;
    if (this.destroyed || this.mode !== 'waiting') return;
    settings.logger.warn(
      { service: this.service },
      `${GRPCLB_POLICY}: no server list from a balancer within the fallback timeout; using the resolver's addresses`,
    );
    this.mode = 'fallback';
    this.syncChildren(this.fallbackChildren());
    this.recalculate();
  }

  private fallbackChildren(): Map<string, GrpcEndpoint> {
    const m = new Map<string, GrpcEndpoint>();
    for (const ge of this.fallbackEndpoints) {
      const key = endpointKey(wayfinderEndpointOf(ge));
      if (!m.has(key)) m.set(key, ge);
    }
    return m;
  }

  // ---- backends ----

  private syncChildren(wanted: Map<string, GrpcEndpoint>): void {
    this.children.sync(
      [...wanted].map(([key, endpoint]) => ({ key, endpoint, data: undefined })),
      this.channelOptions,
      '',
    );
  }

  private recalculate(): void {
    if (this.children.syncing || this.destroyed) return;
    if (!this.service) {
      const msg = `${GRPCLB_POLICY}: no service name to ask the balancer for: set "serviceName" in the policy config`;
      return this.helper.updateState(ConnectivityState.TRANSIENT_FAILURE, new UnavailablePicker({ details: msg }), msg);
    }
    if (this.mode === 'waiting')
      return this.helper.updateState(ConnectivityState.CONNECTING, new QueuePicker(this), null);
    const entries: Entry[] =
      this.mode === 'balancer'
        ? this.entries
        : [...this.children.keys()].map((key) => ({ drop: false, key, token: '' }));
    const { ready, connecting } = this.children.states();
    this.children.exitIdle();
    const leaves = new Map<string, GrpcPicker>(ready.map((c) => [c.key, c.leaf.getPicker()]));
    const allDrops = entries.length > 0 && entries.every((e) => e.drop);
    if (leaves.size > 0 || allDrops) {
      this.helper.updateState(ConnectivityState.READY, new GrpclbPicker(entries, leaves, this.stats), null);
    } else if (connecting) {
      this.helper.updateState(ConnectivityState.CONNECTING, new QueuePicker(this), null);
    } else {
      const msg =
        entries.length === 0
          ? `${GRPCLB_POLICY}: ${this.mode === 'balancer' ? 'the balancer sent an empty server list' : 'no fallback addresses from the resolver'} for "${this.service}"`
          : `${GRPCLB_POLICY}: no connection to any of ${this.children.size} backend(s) (${this.mode}). Last error: ${this.lastError}`;
      this.helper.updateState(ConnectivityState.TRANSIENT_FAILURE, new UnavailablePicker({ details: msg }), msg);
    }
  }
}

function splitKey(key: string): [string, number] {
  const i = key.lastIndexOf(':');
  const host = key.slice(0, i);
  return [host.startsWith('[') ? host.slice(1, -1) : host, Number(key.slice(i + 1))];
}

/**
 * Round-robin over the list's positions from a random start: a drop entry drops the call (counted
 * under its token), a backend entry whose connection is not READY is skipped. grpclb has no
 * per-call failure semantics beyond this, so no retry bookkeeping here.
 */
class GrpclbPicker implements GrpcPicker {
  private next: number;
  constructor(
    private readonly entries: Entry[],
    private readonly leaves: Map<string, GrpcPicker>,
    private readonly stats: CallStats,
  ) {
    this.next = entries.length ? Math.floor(Math.random() * entries.length) : 0;
  }

  pick(args: PickArgs): PickResult {
    const n = this.entries.length;
    for (let i = 0; i < n; i++) {
      const e = this.entries[this.next];
      this.next = this.next + 1 === n ? 0 : this.next + 1;
      if (e.drop) {
        this.stats.drop(e.token);
        return {
          pickResultType: PickResultType.DROP,
          subchannel: null,
          status: {
            code: grpc.status.UNAVAILABLE,
            details: `${GRPCLB_POLICY}: call dropped by the load balancer`,
            metadata: new grpc.Metadata(),
          },
          onCallStarted: null,
          onCallEnded: null,
        };
      }
      const leaf = this.leaves.get(e.key);
      if (!leaf) continue;
      const r = leaf.pick(args);
      if (r.pickResultType !== PickResultType.COMPLETE) continue;
      if (e.token) args.metadata.set(LB_TOKEN_METADATA, e.token);
      const stats = this.stats;
      const innerStarted = r.onCallStarted;
      const innerEnded = r.onCallEnded;
      return {
        pickResultType: PickResultType.COMPLETE,
        subchannel: r.subchannel,
        status: null,
        onCallStarted: () => {
          stats.started++;
          innerStarted?.();
        },
        onCallEnded: (code, details, metadata) => {
          stats.finished++;
          // grpc-js does not tell whether bytes reached the server: UNAVAILABLE is counted as
          // "failed to send" (a transport failure), any other status as "known received".
          if (code === grpc.status.UNAVAILABLE) stats.failedToSend++;
          else stats.knownReceived++;
          innerEnded?.(code, details, metadata);
        },
      };
    }
    return {
      pickResultType: PickResultType.QUEUE,
      subchannel: null,
      status: null,
      onCallStarted: null,
      onCallEnded: null,
    };
  }
}

let registered = false;

/** Registers `wayfinder_grpclb` with grpc-js (idempotent). Called by installGrpc(). */
export function registerGrpclbPolicy(): string {
  if (!registered) {
    grpc.experimental.registerLoadBalancerType(GRPCLB_POLICY, GrpclbLoadBalancer, GrpclbLbConfig);
    registerPolicyConfig(GRPCLB_POLICY, GrpclbLbConfig);
    registered = true;
  }
  return GRPCLB_POLICY;
}
