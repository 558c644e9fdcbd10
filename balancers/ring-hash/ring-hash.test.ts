import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConfigError, getBalancer, validateOptions, type Endpoint } from '../../core';
import { balancerConformance, makeEndpoints, testBalancerContext } from '../../testkit';
import {
  createRingHash,
  murmur3,
  RingHashBalancer,
  ringHashBalancer,
  ringHashOptions,
  ringScale,
  type RingHashPicker,
} from '.';

const decorated = () =>
  createRingHash(validateOptions('ring_hash', ringHashOptions, { slowStart: '30s', outlier: true }));

// Keyless picks are random by weight: 30,000 seeded picks, ±1% is about 3.7 standard deviations.
balancerConformance({
  it,
  describe,
  name: 'ring_hash',
  balancer: () => createRingHash({}),
  even: true,
  weighted: true,
  tolerance: 0.01,
});
balancerConformance({
  it,
  describe,
  name: 'ring_hash + slow start + outlier ejection',
  balancer: decorated,
  even: true,
  weighted: true,
  tolerance: 0.01,
});

const keys = (n: number, prefix = 'user-') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

/** key -> endpoint id for a set, through a fresh balancer (a fresh ring). */
function mapping(eps: Endpoint[], ks: string[], config = {}): Map<string, string> {
  const picker = new RingHashBalancer(config).build(eps, testBalancerContext());
  return new Map(ks.map((k) => [k, picker.pick({ key: k }).endpoint!.id]));
}

const hostEndpoints = (n: number, weights?: number[], base = 0): Endpoint[] =>
  Array.from({ length: n }, (_, i) => ({
    id: `h${base + i}`,
    host: `10.1.${(base + i) >> 8}.${(base + i) & 255}`,
    port: 7000,
    weight: weights?.[i],
    metadata: {},
  }));

