import assert from 'node:assert/strict';
import { roundRobin, RoundRobinPicker } from '.';
import { balancerConformance, makeEndpoints, testBalancerContext } from '../../testkit';

balancerConformance({ it, describe, name: 'round_robin', balancer: roundRobin, weighted: false, tolerance: 0.001 });

describe('round_robin picker', () => {
  it('visits every endpoint exactly once per cycle, in order, from the start offset', () => {
    const eps = makeEndpoints(5);
    const picker = new RoundRobinPicker(eps, () => 0.5); // offset floor(0.5*5) = 2
    const seq = Array.from({ length: 10 }, () => picker.pick().endpoint!.id);
    assert.deepEqual(seq, ['ep-2', 'ep-3', 'ep-4', 'ep-0', 'ep-1', 'ep-2', 'ep-3', 'ep-4', 'ep-0', 'ep-1']);
  });

  it('starts at different offsets for different random draws (no thundering herd on endpoint 0)', () => {
    const eps = makeEndpoints(10);
    const firsts = new Set<string>();
    for (let seed = 1; seed <= 50; seed++)
      firsts.add(roundRobin.build(eps, testBalancerContext(seed)).pick().endpoint!.id);
    assert.ok(firsts.size >= 6, `only ${firsts.size} distinct start offsets over 50 pickers`);
  });
});
