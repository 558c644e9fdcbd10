import assert from 'node:assert/strict';
import type { BalancerContext, Endpoint } from '../../core';
import { makeEndpoints, testBalancerContext } from '../../testkit';
import { murmur3, ringHash, RingHashBalancer, type RingHashPicker } from '.';

// Value-pinning tests for ring_hash (issue 22): each names the behaviour it pins and the numbers are
// worked out by hand or from murmur3 of the endpoint keys (point i of "host:port" is murmur3("host:port_i")).
const OWNER_SPAN = 2_097_152;
const ep = (host: string, port: number, weight?: number, id = `${host}:${port}`): Endpoint => ({
  id,
  host,
  port,
  weight,
  metadata: {},
});
const counts = (ring: Float64Array, n: number) => {
  const c = new Array<number>(n).fill(0);
  for (const v of ring) c[v % OWNER_SPAN]++;
  return c;
};
const build = (b: RingHashBalancer, eps: Endpoint[], ctx: BalancerContext = testBalancerContext()) =>
  b.build(eps, ctx) as RingHashPicker;
/** A fixed draw for keyless picks. */
const drawing = (x: number): BalancerContext => ({ ...testBalancerContext(), random: () => x });
/** The ring a fresh balancer builds for the set (what every rebuild must equal). */
const scratch = (eps: Endpoint[], config = {}) => build(new RingHashBalancer(config), eps).ring;

