import '../builtins'; // the built-in registries and balancers
import * as dns from 'node:dns';
import * as http from 'node:http';
import * as net from 'node:net';
import {
  ClosedError,
  ConfigError,
  endpointKey,
  silentLogger,
  type ConfigSource,
  type Endpoint,
  type Logger,
} from '../core';
import { checkHostRule, isServiceHost, type HostRule } from './hosts';
import { isUnreachableError } from './retry';
import {
  DEFAULT_RESOLVE_TIMEOUT_MS,
  DiscoveryHandle,
  ServiceView,
  balancerFactory,
  type BalancerSpec,
  type DiscoveryLike,
  type PickOutcome,
} from './service';

export interface LookupOptions {
  /** A Discovery (not closed here), or a config source (built on first use, closed by close()). Default fromConfig(). */
  discovery?: DiscoveryLike | ConfigSource;
  /** Default round_robin. Outcome-driven balancers see no request outcomes here (see docs/http.md). */
  balancer?: BalancerSpec;
  services?: HostRule;
  passThrough?: HostRule;
  /** How long a lookup waits for a service's first snapshot. Default 10000 ms. */
  resolveTimeoutMs?: number;
  logger?: Logger;
}

/** Picks endpoints of services, one view (watch + balancer) per service; shared by the lookup and the agent helper. */
class Picks {
  private readonly views = new Map<string, ServiceView>();
  private readonly discovery: DiscoveryHandle;
  private readonly makeBalancer: () => ReturnType<ReturnType<typeof balancerFactory>>;
  private readonly logger: Logger;
  private readonly resolveTimeoutMs: number;
  private closed = false;

  constructor(
    private readonly opts: LookupOptions,
    what: string,
  ) {
    if (!opts || typeof opts !== 'object') throw new TypeError(`${what}: options must be an object`);
    checkHostRule(opts.services, 'services');
    checkHostRule(opts.passThrough, 'passThrough');
    this.logger = opts.logger ?? silentLogger;
    this.resolveTimeoutMs = opts.resolveTimeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS;
    this.makeBalancer = balancerFactory(opts.balancer);
    this.discovery = new DiscoveryHandle(opts.discovery, this.logger);
  }

  /** The service a host names, or undefined when it passes through. */
  serviceOf(host: string): string | undefined {
    return isServiceHost(host, this.opts) ? host.toLowerCase() : undefined;
  }

  async pick(service: string): Promise<{ endpoint: Endpoint; done: PickOutcomeDone; view: ServiceView }> {
    let view = this.views.get(service);
    if (!view) {
      const d = await this.discovery.get();
      view = this.views.get(service);
      if (!view) {
        if (this.closed) throw new ClosedError('wayfinder lookup');
        view = new ServiceView(d, service, {
          balancer: this.makeBalancer(),
          logger: this.logger,
          resolveTimeoutMs: this.resolveTimeoutMs,
        });
        this.views.set(service, view);
      }
    }
    if (!(await view.whenReady())) throw view.timeoutError();
    const out: PickOutcome = view.pick();
    if (out.error) throw await view.explainNoEndpoints(out.error);
    return { endpoint: out.pick.endpoint, done: out.pick.done, view };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const v of this.views.values()) v.close();
    this.views.clear();
    await this.discovery.close();
  }
}

type PickOutcomeDone = (r: { ok: boolean; latencyMs: number }) => void;

export type WayfinderLookupFunction = net.LookupFunction & {
  /** Stops the watches and closes a Discovery built by the lookup. */
  close(): Promise<void>;
};

/**
 * A `lookup` for node:net/http/https (`new http.Agent({ lookup })`, axios, got, node-fetch): a
 * host that names a service (isServiceHost()) resolves to the address of an endpoint the balancer
 * picks, once per new connection; other hosts go to dns.lookup.
 *
 * A lookup can change the address, not the port: the connection goes to the URL's port. So the
 * service's endpoints must all listen on that port (Kubernetes pods, DNS A records, one port per
 * service). When a service's endpoints use several ports the lookup fails with an error naming
 * them instead of connecting to the wrong port; use wayfinderHttpAgent() there, which connects to
 * each endpoint's own port.
 *
 * It balances connections, not requests: a keep-alive connection carries many requests to the
 * endpoint picked when it opened. Each pick is reported done at once ({ ok: true }), as the lookup
 * never sees the requests: round_robin, weighted and ring_hash work as documented; latency- and
 * error-driven balancers (p2c_ewma, outlier ejection) have nothing to learn from. Prefer the
 * WayfinderAgent (undici) where you can.
 */
