import assert from 'node:assert/strict';
import type { Endpoint } from '../../core';
import { endpointKey } from '../../core';
import { makeEndpoints, testBalancerContext } from '../../testkit';
import { roundRobin } from '../round-robin';
import { OutlierBalancer, type OutlierPicker } from '.';

function setup() {
  const b = new OutlierBalancer(roundRobin, {
    outlier: true,
    outlierFailureRate: 0,
    outlierConsecutiveFailures: 1,
    outlierBaseEjection: 1000,
    outlierMaxEjection: 5000,
    outlierMaxEjectedPercent: 100,
  });
  const ctx = testBalancerContext(1);
  const eps = makeEndpoints(4);
  const picker = b.build(eps, ctx) as OutlierPicker;
  const fail = (i: number) => b.record(b.stateOf(eps[i])!, false, ctx.now());
  const served = () => {
    const seen = new Set<string>();
    for (let k = 0; k < 8; k++) seen.add((picker.pick().endpoint as Endpoint).id);
    return [...seen].sort();
  };
  return { b, ctx, eps, fail, served, key: (i: number) => endpointKey(eps[i]) };
}

describe('outlier ejection: pinned returns', () => {
  it('the earliest of several ejections ends on time, not when the latest ends', () => {
    const { ctx, fail, served } = setup();
    fail(0); // out until 1000
    ctx.advance(500);
    fail(1); // out until 1500
    assert.deepEqual(served(), ['ep-2', 'ep-3']);
    ctx.advance(500); // t = 1000
    assert.deepEqual(served(), ['ep-0', 'ep-2', 'ep-3']);
    ctx.advance(500); // t = 1500
    assert.deepEqual(served(), ['ep-0', 'ep-1', 'ep-2', 'ep-3']);
  });

  it('the ejection count resets outlierMaxEjection after the return, counted from the return, not from a later rebuild', () => {
    const { b, ctx, fail, served, key } = setup();
    fail(0); // 1st ejection: 1000 ms
    ctx.advance(1000);
    assert.deepEqual(served(), ['ep-0', 'ep-1', 'ep-2', 'ep-3'], 'ep-0 back at t = 1000');
    ctx.advance(5000); // t = 6000: 5000 ms since ep-0's return
    fail(1); // ejecting another endpoint refreshes the picker at t = 6000
    fail(0);
    assert.deepEqual(b.ejected(6999).sort(), [key(0), key(1)]);
    assert.deepEqual(b.ejected(7000), [], 'ep-0: a first ejection again (1000 ms), not a second (2000 ms)');
  });
});
