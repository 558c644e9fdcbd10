import assert from 'node:assert/strict';
import { getBalancer } from '../../core';
import { balancerConformance, makeEndpoints, testBalancerContext } from '../../testkit';
import { leastRequests, leastRequestsBalancer, setup } from '.';

balancerConformance({ it, describe, name: 'least_requests (example)', balancer: leastRequests });

describe('least_requests example', () => {
  it('sends the next call to the endpoint with the fewest calls in flight', () => {
    const picker = leastRequests.build(makeEndpoints(3), testBalancerContext(7));
    const held = [picker.pick(), picker.pick(), picker.pick()];
    const ids = held.map((p) => p.endpoint?.id).sort();
    assert.deepEqual(ids, ['ep-0', 'ep-1', 'ep-2'], 'three calls in flight go to three endpoints');
    const freed = held[1];
    if (!freed.endpoint) throw new Error('no endpoint');
    freed.done({ ok: true, latencyMs: 3 });
    freed.done({ ok: true, latencyMs: 3 }); // a second done() is ignored
    for (let i = 0; i < 5; i++) {
      const p = picker.pick();
      assert.equal(p.endpoint?.id, freed.endpoint.id, 'the freed endpoint is the only one with 0 in flight');
      if (p.endpoint) p.done({ ok: true, latencyMs: 1 });
    }
  });

  it('is found by name after setup()', () => {
    setup();
    assert.equal(getBalancer('least_requests'), leastRequestsBalancer);
  });
});