describe('ring_hash: pinned values', () => {
  it('an infinite weight counts as 1: weights Infinity and 3 give points 256 and 768 (m = 1/4, scale 1024)', () => {
    const ring = build(new RingHashBalancer(), makeEndpoints(2, [Number.POSITIVE_INFINITY, 3])).ring;
    assert.deepEqual(counts(ring, 2), [256, 768]);
  });

  it('a null key is keyless (random by weight), not the string "null"', () => {
    const eps = makeEndpoints(4);
    // Draws 0 and 0.9999 pick the first and the last endpoint (the key "null" has one owner only).
    const first = build(new RingHashBalancer(), eps, drawing(0)).pick({ key: null as unknown as string });
    const last = build(new RingHashBalancer(), eps, drawing(0.9999)).pick({ key: null as unknown as string });
    assert.equal(first.endpoint!.id, 'ep-0');
    assert.equal(last.endpoint!.id, 'ep-3');
  });

  it('a key whose hash equals a point exactly goes to that point’s owner (the lower bound is inclusive)', () => {
    // The key "10.0.0.1:8000_5" hashes to point 5 of ep-0 (index 0: its ring entry is hash × span + 0).
    const eps = makeEndpoints(3);
    const picker = build(new RingHashBalancer(), eps);
    for (let i = 0; i < 20; i++) {
      const key = `10.0.0.1:8000_${i}`;
      assert.equal(picker.pick({ key }).endpoint!.id, 'ep-0', key);
      assert.equal(picker.indexOf(key), 0, key);
    }
    for (let i = 0; i < 5; i++) assert.equal(picker.indexOf(`10.0.0.1:8002_${i}`), 2);
  });

  it('indexOf is the index of the keyed pick’s endpoint, whatever the draw; -1 on an empty ring', () => {
    const eps = makeEndpoints(5, [1, 2, 3, 4, 5]);
    const a = build(new RingHashBalancer(), eps, drawing(0));
    const z = build(new RingHashBalancer(), eps, drawing(0.9999));
    for (let k = 0; k < 50; k++) {
      const key = `user-${k}`;
      const id = a.pick({ key }).endpoint!.id;
      assert.equal(a.indexOf(key), Number(id.slice(3)));
      assert.equal(z.indexOf(key), Number(id.slice(3)));
    }
    assert.equal(build(new RingHashBalancer(), []).indexOf('user-0'), -1);
  });

  it('the plain ringHash balancer is "ring_hash" with default ring sizes (1026 points over 3 endpoints)', () => {
    assert.equal(new RingHashBalancer().name, 'ring_hash');
    assert.equal(ringHash.name, 'ring_hash');
    const eps = makeEndpoints(3);
    const picker = ringHash.build(eps, testBalancerContext()) as RingHashPicker;
    assert.deepEqual(picker.ring, scratch(eps));
    assert.equal(picker.ring.length, 1026);
  });

  describe('minRingSize above maxRingSize', () => {
    const logged = () => {
      const warnings: [unknown, string][] = [];
      const ctx: BalancerContext = {
        ...testBalancerContext(),
        logger: { debug() {}, info() {}, error() {}, warn: (o: unknown, m?: string) => void warnings.push([o, m!]) },
      };
      return { warnings, ctx };
    };

    it('warns on the first build, with the exact message, and never again', () => {
      const { warnings, ctx } = logged();
      const b = new RingHashBalancer({ minRingSize: 2049, maxRingSize: 2048 });
      b.build(makeEndpoints(3), ctx);
      assert.deepEqual(warnings, [
        [{ minRingSize: 2049, maxRingSize: 2048 }, 'ring_hash: "minRingSize" exceeds "maxRingSize"; maxRingSize wins'],
      ]);
      b.build(makeEndpoints(2), ctx);
      b.build(makeEndpoints(4), ctx);
      assert.equal(warnings.length, 1);
    });

    it('no warning when minRingSize equals or is below maxRingSize', () => {
      for (const [min, max] of [
        [2048, 2048],
        [1024, 2048],
      ]) {
        const { warnings, ctx } = logged();
        new RingHashBalancer({ minRingSize: min, maxRingSize: max }).build(makeEndpoints(3), ctx);
        assert.deepEqual(warnings, [], `${min} / ${max}`);
      }
    });

    it('maxRingSize wins: 4 equal endpoints with minRingSize 4096, maxRingSize 2048 get 512 points each', () => {
      const picker = new RingHashBalancer({ minRingSize: 4096, maxRingSize: 2048 }).build(
        makeEndpoints(4),
        logged().ctx,
      ) as RingHashPicker;
      assert.deepEqual(counts(picker.ring, 4), [512, 512, 512, 512]);
    });
  });

  it('a host:port listed twice: its first occurrence owns the points (342 each: the copy still counts in W), the copy is reached only keyless', () => {
    const a = ep('10.3.0.1', 80);
    const b = ep('10.3.0.2', 80);
    const dup = ep('10.3.0.1', 80, undefined, 'dup');
    const eps = [a, b, dup];
    // Three weights of 1: m = 1/3, scale 1026, 342 points for a and b; the copy adds none.
    const picker = build(new RingHashBalancer(), eps, drawing(0.9999));
    assert.deepEqual(counts(picker.ring, 3), [342, 342, 0]);
    assert.equal(picker.pick().endpoint, dup, 'the last cumulative weight is the duplicate');
    assert.equal(picker.pick({ key: '10.3.0.1:80_0' }).endpoint, a);
    // Rebuilt with the duplicate first: the first occurrence (now index 0) owns the points.
    const again = build(new RingHashBalancer(), [dup, b, a]);
    assert.deepEqual(counts(again.ring, 3), [342, 342, 0]);
    // The copy between the two: b (index 2) still gets its 342 points, the copy none.
    const between = build(new RingHashBalancer(), [a, dup, b]);
    assert.deepEqual(counts(between.ring, 3), [342, 0, 342]);
  });

  describe('a rebuild that merges into the previous ring equals the ring built from scratch', () => {
    // 300 endpoints of weights 1-4 (W = 750): scale 1500, two points per weight unit, which these
    // edits keep, so the other endpoints keep their points and the change is merged in.
    const base = Array.from({ length: 300 }, (_, i) => ep(`10.1.${i >> 8}.${i & 255}`, 7000, 1 + (i % 4)));

    it('a weight change (1 to 2) moves the endpoint from 2 to 4 points and drops its old ones', () => {
      const b = new RingHashBalancer();
      build(b, base);
      const changed = base.map((e, i) => (i === 0 ? { ...e, weight: 2 } : e));
      const merged = build(b, changed).ring;
      assert.equal(counts(merged, 300)[0], 4);
      assert.deepEqual(merged, scratch(changed));
    });

    it('two endpoints added at once (weights 1 and 3: 2 and 6 new points)', () => {
      const b = new RingHashBalancer();
      build(b, base);
      const grown = [...base, ep('10.9.9.1', 7000, 1), ep('10.9.9.2', 7000, 3)];
      const merged = build(b, grown).ring;
      assert.deepEqual(counts(merged, 302).slice(300), [2, 6]);
      assert.deepEqual(merged, scratch(grown));
    });

    it('an added endpoint whose point lies past the last point, or before the first (minRingSize 1: one point each)', () => {
      // murmur3 of "10.2.0.i:80_0" for i < 8 lies in [118837441, 4224448099]; i = 52 gives
      // 4245809891 (past the last), i = 16 gives 37806034 (before the first).
      const eight = Array.from({ length: 8 }, (_, i) => ep(`10.2.0.${i}`, 80));
      assert.equal(murmur3('10.2.0.52:80_0'), 4245809891);
      assert.equal(murmur3('10.2.0.16:80_0'), 37806034);
      for (const extra of [52, 16]) {
        const b = new RingHashBalancer({ minRingSize: 1 });
        build(b, eight);
        const grown = [...eight, ep(`10.2.0.${extra}`, 80)];
        const picker = build(b, grown);
        assert.deepEqual(picker.ring, scratch(grown, { minRingSize: 1 }), `10.2.0.${extra}`);
        assert.equal(picker.indexOf(`10.2.0.${extra}:80_0`), 8);
        const ring = picker.ring;
        assert.equal((extra === 16 ? ring[0] : ring[ring.length - 1]) % OWNER_SPAN, 8);
        // A key hashing above every point wraps to the owner of the smallest point.
        const hashes = grown.map((e) => murmur3(`${e.host}:${e.port}_0`));
        const smallest = hashes.indexOf(Math.min(...hashes));
        const above = Array.from({ length: 2000 }, (_, i) => `k${i}`).find((k) => murmur3(k) > 4245809891)!;
        assert.equal(picker.indexOf(above), smallest, above);
      }
    });
  });

  it('a tie on the ring is resolved by host:port without reordering the points after it', () => {
    // 10.9.3.123:9000 and 10.9.216.201:9001 both put point 0 at 354434552 (a birthday search);
    // 10.0.0.1:80 puts its point at 2968670888, after the tie, and has the smallest host:port.
    const p = ep('10.9.3.123', 9000);
    const q = ep('10.9.216.201', 9001);
    const r = ep('10.0.0.1', 80);
    assert.equal(murmur3('10.9.3.123:9000_0'), 354434552);
    assert.equal(murmur3('10.9.216.201:9001_0'), 354434552);
    assert.equal(murmur3('10.0.0.1:80_0'), 2968670888);
    for (const order of [
      [p, q, r],
      [q, p, r],
      [r, p, q],
      [r, q, p],
    ]) {
      const picker = build(new RingHashBalancer({ minRingSize: 1 }), order);
      const positions = Array.from(picker.ring, (v) => Math.floor(v / OWNER_SPAN));
      assert.deepEqual(positions, [354434552, 354434552, 2968670888]);
      // "10.9.216.201:9001" < "10.9.3.123:9000": q wins the tie.
      assert.equal(picker.pick({ key: '10.9.3.123:9000_0' }).endpoint, q);
      assert.equal(picker.pick({ key: '10.0.0.1:80_0' }).endpoint, r);
      // Past the last point: wraps to the tie's winner.
      const above = Array.from({ length: 1000 }, (_, i) => `k${i}`).find((k) => murmur3(k) > 2968670888)!;
      assert.equal(picker.pick({ key: above }).endpoint, q, above);
    }
  });

  it('points at adjacent positions (P and P + 1) are no tie: each keeps its place, whatever host:port orders first', () => {
    // 10.8.69.32:9000 puts point 0 at 3469061584 and 10.8.14.117:9000 at 3469061585 (a search for
    // neighbours). Listed second, the first lies one position below the second, closer than a
    // position apart in the ring's encoding (span - 1), and has the larger host:port.
    const a = ep('10.8.69.32', 9000);
    const b = ep('10.8.14.117', 9000);
    assert.equal(murmur3('10.8.69.32:9000_0'), 3469061584);
    assert.equal(murmur3('10.8.14.117:9000_0'), 3469061585);
    for (const order of [
      [b, a],
      [a, b],
    ]) {
      const picker = build(new RingHashBalancer({ minRingSize: 1 }), order);
      assert.deepEqual(
        Array.from(picker.ring, (v) => Math.floor(v / OWNER_SPAN)),
        [3469061584, 3469061585],
      );
      assert.equal(picker.pick({ key: '10.8.69.32:9000_0' }).endpoint, a);
      assert.equal(picker.pick({ key: '10.8.14.117:9000_0' }).endpoint, b);
    }
  });
});

