import assert from 'node:assert/strict';
import { ConfigError, resolveBalancer, type Balancer, type Endpoint, type Pick } from '../../core';
import { balancerConformance, makeEndpoints, testBalancerContext } from '../../testkit';
import { OutlierBalancer } from '../outlier';
import { localZoneOf, parseShares, ZoneAwareBalancer, zonePlan } from '.';

type Call = Extract<Pick, { endpoint: Endpoint }>;
const BUILTINS = ['round_robin', 'weighted', 'p2c', 'p2c_ewma', 'ring_hash'];
const OPTS = { minClusterSize: 6, panicThreshold: 50 };

/** n endpoints per zone, e.g. zoned({ a: 6, b: 5, c: 4 }); ports unique across zones. */
function zoned(perZone: Record<string, number>): Endpoint[] {
  const out: Endpoint[] = [];
  for (const [zone, n] of Object.entries(perZone))
    for (let i = 0; i < n; i++) out.push({ ...makeEndpoints(1)[0], id: `${zone}-${i}`, port: 9000 + out.length, zone });
  return out;
}

/** Picks `n` times (finishing each call) and returns the share of picks per zone. */
function zoneShares(b: Balancer, eps: Endpoint[], n: number, seed = 1): Record<string, number> {
  const ctx = testBalancerContext(seed);
  const picker = b.build(eps, ctx);
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const p = picker.pick({ key: `k${i}` }) as Call;
    assert.ok(p.endpoint, 'no endpoint picked');
    const z = p.endpoint.zone ?? '';
    counts[z] = (counts[z] ?? 0) + 1;
    ctx.advance(1);
    p.done({ ok: true, latencyMs: 1 });
  }
  for (const z of Object.keys(counts)) counts[z] /= n;
  return counts;
}

const near = (got: number | undefined, want: number, tol: number, what: string) =>
  assert.ok(Math.abs((got ?? 0) - want) <= tol, `${what}: got ${got?.toFixed(4)}, want ${want.toFixed(4)} ±${tol}`);

describe('zone-aware routing: the plan (Envoy zone routing with estimated client spread)', () => {
  const m = (o: Record<string, number>) => new Map(Object.entries(o));

  it('stays local while the local zone holds at least its share of clients', () => {
    const p = zonePlan('a', m({ a: 6, b: 5, c: 4 }), m({ a: 6, b: 5, c: 4 }), 15, OPTS);
    assert.equal(p.mode, 'local');
    // An over-provisioned local zone stays local too.
    assert.equal(zonePlan('c', m({ a: 2, b: 2, c: 4 }), m({ a: 1, b: 1, c: 1 }), 8, OPTS).mode, 'local');
  });

  it('keeps u/d locally and spills the rest in proportion to residual capacity', () => {
    // a lost half (6 -> 3): u = 3/12, d = 6/15; residuals b: 5/12 - 5/15, c: 4/12 - 4/15.
    const p = zonePlan('a', m({ a: 3, b: 5, c: 4 }), m({ a: 6, b: 5, c: 4 }), 15, OPTS);
    assert.equal(p.mode, 'residual');
    near(p.localFraction, 3 / 12 / (6 / 15), 1e-12, 'local fraction');
    const rb = 5 / 12 - 5 / 15;
    const rc = 4 / 12 - 4 / 15;
    assert.deepEqual(
      p.spill.map((s) => s.zone),
      ['b', 'c'],
    );
    near(p.spill[0].cum, rb / (rb + rc), 1e-12, 'b spill');
    near(p.spill[1].cum, 1, 1e-12, 'cumulative end');
  });

  it('a zone that shrank below its clients gets no spill; a vanished zone still counts its clients', () => {
    const p = zonePlan('a', m({ a: 2, b: 6 }), m({ a: 4, b: 6, c: 6 }), 16, { ...OPTS, panicThreshold: 0 });
    // d_a = 4/16 = .25, u_a = .25: local.
    assert.equal(p.mode, 'local');
    const q = zonePlan('a', m({ a: 2, b: 6, c: 2 }), m({ a: 4, b: 6, c: 6 }), 16, OPTS);
    assert.equal(q.mode, 'residual');
    assert.deepEqual(
      q.spill.map((s) => s.zone),
      ['b'],
    );
  });

  it('no zone routing below min cluster size, with one zone, without local endpoints, or in panic', () => {
    const peak = m({ a: 6, b: 5, c: 4 });
    assert.equal(zonePlan('a', m({ a: 1, b: 2, c: 2 }), peak, 15, OPTS).mode, 'plain');
    assert.equal(
      zonePlan('a', m({ a: 1, b: 2, c: 2 }), peak, 15, { minClusterSize: 5, panicThreshold: 0 }).mode,
      'residual',
    );
    assert.equal(zonePlan('a', m({ a: 9 }), peak, 15, OPTS).mode, 'plain');
    assert.equal(zonePlan('x', m({ a: 6, b: 5, c: 4 }), peak, 15, OPTS).mode, 'plain');
    // 7 of 15 listed (46.7% < 50%): panic; 8 of 15: zone routing.
    assert.equal(zonePlan('a', m({ a: 3, b: 2, c: 2 }), peak, 15, OPTS).mode, 'plain');
    assert.equal(zonePlan('a', m({ a: 3, b: 3, c: 2 }), peak, 15, OPTS).mode, 'residual');
  });

  it('zoneShares parse as zone=share items; bad ones are a ConfigError naming the field', () => {
    assert.deepEqual(
      parseShares(['a=2', 'b=0.5']),
      new Map([
        ['a', 2],
        ['b', 0.5],
      ]),
    );
    assert.equal(parseShares(['a']), undefined);
    assert.equal(parseShares(['a=0']), undefined);
    assert.throws(
      () => resolveBalancer({ name: 'round_robin', localZone: 'a', zoneShares: 'a=2,b' }),
      (e: unknown) => e instanceof ConfigError && (e as ConfigError & { field?: string }).field === 'zoneShares',
    );
  });
});

