import assert from 'node:assert/strict';
import type { Endpoint, Pick } from '../../core';
import { makeEndpoints, testBalancerContext } from '../../testkit';
import { roundRobin } from '../round-robin';
import { SlowStartBalancer } from '.';

type Call = Extract<Pick, { endpoint: Endpoint }>;

describe('slow start: pinned initial set and name', () => {
  it('the first set is not warming: inside the window a round robin over it keeps its exact rotation', () => {
    const b = new SlowStartBalancer(roundRobin, 1000);
    const ctx = testBalancerContext(1);
    const eps = makeEndpoints(4);
    const picker = b.build(eps, ctx);
    ctx.advance(1); // 1 ms into the window: a warming endpoint would be kept with probability 0.1
    const ids = Array.from({ length: 8 }, () => (picker.pick() as Call).endpoint.id);
    const start = eps.findIndex((e) => e.id === ids[0]);
    assert.deepEqual(
      ids,
      Array.from({ length: 8 }, (_, i) => eps[(start + i) % 4].id),
    );
  });

  it("takes the inner balancer's name", () => {
    assert.equal(new SlowStartBalancer(roundRobin, 1000).name, roundRobin.name);
  });
});
