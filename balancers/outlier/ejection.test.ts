import assert from 'node:assert/strict';
import type { Endpoint } from '../../core';
import { endpointKey } from '../../core';
import { makeEndpoints, testBalancerContext } from '../../testkit';
import { roundRobin } from '../round-robin';
import { OutlierBalancer, type OutlierConfig, type OutlierPicker } from '.';

// Numbers, not shapes: the exact call at which an endpoint is ejected, the window edges, and the
// ejection times, driven through OutlierBalancer.record() on a virtual clock.
function setup(config: OutlierConfig, n = 4) {
  const b = new OutlierBalancer(roundRobin, { outlier: true, ...config });
  const ctx = testBalancerContext(1);
  const eps = makeEndpoints(n);
  const picker = b.build(eps, ctx) as OutlierPicker;
  const state = (i: number) => b.stateOf(eps[i]);
  const key = (i: number) => endpointKey(eps[i]);
  const fail = (i: number, times = 1, t = ctx.now()) => {
    for (let k = 0; k < times; k++) b.record(state(i), false, t);
  };
  const ok = (i: number, times = 1, t = ctx.now()) => {
    for (let k = 0; k < times; k++) b.record(state(i), true, t);
  };
  /** The endpoints the picker hands out over 2n picks. */
  const served = () => {
    const seen = new Set<string>();
    for (let k = 0; k < 2 * n; k++) seen.add((picker.pick().endpoint as Endpoint).id);
    return [...seen].sort();
  };
  return { b, ctx, eps, picker, state, key, fail, ok, served };
}

const consecutiveOnly = { outlierFailureRate: 0, outlierConsecutiveFailures: 5, outlierBaseEjection: 1000 };

