import {
  defineBalancer,
  registerBalancer,
  telemetry,
  type Balancer,
  type Endpoint,
  type OptionsSchema,
  type Pick,
  type Picker,
} from '../../core';
import { decorate, decoratorOptions, type DecoratorConfig } from '../shared/decorators';
import type { CallContext } from '../slow-start';
import { type EndpointLoad, LoadTable } from './load';

export { EndpointLoad, LoadTable } from './load';

/**
 * Power of two choices: draw two distinct endpoints uniformly at random and send the call to the
 * one with the lower cost. O(1) pick.
 *
 *  - least-request (`ewma: false`): cost = (in-flight + 1) / p
 *  - peak EWMA     (`ewma: true`):  cost = latency estimate × (in-flight + 1) / p
 *
 * p is the endpoint's recent success probability (see EndpointLoad; memory `errorDecay`): a call
 * that fails must be sent again, so an endpoint that succeeds with probability p costs 1/p as much
 * per useful response. The divisor is p^errorPenalty (default 2, so that a fast-failing endpoint,
 * which has no calls in flight, is held off by a few recent failures; 0 turns it off). Failed calls
 * also count with a latency of at least the balancer-wide typical latency, so errors that come
 * back fast never make an endpoint look fast.
 *
 * An endpoint with no latency sample yet is costed at `defaultLatency` when set, else at the
 * balancer-wide typical latency (an EWMA of all successful calls' latencies): a new endpoint is
 * assumed to be typical, neither flooded nor starved. Before any call has finished every endpoint
 * is unmeasured and the EWMA variant behaves like least-request.
 *
 * In-flight counting: from pick() by default; when the BalancerContext has `explicitStart: true`
 * (the grpc bridge, which may pick several times per call) from `Pick.started()`, which the caller
 * invokes when the call really starts. `done()` ends the count; repeated done() calls are ignored.
 */
export interface P2cConfig extends DecoratorConfig {
  ewma?: boolean;
  /** ms */
  decay?: number;
  /** ms; undefined = the balancer-wide typical latency */
  defaultLatency?: number;
  errorPenalty?: number;
  /** ms */
  errorDecay?: number;
}

export const p2cOptions: OptionsSchema = {
  ewma: {
    type: 'boolean',
    default: false,
    doc: 'Cost by peak-EWMA latency × (in-flight + 1) instead of in-flight alone.',
  },
  decay: {
    type: 'duration',
    default: 10_000,
    min: 1,
    max: 3_600_000,
    doc: "Time constant of the latency estimate and of the success-rate memory (Finagle's default is 10 s).",
  },
  defaultLatency: {
    type: 'duration',
    min: 0,
    doc: 'Latency assumed for an endpoint with no sample yet; unset: the typical latency seen across all endpoints.',
  },
  errorPenalty: {
    type: 'number',
    default: 2,
    min: 0,
    max: 10,
    doc: 'Cost is divided by (recent success probability)^errorPenalty; 0 ignores errors.',
  },
  errorDecay: {
    type: 'duration',
    default: 1_000,
    min: 1,
    max: 3_600_000,
    doc: 'Time constant of the success-probability memory (how long failures count).',
  },
  ...decoratorOptions,
};

export class P2cBalancer implements Balancer {
  readonly name: string;
  readonly loads = new LoadTable();
  readonly ewma: boolean;
  readonly tau: number;
  readonly defaultLatency: number | undefined;
  readonly errorPenalty: number;
  readonly errTau: number;
  constructor(config: P2cConfig = {}) {
    this.ewma = config.ewma === true;
    this.name = this.ewma ? 'p2c_ewma' : 'p2c';
    this.tau = config.decay ?? 10_000;
    this.defaultLatency = config.defaultLatency;
    this.errorPenalty = config.errorPenalty ?? 2;
    this.errTau = config.errorDecay ?? 1_000;
  }
  build(endpoints: Endpoint[], ctx: CallContext): Picker {
    if (this.ewma && !this.metricsOn) this.exportEwma(ctx);
    return new P2cPicker(this, endpoints, this.loads.sync(endpoints), ctx);
  }