describe('ring_hash: pinned three-way tie', () => {
  it('three points at one position: the smallest host:port wins in every order, the points around keep their places', () => {
    // 10.16.214.23:9000, 10.31.37.34:9000 and 10.127.46.122:9000 all put point 0 at 2259363468 (a
    // search over 2^23 hosts for a triple); "10.127.46.122:9000" is the smallest of the three strings.
    // 10.2.0.16:80 puts its point before them, 10.0.0.1:80 after: four equal weights, one point each.
    const [p, q, r] = [ep('10.16.214.23', 9000), ep('10.31.37.34', 9000), ep('10.127.46.122', 9000)];
    for (const e of [p, q, r]) assert.equal(murmur3(`${e.host}:${e.port}_0`), 2259363468);
    const before = ep('10.2.0.16', 80);
    const after = ep('10.0.0.1', 80);
    assert.equal(murmur3('10.2.0.16:80_0'), 37806034);
    assert.equal(murmur3('10.0.0.1:80_0'), 2968670888);
    const orders = [
      [p, q, r],
      [p, r, q],
      [q, p, r],
      [q, r, p],
      [r, p, q],
      [r, q, p],
    ];
    for (const order of orders) {
      for (const set of [order, [before, ...order, after], [after, ...order, before]]) {
        const picker = build(new RingHashBalancer({ minRingSize: 1 }), set);
        const label = set.map((e) => e.host).join(' ');
        const positions = Array.from(picker.ring, (v) => Math.floor(v / OWNER_SPAN));
        const tie = [2259363468, 2259363468, 2259363468];
        assert.deepEqual(positions, set.length === 3 ? tie : [37806034, ...tie, 2968670888], label);
        assert.equal(picker.pick({ key: '10.16.214.23:9000_0' }).endpoint, r, label);
        if (set.length > 3) {
          assert.equal(picker.pick({ key: '10.2.0.16:80_0' }).endpoint, before, label);
          assert.equal(picker.pick({ key: '10.0.0.1:80_0' }).endpoint, after, label);
        }
      }
    }
  });
});

