import assert from 'node:assert/strict';
import { buildServerList, lbTokenFor, LoadReportAggregator, multiplicities } from './index';
import { ep, names } from './fixtures';

describe('grpclb server lists (balancers/grpclb)', () => {
  it('lists each endpoint once, sorted by host:port, with its token, unless expanding', () => {
    const l = buildServerList([ep(3, { weight: 5 }), ep(1), ep(2)]);
    assert.deepEqual(names(l), ['1', '2', '3']);
    assert.deepEqual(
      l.map((e) => e.token),
      ['10.0.0.1:1', '10.0.0.1:2', '10.0.0.1:3'],
    );
  });

  it('expands by weight in exact ratios, spreading repeats', () => {
    assert.deepEqual(
      multiplicities([ep(1, { weight: 2 }), ep(2, { weight: 4 }), ep(3, { weight: 6 })], { expandByWeight: true }),
      [1, 2, 3],
    );
    assert.deepEqual(names(buildServerList([ep(1, { weight: 2 }), ep(2)], { expandByWeight: true })), ['1', '2', '1']);
    // ratios beyond the per-endpoint cap are scaled (each endpoint keeps at least one entry)
    assert.deepEqual(
      multiplicities([ep(1, { weight: 100 }), ep(2, { weight: 1 })], {
        expandByWeight: true,
        maxEntriesPerEndpoint: 10,
      }),
      [10, 1],
    );
  });

  it('expands by observed load: a backend with twice the load gets half the entries; unknown load counts as the least', () => {
    const loads: Record<number, number | undefined> = { 1: 10, 2: 20, 3: undefined };
    const m = multiplicities([ep(1), ep(2), ep(3)], { loadOf: (e) => loads[e.port], maxEntriesPerEndpoint: 4 });
    assert.deepEqual(m, [4, 2, 4]);
    // combined with weight: weight 2 at load 20 equals weight 1 at load 10
    assert.deepEqual(
      multiplicities([ep(1), ep(2, { weight: 2 })], { expandByWeight: true, loadOf: (e) => loads[e.port] }),
      [1, 1],
    );
  });

  it('spreads drop entries at the requested rate, repeating short lists to express it', () => {
    const l = buildServerList([ep(1), ep(2)], { dropRate: 0.25, dropToken: 'shed' });
    const drops = l.filter((e) => e.drop).length;
    assert.equal(drops / l.length, 0.25);
    assert.ok(l.every((e) => !e.drop || e.token === 'shed'));
    // no two drops adjacent at 25%
    for (let i = 1; i < l.length; i++) assert.ok(!(l[i].drop && l[i - 1].drop));
    assert.deepEqual(names(buildServerList([ep(1)], { dropRate: 1 })), ['drop:drop']);
    assert.throws(() => buildServerList([ep(1)], { dropRate: 1.5 }), /dropRate must be within 0\.\.1/);
  });

  it('is deterministic whatever the registry order (replicas send equal lists)', () => {
    const a = buildServerList([ep(1, { weight: 3 }), ep(2), ep(3, { weight: 2 })], {
      expandByWeight: true,
      dropRate: 0.1,
    });
    const b = buildServerList([ep(3, { weight: 2 }), ep(1, { weight: 3 }), ep(2)], {
      expandByWeight: true,
      dropRate: 0.1,
    });
    assert.deepEqual(names(a), names(b));
  });

  it('tokens: printable ids under 50 bytes as they are, others hashed', () => {
    assert.equal(lbTokenFor(ep(1)), '10.0.0.1:1');
    const long = lbTokenFor(ep(1, { id: 'x'.repeat(60) }));
    assert.match(long, /^h-[0-9a-f]{32}$/);
    assert.match(lbTokenFor(ep(1, { id: 'has space' })), /^h-/);
  });

  it('aggregates load reports per service and ignores negative counts', () => {
    const agg = new LoadReportAggregator();
    agg.clientOpened('echo');
    agg.add('echo', {
      callsStarted: 10,
      callsFinished: 8,
      callsFailedToSend: 1,
      callsKnownReceived: 6,
      drops: { shed: 1 },
    });
    agg.add('echo', {
      callsStarted: 5,
      callsFinished: 7,
      callsFailedToSend: 0,
      callsKnownReceived: 6,
      drops: { shed: 2, other: 1 },
    });
    agg.add('echo', {
      callsStarted: -3,
      callsFinished: Number.NaN,
      callsFailedToSend: 0,
      callsKnownReceived: 0,
      drops: {},
    });
    const t = agg.get('echo');
    assert.deepEqual(t, {
      callsStarted: 15,
      callsFinished: 15,
      callsFailedToSend: 1,
      callsKnownReceived: 12,
      drops: { shed: 3, other: 1 },
      reports: 3,
      clients: 1,
      inFlight: 0,
    });
    agg.clientClosed('echo');
    assert.equal(agg.get('echo').clients, 0);
    assert.deepEqual(Object.keys(agg.all()), ['echo']);
  });
});