describe('zone-aware routing: the decorator in virtual time', () => {
  it('the local zone comes from the option, else WAYFINDER_ZONE, else nothing (off)', () => {
    assert.equal(localZoneOf({ localZone: 'a' }, { WAYFINDER_ZONE: 'b' }), 'a');
    assert.equal(localZoneOf({}, { WAYFINDER_ZONE: 'b' }), 'b');
    assert.equal(localZoneOf({}, {}), undefined);
    assert.ok(!(resolveBalancer('round_robin') instanceof ZoneAwareBalancer));
  });

  for (const name of BUILTINS) {
    it(`${name}: all local while the zone can carry its share; proportional spill after it loses half`, () => {
      const b = resolveBalancer({ name, localZone: 'a' });
      assert.ok(b instanceof ZoneAwareBalancer, `${name}: not zone-aware`);
      const full = zoned({ a: 6, b: 5, c: 4 });
      assert.deepEqual(zoneShares(b, full, 3000), { a: 1 });
      // Zone a loses 3 of its 6 endpoints.
      const shrunk = full.filter((e) => !(e.zone === 'a' && Number(e.id.split('-')[1]) >= 3));
      const s = zoneShares(b, shrunk, 30_000);
      const local = 3 / 12 / (6 / 15);
      const rb = 5 / 12 - 5 / 15;
      const rc = 4 / 12 - 4 / 15;
      near(s.a, local, 0.01, 'local share');
      near(s.b, ((1 - local) * rb) / (rb + rc), 0.01, 'b share');
      near(s.c, ((1 - local) * rc) / (rb + rc), 0.01, 'c share');
      // Back to full strength: local again.
      assert.deepEqual(zoneShares(b, full, 1000), { a: 1 });
    });
  }

  it('the inner balancer picks within the zone with its own per-zone state (p2c avoids a busy local endpoint)', () => {
    const b = resolveBalancer({ name: 'p2c', localZone: 'a' });
    const eps = zoned({ a: 3, b: 3, c: 3 });
    const ctx = testBalancerContext(3);
    const picker = b.build(eps, ctx);
    const busy = (picker.pick() as Call).endpoint; // never finished: one call in flight
    assert.equal(busy.zone, 'a');
    const counts = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const p = picker.pick() as Call;
      counts.set(p.endpoint.id, (counts.get(p.endpoint.id) ?? 0) + 1);
      p.done({ ok: true, latencyMs: 1 });
    }
    assert.equal(
      [...counts.keys()].every((id) => id.startsWith('a-')),
      true,
    );
    assert.equal(counts.get(busy.id) ?? 0, 0, 'the local endpoint with a call in flight was picked');
  });

  it('ring_hash: in residual mode a key keeps reaching one endpoint, and keys still spill in proportion', () => {
    const b = resolveBalancer({ name: 'ring_hash', localZone: 'a' });
    const eps = zoned({ a: 3, b: 5, c: 4 });
    (b as ZoneAwareBalancer).build(zoned({ a: 6, b: 5, c: 4 }), testBalancerContext(1)); // peak a = 6
    const ctx = testBalancerContext(9);
    const picker = b.build(eps, ctx);
    assert.equal((b as ZoneAwareBalancer).plan?.mode, 'residual');
    let local = 0;
    const n = 4000;
    for (let k = 0; k < n; k++) {
      const first = (picker.pick({ key: `user-${k}` }) as Call).endpoint;
      for (let i = 0; i < 3; i++)
        assert.equal((picker.pick({ key: `user-${k}` }) as Call).endpoint, first, `key user-${k} moved`);
      if (first.zone === 'a') local++;
    }
    near(local / n, 3 / 12 / (6 / 15), 0.03, 'share of keys kept local');
  });

  it('under outlier ejection: ejected local endpoints count as gone and the rest spills', () => {
    const b = resolveBalancer({ name: 'round_robin', localZone: 'a', outlier: true, outlierConsecutiveFailures: 1 });
    assert.ok(b instanceof OutlierBalancer);
    const eps = zoned({ a: 4, b: 4, c: 4 });
    const ctx = testBalancerContext(5);
    const picker = b.build(eps, ctx);
    // Fail 2 local endpoints once each: both ejected (cap 50% of 12).
    const failed = new Set<string>();
    for (let i = 0; i < 20 && failed.size < 2; i++) {
      const p = picker.pick() as Call;
      const fail = p.endpoint.zone === 'a' && !failed.has(p.endpoint.id) && failed.size < 2;
      if (fail) failed.add(p.endpoint.id);
      p.done({ ok: !fail, latencyMs: 1 });
    }
    assert.equal((b as OutlierBalancer).ejected(ctx.now()).length, 2);
    let local = 0;
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      const p = picker.pick() as Call;
      assert.ok(!failed.has(p.endpoint.id), 'an ejected endpoint was picked');
      if (p.endpoint.zone === 'a') local++;
      p.done({ ok: true, latencyMs: 1 });
    }
    // u_a = 2/10, d_a = 4/12: 60% stays local.
    near(local / n, 0.2 / (4 / 12), 0.015, 'local share with 2 of 4 local endpoints ejected');
  });
});

