import {
  defineBalancer,
  registerBalancer,
  type Balancer,
  type BalancerContext,
  type Endpoint,
  type Logger,
  type OptionsSchema,
  type Pick,
  type Picker,
} from '../../core';
import { decorate, decoratorOptions, type DecoratorConfig } from '../shared/decorators';

const noop = () => {};

/**
 * The weight the scheduler uses for an endpoint. `Endpoint.weight` is a positive integer by
 * contract (core's checkEndpoint reports anything else as BAD_ENTRY), but a custom adapter may
 * hand over anything, and a balancer must not throw on registry data:
 *  - missing → 1;
 *  - 0, negative, NaN, ±Infinity or not a number → 1 (the default weight), with one warning per build;
 *  - a positive non-integer (e.g. 2.5) is honoured exactly: the scheduler works with real numbers;
 *  - larger than `maxWeight` → `maxWeight`.
 */
export function effectiveWeight(w: unknown, maxWeight: number): number {
  if (w === undefined) return 1;
  if (typeof w !== 'number' || !Number.isFinite(w) || w <= 0) return Number.NaN;
  return w > maxWeight ? maxWeight : w;
}

/**
 * Earliest-deadline-first weighted round-robin (the scheduler of Envoy and of grpc-js's
 * weighted_round_robin): each endpoint has a period 1/weight and a next deadline; a pick takes the
 * endpoint with the earliest deadline and moves it one period on. Deterministic proportions (over
 * any stretch of picks each endpoint is within one pick of its exact share), O(log n) pick on a
 * binary heap of indices, no allocation per pick. The first deadlines are staggered randomly
 * within one period so that many clients started together do not move in lockstep.
 */
export class WeightedPicker implements Picker {
  private readonly picks: Pick[];
  private readonly deadline: Float64Array;
  private readonly period: Float64Array;
  /** A binary min-heap of endpoint indices ordered by (deadline, index). */
  private readonly heap: Int32Array;

  constructor(
    endpoints: readonly Endpoint[],
    random: () => number = Math.random,
    opts: { maxWeight?: number; logger?: Logger } = {},
  ) {
    const n = endpoints.length;
    const maxWeight = opts.maxWeight ?? 1_000_000;
    this.picks = new Array(n);
    this.deadline = new Float64Array(n);
    this.period = new Float64Array(n);
    this.heap = new Int32Array(n);
    let clamped: string[] | undefined;
    for (let i = 0; i < n; i++) {
      const e = endpoints[i];
      let w = effectiveWeight(e.weight, maxWeight);
      if (Number.isNaN(w)) {
        (clamped ??= []).push(`${e.id}=${String(e.weight)}`);
        w = 1;
      }
      this.picks[i] = { endpoint: e, done: noop };
      this.period[i] = 1 / w;
      this.deadline[i] = random() / w;
      this.heap[i] = i;
    }
    if (clamped)
      opts.logger?.warn(
        { endpoints: clamped.slice(0, 10), count: clamped.length },
        'weighted: invalid weights treated as 1',
      );
    for (let i = (n >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  pick(): Pick {
    if (this.heap.length === 0) return { endpoint: null, reason: 'no-endpoints' };
    const top = this.heap[0];
    this.deadline[top] += this.period[top];
    this.siftDown(0);
    return this.picks[top];
  }

  private less(a: number, b: number): boolean {
    const da = this.deadline[a];
    const db = this.deadline[b];
    return da < db || (da === db && a < b);
  }

  private siftDown(i: number): void {
    const h = this.heap;
    const n = h.length;
    const x = h[i];
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.less(h[r], h[l]) ? r : l;
      if (!this.less(h[c], x)) break;
      h[i] = h[c];
      i = c;
    }
    h[i] = x;
  }
}

export interface WeightedConfig extends DecoratorConfig {
  maxWeight?: number;
}

export const weightedOptions: OptionsSchema = {
  maxWeight: { type: 'integer', default: 1_000_000, min: 1, doc: 'Weights above this are clamped to it.' },
  ...decoratorOptions,
};

export class WeightedBalancer implements Balancer {
  readonly name = 'weighted';
  constructor(private readonly config: WeightedConfig = {}) {}
  build(endpoints: Endpoint[], ctx: BalancerContext): Picker {
    return new WeightedPicker(endpoints, ctx.random, { maxWeight: this.config.maxWeight, logger: ctx.logger });
  }
}

/** Plain weighted balancer, no decorators. */
export const weighted: Balancer = new WeightedBalancer();

/** Builds a weighted Balancer with its configured decorators (outlier ejection around slow start). */
export function createWeighted(config: WeightedConfig = {}): Balancer {
  return decorate(() => new WeightedBalancer(config), config);
}

export const weightedBalancer = defineBalancer<WeightedConfig>({
  name: 'weighted',
  aliases: ['weighted_round_robin', 'wrr'],
  description: 'Static weights from the registry (Endpoint.weight), earliest-deadline-first; O(log n) pick.',
  options: weightedOptions,
  create: (config) => createWeighted(config),
});

export function setup(): void {
  registerBalancer(weightedBalancer);
}
setup();
