import assert from 'node:assert/strict';
import { resolveBalancer, type Balancer, type Endpoint, type Pick, type Picker } from '../../core';
import { makeEndpoints, testBalancerContext } from '../../testkit';
import { localZoneOf, parseShares, setLocalZoneSource, ZoneAwareBalancer, zonePlan, ZoneResidualPicker } from '.';

type Call = Extract<Pick, { endpoint: Endpoint }>;
const m = (o: Record<string, number>) => new Map(Object.entries(o));

/** n endpoints per zone; ports unique across zones. */
function zoned(perZone: Record<string, number>): Endpoint[] {
  const out: Endpoint[] = [];
  for (const [zone, n] of Object.entries(perZone))
    for (let i = 0; i < n; i++)
      out.push({ ...makeEndpoints(1)[0], id: `${zone}-${i}`, port: 9000 + out.length, zone: zone || undefined });
  return out;
}

const rr = () => resolveBalancer('round_robin');

describe('zone-aware routing: pinned plans', () => {
  it('plain plan is exactly { plain, 0, [] }: fewer endpoints than zoneMinClusterSize, even without panic', () => {
    const p = zonePlan('a', m({ a: 2, b: 3 }), m({ a: 2, b: 3 }), 5, { minClusterSize: 6, panicThreshold: 0 });
    assert.deepEqual(p, { mode: 'plain', localFraction: 0, spill: [] });
    assert.equal(
      zonePlan('a', m({ a: 2, b: 3 }), m({ a: 2, b: 3 }), 5, { minClusterSize: 5, panicThreshold: 0 }).mode,
      'local',
    );
  });

  it('local plan is exactly { local, 1, [] }', () => {
    const p = zonePlan('a', m({ a: 4, b: 4 }), m({ a: 4, b: 4 }), 8, { minClusterSize: 1, panicThreshold: 0 });
    assert.deepEqual(p, { mode: 'local', localFraction: 1, spill: [] });
  });

  it('panic starts strictly below the threshold: exactly 50 % of the peak still routes by zone', () => {
    const opts = { minClusterSize: 1, panicThreshold: 50 };
    assert.equal(zonePlan('a', m({ a: 4, b: 4 }), m({ a: 8, b: 8 }), 16, opts).mode, 'local');
    assert.equal(zonePlan('a', m({ a: 4, b: 3 }), m({ a: 8, b: 8 }), 16, opts).mode, 'plain');
  });

  it('no client shares at all: local (nothing to spill for)', () => {
    const p = zonePlan('a', m({ a: 1, b: 9 }), new Map(), 10, { minClusterSize: 1, panicThreshold: 0 });
    assert.deepEqual(p, { mode: 'local', localFraction: 1, spill: [] });
  });

  it('a zone with a non-positive share counts no clients (shares a=3, b=1, c=-2: d_a = 3/4)', () => {
    const p = zonePlan('a', m({ a: 2, b: 2 }), m({ a: 3, b: 1, c: -2 }), 4, { minClusterSize: 1, panicThreshold: 0 });
    assert.equal(p.mode, 'residual');
    assert.equal(p.localFraction, 0.5 / 0.75);
  });

  it('a zone with exactly zero residual capacity gets no spill entry', () => {
    // u = a 1/4, b 2/4, c 1/4; d = a 3/8, b 4/8, c 1/8: b's residual is 0, c's 1/8.
    const p = zonePlan('a', m({ a: 1, b: 2, c: 1 }), m({ a: 3, b: 4, c: 1 }), 4, {
      minClusterSize: 1,
      panicThreshold: 0,
    });
    assert.deepEqual(p, { mode: 'residual', localFraction: 0.25 / 0.375, spill: [{ zone: 'c', cum: 1 }] });
  });

  it('every zone short (shares equal to the endpoint spread up to rounding): spill spread like the endpoints', () => {
    // d = 0.3 / 1.8 rounds to 1/6 + 2^-55 > u = 1/6 for a, and d >= u for b and c: no zone has headroom.
    const p = zonePlan('a', m({ a: 1, b: 1, c: 4 }), m({ a: 0.3, b: 0.3, c: 1.2 }), 6, {
      minClusterSize: 1,
      panicThreshold: 0,
    });
    assert.equal(p.mode, 'residual');
    assert.ok(p.localFraction < 1 && p.localFraction > 1 - 1e-12, `local fraction ${p.localFraction}`);
    assert.deepEqual(
      p.spill.map((s) => s.zone),
      ['b', 'c'],
    );
    assert.ok(Math.abs(p.spill[0].cum - 0.2) < 1e-12, `b: ${p.spill[0].cum}`); // (1/6) / (5/6)
    assert.equal(p.spill[1].cum, 1);
  });

  it('zoneShares items: the zone name is trimmed, and an empty zone name is refused', () => {
    assert.deepEqual(parseShares([' a =2']), new Map([['a', 2]]));
    assert.equal(parseShares(['=2']), undefined);
    assert.equal(parseShares(['a=x']), undefined);
  });

  it('setLocalZoneSource is consulted after the option and WAYFINDER_ZONE', () => {
    setLocalZoneSource(() => 'z');
    try {
      assert.equal(localZoneOf({}, {}), 'z');
      assert.equal(localZoneOf({}, { WAYFINDER_ZONE: 'e' }), 'e');
      assert.equal(localZoneOf({ localZone: 'o' }, { WAYFINDER_ZONE: 'e' }), 'o');
    } finally {
      setLocalZoneSource(() => undefined);
    }
    assert.equal(localZoneOf({}, {}), undefined);
  });
});