describe('ring_hash: hash, options and ring', () => {
  it('murmur3 is standard murmur3 x86_32 over UTF-16LE bytes (published test vectors)', () => {
    assert.equal(murmur3(''), 0);
    assert.equal(murmur3('', 1), 0x514e28b7);
    assert.equal(murmur3('', 0xffffffff), 0x81f16f39);
    assert.equal(murmur3(String.fromCharCode(0, 0)), 0x2362f9de); // bytes 00 00 00 00
    assert.equal(murmur3(String.fromCharCode(0x6574, 0x7473)), 0xba6bd213); // bytes "test"
  });

  it('murmur3 spreads short similar keys evenly over 16 buckets (chi-square)', () => {
    const buckets = new Array(16).fill(0);
    const n = 64_000;
    for (let i = 0; i < n; i++) buckets[murmur3(`k${i}`) >>> 28]++;
    const e = n / 16;
    const chi2 = buckets.reduce((a, c) => a + ((c - e) * (c - e)) / e, 0);
    assert.ok(chi2 < 37.7, `chi-square ${chi2.toFixed(1)} over 15 degrees of freedom (p = 0.001 bound 37.7)`); // 15 dof
  });

  it('validates minRingSize / maxRingSize in the options schema, naming the field; maxRingSize wins over a larger minRingSize', () => {
    const v = (o: Record<string, unknown>) => validateOptions('ring_hash', ringHashOptions, o);
    assert.deepEqual({ min: v({}).minRingSize, max: v({}).maxRingSize }, { min: 1024, max: 8 * 1024 * 1024 });
    for (const bad of [
      { minRingSize: 0 },
      { minRingSize: 1.5 },
      { maxRingSize: 8 * 1024 * 1024 + 1 },
      { maxRingSize: 'big' },
    ]) {
      const field = Object.keys(bad)[0];
      assert.throws(
        () => v(bad),
        (e: unknown) => e instanceof ConfigError && e.field === field && e.message.startsWith('ring_hash: '),
        JSON.stringify(bad),
      );
    }
    // minRingSize above maxRingSize: maxRingSize wins (up to rounding: 3 × 683), with one warning.
    const warnings: unknown[] = [];
    const ctx = {
      ...testBalancerContext(),
      logger: { debug() {}, info() {}, error() {}, warn: (o: unknown) => void warnings.push(o) },
    };
    const b = ringHashBalancer.create(v({ minRingSize: 4096, maxRingSize: 2048 }));
    const picker = b.build(makeEndpoints(3), ctx) as RingHashPicker;
    b.build(makeEndpoints(2), ctx);
    assert.ok(picker.ring.length <= 2048 + 3 && picker.ring.length >= 2000, `ring of ${picker.ring.length}`);
    assert.deepEqual(warnings, [{ minRingSize: 4096, maxRingSize: 2048 }]);
  });

  it('is the built-in "ring_hash", and says it reads the pick key with or without decorators', () => {
    const def = getBalancer('ring_hash');
    assert.equal(def, ringHashBalancer);
    assert.equal(def.create(validateOptions('ring_hash', def.options, {})).usesPickInfo, true);
    const d = decorated();
    assert.equal(d.usesPickInfo, true);
    assert.notEqual(d.constructor, RingHashBalancer);
  });

  it('sizes the ring as Envoy does: about minRingSize points, never above maxRingSize, points proportional to weight', () => {
    assert.equal(ringScale(1 / 3, 1024, 8 << 20), 1026); // 342 points each
    assert.equal(ringScale(1 / 2, 1024, 8 << 20), 1024);
    assert.equal(ringScale(1 / 5000, 1024, 8 << 20), 5000); // one point per endpoint
    assert.equal(ringScale(1 / 3, 1024, 600), 600);
    for (const [weights, min, max] of [
      [[1, 1, 1], 1024, 8 << 20],
      [[1, 2, 3, 4], 100, 8 << 20],
      [[5, 1], 1024, 4000],
      [[5, 1], 512, 600],
      [Array(300).fill(1), 1024, 8 << 20],
    ] as [number[], number, number][]) {
      const eps = makeEndpoints(weights.length, weights);
      const picker = new RingHashBalancer({ minRingSize: min, maxRingSize: max }).build(
        eps,
        testBalancerContext(),
      ) as RingHashPicker;
      const size = picker.ring.length;
      assert.ok(
        size >= Math.min(min, max) && size <= max + weights.length,
        `${weights.length} endpoints: ring of ${size} outside [${min}, ${max}]`,
      );
      const per = new Array(eps.length).fill(0);
      for (const v of picker.ring) per[v % 2_097_152]++;
      const wmin = Math.min(...weights);
      // Proportional to weight up to rounding (each count is round(scale × w / W)).
      per.forEach((c, i) =>
        assert.ok(
          Math.abs(c / per[weights.indexOf(wmin)] - weights[i] / wmin) <= (weights[i] / wmin) * 0.02 + 1 / per[0],
          `weights ${weights}: counts ${per}`,
        ),
      );
    }
  });

  it('keyed picks: the same key always reaches the same endpoint; keys spread by weight', () => {
    const eps = makeEndpoints(3, [1, 2, 3]);
    const picker = createRingHash({}).build(eps, testBalancerContext());
    const ks = keys(30_000);
    const counts = new Map<string, number>();
    for (const k of ks) {
      const a = picker.pick({ key: k }).endpoint!.id;
      assert.equal(picker.pick({ key: k }).endpoint!.id, a);
      counts.set(a, (counts.get(a) ?? 0) + 1);
    }
    // 6 × 512 points: an endpoint's share deviates from its weight by ~1/sqrt(points) relatively.
    eps.forEach((e, i) => {
      const share = counts.get(e.id)! / ks.length;
      assert.ok(
        Math.abs(share - (i + 1) / 6) < 0.04,
        `${e.id} (weight ${i + 1}) got ${(share * 100).toFixed(1)}% of keys`,
      );
    });
  });
});

