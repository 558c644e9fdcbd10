import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as path from 'node:path';
import { Backoff, type Logger } from '../core';

/**
 * The standard gRPC health protocol (grpc.health.v1, gRFC A17): the server side (HealthService,
 * registered by serve()) and the client side the wayfinder_* policies use when the channel's
 * service config has `"healthCheckConfig": {"serviceName": "..."}` (HealthCheckedSubchannel).
 * grpc-js 1.14 has the hooks (a subchannel wrapper's health state, which its pick_first leaf
 * reports as TRANSIENT_FAILURE when unhealthy) but no health-check producer of its own.
 */

export const HEALTH_PROTO_PATH = path.join(__dirname, 'proto', 'health.proto');
export const HEALTH_WATCH_PATH = '/grpc.health.v1.Health/Watch';

/** A served status. SERVICE_UNKNOWN is what Watch reports for a name never set. */
export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

interface HealthRequest {
  service?: string;
}
interface HealthResponse {
  status?: ServingStatus;
}

let cached: grpc.ServiceDefinition | undefined;
/** The grpc.health.v1.Health service definition (proto vendored in grpc/proto/health.proto). */
export function healthServiceDefinition(): grpc.ServiceDefinition {
  cached ??= protoLoader.loadSync(HEALTH_PROTO_PATH, { enums: String, defaults: true })[
    'grpc.health.v1.Health'
  ] as grpc.ServiceDefinition;
  return cached;
}

/**
 * The server side of grpc.health.v1: a status per service name ('' is the whole server), Check and
 * Watch. serve() creates one (or uses the one given in its `health` option), sets '' and the
 * registered service name to SERVING and calls shutdown() when its drain starts.
 */
export class HealthService {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Map<string, Set<grpc.ServerWritableStream<HealthRequest, HealthResponse>>>();
  private shuttingDown = false;

  constructor(initial: Record<string, 'SERVING' | 'NOT_SERVING'> = { '': 'SERVING' }) {
    for (const [name, status] of Object.entries(initial)) this.statuses.set(name, status);
  }

  /** Sets a service's status and tells its watchers. Ignored after shutdown() (until resume()). */
  setStatus(service: string, status: 'SERVING' | 'NOT_SERVING'): void {
    if (status !== 'SERVING' && status !== 'NOT_SERVING')
      throw new TypeError(`HealthService.setStatus(): status must be SERVING or NOT_SERVING, got ${String(status)}`);
    if (this.shuttingDown) return;
    this.set(service, status);
  }

  /** The status Watch would report for `service`. */
  getStatus(service: string): ServingStatus {
    return this.statuses.get(service) ?? 'SERVICE_UNKNOWN';
  }

  /** Every service NOT_SERVING, and setStatus() ignored from now on (what serve() does when its drain starts). */
  shutdown(): void {
    this.shuttingDown = true;
    for (const name of this.statuses.keys()) this.set(name, 'NOT_SERVING');
  }

  /** Undoes shutdown(): every service SERVING again. */
  resume(): void {
    this.shuttingDown = false;
    for (const name of this.statuses.keys()) this.set(name, 'SERVING');
  }

  /**
   * Adds the Health service to `server`. False (and nothing added) when the server already has a
   * grpc.health.v1.Health service of its own.
   */
  addTo(server: grpc.Server): boolean {
    try {
      server.addService(healthServiceDefinition(), this.handlers());
      return true;
    } catch (e) {
      if (/already provided/.test((e as Error).message)) return false;
      throw e;
    }
  }