export function wayfinderLookup(opts: LookupOptions = {}): WayfinderLookupFunction {
  const picks = new Picks(opts, 'wayfinderLookup()');
  const lookup = ((hostname: string, options: dns.LookupOptions, callback: LookupCallback) => {
    if (typeof options === 'function') {
      callback = options as unknown as LookupCallback;
      options = {};
    }
    const service = picks.serviceOf(hostname);
    if (!service) {
      dns.lookup(hostname, options, callback as never);
      return;
    }
    picks.pick(service).then(
      ({ endpoint, done, view }) => {
        done({ ok: true, latencyMs: 0 });
        const ports = new Set(view.current().map((e) => e.port));
        if (ports.size > 1) {
          callback(
            new ConfigError(
              `wayfinderLookup(): the endpoints of service "${service}" listen on several ports (${[...ports].sort().join(', ')}); a lookup can change the address but not the port: use wayfinderHttpAgent()`,
              { field: 'lookup' },
            ),
            '',
          );
          return;
        }
        resolveAddress(endpoint.host, options, callback);
      },
      (err: Error) => callback(err as NodeJS.ErrnoException, ''),
    );
  }) as WayfinderLookupFunction;
  lookup.close = () => picks.close();
  return lookup;
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | dns.LookupAddress[],
  family?: number,
) => void;

/** An endpoint's host as lookup results: IP literals as they are, names through dns.lookup. */
function resolveAddress(host: string, options: dns.LookupOptions, callback: LookupCallback): void {
  const family = net.isIP(host);
  if (family === 0) {
    dns.lookup(host, options, callback as never);
    return;
  }
  if (options.all) callback(null, [{ address: host, family }]);
  else callback(null, host, family);
}

export interface WayfinderHttpAgentOptions extends LookupOptions, http.AgentOptions {}

/**
 * An http.Agent whose new connections to a service go to an endpoint the balancer picks, on that
 * endpoint's own port (the URL's port is ignored for services). For clients that take an
 * http.Agent (axios `httpAgent`, got `agent.http`, node-fetch `agent`). Connections, not requests,
 * are balanced; each pick is done when its socket closes (ok unless it closed on an error), so
 * p2c (least-request) counts open connections: least-connections. Other hosts connect as usual.
 * Call agent.destroy() and then `await agent.closeDiscovery()` when finished.
 */
export function wayfinderHttpAgent(opts: WayfinderHttpAgentOptions = {}): http.Agent & {
  closeDiscovery(): Promise<void>;
} {
  const picks = new Picks(opts, 'wayfinderHttpAgent()');
  const agent = new http.Agent(opts) as http.Agent & { closeDiscovery(): Promise<void> };
  const base = agent.createConnection.bind(agent) as (o: net.NetConnectOpts, cb?: unknown) => net.Socket;
  (agent as unknown as { createConnection: unknown }).createConnection = (
    options: net.TcpNetConnectOpts,
    callback: (err: Error | null, socket?: net.Socket) => void,
  ): net.Socket | undefined => {
    const service = options.host ? picks.serviceOf(String(options.host)) : undefined;
    if (!service) return base(options, callback);
    picks.pick(service).then(
      ({ endpoint, done, view }) => {
        const t0 = performance.now();
        const socket = net.connect({ ...options, host: endpoint.host, port: endpoint.port });
        let failed = false;
        let connected = false;
        socket.once('connect', () => (connected = true));
        socket.once('error', (err) => {
          failed = true;
          // Refused: held off for a backoff, as in the WayfinderAgent.
          if (!connected && isUnreachableError(err)) view.markUnreachable(endpoint);
        });
        socket.once('close', () => done({ ok: !failed, latencyMs: performance.now() - t0 }));
        (socket as net.Socket & { wayfinderEndpoint?: string }).wayfinderEndpoint = endpointKey(endpoint);
        callback(null, socket);
      },
      (err: Error) => callback(err),
    );
    return undefined;
  };
  agent.closeDiscovery = () => picks.close();
  return agent;
}