describe('ring_hash: remapping when the set changes (fast-check)', () => {
  const ks = keys(1500, 'session-');
  const SPAN = 2_097_152;

  /** For each key: the endpoint id it maps to and the index of the endpoint's ring point it hits. */
  function hits(eps: Endpoint[], ks: string[], config = {}): Map<string, { id: string; point: number }> {
    const picker = new RingHashBalancer(config).build(eps, testBalancerContext()) as RingHashPicker;
    const ring = picker.ring;
    const out = new Map<string, { id: string; point: number }>();
    const pointAt = new Map<string, number>();
    const per = new Map<Endpoint, number>();
    for (const v of ring) per.set(eps[v % SPAN], (per.get(eps[v % SPAN]) ?? 0) + 1);
    for (const [e, c] of per)
      for (let j = 0; j < c; j++) pointAt.set(`${e.id}|${murmur3(`${e.host}:${e.port}_${j}`)}`, j);
    for (const k of ks) {
      const target = murmur3(k) * SPAN;
      let lo = 0;
      let hi = ring.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (ring[mid] < target) lo = mid + 1;
        else hi = mid;
      }
      const v = ring[lo === ring.length ? 0 : lo];
      const e = eps[v % SPAN];
      const pos = Math.floor(v / SPAN);
      const point = pointAt.get(`${e.id}|${pos}`)!;
      assert.equal(picker.pick({ key: k }).endpoint, e);
      out.set(k, { id: e.id, point });
    }
    return out;
  }
  const counts = (eps: Endpoint[], config = {}) => {
    const ring = (new RingHashBalancer(config).build(eps, testBalancerContext()) as RingHashPicker).ring;
    const c = new Map<string, number>();
    for (const v of ring) c.set(eps[v % SPAN].id, (c.get(eps[v % SPAN].id) ?? 0) + 1);
    return { c, size: ring.length };
  };

  it('property: removing one of N endpoints moves its keys, others only where the new scale added or dropped points (fewer than the added share + 4%); incremental = from scratch', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 2, maxLength: 30 }), fc.nat(), (weights, r) => {
        const gone = r % weights.length;
        const eps = hostEndpoints(weights.length, weights);
        const rest = eps.filter((_, i) => i !== gone);
        const before = hits(eps, ks);
        const after = hits(rest, ks);
        const oldCounts = counts(eps).c;
        const { c: newCounts, size } = counts(rest);
        let added = 0;
        for (const e of rest) added += Math.max(0, newCounts.get(e.id)! - oldCounts.get(e.id)!);
        const b = new RingHashBalancer();
        b.build(eps, testBalancerContext());
        const inc = b.build([...rest].reverse(), testBalancerContext());
        let collateral = 0;
        for (const k of ks) {
          const was = before.get(k)!;
          const now = after.get(k)!;
          assert.equal(inc.pick({ key: k }).endpoint!.id, now.id, `incremental rebuild disagrees on ${k}`);
          if (was.id === eps[gone].id) assert.notEqual(now.id, was.id);
          else if (now.id !== was.id) {
            // Its point is gone (counts fell) or a point the new scale added now comes first.
            assert.ok(
              was.point >= newCounts.get(was.id)! || now.point >= oldCounts.get(now.id)!,
              `${k} moved from ${was.id} to an old point of ${now.id}`,
            );
            collateral++;
          }
        }
        assert.ok(
          collateral / ks.length <= added / size + 0.04,
          `${((collateral / ks.length) * 100).toFixed(1)}% of keys moved between remaining endpoints; the new scale added ${((added / size) * 100).toFixed(1)}% of the points`,
        );
      }),
      { numRuns: 60, seed: 8 },
    );
  });

  it('property: when the point counts stay the same (minRingSize 1: w / wmin points each), removing an endpoint moves exactly its keys', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 2, maxLength: 30 }), fc.nat(), (weights, r) => {
        const gone = r % weights.length;
        const wmin = Math.min(...weights);
        fc.pre(weights.filter((w, i) => w === wmin && i !== gone).length > 0);
        const eps = hostEndpoints(weights.length, weights);
        const before = mapping(eps, ks, { minRingSize: 1 });
        const after = mapping(
          eps.filter((_, i) => i !== gone),
          ks,
          { minRingSize: 1 },
        );
        for (const k of ks) {
          if (before.get(k) === eps[gone].id) assert.notEqual(after.get(k), eps[gone].id);
          else assert.equal(after.get(k), before.get(k), `${k} moved though ${eps[gone].id} was removed`);
        }
      }),
      { numRuns: 60, seed: 10 },
    );
  });

  it('property: adding one endpoint to N equal ones gives it about 1/(N+1) of the keys (within 0.5/(N+1) + 0.02); keys move between old endpoints only where points were added or dropped', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 40 }), fc.integer({ min: 0, max: 1000 }), (n, base) => {
        const eps = hostEndpoints(n + 1, undefined, base);
        const added = eps[n];
        const before = hits(eps.slice(0, n), ks);
        const oldCounts = counts(eps.slice(0, n)).c;
        const newCounts = counts(eps).c;
        const after = hits(eps, ks);
        let toNew = 0;
        for (const k of ks) {
          const now = after.get(k)!;
          if (now.id === added.id) toNew++;
          else {
            const was = before.get(k)!;
            if (now.id !== was.id)
              assert.ok(
                was.point >= newCounts.get(was.id)! || now.point >= oldCounts.get(now.id)!,
                `${k} moved from ${was.id} to an old point of ${now.id}`,
              );
          }
        }
        const frac = toNew / ks.length;
        const want = 1 / (n + 1);
        assert.ok(
          Math.abs(frac - want) <= 0.5 * want + 0.02,
          `n=${n}: ${(frac * 100).toFixed(1)}% of keys went to the new endpoint, expected about ${(want * 100).toFixed(1)}%`,
        );
      }),
      { numRuns: 40, seed: 9 },
    );
  });
});

