import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConfigError, endpointKey, resolveBalancer, type Balancer, type Endpoint } from '../../core';
import { balancerConformance, makeEndpoints, testBalancerContext } from '../../testkit';
import { SubsetBalancer, subsetOf } from '.';

const BUILTINS = ['round_robin', 'weighted', 'p2c', 'p2c_ewma', 'ring_hash'];

/** Connections per backend key when clients 0..clients-1 each take their subset. */
export function connections(eps: readonly Endpoint[], clients: number, size: number): Map<string, number> {
  const m = new Map<string, number>(eps.map((e) => [endpointKey(e), 0]));
  for (let c = 0; c < clients; c++)
    for (const e of subsetOf(eps, size, c)) m.set(endpointKey(e), m.get(endpointKey(e))! + 1);
  return m;
}

describe('deterministic subsetting (SRE book)', () => {
  it('300 clients, 100 backends, subset 10: every backend gets exactly 30 connections', () => {
    const counts = connections(makeEndpoints(100), 300, 10);
    assert.deepEqual(new Set(counts.values()), new Set([30]));
  });

  it('property: with N a multiple of the subset size, any number of clients spreads within ±1 of the mean', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 400 }),
        (s, k, clients) => {
          const eps = makeEndpoints(s * k);
          const counts = [...connections(eps, clients, s).values()];
          const mean = (clients * s) / eps.length;
          return counts.every((c) => Math.abs(c - mean) <= 1);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('a subset has subsetSize distinct endpoints of the set, independent of the listing order', () => {
    const eps = makeEndpoints(37);
    const reversed = [...eps].reverse();
    for (let c = 0; c < 20; c++) {
      const s = subsetOf(eps, 5, c);
      assert.equal(new Set(s).size, 5);
      assert.ok(s.every((e) => eps.includes(e)));
      assert.deepEqual(subsetOf(reversed, 5, c), s);
    }
    assert.equal(subsetOf(eps, 40, 3).length, 37);
    // Clients of one round never share a backend.
    const round = new Set<Endpoint>();
    for (let c = 0; c < 7; c++) for (const e of subsetOf(eps, 5, c)) round.add(e);
    assert.equal(round.size, 35);
  });

  for (const name of BUILTINS) {
    it(`${name}: subsetSize + clientId pick only the client's subset`, () => {
      const b = resolveBalancer({ name, subsetSize: 4, clientId: 9 });
      assert.ok(b instanceof SubsetBalancer);
      const eps = makeEndpoints(20);
      const want = new Set(subsetOf(eps, 4, 9).map((e) => e.id));
      const ctx = testBalancerContext(2);
      const picker = b.build(eps, ctx);
      const seen = new Set<string>();
      for (let i = 0; i < 400; i++) {
        const p = picker.pick({ key: `k${i}` });
        assert.ok(p.endpoint && want.has(p.endpoint.id), `${name}: picked outside the subset`);
        seen.add(p.endpoint.id);
        ctx.advance(1);
        p.done({ ok: true, latencyMs: 1 });
      }
      assert.deepEqual([...seen].sort(), [...want].sort());
    });
  }

  it('subsetSize without clientId is a ConfigError naming clientId', () => {
    assert.throws(
      () => resolveBalancer({ name: 'p2c', subsetSize: 10 }),
      (e: unknown) => e instanceof ConfigError && e.field === 'clientId' && /^p2c: "clientId"/.test(e.message),
    );
    assert.ok(!(resolveBalancer({ name: 'p2c', clientId: 3 }) instanceof SubsetBalancer));
  });
});

// Conformance with subsetting on (the kit's sets are at most 7 endpoints; subsetSize 7 keeps them
// whole) and with zone-aware routing and outlier ejection stacked under it.
for (const name of BUILTINS) {
  const make = (cfg: Record<string, unknown>) => (): Balancer => resolveBalancer({ name, ...cfg });
  balancerConformance({
    it,
    describe,
    name: `${name} + subsetting`,
    balancer: make({ subsetSize: 7, clientId: 4, localZone: 'a', outlier: true }),
    weighted: name === 'weighted' || name === 'ring_hash',
    tolerance: name.startsWith('p2c') ? 0.02 : 0.01,
  });
}
