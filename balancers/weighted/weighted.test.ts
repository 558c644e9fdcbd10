import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConfigError, validateOptions, type Endpoint, type Logger } from '../../core';
import { balancerConformance, makeEndpoints, testBalancerContext } from '../../testkit';
import { OutlierBalancer } from '../outlier';
import { SlowStartBalancer } from '../slow-start';
import { createWeighted, effectiveWeight, weighted, weightedBalancer, weightedOptions, WeightedPicker } from '.';

balancerConformance({ it, describe, name: 'weighted', balancer: weighted, weighted: true, tolerance: 0.005 });
balancerConformance({
  it,
  describe,
  name: 'weighted + slow start + outlier ejection',
  // A fresh decorated balancer per build: the kit builds once per test with a fresh clock, while a
  // Balancer instance is one channel's (its slow-start memory would span the kit's tests).
  balancer: {
    name: 'weighted',
    build: (eps, ctx) =>
      createWeighted(validateOptions('weighted', weightedOptions, { slowStart: '30s', outlier: true })).build(eps, ctx),
  },
  weighted: true,
  tolerance: 0.01,
});

function counts(picker: WeightedPicker, eps: Endpoint[], n: number): number[] {
  const idx = new Map(eps.map((e, i) => [e, i]));
  const c = new Array(eps.length).fill(0);
  for (let i = 0; i < n; i++) c[idx.get(picker.pick().endpoint!)!]++;
  return c;
}

describe('weighted picker (EDF)', () => {
  it('honours weights within 1% over 100k picks, fractional weights included', () => {
    const weights = [1, 2, 3, 10, 0.5, 7.25];
    const eps = makeEndpoints(weights.length, weights);
    const total = weights.reduce((a, b) => a + b, 0);
    const c = counts(new WeightedPicker(eps, testBalancerContext(3).random), eps, 100_000);
    weights.forEach((w, i) => {
      const want = (100_000 * w) / total;
      assert.ok(Math.abs(c[i] - want) <= want * 0.01, `weight ${w}: ${c[i]} picks, want ${want.toFixed(0)}`);
    });
  });

  it('property: every endpoint is within 2 picks of its exact share, for any weights and any number of picks', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 5000 }),
        fc.integer(),
        (weights, n, seed) => {
          const eps = makeEndpoints(weights.length, weights);
          const total = weights.reduce((a, b) => a + b, 0);
          const c = counts(new WeightedPicker(eps, testBalancerContext(seed).random), eps, n);
          weights.forEach((w, i) =>
            assert.ok(
              Math.abs(c[i] - (n * w) / total) <= 2,
              `weights ${weights} n=${n}: endpoint ${i} got ${c[i]}, exact ${((n * w) / total).toFixed(2)}`,
            ),
          );
        },
      ),
      { numRuns: 200, seed: 8 },
    );
  });

  it('treats 0, negative, NaN, Infinity and non-numbers as weight 1 with a warning, never throwing', () => {
    const warnings: unknown[] = [];
    const logger: Logger = { debug() {}, info() {}, error() {}, warn: (o) => void warnings.push(o) };
    const bad = [0, -3, Number.NaN, Number.POSITIVE_INFINITY, '5' as unknown as number];
    const eps = [...makeEndpoints(5, bad), { ...makeEndpoints(6)[5], weight: 5 }];
    const ctx = { ...testBalancerContext(1), logger };
    const picker = weighted.build(eps, ctx) as WeightedPicker;
    const c = counts(picker, eps, 10_000);
    for (let i = 0; i < 5; i++)
      assert.ok(
        Math.abs(c[i] - 1000) <= 2,
        `bad weight ${String(bad[i])} got ${c[i]} of 10000 (want 1000 as weight 1)`,
      );
    assert.ok(Math.abs(c[5] - 5000) <= 2);
    assert.equal(warnings.length, 1);
    assert.equal((warnings[0] as { count: number }).count, 5);
  });

  it('clamps weights above maxWeight and honours missing weights as 1', () => {
    assert.equal(effectiveWeight(undefined, 10), 1);
    assert.equal(effectiveWeight(50, 10), 10);
    assert.equal(effectiveWeight(2.5, 10), 2.5);
    const eps = makeEndpoints(2, [1_000, 1]);
    const b = weightedBalancer.create(validateOptions('weighted', weightedOptions, { maxWeight: 3 }));
    const picker = b.build(eps, testBalancerContext(2));
    let first = 0;
    for (let i = 0; i < 4000; i++) if (picker.pick().endpoint!.id === 'ep-0') first++;
    assert.ok(Math.abs(first - 3000) <= 2, `clamped weight 3 got ${first}/4000`);
  });

  it('staggers the start so pickers built together do not all begin on the heaviest endpoint', () => {
    const eps = makeEndpoints(4, [1, 1, 1, 1]);
    const firsts = new Set<string>();
    for (let s = 1; s <= 40; s++) firsts.add(weighted.build(eps, testBalancerContext(s)).pick().endpoint!.id);
    assert.equal(firsts.size, 4);
  });

  it('is smooth: in every window of one cycle (7 picks) weights 5:1:1 get 4-6, 0-2 and 0-2 picks', () => {
    const eps = makeEndpoints(3, [5, 1, 1]);
    const picker = new WeightedPicker(eps, testBalancerContext(9).random);
    const seq = Array.from({ length: 700 }, () => Number(picker.pick().endpoint!.id.slice(3)));
    for (let i = 0; i + 7 <= seq.length; i++) {
      const c = [0, 0, 0];
      for (const x of seq.slice(i, i + 7)) c[x]++;
      assert.ok(c[0] >= 4 && c[0] <= 6 && c[1] <= 2 && c[2] <= 2, `window at ${i}: ${c}`);
    }
  });

  it('config: decorators come from options, and bad options fail naming the field', () => {
    assert.ok(
      weightedBalancer.create(validateOptions('weighted', weightedOptions, { outlier: true })) instanceof
        OutlierBalancer,
    );
    assert.ok(
      weightedBalancer.create(validateOptions('weighted', weightedOptions, { slowStart: '10s' })) instanceof
        SlowStartBalancer,
    );
    assert.throws(
      () => validateOptions('weighted', weightedOptions, { maxWeight: 0 }),
      (e: unknown) => e instanceof ConfigError && /"maxWeight"/.test(e.message),
    );
    assert.throws(
      () => validateOptions('weighted', weightedOptions, { slowStart: 'soon' }),
      (e: unknown) => e instanceof ConfigError && /"slowStart"/.test(e.message),
    );
    assert.throws(
      () => validateOptions('weighted', weightedOptions, { outlierMaxEjectedPercent: 150 }),
      /"outlierMaxEjectedPercent"/,
    );
  });
});
