import assert from 'node:assert/strict';
import type { Balancer, Endpoint, Pick, Picker } from '../../core';
import { makeEndpoints, testBalancerContext } from '../../testkit';
import { MAX_DRAWS, MIN_FACTOR, SlowStartBalancer, withSlowStart, type CallContext, type SlowStartPicker } from '.';

// Slow start's numbers: the share factor max(0.1, age / window) at given instants on a virtual
// clock, the window edges, and the redraw rule (keep with probability f, at most MAX_DRAWS draws).

/** An inner balancer that hands out a scripted sequence of endpoints and counts starts. */
function scriptedInner(order: () => Endpoint) {
  const started: string[] = [];
  const contexts: CallContext[] = [];
  let picks = 0;
  const balancer: Balancer = {
    name: 'scripted',
    build(_eps: Endpoint[], ctx: CallContext): Picker {
      contexts.push(ctx);
      return {
        pick(): Pick {
          picks++;
          const endpoint = order();
          return { endpoint, done: () => {}, started: () => void started.push(endpoint.id) } as Pick;
        },
      };
    },
  };
  return { balancer, started, contexts, picks: () => picks };
}

/** `order` gets the endpoint set; warming is tracked per Endpoint object, so picks must return these. */
const seqOf =
  (...seq: Endpoint[]) =>
  () =>
    seq.shift()!;

function setup(windowMs: number, order: (eps: Endpoint[]) => () => Endpoint, random: number[] = []) {
  const eps = makeEndpoints(2);
  const inner = scriptedInner(order(eps));
  const b = new SlowStartBalancer(inner.balancer, windowMs);
  const base = testBalancerContext(1);
  const ctx = { ...base, random: () => (random.length ? random.shift()! : 0.99) };
  b.build([eps[0]], ctx); // the initial set: never warmed
  ctx.advance(100);
  const picker = b.build(eps, ctx) as SlowStartPicker; // ep-1 joins at t = 100
  return { eps, inner, b, ctx, picker };
}

describe('slow start: shares at given instants', () => {
  it('factor of an endpoint that joined at t=100 with a 1000 ms window: 0.1 floor until 200, 0.5 at 600, 0.999 at 1099, 1 at 1100', () => {
    const { eps, ctx, picker } = setup(1000, (e) => () => e[1]);
    const at = (t: number) => {
      ctx.advance(t - ctx.now());
      return picker.factor(eps[1]);
    };
    assert.equal(at(100), MIN_FACTOR, 'just joined');
    assert.equal(at(150), MIN_FACTOR, 'age 50 of 1000 is below the 10 % floor');
    assert.equal(at(300), 0.2);
    assert.equal(at(600), 0.5);
    assert.ok(Math.abs(at(1099) - 0.999) < 1e-12);
    assert.equal(at(1100), 1);
    assert.equal(at(5000), 1, 'never above 1');
    assert.equal(picker.factor(eps[0]), 1, 'the initial set is not warming');
  });

  it('MIN_FACTOR is 0.1 (Envoy min_weight_percent 10) and MAX_DRAWS is 3', () => {
    assert.equal(MIN_FACTOR, 0.1);
    assert.equal(MAX_DRAWS, 3);
  });

  it('a warming pick is kept when the draw is below f: at f = 0.5, draw 0.49 keeps it, draw 0.5 redraws', () => {
    const keep = setup(1000, (e) => () => e[1], [0.49]);
    keep.ctx.advance(500); // t = 600, f = 0.5
    assert.equal(keep.picker.pick().endpoint!.id, 'ep-1');
    assert.equal(keep.inner.picks(), 1);
    const redraw = setup(1000, (e) => seqOf(e[1], e[0]), [0.5]);
    redraw.ctx.advance(500);
    assert.equal(redraw.picker.pick().endpoint!.id, 'ep-0');
    assert.equal(redraw.inner.picks(), 2);
  });

  it('at most MAX_DRAWS inner picks: a warming endpoint that keeps losing the draw is still returned on the 3rd', () => {
    const { picker, inner, ctx } = setup(1000, (e) => () => e[1], [0.99, 0.99, 0.99, 0.99]);
    ctx.advance(100);
    assert.equal(picker.pick().endpoint!.id, 'ep-1');
    assert.equal(inner.picks(), 3);
  });

  it('a pick of a non-warming endpoint is never redrawn and costs no random draw', () => {
    const random = [0.99];
    const { picker, inner } = setup(1000, (e) => () => e[0], random);
    assert.equal(picker.pick().endpoint!.id, 'ep-0');
    assert.equal(inner.picks(), 1);
    assert.deepEqual(random, [0.99]);
  });

  it('the window ends exactly windowMs after the join: a build at t = join + window warms nobody', () => {
    const eps = makeEndpoints(2);
    const { b, ctx, inner } = setup(1000, (e) => () => e[1], [0.99, 0.99, 0.99]);
    ctx.advance(999); // t = 1099: still warming
    const late = b.build(eps, ctx) as SlowStartPicker;
    assert.ok(late.factor(eps[1]) < 1);
    ctx.advance(1); // t = 1100
    const done = b.build(eps, ctx) as SlowStartPicker;
    assert.equal(done.factor(eps[1]), 1);
    const before = inner.picks();
    done.pick();
    assert.equal(inner.picks() - before, 1);
  });

  it('a picker built while warming stops redrawing once the window has passed', () => {
    const { picker, ctx, inner } = setup(1000, (e) => () => e[1], [0.99, 0.99, 0.99]);
    ctx.advance(1000); // t = 1100
    picker.pick();
    assert.equal(inner.picks(), 1);
  });

  it('starts only the pick it returns (inner built with explicitStart), unless its own caller starts calls', () => {
    const eps = makeEndpoints(2);
    const { picker, inner } = setup(1000, (e) => seqOf(e[1], e[0]), [0.99]);
    assert.equal(inner.contexts.at(-1)!.explicitStart, true);
    assert.equal(picker.pick().endpoint!.id, 'ep-0');
    assert.deepEqual(inner.started, ['ep-0']);

    const explicit = scriptedInner(() => eps[0]);
    const b = new SlowStartBalancer(explicit.balancer, 1000);
    const p = b.build(eps, { ...testBalancerContext(1), explicitStart: true });
    p.pick();
    assert.deepEqual(explicit.started, [], 'an explicit caller calls started() itself');
  });

  it('withSlowStart wraps only for a window above 0', () => {
    const inner = scriptedInner(() => makeEndpoints(1)[0]).balancer;
    assert.equal(withSlowStart(inner, {}), inner);
    assert.equal(withSlowStart(inner, { slowStart: 0 }), inner);
    assert.ok(withSlowStart(inner, { slowStart: 1 }) instanceof SlowStartBalancer);
  });

  it('an empty first set does not count as the initial set: endpoints of the first non-empty set are not warmed', () => {
    const eps = makeEndpoints(2);
    const inner = scriptedInner(() => eps[0]);
    const b = new SlowStartBalancer(inner.balancer, 1000);
    const ctx = testBalancerContext(1);
    b.build([], ctx);
    ctx.advance(10);
    const p = b.build(eps, ctx) as SlowStartPicker;
    assert.equal(p.factor(eps[0]), 1);
    assert.equal(p.factor(eps[1]), 1);
    ctx.advance(10);
    const eps3 = makeEndpoints(3);
    const q = b.build(eps3, ctx) as SlowStartPicker;
    assert.equal(q.factor(eps3[2]), MIN_FACTOR, 'a later joiner warms');
  });
});
