import {
  defineBalancer,
  ignoreOutcome,
  registerBalancer,
  type Balancer,
  type BalancerContext,
  type Endpoint,
  type Pick,
  type Picker,
} from '../../core';
import { decorate, decoratorOptions, type DecoratorConfig } from '../shared/decorators';

/**
 * Round-robin over the endpoints in order, starting at a random offset so that many clients
 * built at once do not all hit the first endpoint. O(1) pick; every endpoint is visited once per
 * cycle (weights are ignored: use the weighted balancer for those).
 */
export class RoundRobinPicker implements Picker {
  private next: number;
  private readonly picks: Pick[];
  constructor(endpoints: readonly Endpoint[], random: () => number = Math.random) {
    this.picks = endpoints.map((endpoint) => ({ endpoint, done: ignoreOutcome }));
    this.next = this.picks.length ? Math.floor(random() * this.picks.length) : 0;
  }
  pick(): Pick {
    const n = this.picks.length;
    if (n === 0) return { endpoint: null, reason: 'no-endpoints' };
    const p = this.picks[this.next];
    this.next = this.next + 1 === n ? 0 : this.next + 1;
    return p;
  }
}

export const roundRobin: Balancer = {
  name: 'round_robin',
  build(endpoints: Endpoint[], ctx: BalancerContext): Picker {
    return new RoundRobinPicker(endpoints, ctx.random);
  },
};

/** round_robin with its configured decorators (the plain stateless balancer when none is on). */
export function createRoundRobin(config: DecoratorConfig = {}): Balancer {
  return decorate(() => roundRobin, config);
}

export const roundRobinBalancer = defineBalancer<DecoratorConfig>({
  name: 'round_robin',
  aliases: ['roundrobin'],
  description: 'Round-robin from a random start offset; ignores weights.',
  options: { ...decoratorOptions },
  create: (config) => createRoundRobin(config),
});

export function setup(): void {
  registerBalancer(roundRobinBalancer);
}
setup();