describe('ring_hash: pinned Pick reuse across builds', () => {
  it('a rebuild hands out the same Pick object for an unchanged Endpoint object, a new one for a replaced object', () => {
    const eps = makeEndpoints(4);
    const b = new RingHashBalancer();
    const first = build(b, eps);
    // Draws 0 and 0.9999 pick the first and the last endpoint keyless (equal weights).
    const again = build(b, eps, drawing(0));
    assert.equal(again.pick(), build(b, eps, drawing(0)).pick());
    for (let k = 0; k < 20; k++) assert.equal(again.pick({ key: `u${k}` }), first.pick({ key: `u${k}` }), `u${k}`);
    // ep-0 replaced by an equal but new object: a new Pick for it, the others kept.
    const replaced = [{ ...eps[0] }, ...eps.slice(1)];
    const p0 = build(b, replaced, drawing(0)).pick();
    assert.equal(p0.endpoint, replaced[0]);
    assert.notEqual(p0, again.pick());
    assert.equal(build(b, replaced, drawing(0.9999)).pick(), build(b, eps, drawing(0.9999)).pick());
  });

  it('a host:port listed twice: the first occurrence keeps its Pick across builds, the copy gets its own', () => {
    const a = ep('10.3.0.1', 80);
    const c = ep('10.3.0.2', 80);
    const dup = ep('10.3.0.1', 80, undefined, 'dup');
    const b = new RingHashBalancer();
    // Three equal weights: draw 0 picks index 0 (a), 0.9999 index 2 (the copy).
    const a1 = build(b, [a, c, dup], drawing(0)).pick();
    const d1 = build(b, [a, c, dup], drawing(0.9999)).pick();
    const a2 = build(b, [a, c, dup], drawing(0)).pick();
    assert.equal(a1.endpoint, a);
    assert.equal(d1.endpoint, dup);
    assert.equal(a2, a1);
  });
});