  private set(service: string, status: ServingStatus): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    for (const w of this.watchers.get(service) ?? []) w.write({ status });
  }

  /** Check and Watch, to wrap in a Health service of your own. */
  handlers(): grpc.UntypedServiceImplementation {
    return {
      Check: (call: grpc.ServerUnaryCall<HealthRequest, HealthResponse>, cb: grpc.sendUnaryData<HealthResponse>) => {
        const status = this.statuses.get(call.request.service ?? '');
        if (status === undefined) cb({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
        else cb(null, { status });
      },
      Watch: (call: grpc.ServerWritableStream<HealthRequest, HealthResponse>) => {
        const name = call.request.service ?? '';
        let set = this.watchers.get(name);
        if (!set) this.watchers.set(name, (set = new Set()));
        set.add(call);
        const remove = () => {
          set.delete(call);
          if (set.size === 0 && this.watchers.get(name) === set) this.watchers.delete(name);
        };
        call.on('cancelled', remove);
        call.on('close', remove);
        call.write({ status: this.getStatus(name) });
      },
    };
  }
}

/**
 * The health-check service name a channel's service config asks for
 * (`healthCheckConfig.serviceName`, '' allowed), or undefined when health checking is off. The
 * wayfinder_* policies read it from the `grpc.service_config` channel option.
 */
export function healthCheckServiceName(options: grpc.ChannelOptions): string | undefined {
  const raw = options['grpc.service_config'];
  if (typeof raw !== 'string' || raw === '') return undefined;
  if (raw === lastRaw) return lastName;
  let name: string | undefined;
  try {
    const hc = (JSON.parse(raw) as { healthCheckConfig?: { serviceName?: unknown } }).healthCheckConfig;
    if (hc && typeof hc === 'object') name = typeof hc.serviceName === 'string' ? hc.serviceName : '';
  } catch {
    name = undefined; // grpc-js rejects the channel itself
  }
  lastRaw = raw;
  lastName = name;
  return name;
}
let lastRaw: string | undefined;
let lastName: string | undefined;

/**
 * Where the health watch of one connection stands: `pending` until the first answer after the
 * connection became READY (and while a broken stream is being retried; the policies count such an
 * endpoint as CONNECTING, as A17 says), then `serving` or `not-serving`.
 */
export type HealthPhase = 'pending' | 'serving' | 'not-serving';

export interface HealthCheckOptions {
  serviceName: string;
  logger: Logger;
  /** Called whenever the phase changes (the set recalculates the policy's state). */
  onPhase?: (phase: HealthPhase) => void;
  /** Called once when grpc-js drops its last reference (the set forgets the subchannel). */
  onDestroy?: () => void;
  /** Retry backoff of a broken watch stream (default healthCheckDefaults). */
  backoff?: { baseMs: number; maxMs: number };
}

/** Backoff of a broken watch stream: gRFC A17 uses the connection backoff (1 s, x1.6, 120 s cap). */
export const healthCheckDefaults = { baseMs: 1000, maxMs: 120_000 };

/**
 * A subchannel whose health state follows a grpc.health.v1 Watch on its own connection: healthy
 * while the server reports SERVING, or when it does not implement the Health service (UNIMPLEMENTED,
 * warned once); NOT_SERVING, SERVICE_UNKNOWN and UNKNOWN are unhealthy. A stream that ends any
 * other way is restarted after a jittered backoff, at once when it had delivered an answer. grpc-js's
 * pick_first leaf reports an unhealthy READY subchannel as TRANSIENT_FAILURE, so the policy leaves
 * the endpoint out of its picker without dropping the connection.
 */
export class HealthCheckedSubchannel extends grpc.experimental.BaseSubchannelWrapper {
  private phaseValue: HealthPhase = 'pending';
  private call?: grpc.ClientReadableStream<HealthResponse>;
  private client?: grpc.Client;
  private retryTimer?: NodeJS.Timeout;
  private readonly backoff: Backoff;
  private warnedUnimplemented = false;
  private destroyed = false;
  private readonly onState: grpc.experimental.ConnectivityStateListener = (_sc, _prev, next) =>
    this.onConnectivity(next);

  constructor(
    child: grpc.experimental.SubchannelInterface,
    private readonly opts: HealthCheckOptions,
  ) {
    super(child);
    const b = opts.backoff ?? healthCheckDefaults;
    this.backoff = new Backoff(b.baseMs, b.maxMs);
    this.setHealthy(false);
    child.addConnectivityStateListener(this.onState);
    this.onConnectivity(child.getConnectivityState());
  }

  get phase(): HealthPhase {
    return this.phaseValue;
  }

  protected override destroy(): void {
    this.destroyed = true;
    this.child.removeConnectivityStateListener(this.onState);
    this.stopWatch();
    super.destroy();
    this.opts.onDestroy?.();
  }

  private onConnectivity(state: grpc.connectivityState): void {
    if (this.destroyed) return;
    if (state === grpc.connectivityState.READY) {
      if (!this.call && !this.retryTimer) this.startWatch();
    } else {
      this.stopWatch();
      this.backoff.reset();
      this.setPhase('pending');
    }
  }

  private setPhase(phase: HealthPhase): void {
    this.setHealthy(phase === 'serving');
    if (phase === this.phaseValue) return;
    this.phaseValue = phase;
    this.opts.onPhase?.(phase);
  }

  private startWatch(): void {
    this.retryTimer = undefined;
    if (this.destroyed) return;
    const def = healthServiceDefinition().Watch as grpc.MethodDefinition<HealthRequest, HealthResponse>;
    this.client ??= new grpc.Client(this.getAddress(), grpc.credentials.createInsecure(), {
      channelOverride: this.child.getChannel(),
    });
    const call = this.client.makeServerStreamRequest(HEALTH_WATCH_PATH, def.requestSerialize, def.responseDeserialize, {
      service: this.opts.serviceName,
    });
    this.call = call;
    let answered = false;
    call.on('data', (msg: HealthResponse) => {
      if (this.call !== call) return;
      answered = true;
      this.setPhase(msg.status === 'SERVING' ? 'serving' : 'not-serving');
    });
    call.on('error', () => undefined); // the outcome is handled in 'status'
    call.on('status', (st: grpc.StatusObject) => {
      if (this.call !== call) return; // stopped by us
      this.call = undefined;
      if (st.code === grpc.status.UNIMPLEMENTED) {
        if (!this.warnedUnimplemented) {
          this.warnedUnimplemented = true;
          this.opts.logger.warn(
            { address: this.getAddress(), service: this.opts.serviceName },
            'grpc health check: the server does not implement grpc.health.v1.Health; treating it as serving',
          );
        }
        this.setPhase('serving');
        return;
      }
      if (answered) this.backoff.reset();
      // A17: until the stream is back the endpoint counts as connecting, not serving.
      this.setPhase('pending');
      const wait = answered ? 0 : this.backoff.next();
      this.retryTimer = setTimeout(() => this.startWatch(), wait);
      this.retryTimer.unref?.();
    });
  }

  private stopWatch(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const call = this.call;
    this.call = undefined;
    call?.cancel();
  }
}