describe('ring_hash: determinism', () => {
  const ks = keys(3000, 'acct:');

  it('maps keys the same across rebuilds, endpoint order and fresh objects, without Math.random or ctx.random', () => {
    const eps = hostEndpoints(
      25,
      Array.from({ length: 25 }, (_, i) => 1 + (i % 3)),
    );
    const mathRandom = Math.random;
    const forbidden = () => {
      throw new Error('randomness used for a keyed pick or a ring build');
    };
    Math.random = forbidden;
    try {
      const ctx = { ...testBalancerContext(), random: forbidden };
      const b = createRingHash({});
      const first = b.build(eps, ctx);
      const expected = ks.map((k) => first.pick({ key: k }).endpoint!.id);
      // Rebuilds of the same balancer: a change and back, a reordered copy, fresh objects.
      b.build(eps.slice(1), ctx);
      const again = b.build(eps.map((e) => ({ ...e })).reverse(), ctx);
      const fresh = createRingHash({}).build([...eps.slice(7), ...eps.slice(0, 7)], ctx);
      assert.deepEqual(
        ks.map((k) => again.pick({ key: k }).endpoint!.id),
        expected,
      );
      assert.deepEqual(
        ks.map((k) => fresh.pick({ key: k }).endpoint!.id),
        expected,
      );
    } finally {
      Math.random = mathRandom;
    }
  });

  it('a rebuild that merges into the previous ring (one endpoint replaced or removed) gives exactly the ring built from scratch', () => {
    // 300 endpoints of weights 1-4: 2 points per weight unit, unchanged by these edits, so the
    // rebuild keeps the other endpoints' points and merges (re-indexed when one is removed).
    const eps = hostEndpoints(
      300,
      Array.from({ length: 300 }, (_, i) => 1 + (i % 4)),
    );
    const b = new RingHashBalancer();
    b.build(eps, testBalancerContext());
    for (const [i, remove] of [
      [0, false],
      [150, false],
      [299, false],
      [3, true],
      [151, true],
    ] as [number, boolean][]) {
      const changed = remove
        ? eps.filter((_, j) => j !== i)
        : eps.map((e, j) => (j === i ? { ...e, port: 7100 + i } : e));
      const merged = b.build(changed, testBalancerContext()) as RingHashPicker;
      const scratch = new RingHashBalancer().build(changed, testBalancerContext()) as RingHashPicker;
      assert.deepEqual(merged.ring, scratch.ring, `ring after replacing endpoint ${i}`);
      b.build(eps, testBalancerContext());
    }
  });

  it('breaks a tie of two endpoints at the same ring position by host:port, whatever the order', () => {
    // Find two endpoint keys whose point 0 collides on the 32-bit ring (a birthday search).
    const seen = new Map<number, Endpoint>();
    let pair: [Endpoint, Endpoint] | undefined;
    for (let i = 0; !pair && i < 1_000_000; i++) {
      const e: Endpoint = {
        id: `c${i}`,
        host: `10.9.${(i >> 8) & 255}.${i & 255}`,
        port: 9000 + (i >> 16),
        metadata: {},
      };
      const h = murmur3(`${e.host}:${e.port}_0`);
      const other = seen.get(h);
      if (other) pair = [other, e];
      else seen.set(h, e);
    }
    assert.ok(pair, 'no collision found');
    const smaller = `${pair[0].host}:${pair[0].port}` < `${pair[1].host}:${pair[1].port}` ? pair[0] : pair[1];
    // minRingSize 1: one point each, both at the same position, so every key goes to the tie's winner.
    for (const order of [pair, [pair[1], pair[0]]]) {
      const picker = new RingHashBalancer({ minRingSize: 1 }).build(order, testBalancerContext());
      for (const k of keys(50)) assert.equal(picker.pick({ key: k }).endpoint!.id, smaller.id);
    }
  });
});

describe('ring_hash: decorated', () => {
  it('still asks for PickInfo through the slow-start and outlier decorators (else gRPC drops the key)', () => {
    const b = createRingHash({ slowStart: 1000, outlier: true });
    assert.equal(b.usesPickInfo, true);
  });
});
