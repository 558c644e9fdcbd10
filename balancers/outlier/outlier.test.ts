import assert from 'node:assert/strict';
import fc from 'fast-check';
import { validateOptions, type Balancer, type Endpoint, type Pick } from '../../core';
import { balancerConformance, makeEndpoints, testBalancerContext } from '../../testkit';
import { P2cBalancer } from '../p2c';
import { roundRobin } from '../round-robin';
import { OutlierBalancer, outlierOptions, withOutlierEjection, type OutlierConfig } from '.';

type Call = Extract<Pick, { endpoint: Endpoint }>;
const cfg = (o: Record<string, unknown>): OutlierConfig =>
  validateOptions('outlier', outlierOptions, { outlier: true, ...o });

balancerConformance({
  it,
  describe,
  name: 'outlier ejection around round_robin',
  balancer: { name: 'rr+outlier', build: (eps, ctx) => withOutlierEjection(roundRobin, cfg({})).build(eps, ctx) },
  tolerance: 0.001,
});

/** Drives a balancer with a virtual clock; `fails(endpoint)` decides each call's outcome. */
function driver(b: Balancer, eps: Endpoint[], seed = 1) {
  const ctx = testBalancerContext(seed);
  const picker = b.build(eps, ctx);
  const call = (ok: (e: Endpoint) => boolean) => {
    const p = picker.pick() as Call;
    assert.ok(p.endpoint, 'no endpoint picked');
    p.done({ ok: ok(p.endpoint), latencyMs: 1 });
    return p.endpoint;
  };
  return { ctx, picker, call };
}

describe('outlier ejection (virtual clock)', () => {
  it('ejects after consecutive failures for the base time, then for 2x, 3x… capped at the maximum', () => {
    const b = new OutlierBalancer(
      roundRobin,
      cfg({
        outlierConsecutiveFailures: 3,
        outlierFailureRate: 0,
        outlierBaseEjection: '10s',
        outlierMaxEjection: '25s',
      }),
    );
    const eps = makeEndpoints(4);
    const { ctx, call } = driver(b, eps);
    const bad = (e: Endpoint) => e.id !== 'ep-0';
    const ejectAndMeasure = (): number => {
      while (b.ejected().length === 0) call(bad);
      const t0 = ctx.now();
      // While ejected, ep-0 is never picked; step the clock until it comes back.
      for (;;) {
        ctx.advance(100);
        const e = call(() => true);
        if (e.id === 'ep-0') return ctx.now() - t0;
        assert.ok(ctx.now() - t0 < 60_000, 'never returned');
      }
    };
    assert.ok(Math.abs(ejectAndMeasure() - 10_000) <= 400);
    assert.ok(Math.abs(ejectAndMeasure() - 20_000) <= 400);
    assert.ok(Math.abs(ejectAndMeasure() - 25_000) <= 400, 'the third ejection is capped at outlierMaxEjection');
    // After staying in for outlierMaxEjection, the count resets: the next ejection is the base time again.
    for (let i = 0; i < 26; i++) {
      ctx.advance(1000);
      call(() => true);
    }
    assert.ok(Math.abs(ejectAndMeasure() - 10_000) <= 400);
  });

  it('ejects on the failure rate within a window even without consecutive failures', () => {
    const b = new OutlierBalancer(
      roundRobin,
      cfg({ outlierConsecutiveFailures: 0, outlierFailureRate: 0.5, outlierMinRequests: 10, outlierInterval: '10s' }),
    );
    const eps = makeEndpoints(2);
    const { call } = driver(b, eps);
    let n = 0;
    // ep-0 fails every other call: never two in a row, 50% rate.
    while (b.ejected().length === 0 && n < 100) {
      call((e) => e.id !== 'ep-0' || n++ % 2 === 1);
    }
    assert.deepEqual(b.ejected(), ['10.0.0.1:8000']);
    assert.ok(n >= 10 && n <= 12, `ejected after ${n} calls to ep-0`);
    const b2 = new OutlierBalancer(
      roundRobin,
      cfg({ outlierConsecutiveFailures: 0, outlierFailureRate: 0.5, outlierMinRequests: 10 }),
    );
    const { call: call2 } = driver(b2, eps);
    let m = 0;
    for (let i = 0; i < 200; i++) call2((e) => e.id !== 'ep-0' || m++ % 3 !== 0); // 33% failures: stays in
    assert.deepEqual(b2.ejected(), []);
  });

  it('property: never ejects more than floor(n × maxEjectedPercent / 100) endpoints, never all, and never picks an ejected one', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 0, max: 100 }),
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 3000 })), { minLength: 1, maxLength: 400 }),
        fc.integer(),
        (n, pct, steps, seed) => {
          const b = new OutlierBalancer(
            new P2cBalancer(),
            cfg({
              outlierConsecutiveFailures: 2,
              outlierMinRequests: 4,
              outlierMaxEjectedPercent: pct,
              outlierBaseEjection: '5s',
            }),
          );
          const eps = makeEndpoints(n);
          const { ctx, call } = driver(b, eps, seed);
          const cap = Math.min(Math.floor((n * pct) / 100), n - 1);
          for (const [ok, dt] of steps) {
            ctx.advance(dt);
            const before = new Set(b.ejected(ctx.now()));
            const e = call(() => ok);
            assert.ok(!before.has(`${e.host}:${e.port}`), 'picked an ejected endpoint');
            assert.ok(b.ejected().length <= cap, `${b.ejected().length} ejected of ${n} at ${pct}%`);
          }
        },
      ),
      { numRuns: 300, seed: 8 },
    );
  });

  it('keeps ejection state across rebuilds, and an endpoint that leaves loses it', () => {
    const b = new OutlierBalancer(roundRobin, cfg({ outlierConsecutiveFailures: 2, outlierFailureRate: 0 }));
    const eps = makeEndpoints(3);
    const { ctx, call } = driver(b, eps);
    while (b.ejected().length === 0) call((e) => e.id !== 'ep-1');
    const p2 = b.build([...eps, ...makeEndpoints(4).slice(3)], ctx);
    for (let i = 0; i < 20; i++)
      assert.notEqual(p2.pick().endpoint!.id, 'ep-1', 'the ejection was forgotten by a rebuild');
    b.build([eps[0], eps[2]], ctx);
    const p3 = b.build(eps, ctx);
    const seen = new Set(Array.from({ length: 6 }, () => p3.pick().endpoint!.id));
    assert.ok(seen.has('ep-1'), 'an endpoint that left and came back is still ejected');
  });

  it('an older picker still in use does not rebuild (so it cannot disturb the newest)', () => {
    const b = new OutlierBalancer(
      roundRobin,
      cfg({ outlierConsecutiveFailures: 1, outlierFailureRate: 0, outlierBaseEjection: '1s' }),
    );
    const eps = makeEndpoints(3);
    const ctx = testBalancerContext(1);
    const old = b.build(eps, ctx);
    const cur = b.build(eps, ctx);
    let p = old.pick() as Call;
    while (p.endpoint.id !== 'ep-2') p = old.pick() as Call;
    p.done({ ok: false, latencyMs: 1 }); // ejects ep-2 via the shared state; only `cur` rebuilds
    assert.deepEqual(b.ejected(), ['10.0.0.1:8002']);
    for (let i = 0; i < 9; i++) assert.notEqual(cur.pick().endpoint!.id, 'ep-2');
    assert.ok(Array.from({ length: 9 }, () => old.pick().endpoint!.id).includes('ep-2'), 'the old picker changed');
  });
});
