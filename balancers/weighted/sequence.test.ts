import assert from 'node:assert/strict';
import type { Logger } from '../../core';
import { makeEndpoints } from '../../testkit';
import { effectiveWeight, WeightedPicker } from '.';

// The EDF scheduler's exact pick sequence for small weight sets, worked out by hand: each endpoint
// has period 1/w and a first deadline random()/w; a pick takes the earliest deadline (ties: lower
// index) and moves it one period on. Weights are powers of two so every deadline is exact.
const ids = (p: WeightedPicker, n: number) => Array.from({ length: n }, () => p.pick().endpoint!.id.slice(3)).join('');
const scripted = (values: number[]) => () => values.shift()!;

describe('weighted picker: exact EDF pick sequences', () => {
  it('weights 4, 2, 1 with zero stagger pick 0120010 and repeat (4:2:1 in every 7 picks)', () => {
    const p = new WeightedPicker(makeEndpoints(3, [4, 2, 1]), () => 0);
    assert.equal(ids(p, 14), '01200100120010');
  });

  it('weights 1, 1, 1 staggered 0.5, 0.25, 0.75 pick 1, 0, 2 and repeat (the first deadlines order the round)', () => {
    const p = new WeightedPicker(makeEndpoints(3), scripted([0.5, 0.25, 0.75]));
    assert.equal(ids(p, 6), '102102');
  });

  it('the stagger is divided by the weight: weights 2, 1 staggered 0.5, 0.4 start at 0.25 and 0.4 and pick 01001001', () => {
    // deadlines: 0.25 | 0.4 -> 0:0.75 | 1:1.4 | 0:1.25 | 0:1.75 | 1:2.4 | 0:2.25 | 0:2.75 | 1
    const p = new WeightedPicker(makeEndpoints(2, [2, 1]), scripted([0.5, 0.4]));
    assert.equal(ids(p, 8), '01001001');
  });

  it('the heap is built over every index: five equal endpoints staggered 0.9 .. 0.1 pick 43210 and repeat', () => {
    const p = new WeightedPicker(makeEndpoints(5), scripted([0.9, 0.7, 0.5, 0.3, 0.1]));
    assert.equal(ids(p, 10), '4321043210');
  });

  it('seven endpoints in reverse deadline order: the heap orders all three levels (6543210)', () => {
    const p = new WeightedPicker(makeEndpoints(7), scripted([0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]));
    assert.equal(ids(p, 14), '65432106543210');
  });

  it('ties at the same deadline go to the lower index: four equal endpoints with zero stagger pick 0123 0123', () => {
    const p = new WeightedPicker(makeEndpoints(4), () => 0);
    assert.equal(ids(p, 8), '01230123');
  });

  it('a weight above maxWeight is clamped: weights 8 and 1 with maxWeight 2 pick 2:1 (010010)', () => {
    const p = new WeightedPicker(makeEndpoints(2, [8, 1]), () => 0, { maxWeight: 2 });
    assert.equal(ids(p, 6), '010010');
  });

  it('an invalid weight counts as 1 and is reported once per build with the count', () => {
    const warnings: unknown[][] = [];
    const logger = { warn: (...a: unknown[]) => warnings.push(a) } as unknown as Logger;
    const eps = makeEndpoints(3, [2, 0, -1]);
    const p = new WeightedPicker(eps, () => 0, { logger });
    // weights 2, 1, 1 with zero stagger: 0 1 2 0 0 1 2 0
    assert.equal(ids(p, 8), '01200120');
    assert.equal(warnings.length, 1);
    assert.deepEqual(warnings[0][0], { endpoints: ['ep-1=0', 'ep-2=-1'], count: 2 });
  });

  it('no endpoints: every pick says no-endpoints', () => {
    const p = new WeightedPicker([], () => 0);
    assert.deepEqual(p.pick(), { endpoint: null, reason: 'no-endpoints' });
  });

  it('effectiveWeight: missing is 1, a bad value is NaN, above max is max, a fraction is kept', () => {
    assert.equal(effectiveWeight(undefined, 10), 1);
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '2', null]) {
      assert.ok(Number.isNaN(effectiveWeight(bad, 10)), `${String(bad)}`);
    }
    assert.equal(effectiveWeight(11, 10), 10);
    assert.equal(effectiveWeight(10, 10), 10);
    assert.equal(effectiveWeight(2.5, 10), 2.5);
    assert.equal(effectiveWeight(0.5, 10), 0.5);
  });
});
