import assert from 'node:assert/strict';
import fc from 'fast-check';
import { getBalancer, validateOptions, type Endpoint, type Pick } from '../../core';
import { balancerConformance, makeEndpoints, testBalancerContext } from '../../testkit';
import { createP2c, P2cBalancer, p2cBalancer, p2cOptions, type P2cPicker } from '.';

type Call = Extract<Pick, { endpoint: Endpoint }> & { started?(): void };
const fresh = (cfg: Record<string, unknown>) => ({
  name: 'p2c',
  build: (eps: Endpoint[], ctx: ReturnType<typeof testBalancerContext>) =>
    createP2c(validateOptions('p2c', p2cOptions, cfg)).build(eps, ctx),
});

// A Balancer instance is one channel's and remembers load across builds; the kit reuses its
// balancer across tests, so each build gets a fresh instance here.
balancerConformance({ it, describe, name: 'p2c (least-request)', balancer: fresh({}) });
balancerConformance({ it, describe, name: 'p2c (peak EWMA)', balancer: fresh({ ewma: true }) });
balancerConformance({
  it,
  describe,
  name: 'p2c (peak EWMA) + slow start + outlier ejection',
  balancer: fresh({ ewma: true, slowStart: '30s', outlier: true }),
});

describe('p2c least-request', () => {
  it('sends the next call to the endpoint with fewer calls in flight', () => {
    const eps = makeEndpoints(2);
    const picker = new P2cBalancer().build(eps, testBalancerContext(1));
    const open: Call[] = [];
    for (let i = 0; i < 10; i++) open.push(picker.pick() as Call);
    const on0 = open.filter((c) => c.endpoint.id === 'ep-0').length;
    assert.equal(on0, 5, 'two endpoints, ten open calls: five each');
    // Finish three calls on ep-0: the next three picks must all go there.
    open
      .filter((c) => c.endpoint.id === 'ep-0')
      .slice(0, 3)
      .forEach((c) => c.done({ ok: true, latencyMs: 1 }));
    for (let i = 0; i < 3; i++) assert.equal(picker.pick().endpoint!.id, 'ep-0');
  });

  it('property: never picks the endpoint with the most calls in flight when that maximum is unique', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 30 }), { minLength: 2, maxLength: 12 }),
        fc.integer(),
        (inflight, seed) => {
          const eps = makeEndpoints(inflight.length);
          const b = new P2cBalancer();
          const ctx = testBalancerContext(seed);
          b.build(eps, ctx);
          eps.forEach((e, i) => (b.loads.get(`${e.host}:${e.port}`)!.inflight = inflight[i]));
          const picker = b.build(eps, ctx);
          const worst = eps[inflight.indexOf(Math.max(...inflight))];
          for (let k = 0; k < 50; k++) {
            const p = picker.pick() as Call;
            assert.notEqual(p.endpoint, worst);
            p.done({ ok: true, latencyMs: 1 });
          }
        },
      ),
      { numRuns: 200, seed: 8 },
    );
  });

  it('property: equal endpoints get equal shares (within 2 points) for any set size', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 20 }), fc.integer(), (n, seed) => {
        const eps = makeEndpoints(n);
        const picker = new P2cBalancer().build(eps, testBalancerContext(seed));
        const c = new Map<string, number>();
        const N = 2000 * n;
        for (let i = 0; i < N; i++) {
          const p = picker.pick() as Call;
          c.set(p.endpoint.id, (c.get(p.endpoint.id) ?? 0) + 1);
          p.done({ ok: true, latencyMs: 3 });
        }
        for (const e of eps)
          assert.ok(Math.abs((c.get(e.id) ?? 0) / N - 1 / n) <= 0.02, `${e.id}: ${c.get(e.id)} of ${N}`);
      }),
      { numRuns: 25, seed: 8 },
    );
  });

  it('keeps in-flight counts across rebuilds and drops the state of removed endpoints', () => {
    const b = new P2cBalancer();
    const ctx = testBalancerContext(1);
    const eps = makeEndpoints(3);
    const p1 = b.build(eps, ctx);
    const calls = Array.from({ length: 6 }, () => p1.pick() as Call);
    const p2 = b.build([eps[0], eps[1], { ...eps[2], port: 9999, id: 'new' }], ctx);
    const key = (e: Endpoint) => `${e.host}:${e.port}`;
    assert.equal(
      b.loads.get(key(eps[0]))!.inflight + b.loads.get(key(eps[1]))!.inflight,
      calls.filter((c) => c.endpoint !== eps[2]).length,
    );
    assert.equal(b.loads.get(key(eps[2])), undefined, 'removed endpoint state kept');
    assert.equal(b.loads.size, 3);
    // Calls on the removed endpoint finish harmlessly; the new endpoint (0 in flight) gets the next pick.
    for (const c of calls) c.done({ ok: true, latencyMs: 1 });
    assert.equal(b.loads.get(key(eps[0]))!.inflight, 0);
    assert.ok(p2.pick().endpoint);
  });

  it('with explicitStart, counts a call in flight from started(), not from pick(), and done() without started() leaves counts alone', () => {
    const b = new P2cBalancer();
    const ctx = { ...testBalancerContext(1), explicitStart: true };
    const eps = makeEndpoints(2);
    const picker = b.build(eps, ctx);
    const load = (i: number) => b.loads.get(`${eps[i].host}:${eps[i].port}`)!.inflight;
    const a = picker.pick() as Call; // re-picked by grpc-js: never started
    assert.equal(load(0) + load(1), 0);
    const c = picker.pick() as Call;
    c.started!();
    c.started!();
    assert.equal(load(0) + load(1), 1);
    a.done({ ok: true, latencyMs: 1 });
    assert.equal(load(0) + load(1), 1);
    c.done({ ok: true, latencyMs: 1 });
    c.done({ ok: true, latencyMs: 1 });
    assert.equal(load(0) + load(1), 0);
  });

  it('is registered as p2c, least_request and p2c_ewma, with ewma defaulting accordingly', () => {
    assert.equal(getBalancer('p2c').name, 'p2c');
    assert.equal(getBalancer('least_request').name, 'p2c');
    assert.equal((p2cBalancer.create(validateOptions('p2c', p2cOptions, {})) as P2cBalancer).ewma, false);
    const ewma = getBalancer('p2c_ewma');
    assert.equal((ewma.create(validateOptions('p2c_ewma', ewma.options, {})) as P2cBalancer).ewma, true);
    assert.throws(() => validateOptions('p2c', p2cOptions, { decay: '0s' }), /"decay"/);
    assert.throws(() => validateOptions('p2c', p2cOptions, { errorPenalty: -1 }), /"errorPenalty"/);
    assert.throws(() => validateOptions('p2c', p2cOptions, { ewmaa: true }), /unknown option "ewmaa"/);
  });
});

