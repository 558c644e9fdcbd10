import assert from 'node:assert/strict';
import { type Endpoint, type Pick } from '../../core';
import { balancerConformance, makeEndpoints, testBalancerContext } from '../../testkit';
import { OutlierBalancer } from '../outlier';
import { P2cBalancer } from '../p2c';
import { weighted } from '../weighted';
import { SlowStartBalancer, withSlowStart } from '.';

type Call = Extract<Pick, { endpoint: Endpoint }>;

balancerConformance({
  it,
  describe,
  name: 'slow start around weighted',
  balancer: {
    name: 'weighted+slow-start',
    build: (eps, ctx) => withSlowStart(weighted, { slowStart: 30_000 }).build(eps, ctx),
  },
  weighted: true,
  tolerance: 0.005,
});

describe('slow start (virtual clock)', () => {
  /** Share of `id` over 20k picks at the current time. */
  const share = (picker: { pick(): Pick }, id: string) => {
    let c = 0;
    for (let i = 0; i < 20_000; i++) {
      const p = picker.pick() as Call;
      if (p.endpoint.id === id) c++;
      p.done({ ok: true, latencyMs: 1 });
    }
    return c / 20_000;
  };

  it('leaves the initial set alone and ramps a joining endpoint linearly (floor 10%) over the window', () => {
    const b = new SlowStartBalancer(weighted, 40_000);
    const ctx = testBalancerContext(3);
    const eps = makeEndpoints(4);
    assert.ok(Math.abs(share(b.build(eps.slice(0, 3), ctx), 'ep-0') - 1 / 3) < 0.01, 'the initial set was slowed');
    const picker = b.build(eps, ctx);
    const seen: number[] = [];
    for (const at of [0, 10_000, 20_000, 30_000, 40_000]) {
      ctx.advance(at - (seen.length ? [0, 10_000, 20_000, 30_000, 40_000][seen.length - 1] : 0));
      seen.push(share(picker, 'ep-3'));
    }
    // Full share is 25%; the factor f scales it roughly (re-draws are bounded, so not exactly).
    assert.ok(seen[0] < 0.06, `at join: ${seen[0]}`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i] > seen[i - 1], `not increasing: ${seen}`);
    assert.ok(seen[2] > 0.1 && seen[2] < 0.2, `half way: ${seen[2]}`);
    assert.ok(Math.abs(seen[4] - 0.25) < 0.01, `after the window: ${seen[4]}`);
  });

  it('re-drawn picks never start: in-flight counts of a p2c inner balancer match the calls really open', () => {
    const inner = new P2cBalancer();
    const b = new SlowStartBalancer(inner, 10_000);
    const ctx = testBalancerContext(5);
    const eps = makeEndpoints(3);
    b.build(eps.slice(0, 2), ctx);
    const picker = b.build(eps, ctx); // ep-2 joins: p2c loves it (0 in flight), slow start re-draws
    const open = Array.from({ length: 300 }, () => picker.pick() as Call);
    const inflight = eps.reduce((a, e) => a + inner.loads.get(`${e.host}:${e.port}`)!.inflight, 0);
    assert.equal(inflight, open.length);
    open.forEach((c) => c.done({ ok: true, latencyMs: 2 }));
    assert.equal(
      eps.reduce((a, e) => a + inner.loads.get(`${e.host}:${e.port}`)!.inflight, 0),
      0,
    );
  });

  it('with explicitStart, leaves starting to the caller', () => {
    const inner = new P2cBalancer();
    const b = new SlowStartBalancer(inner, 10_000);
    const ctx = { ...testBalancerContext(5), explicitStart: true };
    const eps = makeEndpoints(2);
    const picker = b.build(eps, ctx);
    const c = picker.pick() as Call & { started(): void };
    assert.equal(inner.loads.get(`${c.endpoint.host}:${c.endpoint.port}`)!.inflight, 0);
    c.started();
    assert.equal(inner.loads.get(`${c.endpoint.host}:${c.endpoint.port}`)!.inflight, 1);
  });

  it('an endpoint the outlier decorator ejected warms up again when it returns', () => {
    const ss = new SlowStartBalancer(weighted, 20_000);
    const b = new OutlierBalancer(ss, {
      outlier: true,
      outlierConsecutiveFailures: 1,
      outlierFailureRate: 0,
      outlierBaseEjection: 5_000,
    });
    const ctx = testBalancerContext(2);
    const eps = makeEndpoints(4);
    const picker = b.build(eps, ctx);
    let p = picker.pick() as Call;
    while (p.endpoint.id !== 'ep-1') p = picker.pick() as Call;
    p.done({ ok: false, latencyMs: 1 });
    ctx.advance(5_000);
    const back = share(picker, 'ep-1');
    assert.ok(back < 0.06, `ep-1 got ${back} right after its return (full share 0.25)`);
    ctx.advance(20_000);
    assert.ok(Math.abs(share(picker, 'ep-1') - 0.25) < 0.01);
  });
});
