import assert from 'node:assert/strict';
import type { Endpoint, Pick } from '../../core';
import { makeEndpoints, testBalancerContext } from '../../testkit';
import { EndpointLoad, LoadTable } from './load';
import { P2cBalancer, p2cEwmaBalancer, type P2cPicker } from '.';

// Numbers, not shapes: every expected value below is computed by hand from the formulas in load.ts
// (e = Math.E; tau and errTau are 1000 ms unless said otherwise).
const TAU = 1000;
const close = (actual: number, expected: number, what: string) =>
  assert.ok(Math.abs(actual - expected) < 1e-9, `${what}: ${actual}, expected ${expected}`);

describe('p2c EndpointLoad arithmetic (hand-computed values)', () => {
  it('peak EWMA: the first sample is the estimate as is', () => {
    const l = new EndpointLoad('a');
    l.observe(true, 10, 0, TAU, 0, TAU);
    assert.equal(l.ewma, 10);
    assert.equal(l.at, 0);
  });

  it('peak EWMA blends a lower sample once: 10 then 2 after 1 tau gives 10e^-1 + 2(1 - e^-1) = 4.9430355294', () => {
    const l = new EndpointLoad('a');
    l.observe(true, 10, 0, TAU, 0, TAU);
    l.observe(true, 2, 1000, TAU, 0, TAU);
    // 2 < 10 (the estimate as of its last update), k = e^-1 = 0.3678794412:
    // 10 × 0.3678794412 + 2 × 0.6321205588 = 3.6787944117 + 1.2642411177 = 4.9430355294.
    // (Decaying first and blending into 10e^-1 would weigh the old estimate e^-2: 2.6175939500.)
    close(l.ewma, 10 * Math.exp(-1) + 2 * (1 - Math.exp(-1)), 'ewma');
    close(l.ewma, 4.9430355294, 'ewma (decimal)');
    assert.equal(l.at, 1000);
  });

  it('peak EWMA jumps to a higher sample at once: 10 then 30 after half a tau gives 30', () => {
    const l = new EndpointLoad('a');
    l.observe(true, 10, 0, TAU, 0, TAU);
    l.observe(true, 30, 500, TAU, 0, TAU);
    assert.equal(l.ewma, 30);
  });

  it('peak EWMA: a sample equal to the estimate counts as a peak (23, then 23 after 2.5 tau: exactly 23)', () => {
    const l = new EndpointLoad('a');
    l.observe(true, 23, 0, TAU, 0, TAU);
    l.observe(true, 23, 2500, TAU, 0, TAU);
    // Blending would give 23e^-2.5 + 23(1 - e^-2.5) = 22.999999999999996 in doubles.
    assert.equal(l.ewma, 23);
  });

  it('peak EWMA: a sample below the stored estimate is blended even when above its decayed view (10, then 5 after 1 tau: 6.8393972059)', () => {
    const l = new EndpointLoad('a');
    l.observe(true, 10, 0, TAU, 0, TAU);
    // The decayed view at t = 1000 is 10e^-1 = 3.68 < 5, but the comparison is with the estimate
    // as of its last update (10), as in Finagle and tower: 10 × 0.3678794412 + 5 × 0.6321205588
    // = 3.6787944117 + 3.1606027941 = 6.8393972059.
    l.observe(true, 5, 1000, TAU, 0, TAU);
    close(l.ewma, 6.8393972059, 'ewma');
  });

  it('peak EWMA over a sequence: 10@0, 4@500, 3@1500 gives 7.6391839583, then 4.7066604021', () => {
    const l = new EndpointLoad('a');
    l.observe(true, 10, 0, TAU, 0, TAU);
    // k = e^-0.5 = 0.6065306597: 10 × 0.6065306597 + 4 × 0.3934693403 = 6.0653065971 + 1.5738773612.
    l.observe(true, 4, 500, TAU, 0, TAU);
    close(l.ewma, 7.6391839583, 'ewma after 4@500');
    // k = e^-1 over the 1000 ms since 500: 7.6391839583 × 0.3678794412 + 3 × 0.6321205588
    // = 2.8102997258 + 1.8963616764 = 4.7066604021.
    l.observe(true, 3, 1500, TAU, 0, TAU);
    close(l.ewma, 4.7066604021, 'ewma after 3@1500');
    assert.equal(l.at, 1500);
  });

  it('peak EWMA: a lower sample at the same instant keeps the estimate (k = 1: 10·1 + 4·0 = 10)', () => {
    const l = new EndpointLoad('a');
    l.observe(true, 10, 0, TAU, 0, TAU);
    l.observe(true, 4, 0, TAU, 0, TAU);
    assert.equal(l.ewma, 10);
  });

  it('decay over virtual time: e^-(t - at)/tau, 1 for t at or before the last update', () => {
    const l = new EndpointLoad('a');
    l.observe(true, 10, 2000, TAU, 0, TAU);
    close(l.decay(4000, TAU), Math.exp(-2), 'two time constants');
    close(l.decay(2500, 2000), Math.exp(-0.25), 'quarter of tau=2000');
    assert.equal(l.decay(2000, TAU), 1);
    assert.equal(l.decay(1000, TAU), 1, 'a clock before the last update does not grow the estimate');
  });

  it('time never runs backwards: an observation stamped before the last update leaves `at` alone', () => {
    const l = new EndpointLoad('a');
    l.observe(true, 10, 5000, TAU, 0, TAU);
    l.observe(true, 10, 3000, TAU, 0, TAU);
    assert.equal(l.at, 5000);
  });

  it('success probability: three successes then one failure at one instant gives (3 + 1)/(3 + 1 + 1) = 0.8', () => {
    const l = new EndpointLoad('a');
    for (let i = 0; i < 3; i++) l.observe(true, 1, 0, TAU, 0, TAU);
    assert.equal(l.successes, 3);
    assert.equal(l.successProbability(1), 1, 'no failure: p = 1');
    l.observe(false, 1, 0, TAU, 0, TAU);
    assert.equal(l.failures, 1);
    close(l.successProbability(1), 0.8, 'p');
  });

  it('success probability after 1 errTau: (3e^-1 + 1)/(3e^-1 + e^-1 + 1) = 0.8511524188', () => {
    const l = new EndpointLoad('a');
    for (let i = 0; i < 3; i++) l.observe(true, 1, 0, TAU, 0, TAU);
    l.observe(false, 1, 0, TAU, 0, TAU);
    close(l.successProbability(l.decay(1000, TAU)), 0.8511524188, 'p');
  });

  it('success and failure counts decay with errTau between calls: ok@0, ok@1000, fail@2000 gives p = 0.6005136953', () => {
    const l = new EndpointLoad('a');
    l.observe(true, 1, 0, 50_000, 0, TAU);
    l.observe(true, 1, 1000, 50_000, 0, TAU);
    close(l.successes, Math.exp(-1) + 1, 'successes after the second call');
    l.observe(false, 1, 2000, 50_000, 0, TAU);
    close(l.successes, (Math.exp(-1) + 1) * Math.exp(-1), 'successes after the failure');
    assert.equal(l.failures, 1);
    close(l.successProbability(1), 0.6005136953, 'p');
  });

  it('failure counts decay with errTau too: fail@0 then ok@1000 leaves e^-1 failures and p = (1 + 1)/(1 + e^-1 + 1) = 0.8446', () => {
    const l = new EndpointLoad('a');
    l.observe(false, 1, 0, TAU, 0, TAU);
    l.observe(true, 1, 1000, TAU, 0, TAU);
    close(l.failures, Math.exp(-1), 'failures');
    assert.equal(l.successes, 1);
    close(l.successProbability(1), 2 / (2 + Math.exp(-1)), 'p');
  });

  it('failure latency: a fast error counts at the typical latency floor, a slow one at its own latency', () => {
    const fast = new EndpointLoad('a');
    fast.observe(false, 1, 0, TAU, 50, TAU);
    assert.equal(fast.ewma, 50);
    const slow = new EndpointLoad('b');
    slow.observe(false, 80, 0, TAU, 50, TAU);
    assert.equal(slow.ewma, 80);
    const unknown = new EndpointLoad('c');
    unknown.observe(false, Number.NaN, 0, TAU, 50, TAU);
    assert.equal(unknown.ewma, 50, 'a failure without latency counts at the floor');
  });

  it('a success without a usable latency (NaN, negative, zero, infinite) leaves the estimate alone but counts', () => {
    for (const bad of [Number.NaN, -1, 0, Number.POSITIVE_INFINITY]) {
      const l = new EndpointLoad('a');
      l.observe(true, bad, 0, TAU, 50, TAU);
      assert.ok(Number.isNaN(l.ewma), `latency ${bad} gave ewma ${l.ewma}`);
      assert.equal(l.successes, 1);
      l.observe(true, 7, 0, TAU, 50, TAU);
      assert.equal(l.ewma, 7);
    }
  });

  it('typical latency: the first success sets it, later ones move it by 1/20 of the difference (100, 300 gives 110)', () => {
    const t = new LoadTable();
    for (const bad of [0, -5, Number.NaN, Number.POSITIVE_INFINITY]) t.noteSuccess(bad);
    assert.equal(t.typicalMs, 0);
    t.noteSuccess(100);
    assert.equal(t.typicalMs, 100);
    t.noteSuccess(300);
    assert.equal(t.typicalMs, 110);
    t.noteSuccess(10);
    assert.equal(t.typicalMs, 105);
    t.noteSuccess(0);
    assert.equal(t.typicalMs, 105, 'a zero latency is not a measurement');
  });

  it('the load table keeps states across syncs by host:port and drops the states of removed endpoints', () => {
    const t = new LoadTable();
    assert.deepEqual(t.current, [], 'nothing before the first sync');
    const eps = makeEndpoints(3);
    const first = t.sync(eps);
    assert.equal(t.size, 3);
    first[1].inflight = 4;
    const second = t.sync([eps[1]]);
    assert.equal(second[0], first[1]);
    assert.equal(t.size, 1);
    assert.deepEqual(t.current, second);
    assert.equal(t.get(`${eps[0].host}:${eps[0].port}`), undefined);
    assert.equal(t.get(`${eps[1].host}:${eps[1].port}`)!.inflight, 4);
  });
});

