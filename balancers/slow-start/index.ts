import {
  type Balancer,
  type BalancerContext,
  type Endpoint,
  type OptionsSchema,
  type Pick,
  type Picker,
  type PickInfo,
} from '../../core';
import { EndpointStates, type TrackedState } from '../shared/endpoint-states';

/**
 * Slow start, a decorator for any Balancer: an endpoint that joins the set ramps up to its full
 * share over `slowStart` ms instead of being flooded at once (which least-request balancers do to a
 * fresh, idle endpoint).
 *
 * How: the inner picker picks as usual; a pick of a warming endpoint is kept with probability
 * f = max(0.1, age / window) and otherwise re-drawn, at most `MAX_DRAWS` draws in all. The
 * endpoint's share is thus scaled by about f (at least 10%: Envoy's default min_weight_percent).
 *
 * Contract: endpoints of the first non-empty set are not warmed (a fresh channel has nothing to
 * protect); an endpoint that leaves and comes back (including one the outlier decorator had
 * ejected) warms again. Inner picks that are re-drawn are never started, so they leave no trace
 * in in-flight counts: the inner balancer is built with `explicitStart: true` and this decorator
 * calls `started()` itself unless its own caller does (see CallContext).
 */
export const slowStartOptions: OptionsSchema = {
  slowStart: {
    type: 'duration',
    default: 0,
    min: 0,
    max: 3_600_000,
    doc: 'Ramp-up window for endpoints that join the set (e.g. "30s"); 0 turns slow start off.',
  },
};

/** A BalancerContext whose caller reports call starts through `Pick.started()` (the grpc bridge). */
export interface CallContext extends BalancerContext {
  explicitStart?: boolean;
}

export const MAX_DRAWS = 3;
export const MIN_FACTOR = 0.1;

export interface SlowStartConfig {
  slowStart?: number;
}

/** Wraps `inner` with slow start when `config.slowStart` > 0; returns `inner` unchanged otherwise. */
export function withSlowStart(inner: Balancer, config: SlowStartConfig): Balancer {
  const window = config.slowStart ?? 0;
  return window > 0 ? new SlowStartBalancer(inner, window) : inner;
}

interface Joined extends TrackedState {
  at: number;
}
const NONE: ReadonlyMap<Endpoint, number> = new Map();

export class SlowStartBalancer implements Balancer {
  readonly name: string;
  /** Forwarded: a sticky inner balancer still needs PickInfo through the decorator. */
  get usesPickInfo(): boolean | undefined {
    return this.inner.usesPickInfo;
  }
  /** host:port -> when it joined (-Infinity for the initial set). */
  private readonly since = new EndpointStates<Joined>((key) => ({ key, gen: 0, at: this.joinTime }));
  private seenNonEmpty = false;
  /** The join time given to endpoints first seen in the build under way. */
  private joinTime = -Infinity;
  constructor(
    private readonly inner: Balancer,
    readonly windowMs: number,
  ) {
    this.name = inner.name;
  }

  build(endpoints: Endpoint[], ctx: CallContext): Picker {
    const t = ctx.now();
    this.joinTime = this.seenNonEmpty ? t : -Infinity;
    const joined = this.since.sync(endpoints);
    let warming: Map<Endpoint, number> | undefined;
    let warmUntil = -Infinity;
    const cutoff = t - this.windowMs;
    for (let i = 0; i < joined.length; i++) {
      const at = joined[i].at;
      if (at > cutoff) {
        (warming ??= new Map()).set(endpoints[i], at);
        if (at + this.windowMs > warmUntil) warmUntil = at + this.windowMs;
      }
    }
    if (endpoints.length > 0) this.seenNonEmpty = true;
    const explicit = ctx.explicitStart === true;
    const inner = this.inner.build(endpoints, { ...ctx, explicitStart: true } as CallContext);
    return new SlowStartPicker(inner, warming ?? NONE, warmUntil, this.windowMs, explicit, ctx);
  }
}

export class SlowStartPicker implements Picker {
  constructor(
    private readonly inner: Picker,
    private readonly warming: ReadonlyMap<Endpoint, number>,
    private readonly warmUntil: number,
    private readonly windowMs: number,
    private readonly explicit: boolean,
    private readonly ctx: BalancerContext,
  ) {}

  pick(info?: PickInfo): Pick {
    let p = this.inner.pick(info);
    if (this.warmUntil > -Infinity && p.endpoint) {
      const t = this.ctx.now();
      if (t < this.warmUntil) {
        for (let draw = 1; draw < MAX_DRAWS && p.endpoint; draw++) {
          const since = this.warming.get(p.endpoint);
          if (since === undefined) break;
          const f = Math.max(MIN_FACTOR, (t - since) / this.windowMs);
          if (f >= 1 || this.ctx.random() < f) break;
          p = this.inner.pick(info);
        }
      }
    }
    if (!this.explicit && p.endpoint) (p as { started?(): void }).started?.();
    return p;
  }

  /** The current share factor of an endpoint (1 when not warming); for tests and status. */
  factor(e: Endpoint): number {
    const since = this.warming.get(e);
    if (since === undefined) return 1;
    return Math.min(1, Math.max(MIN_FACTOR, (this.ctx.now() - since) / this.windowMs));
  }
}
