import assert from 'node:assert/strict';
import { ConfigError, endpointKey, type Balancer, type BalancerContext, type Endpoint, type Picker } from '../../core';
import { makeEndpoints, testBalancerContext } from '../../testkit';
import { murmur3 } from '../shared/hash';
import { SubsetBalancer, subsetOf, withSubset } from '.';

// Subsets pinned exactly, not by their spread: which endpoints each client gets and in which order,
// the tie-break between equal ranks, the edges (N = subsetSize, clientId 0), and what the decorator
// hands its inner balancer.

const ep = (host: string, port: number): Endpoint => ({ id: `${host}:${port}`, host, port, metadata: {} });
/** The round's order as documented: by murmur3(host:port, round), then by host:port. */
const roundOrder = (eps: Endpoint[], round: number) =>
  [...eps]
    .map((e) => ({ e, key: endpointKey(e), rank: murmur3(endpointKey(e), round) }))
    .sort((a, b) => a.rank - b.rank || (a.key < b.key ? -1 : 1))
    .map((r) => r.e);

/** An inner balancer that records the set it was built with. */
function recorder(usesPickInfo?: boolean) {
  const seen: Endpoint[][] = [];
  const b: Balancer = {
    name: 'recorder',
    usesPickInfo,
    build(endpoints: Endpoint[], _ctx: BalancerContext): Picker {
      seen.push(endpoints);
      return { pick: () => ({ endpoint: endpoints[0], done() {} }) } as unknown as Picker;
    },
  };
  return { b, seen };
}

describe('deterministic subsetting (exact subsets)', () => {
  it('client c of round r takes slice (c mod count) of the round-r order: 7 endpoints, size 3, clients 0..5', () => {
    const eps = makeEndpoints(7);
    // count = floor(7 / 3) = 2 subsets per round; clients 0, 1 are round 0, clients 2, 3 round 1, ...
    for (let c = 0; c < 6; c++) {
      const order = roundOrder(eps, Math.floor(c / 2));
      const start = (c % 2) * 3;
      assert.deepEqual(
        subsetOf(eps, 3, c).map((e) => e.id),
        order.slice(start, start + 3).map((e) => e.id),
        `client ${c}`,
      );
    }
    // The rounds are really shuffled differently (else the book's spread would not hold).
    assert.notDeepEqual(roundOrder(eps, 0), roundOrder(eps, 1));
  });

  it('equal ranks are ordered by host:port, whatever the listing order', () => {
    // These two keys have the same murmur3 with seed 0 (found by search), so round 0 ranks them equal.
    const a = ep('10.1.238.60', 8080);
    const b = ep('10.1.255.50', 80);
    assert.equal(murmur3(endpointKey(a), 0), murmur3(endpointKey(b), 0));
    for (const eps of [
      [a, b],
      [b, a],
    ]) {
      assert.deepEqual(subsetOf(eps, 1, 0), [a], 'client 0: the smaller host:port');
      assert.deepEqual(subsetOf(eps, 1, 1), [b], 'client 1: the larger');
    }
  });

  it('N at or below subsetSize: every endpoint, in the listed order, as a new array', () => {
    const eps = makeEndpoints(5);
    for (const size of [5, 6]) {
      const s = subsetOf(eps, size, 3);
      assert.deepEqual(s, eps);
      assert.notEqual(s, eps);
    }
  });

  it('the decorator builds its inner balancer on the subset, or on the very same set when it is small enough', () => {
    const eps = makeEndpoints(5);
    const r = recorder();
    const s = new SubsetBalancer(r.b, 5, 2);
    s.build(eps, testBalancerContext(1));
    assert.equal(r.seen[0], eps, 'N = subsetSize: the set itself');
    new SubsetBalancer(r.b, 6, 2).build(eps, testBalancerContext(1));
    assert.equal(r.seen[1], eps, 'N < subsetSize: the set itself');
    new SubsetBalancer(r.b, 2, 2).build(eps, testBalancerContext(1));
    assert.deepEqual(r.seen[2], subsetOf(eps, 2, 2));
    assert.equal(r.seen[2].length, 2);
  });

  it("the decorator keeps the inner balancer's name and usesPickInfo", () => {
    for (const uses of [true, false, undefined]) {
      const s = new SubsetBalancer(recorder(uses).b, 3, 0);
      assert.equal(s.name, 'recorder');
      assert.equal(s.usesPickInfo, uses);
    }
  });

  it('withSubset: off at size 0; clientId 0 is a client; a missing or negative clientId is a ConfigError', () => {
    const { b } = recorder();
    assert.equal(withSubset(b, {}), b);
    assert.equal(withSubset(b, { subsetSize: 0, clientId: 3 }), b);
    const zero = withSubset(b, { subsetSize: 3, clientId: 0 });
    assert.ok(zero instanceof SubsetBalancer);
    assert.equal(zero.clientId, 0);
    assert.equal(zero.subsetSize, 3);
    for (const cfg of [{ subsetSize: 3 }, { subsetSize: 3, clientId: -1 }]) {
      assert.throws(
        () => withSubset(b, cfg),
        (e: unknown) =>
          e instanceof ConfigError &&
          e.field === 'clientId' &&
          e.message === 'recorder: "clientId" is required with "subsetSize" (a stable index of this client)',
      );
    }
  });
});