describe('outlier ejection: exact thresholds and times', () => {
  it('ejects at exactly the 5th consecutive failure, not at the 4th', () => {
    const { b, fail, key, served } = setup(consecutiveOnly);
    fail(0, 4);
    assert.deepEqual(b.ejected(), [], 'four failures: still in');
    assert.deepEqual(served(), ['ep-0', 'ep-1', 'ep-2', 'ep-3']);
    fail(0);
    assert.deepEqual(b.ejected(), [key(0)]);
    assert.deepEqual(served(), ['ep-1', 'ep-2', 'ep-3'], 'the picker stops serving it at once');
  });

  it('a success resets the consecutive count: 4 failures, 1 success, 4 failures stay in; the 5th after that ejects', () => {
    const { b, fail, ok, key } = setup(consecutiveOnly);
    fail(0, 4);
    ok(0);
    fail(0, 4);
    assert.deepEqual(b.ejected(), []);
    fail(0);
    assert.deepEqual(b.ejected(), [key(0)]);
  });

  it('outlierConsecutiveFailures: 1 ejects on the first failure; 0 turns the check off', () => {
    const one = setup({ ...consecutiveOnly, outlierConsecutiveFailures: 1 });
    one.fail(0);
    assert.deepEqual(one.b.ejected(), [one.key(0)]);
    const off = setup({ ...consecutiveOnly, outlierConsecutiveFailures: 0 });
    off.fail(0, 50);
    assert.deepEqual(off.b.ejected(), []);
  });

  const rateOnly = {
    outlierConsecutiveFailures: 0,
    outlierFailureRate: 0.5,
    outlierMinRequests: 4,
    outlierInterval: 1000,
    outlierBaseEjection: 1000,
  };

  it('failure rate: 2 failed of 4 calls within one window (0.5 >= 0.5) ejects at the 4th call, not before', () => {
    const { b, ok, fail, key } = setup(rateOnly);
    ok(0, 2, 0);
    fail(0, 1, 500);
    assert.deepEqual(b.ejected(), []);
    fail(0, 1, 999);
    assert.deepEqual(b.ejected(), [key(0)], '4 calls, 2 failed, last one 1 ms before the window ends');
  });

  it('failure rate is judged only from outlierMinRequests calls on: 3 of 3 failed stay in, the 4th failure ejects', () => {
    const { b, fail, key } = setup(rateOnly);
    fail(0, 3, 0);
    assert.deepEqual(b.ejected(), [], '3 calls: fewer than outlierMinRequests');
    fail(0, 1, 0);
    assert.deepEqual(b.ejected(), [key(0)]);
  });

  it('failure rate: 1 failed of 4 (0.25 < 0.5) stays in', () => {
    const { b, ok, fail } = setup(rateOnly);
    ok(0, 3, 0);
    fail(0, 1, 10);
    assert.deepEqual(b.ejected(), []);
  });

  it('failure-rate window: a call exactly outlierInterval after the window opened starts a new window', () => {
    const { b, ok, fail, state } = setup(rateOnly);
    ok(0, 1, 0);
    fail(0, 1, 0);
    ok(0, 1, 0);
    assert.equal(state(0).windowStart, 0);
    fail(0, 1, 1000);
    assert.equal(state(0).windowStart, 1000);
    assert.equal(state(0).calls, 1);
    assert.equal(state(0).failed, 1);
    assert.deepEqual(b.ejected(), [], 'the 4th call fell into a fresh window');
  });

  it('failure-rate window: it tumbles (a call at 1999 is in the window opened at 1000; one at 2000 opens a new one)', () => {
    const { ok, state } = setup(rateOnly);
    ok(0, 1, 1000);
    ok(0, 1, 1999);
    assert.equal(state(0).windowStart, 1000);
    assert.equal(state(0).calls, 2);
    ok(0, 1, 2000);
    assert.equal(state(0).windowStart, 2000);
    assert.equal(state(0).calls, 1);
  });

  it('ejection time grows as n × base and is capped at max: 1000, 2000, then 2500 (not 3000)', () => {
    const { b, picker, fail, state, key } = setup({ ...consecutiveOnly, outlierMaxEjection: 2500 });
    fail(0, 5, 0);
    assert.equal(state(0).ejectedUntil, 1000);
    assert.deepEqual(b.ejected(999), [key(0)]);
    assert.deepEqual(b.ejected(1000), [], 'the ejection ends at its end time');
    picker.refresh(1000);
    assert.equal(state(0).ejectedUntil, 0);
    assert.equal(state(0).returnedAt, 1000);
    fail(0, 5, 1000);
    assert.equal(state(0).ejectedUntil, 3000, 'second ejection: 2 × 1000');
    picker.refresh(3000);
    fail(0, 5, 3000);
    assert.equal(state(0).ejectedUntil, 5500, 'third ejection: min(3 × 1000, 2500)');
    assert.equal(state(0).ejections, 3);
  });

  it('the ejection count resets once an endpoint has stayed in for outlierMaxEjection, and not 1 ms before', () => {
    const run = (quietFor: number) => {
      const { picker, fail, state } = setup({ ...consecutiveOnly, outlierMaxEjection: 2500 });
      fail(0, 5, 0);
      picker.refresh(1000);
      fail(0, 5, 1000 + quietFor);
      return state(0).ejectedUntil - (1000 + quietFor);
    };
    assert.equal(run(2500), 1000, 'stayed in for exactly max: first ejection again');
    assert.equal(run(2499), 2000, 'one ms short: second ejection');
  });

  it('an ejected endpoint comes back at the first pick at or after its end time, not before', () => {
    const { ctx, fail, served, state } = setup(consecutiveOnly);
    fail(0, 5, 0);
    ctx.advance(999);
    assert.deepEqual(served(), ['ep-1', 'ep-2', 'ep-3']);
    ctx.advance(1);
    assert.deepEqual(served(), ['ep-0', 'ep-1', 'ep-2', 'ep-3']);
    assert.equal(state(0).returnedAt, 1000);
  });

  it('failures while ejected do not extend the ejection, and the window restarts after an ejection', () => {
    const { fail, state } = setup(consecutiveOnly);
    fail(0, 5, 0);
    fail(0, 10, 10);
    assert.equal(state(0).ejectedUntil, 1000);
    assert.equal(state(0).ejections, 1);
    assert.equal(state(0).windowStart, 10, 'the failure-rate window restarted at the first call after the ejection');
    assert.equal(state(0).calls, 10);
    assert.equal(state(0).consecutive, 10, 'counted, but only from the ejection on');
  });

  it('cap: at most floor(n × percent / 100) ejected: 50 % of 4 is 2, 25 % of 4 is 1, 50 % of 3 is 1', () => {
    for (const [n, pct, expected] of [
      [4, 50, 2],
      [4, 25, 1],
      [3, 50, 1],
      [4, 0, 0],
    ] as const) {
      const { b, fail } = setup({ ...consecutiveOnly, outlierMaxEjectedPercent: pct }, n);
      for (let i = 0; i < n; i++) fail(i, 5, 0);
      assert.equal(b.ejected().length, expected, `${n} endpoints at ${pct} %`);
    }
  });

  it('cap: never the last endpoint, even at 100 % (3 of 3 trip, 2 are ejected)', () => {
    const { b, fail, served } = setup({ ...consecutiveOnly, outlierMaxEjectedPercent: 100 }, 3);
    for (let i = 0; i < 3; i++) fail(i, 5, 0);
    assert.equal(b.ejected().length, 2);
    assert.deepEqual(served(), ['ep-2']);
  });

  it('an endpoint that tripped while the cap was reached is ejected on its next failure once room frees', () => {
    const { b, picker, fail, key } = setup({ ...consecutiveOnly, outlierMaxEjectedPercent: 25 }, 4);
    fail(0, 5, 0);
    fail(1, 5, 0);
    assert.deepEqual(b.ejected(), [key(0)]);
    picker.refresh(1000);
    fail(1, 1, 1000);
    assert.deepEqual(b.ejected(), [key(1)]);
  });
});
