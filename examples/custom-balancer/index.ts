/**
 * A worked example of a custom balancer: `least_requests` picks the endpoint with the fewest calls
 * in flight, breaking ties at random. docs/writing-a-balancer.md walks through it; the test beside
 * it runs the same conformance suite as the built-in balancers. In an application, import from
 * `wayfinder-discovery` instead of the relative paths used inside this repository.
 */
import '../../builtins'; // the built-in registries and balancers
import {
  defineBalancer,
  registerBalancer,
  type Balancer,
  type BalancerContext,
  type Endpoint,
  type Pick,
  type Picker,
} from '../../core';

/**
 * One picker per endpoint set (build() is called on every change). In-flight counts live in the
 * picker, so a new set starts from zero; a balancer that must carry load across rebuilds keeps it
 * in the Balancer object instead, keyed by endpoint id.
 */
export class LeastRequestsPicker implements Picker {
  private readonly inFlight: number[];
  constructor(
    private readonly endpoints: readonly Endpoint[],
    private readonly ctx: BalancerContext,
  ) {
    this.inFlight = endpoints.map(() => 0);
  }

  pick(): Pick {
    const n = this.endpoints.length;
    if (n === 0) return { endpoint: null, reason: 'no-endpoints' };
    // Fewest in flight; among equals, a uniform choice (reservoir sampling over the ties).
    let best = -1;
    let ties = 0;
    for (let i = 0; i < n; i++) {
      if (best >= 0 && this.inFlight[i] > this.inFlight[best]) continue;
      if (best < 0 || this.inFlight[i] < this.inFlight[best]) {
        best = i;
        ties = 1;
      } else if (this.ctx.random() * ++ties < 1) best = i;
    }
    this.inFlight[best]++;
    let finished = false;
    return {
      endpoint: this.endpoints[best],
      // done() may be called more than once by a careless caller: count the call's end once.
      done: () => {
        if (finished) return;
        finished = true;
        this.inFlight[best]--;
      },
    };
  }
}

export const leastRequests: Balancer = {
  name: 'least_requests',
  build: (endpoints, ctx) => new LeastRequestsPicker(endpoints, ctx),
};

/** The definition: a name (gRPC policy `wayfinder_least_requests`), a description, its options. */
export const leastRequestsBalancer = defineBalancer<Record<string, never>>({
  name: 'least_requests',
  description: 'The endpoint with the fewest calls in flight; ties broken at random.',
  options: {},
  create: () => leastRequests,
});

/** Makes `least_requests` known to Discovery and (after installGrpc()) to gRPC. Idempotent. */
export function setup(): void {
  registerBalancer(leastRequestsBalancer);
}