describe('p2c peak EWMA (virtual clock)', () => {
  const setup = (n = 2, cfg = {}) => {
    const b = new P2cBalancer({ ewma: true, ...cfg });
    const ctx = testBalancerContext(7);
    const eps = makeEndpoints(n);
    const picker = b.build(eps, ctx) as P2cPicker;
    const load = (i: number) => b.loads.get(`${eps[i].host}:${eps[i].port}`)!;
    /** One call to endpoint i that takes `ms` of virtual time. */
    const call = (i: number, ms: number, ok = true) => {
      const s = load(i);
      s.inflight++;
      ctx.advance(ms);
      s.inflight--;
      s.observe(ok, ms, ctx.now(), b.tau, b.loads.typicalMs, b.errTau);
      if (ok) b.loads.noteSuccess(ms);
    };
    return { b, ctx, eps, picker, load, call };
  };

  it('jumps to a latency peak at once, and decays toward zero with the configured time constant while idle', () => {
    const { ctx, picker, load, call } = setup(2, { decay: 10_000 });
    for (let i = 0; i < 20; i++) call(0, 10);
    assert.ok(Math.abs(load(0).ewma - 10) < 1e-9);
    call(0, 500);
    assert.equal(load(0).ewma, 500, 'a peak replaces the estimate');
    const before = picker.cost(load(0), ctx.now());
    ctx.advance(10_000);
    const after = picker.cost(load(0), ctx.now());
    assert.ok(
      Math.abs(after / before - Math.exp(-1)) < 1e-9,
      `after one time constant the cost fell to ${after / before} of itself`,
    );
  });

  it('prefers the faster endpoint, weighing latency by calls in flight', () => {
    const { ctx, picker, call, load } = setup(2);
    call(0, 100);
    call(1, 20);
    assert.ok(picker.cost(load(1), ctx.now()) < picker.cost(load(0), ctx.now()));
    // 20 ms × (k + 1) < ~100 ms × 1 for k < 4 calls in flight on ep-1; then ep-0 is cheaper.
    for (let i = 0; i < 4; i++) assert.equal(picker.pick().endpoint!.id, 'ep-1');
    assert.equal(picker.pick().endpoint!.id, 'ep-0');
  });

  it('costs an unmeasured endpoint at the typical latency, or at defaultLatency when set', () => {
    const a = setup(3);
    a.call(0, 100);
    a.call(1, 300);
    const typical = a.b.loads.typicalMs;
    assert.ok(typical > 100 && typical < 300);
    assert.equal(a.picker.cost(a.load(2), a.ctx.now()), typical);
    const b = setup(3, { defaultLatency: 42 });
    b.call(0, 100);
    assert.equal(b.picker.cost(b.load(2), b.ctx.now()), 42);
  });

  it('penalises errors: a fast-failing endpoint costs more than a healthy one, and recovers as its failures age', () => {
    const { ctx, picker, call, load } = setup(2);
    for (let i = 0; i < 10; i++) {
      call(0, 100);
      call(1, 1, false);
    }
    const t = ctx.now();
    assert.ok(load(1).ewma >= 100 * 0.9, `fast errors lowered the estimate to ${load(1).ewma}`);
    assert.ok(picker.cost(load(1), t) > 5 * picker.cost(load(0), t), 'ten recent failures should cost more than 5x');
    ctx.advance(6_000); // failures age out (6 error time constants)
    const p = load(1).successProbability(load(1).decay(ctx.now(), 1_000));
    assert.ok(p > 0.9, `success probability ${p} after the failures aged`);
  });

  it('errorPenalty: 0 lets a fast-failing endpoint attract traffic; the default keeps it away (mini simulation)', () => {
    const run = (errorPenalty: number) => {
      const b = new P2cBalancer({ ewma: false, errorPenalty });
      const ctx = testBalancerContext(5);
      const eps = makeEndpoints(5);
      const picker = b.build(eps, ctx);
      const pending: { at: number; c: Call; ok: boolean; ms: number }[] = [];
      let bad = 0;
      for (let step = 0; step < 20_000; step++) {
        ctx.advance(1);
        pending.sort((x, y) => x.at - y.at);
        while (pending.length && pending[0].at <= ctx.now()) {
          const x = pending.shift()!;
          x.c.done({ ok: x.ok, latencyMs: x.ms });
        }
        const c = picker.pick() as Call;
        const failing = c.endpoint.id === 'ep-0';
        if (failing) bad++;
        const ms = failing ? 1 : 20;
        pending.push({ at: ctx.now() + ms, c, ok: !failing, ms });
      }
      return bad / 20_000;
    };
    const without = run(0);
    const withPenalty = run(1);
    assert.ok(without > 0.3, `without the penalty the failing endpoint got ${without}`);
    assert.ok(withPenalty < 0.02, `with the penalty the failing endpoint still got ${withPenalty}`);
  });
});