// Conformance of every built-in balancer with zone-aware routing on: (1) every endpoint in the
// local zone; (2) two zones with the local one short of its client share (residual mode: spill).
function withZones(name: string, cfg: Record<string, unknown>, zoneOf: (i: number) => string): () => Balancer {
  return () => {
    const b = resolveBalancer({ name, ...cfg });
    return {
      name: b.name,
      usesPickInfo: b.usesPickInfo,
      build: (eps, ctx) =>
        b.build(
          eps.map((e, i) => ({ ...e, zone: zoneOf(i) })),
          ctx,
        ),
    };
  };
}
for (const name of BUILTINS) {
  const conf = { it, describe, weighted: name === 'weighted' || name === 'ring_hash', even: true };
  balancerConformance({
    ...conf,
    name: `${name} + zone-aware (all local)`,
    balancer: withZones(name, { localZone: 'a', zoneMinClusterSize: 1 }, () => 'a'),
    tolerance: name === 'p2c' || name === 'p2c_ewma' ? 0.02 : 0.01,
  });
  balancerConformance({
    ...conf,
    weighted: false,
    even: false,
    name: `${name} + zone-aware (local zone short: spill)`,
    balancer: withZones(name, { localZone: 'a', zoneMinClusterSize: 1, zoneShares: 'a=3,b=1' }, (i) =>
      i % 2 ? 'b' : 'a',
    ),
  });
}