describe('p2c cost (hand-computed values)', () => {
  const picker = (cfg: ConstructorParameters<typeof P2cBalancer>[0], n = 2) => {
    const b = new P2cBalancer(cfg);
    const ctx = testBalancerContext(1);
    const eps = makeEndpoints(n);
    const p = b.build(eps, ctx) as P2cPicker;
    const load = (i: number) => b.loads.get(`${eps[i].host}:${eps[i].port}`)!;
    return { b, ctx, p, load, eps };
  };

  it('least-request cost is in-flight + 1 while nothing failed, whatever the latency', () => {
    const { p, load } = picker({});
    load(0).inflight = 3;
    load(0).observe(true, 40, 0, TAU, 0, TAU);
    assert.equal(p.cost(load(0), 0), 4);
    assert.equal(p.cost(load(1), 0), 1);
  });

  it('names: p2c for least-request, p2c_ewma with ewma; the registered p2c_ewma defaults ewma to true', () => {
    assert.equal(new P2cBalancer().name, 'p2c');
    assert.equal(new P2cBalancer({ ewma: true }).name, 'p2c_ewma');
    // Unvalidated config (no schema defaults): the factory itself defaults ewma.
    assert.equal((p2cEwmaBalancer.create({}) as P2cBalancer).ewma, true);
    assert.equal((p2cEwmaBalancer.create({ ewma: false }) as P2cBalancer).ewma, false);
  });

  it('error penalty divides by p^2 by default, p^1 and p^3 when configured (p = 0.8 gives 1.5625, 1.25, 1.953125)', () => {
    for (const [errorPenalty, expected] of [
      [2, 1 / 0.64],
      [1, 1 / 0.8],
      [3, 1 / 0.512],
      [0, 1],
    ] as const) {
      const { p, load } = picker({ errorPenalty });
      for (let i = 0; i < 3; i++) load(0).observe(true, 1, 0, TAU, 0, TAU);
      load(0).observe(false, 1, 0, TAU, 0, TAU);
      close(p.cost(load(0), 0), expected, `errorPenalty ${errorPenalty}`);
    }
  });

  it('peak-EWMA cost is estimate × e^-dt/tau × (in-flight + 1): 40 ms, 2 in flight, half a tau later gives 120e^-0.5', () => {
    const { p, load } = picker({ ewma: true, decay: 1000 });
    load(0).observe(true, 40, 0, 1000, 0, 1000);
    load(0).inflight = 2;
    close(p.cost(load(0), 500), 120 * Math.exp(-0.5), 'cost');
  });

  it('an unmeasured endpoint costs defaultLatency, else the typical latency, else 1', () => {
    const a = picker({ ewma: true });
    assert.equal(a.p.cost(a.load(1), 0), 1, 'nothing measured anywhere');
    a.b.loads.noteSuccess(30);
    assert.equal(a.p.cost(a.load(1), 0), 30);
    const b = picker({ ewma: true, defaultLatency: 7 });
    b.b.loads.noteSuccess(30);
    assert.equal(b.p.cost(b.load(1), 0), 7);
    const z = picker({ ewma: true, defaultLatency: 0 });
    z.b.loads.noteSuccess(30);
    assert.equal(z.p.cost(z.load(1), 0), 0, 'defaultLatency 0 is a value, not unset');
  });

  it('the two choices are distinct: with draws 0.5 and 0.5 over three endpoints it compares ep-1 with ep-2', () => {
    const b = new P2cBalancer();
    const draws = [0.5, 0.5];
    const ctx = { ...testBalancerContext(1), random: () => draws.shift()! };
    const eps = makeEndpoints(3);
    const p = b.build(eps, ctx);
    for (const e of eps.slice(0, 2)) b.loads.get(`${e.host}:${e.port}`)!.inflight = 5;
    assert.equal(p.pick().endpoint!.id, 'ep-2');
  });

  it('the first choice wins a tie: equal costs go to the endpoint drawn first', () => {
    const b = new P2cBalancer();
    const draws = [0.9, 0.1];
    const ctx = { ...testBalancerContext(1), random: () => draws.shift()! };
    const p = b.build(makeEndpoints(3), ctx);
    assert.equal(p.pick().endpoint!.id, 'ep-2');
  });

  it('a pick counts one call in flight and done() takes it back once, recording the outcome', () => {
    const { p, load } = picker({});
    const ctxPick = p.pick() as Extract<Pick, { endpoint: Endpoint }>;
    const i = ctxPick.endpoint.id === 'ep-0' ? 0 : 1;
    assert.equal(load(i).inflight, 1);
    ctxPick.done({ ok: false, latencyMs: 3 });
    ctxPick.done({ ok: false, latencyMs: 3 });
    assert.equal(load(i).inflight, 0);
    assert.equal(load(i).failures, 1, 'a second done() is ignored');
  });
});