  private metricsOn = false;
  /**
   * Reports each endpoint's latency estimate as the wayfinder.latency.ewma gauge. The gauge holds
   * the table weakly: a balancer dropped with its channel stops being reported and is collected.
   */
  private exportEwma(ctx: CallContext): void {
    this.metricsOn = true;
    const ref = new WeakRef(this.loads);
    const tau = this.tau;
    const off = telemetry.addEwmaSource(() => {
      const table = ref.deref();
      if (!table) {
        off();
        return [];
      }
      const t = ctx.now();
      return table.current
        .filter((s) => !Number.isNaN(s.ewma))
        .map((s) => ({ endpoint: s.key, ms: s.ewma * s.decay(t, tau) }));
    });
  }
}

export class P2cPicker implements Picker {
  readonly explicit: boolean;
  constructor(
    readonly balancer: P2cBalancer,
    private readonly endpoints: readonly Endpoint[],
    private readonly loads: readonly EndpointLoad[],
    readonly ctx: CallContext,
  ) {
    this.explicit = ctx.explicitStart === true;
  }

  /** The cost of sending one more call to `s` at time t. */
  cost(s: EndpointLoad, t: number): number {
    const b = this.balancer;
    let c = s.inflight + 1;
    if (b.ewma) c *= Number.isNaN(s.ewma) ? (b.defaultLatency ?? (b.loads.typicalMs || 1)) : s.ewma * s.decay(t, b.tau);
    if (b.errorPenalty > 0 && s.failures > 0) {
      const p = s.successProbability(s.decay(t, b.errTau));
      c /= b.errorPenalty === 2 ? p * p : b.errorPenalty === 1 ? p : Math.pow(p, b.errorPenalty);
    }
    return c;
  }

  pick(): Pick {
    const n = this.endpoints.length;
    if (n === 0) return { endpoint: null, reason: 'no-endpoints' };
    let i = 0;
    if (n > 1) {
      const r = this.ctx.random;
      i = Math.floor(r() * n);
      let j = Math.floor(r() * (n - 1));
      if (j >= i) j++;
      const t = this.ctx.now();
      if (this.cost(this.loads[j], t) < this.cost(this.loads[i], t)) i = j;
    }
    return p2cCall(this, this.endpoints[i], this.loads[i]);
  }
}

/**
 * One pick's handle: counts the call in flight and records its outcome once. Plain closures in
 * method shorthand (no `this`): done/started work detached, as callbacks. (Method shorthand also
 * keeps tsx/esbuild's keepNames from wrapping a fresh function per pick, which costs ~0.5 µs.)
 */
function p2cCall(picker: P2cPicker, endpoint: Endpoint, load: EndpointLoad): Pick {
  /** 0 picked, 1 started (counted in flight), 2 done. */
  let phase = 0;
  if (!picker.explicit) {
    load.inflight++;
    phase = 1;
  }
  return {
    endpoint,
    started(): void {
      if (phase !== 0) return;
      phase = 1;
      load.inflight++;
    },
    done(result: { ok: boolean; latencyMs: number }): void {
      if (phase === 2) return;
      if (phase === 1 && load.inflight > 0) load.inflight--;
      phase = 2;
      const b = picker.balancer;
      const ok = result?.ok === true;
      const lat = result?.latencyMs as number;
      if (ok) b.loads.noteSuccess(lat);
      load.observe(ok, lat, picker.ctx.now(), b.tau, b.loads.typicalMs, b.errTau);
    },
  } as Pick;
}

/** Builds a p2c Balancer with its configured decorators (outlier ejection around slow start). */
export function createP2c(config: P2cConfig = {}): Balancer {
  return decorate(() => new P2cBalancer(config), config);
}

export const p2cBalancer = defineBalancer<P2cConfig>({
  name: 'p2c',
  aliases: ['least_request', 'p2c_least_request'],
  description:
    'Power of two choices: least outstanding requests, or peak-EWMA latency with { "ewma": true }; errors penalised.',
  options: p2cOptions,
  create: (config) => createP2c(config),
});

export const p2cEwmaBalancer = defineBalancer<P2cConfig>({
  name: 'p2c_ewma',
  aliases: ['peak_ewma'],
  description: 'Power of two choices on peak-EWMA latency × (in-flight + 1) (p2c with "ewma" defaulting to true).',
  options: { ...p2cOptions, ewma: { ...p2cOptions.ewma, default: true } },
  create: (config) => createP2c({ ...config, ewma: config.ewma ?? true }),
});

export function setup(): void {
  registerBalancer(p2cBalancer);
  registerBalancer(p2cEwmaBalancer);
}
setup();
