import assert from 'node:assert/strict';
import type { Endpoint } from '../../core';
import { makeEndpoints, testBalancerContext } from '../../testkit';
import {
  DEFAULT_MAX_RING_SIZE,
  DEFAULT_MIN_RING_SIZE,
  murmur3,
  pointCount,
  RingHashBalancer,
  ringScale,
  type RingHashPicker,
} from '.';

// Ring sizes and point counts against Envoy's published ring-sizing rule (ring_hash_lb.cc and the
// RingHashLbConfig docs): with normalised weights w_i / W and m the smallest,
//   scale = min(ceil(m × minRingSize) / m, maxRingSize), points_i = round(scale × w_i / W), at least 1.
// Every expected value is worked out by hand in the test's name or comment.
const OWNER_SPAN = 2_097_152;
const ringOf = (eps: Endpoint[], config = {}) =>
  (new RingHashBalancer(config).build(eps, testBalancerContext()) as RingHashPicker).ring;
/** Points per endpoint index on a ring. */
const counts = (ring: Float64Array, n: number) => {
  const c = new Array<number>(n).fill(0);
  for (const v of ring) c[v % OWNER_SPAN]++;
  return c;
};

describe('ring_hash: ring size by Envoy’s rule (hand-computed)', () => {
  it('defaults are Envoy’s: minRingSize 1024, maxRingSize 8M', () => {
    assert.equal(DEFAULT_MIN_RING_SIZE, 1024);
    assert.equal(DEFAULT_MAX_RING_SIZE, 8 * 1024 * 1024);
  });

  it('ringScale: m = 1/4 gives ceil(256)/(1/4) = 1024; m = 1/3 gives ceil(341.3)·3 = 1026; m = 1/6 gives 171·6 = 1026', () => {
    assert.equal(ringScale(0.25), 1024);
    assert.equal(ringScale(1 / 3), 1026);
    assert.equal(ringScale(1 / 6), 1026);
    assert.equal(ringScale(0.5, 3), 4, 'ceil(1.5)/0.5');
  });

  it('ringScale is capped by maxRingSize: m = 1/10, min 1024, max 500 gives min(1030, 500) = 500', () => {
    assert.equal(ringScale(0.1, 1024, 500), 500);
    assert.equal(ringScale(0.1, 1024, 1030), 1030, 'exactly at the cap');
  });

  it('ringScale of a zero, negative or NaN minimum weight is 1 (no division by zero)', () => {
    assert.equal(ringScale(0), 1);
    assert.equal(ringScale(-0.5), 1);
    assert.equal(ringScale(Number.NaN), 1);
  });

  it('pointCount rounds scale × weight and gives at least one point: 342, 2 (1.5 rounds up), 1 (0.001 rounds to 0)', () => {
    assert.equal(pointCount(1 / 3, 1026), 342);
    assert.equal(pointCount(0.5, 3), 2);
    assert.equal(pointCount(0.49, 3), 1);
    assert.equal(pointCount(0.0001, 10), 1);
  });

  it('three equal endpoints: 342 points each, a ring of 1026', () => {
    const ring = ringOf(makeEndpoints(3));
    assert.equal(ring.length, 1026);
    assert.deepEqual(counts(ring, 3), [342, 342, 342]);
  });

  it('weights 1, 2, 3: scale 1026, points 171, 342, 513', () => {
    const ring = ringOf(makeEndpoints(3, [1, 2, 3]));
    assert.deepEqual(counts(ring, 3), [171, 342, 513]);
    assert.equal(ring.length, 1026);
  });

  it('weights 1 and 3: scale 1024, points 256 and 768', () => {
    assert.deepEqual(counts(ringOf(makeEndpoints(2, [1, 3])), 2), [256, 768]);
  });

  it('maxRingSize 100 over three equal endpoints: scale 100, round(33.3) = 33 points each, a ring of 99', () => {
    const ring = ringOf(makeEndpoints(3), { maxRingSize: 100 });
    assert.deepEqual(counts(ring, 3), [33, 33, 33]);
  });

  it('minRingSize 1: four equal endpoints get one point each (scale ceil(0.25)/0.25 = 4)', () => {
    assert.deepEqual(counts(ringOf(makeEndpoints(4), { minRingSize: 1 }), 4), [1, 1, 1, 1]);
  });

  it('a weight far below the others still gets its rounded share: weights 1 and 1000 give scale 2002, points 2 and 2000', () => {
    // m = 1/1001: scale = ceil(1024/1001)·1001 = 2·1001 = 2002; points round(2002/1001) = 2 and round(2002·1000/1001) = 2000.
    assert.deepEqual(counts(ringOf(makeEndpoints(2, [1, 1000])), 2), [2, 2000]);
  });

  it('an invalid weight counts as 1: weights 0, -2, NaN and 2 give points 205, 205, 205, 410 (W = 5, m = 1/5, scale 1025)', () => {
    // m = 1/5: scale = ceil(204.8)·5 = 1025; points round(205) = 205 ×3 and round(410) = 410.
    assert.deepEqual(counts(ringOf(makeEndpoints(4, [0, -2, Number.NaN, 2])), 4), [205, 205, 205, 410]);
  });

  it('point i of an endpoint sits at murmur3("host:port_i"), the ring sorted by position', () => {
    const [e] = makeEndpoints(1);
    const ring = ringOf([e], { minRingSize: 3 });
    const expected = [0, 1, 2].map((i) => murmur3(`${e.host}:${e.port}_${i}`) * OWNER_SPAN).sort((a, b) => a - b);
    assert.deepEqual([...ring], expected);
  });

  it('a key goes to the first point at or after its hash, wrapping past the last point to the first', () => {
    const eps = makeEndpoints(3);
    const picker = new RingHashBalancer({ minRingSize: 1 }).build(eps, testBalancerContext()) as RingHashPicker;
    const pos = picker.ring.map((v) => Math.floor(v / OWNER_SPAN));
    const owner = (v: number) => eps[v % OWNER_SPAN].id;
    const byHash = new Map<number, string>();
    // Find keys whose hash falls before the first point, between points, and after the last.
    for (let i = 0; byHash.size < 3 && i < 100_000; i++) {
      const k = `k${i}`;
      const h = murmur3(k);
      const slot = h <= pos[0] ? 0 : h > pos[2] ? 3 : h <= pos[1] ? 1 : 2;
      if (slot === 0 && !byHash.has(0)) byHash.set(0, k);
      if (slot === 2 && !byHash.has(2)) byHash.set(2, k);
      if (slot === 3 && !byHash.has(3)) byHash.set(3, k);
    }
    assert.equal(picker.pick({ key: byHash.get(0)! }).endpoint!.id, owner(picker.ring[0]));
    assert.equal(picker.pick({ key: byHash.get(2)! }).endpoint!.id, owner(picker.ring[2]));
    assert.equal(picker.pick({ key: byHash.get(3)! }).endpoint!.id, owner(picker.ring[0]), 'wraps around');
    // A key hashing exactly onto a point goes to that point's owner.
    const exact = `${eps[1].host}:${eps[1].port}_0`;
    assert.equal(picker.pick({ key: exact }).endpoint!.id, 'ep-1');
  });

  it('keyless picks are random by weight: draws 0, 0.2499, 0.25 and 0.9999 over weights 1 and 3 give ep-0, ep-0, ep-1, ep-1', () => {
    const draws = [0, 0.2499, 0.25, 0.9999];
    const ctx = { ...testBalancerContext(), random: () => draws.shift()! };
    const picker = new RingHashBalancer().build(makeEndpoints(2, [1, 3]), ctx);
    assert.deepEqual(
      [0, 1, 2, 3].map(() => picker.pick().endpoint!.id),
      ['ep-0', 'ep-0', 'ep-1', 'ep-1'],
    );
  });

  it('an empty set: no ring, every pick says no-endpoints', () => {
    const picker = new RingHashBalancer().build([], testBalancerContext()) as RingHashPicker;
    assert.equal(picker.ring.length, 0);
    assert.deepEqual(picker.pick({ key: 'a' }), { endpoint: null, reason: 'no-endpoints' });
    assert.equal(picker.indexOf('a'), -1);
  });

  it('point hashes are computed once per endpoint and kept when its point count shrinks (2 endpoints, then 4)', () => {
    const b = new RingHashBalancer();
    const eps = makeEndpoints(4);
    b.build(eps.slice(0, 2), testBalancerContext());
    type State = { hashes: Uint32Array; computed: number; count: number };
    const state = (i: number) =>
      (b as unknown as { states: { get(k: string): State } }).states.get(`${eps[i].host}:${eps[i].port}`);
    const first = state(0).hashes;
    assert.equal(state(0).computed, 512);
    b.build(eps, testBalancerContext());
    assert.equal(state(0).count, 256);
    assert.equal(state(0).computed, 512, 'the 512 hashes stay cached');
    assert.equal(state(0).hashes, first, 'same array: nothing recomputed');
  });

  it('point hashes are reused as they are when a full rebuild asks for the same count (ep-1 replaced by ep-2)', () => {
    const b = new RingHashBalancer();
    const eps = makeEndpoints(3);
    b.build([eps[0], eps[1]], testBalancerContext());
    const state = () =>
      (b as unknown as { states: { get(k: string): { hashes: Uint32Array } } }).states.get(
        `${eps[0].host}:${eps[0].port}`,
      );
    const first = state().hashes;
    b.build([eps[0], eps[2]], testBalancerContext());
    assert.equal(state().hashes, first);
  });
});