describe('zone-aware routing: pinned decorator settings', () => {
  const ctx = () => testBalancerContext(1);

  it('zoneMinClusterSize: default 6 (5 endpoints: plain), a given value is used (5: zone routing)', () => {
    const eps = zoned({ a: 2, b: 3 });
    const byDefault = new ZoneAwareBalancer(rr, { localZone: 'a' });
    byDefault.build(eps, ctx());
    assert.equal(byDefault.plan?.mode, 'plain');
    const five = new ZoneAwareBalancer(rr, { localZone: 'a', zoneMinClusterSize: 5 });
    five.build(eps, ctx());
    assert.equal(five.plan?.mode, 'local');
  });

  it('zonePanicThreshold: default 50 % of the summed zone peaks (7 of 16 listed: plain); 40 given: zone routing', () => {
    const full = zoned({ a: 8, b: 8 });
    const shrunk = full.filter((e) => Number(e.id.split('-')[1]) < (e.zone === 'a' ? 3 : 4)); // a 3, b 4
    const byDefault = new ZoneAwareBalancer(rr, { localZone: 'a' });
    byDefault.build(full, ctx());
    byDefault.build(shrunk, ctx());
    assert.equal(byDefault.plan?.mode, 'plain');
    const forty = new ZoneAwareBalancer(rr, { localZone: 'a', zonePanicThreshold: 40 });
    forty.build(full, ctx());
    forty.build(shrunk, ctx());
    assert.deepEqual(forty.plan, { mode: 'residual', localFraction: 3 / 7 / 0.5, spill: [{ zone: 'b', cum: 1 }] });
  });

  it('endpoints without a zone form the zone "" (and receive spill under that name)', () => {
    const b = new ZoneAwareBalancer(rr, { localZone: 'a' });
    b.build(zoned({ a: 6, '': 6 }), ctx());
    b.build(zoned({ a: 3, '': 6 }), ctx());
    assert.deepEqual(b.plan?.spill, [{ zone: '', cum: 1 }]);
    assert.deepEqual(
      [...b.peak],
      [
        ['a', 6],
        ['', 6],
      ],
    );
  });

  it("usesPickInfo is the inner balancer's (ring_hash: true)", () => {
    assert.equal(new ZoneAwareBalancer(() => resolveBalancer('ring_hash'), { localZone: 'a' }).usesPickInfo, true);
    assert.equal(new ZoneAwareBalancer(rr, { localZone: 'a' }).usesPickInfo, rr().usesPickInfo);
  });

  it('one inner balancer per zone, kept across builds; a zone that vanished gets a new one when it returns', () => {
    const made: Balancer[] = [];
    const zonesOf = new Map<Balancer, Set<string>>();
    const make = (): Balancer => {
      const inner = rr();
      const b: Balancer = {
        name: inner.name,
        build: (eps, c) => {
          for (const e of eps) zonesOf.get(b)!.add(e.zone ?? '');
          return inner.build(eps, c);
        },
      };
      zonesOf.set(b, new Set());
      made.push(b);
      return b;
    };
    // zoneShares a=3,b=1 keeps the plan residual: both zones get an inner balancer each build.
    const za = new ZoneAwareBalancer(make, { localZone: 'a', zoneMinClusterSize: 1, zoneShares: ['a=3', 'b=1'] });
    const both = zoned({ a: 2, b: 2 });
    za.build(both, ctx());
    assert.equal(za.plan?.mode, 'residual');
    assert.equal(made.length, 3, 'the plain balancer plus one per zone');
    za.build(both, ctx());
    assert.equal(made.length, 3, 'a rebuild with the same zones reuses their balancers');
    za.build(
      both.filter((e) => e.zone === 'a'),
      ctx(),
    );
    za.build(both, ctx());
    assert.equal(made.length, 4, 'zone b vanished for one build: it gets a new balancer');
    const perZone = made.slice(1).map((b) => [...zonesOf.get(b)!]);
    assert.deepEqual(perZone, [['a'], ['b'], ['b']]);
  });

  it('a non-sticky inner balancer: the zone draw is random per pick, not from the key', () => {
    const b = new ZoneAwareBalancer(rr, { localZone: 'a', zoneMinClusterSize: 1, zoneShares: ['a=3', 'b=1'] });
    const picker = b.build(zoned({ a: 2, b: 2 }), testBalancerContext(4));
    // local fraction (1/2) / (3/4) = 2/3: the same key reaches both zones.
    const zones = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const p = picker.pick({ key: 'same-key' }) as Call;
      zones.add(p.endpoint.zone!);
      p.done({ ok: true, latencyMs: 1 });
    }
    assert.deepEqual([...zones].sort(), ['a', 'b']);
  });
});

describe('zone-aware routing: pinned residual picker draws', () => {
  const to = (id: string): Picker => ({
    pick: () => ({ endpoint: { id, host: '10.0.0.1', port: 1, metadata: {} }, done: () => {} }),
  });
  const picked = (p: Picker) => (p.pick() as Call).endpoint.id;
  const spill = [
    { cum: 0.5, picker: to('b') },
    { cum: 1, picker: to('c') },
  ];

  it('a draw equal to the local fraction spills; a rescaled draw equal to a cumulative weight goes to the next zone', () => {
    const at = (u: number) => new ZoneResidualPicker(to('a'), 0.5, spill, () => u, false);
    assert.equal(picked(at(0.4999)), 'a');
    assert.equal(picked(at(0.5)), 'b');
    assert.equal(picked(at(0.7499)), 'b');
    assert.equal(picked(at(0.75)), 'c'); // r = 0.25 / 0.5 = 0.5 = b's cumulative weight
  });

  it('a rescaled draw past the last cumulative weight goes to the last spill zone', () => {
    const p = new ZoneResidualPicker(to('a'), 0.5, [{ cum: 0.5, picker: to('b') }], () => 0.9, false);
    assert.equal(picked(p), 'b');
  });
});
