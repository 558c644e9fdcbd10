import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Endpoint } from '../../core';
import { buildServerList, lbTokenFor, LoadReportAggregator, multiplicities, type LoadReport } from './index';
import { ep, names } from './fixtures';

// Pins the list building of the grpclb balancer (issue 22, mutation testing). Every expected value
// below is derived from the rule the test names, in the comment beside it.

const eps = (n: number): Endpoint[] => Array.from({ length: n }, (_, i) => ep(1000 + i));
const dropCount = (l: ReturnType<typeof buildServerList>) => l.filter((e) => e.drop).length;
const report = (r: Partial<LoadReport>): LoadReport => ({
  callsStarted: 0,
  callsFinished: 0,
  callsFailedToSend: 0,
  callsKnownReceived: 0,
  drops: {},
  ...r,
});

describe('grpclb: pinned entry counts (balancers/grpclb multiplicities)', () => {
  it('a weight of 0, below 0, NaN or Infinity counts as 1 when expanding by weight', () => {
    for (const bad of [0, -3, Number.NaN, Number.POSITIVE_INFINITY]) {
      // the bad weight becomes 1 beside a weight of 2: ratio 1:2, already within the cap
      assert.deepEqual(
        multiplicities([ep(1, { weight: bad }), ep(2, { weight: 2 })], { expandByWeight: true }),
        [1, 2],
      );
    }
  });

  it('weights that are not whole numbers are scaled to the cap: 1.5 : 1 gives 10 : 7', () => {
    // no whole-number ratio: the largest share gets the cap (10), the other 1 * 10 / 1.5 = 6.67 -> 7
    assert.deepEqual(multiplicities([ep(1, { weight: 1.5 }), ep(2, { weight: 1 })], { expandByWeight: true }), [10, 7]);
  });

  it('maxEntriesPerEndpoint is rounded down and at least 1; its default is 10', () => {
    const w = [ep(1, { weight: 3 }), ep(2, { weight: 1 })];
    // cap 2.9 -> 2: 3:1 does not fit, scaled: 3 * 2 / 3 = 2, 1 * 2 / 3 = 0.67 -> 1
    assert.deepEqual(multiplicities(w, { expandByWeight: true, maxEntriesPerEndpoint: 2.9 }), [2, 1]);
    // cap 0 -> 1: every endpoint once
    assert.deepEqual(multiplicities(w, { expandByWeight: true, maxEntriesPerEndpoint: 0 }), [1, 1]);
    // 24:2 reduces to 12:1, over the default cap 10: 10 and 2 * 10 / 24 = 0.83 -> 1; a cap of 12 holds it
    const big = [ep(1, { weight: 24 }), ep(2, { weight: 2 })];
    assert.deepEqual(multiplicities(big, { expandByWeight: true }), [10, 1]);
    assert.deepEqual(multiplicities(big, { expandByWeight: true, maxEntriesPerEndpoint: 12 }), [12, 1]);
  });

  it('a load that is 0, negative, NaN, Infinity, not a number or thrown counts as unknown (the least load)', () => {
    const bads: (() => unknown)[] = [
      () => 0,
      () => -5,
      () => Number.NaN,
      () => Number.POSITIVE_INFINITY,
      () => '7',
      () => {
        throw new Error('no load');
      },
    ];
    for (const bad of bads) {
      // endpoint 2's load is unknown, so it counts as the least known load (10): equal shares
      const loadOf = (e: Endpoint) => (e.port === 1 ? 10 : (bad() as number));
      assert.deepEqual(multiplicities([ep(1), ep(2)], { loadOf }), [1, 1]);
    }
  });

  it('no endpoints: no entries, and an empty list with or without drops', () => {
    assert.deepEqual(multiplicities([]), []);
    assert.deepEqual(buildServerList([]), []);
    assert.deepEqual(buildServerList([], { dropRate: 0.5 }), []);
  });
});

describe('grpclb: pinned list order, tokens and drop positions (balancers/grpclb buildServerList)', () => {
  it('repeats are interleaved earliest deadline first, ties to the earlier endpoint: 3:1 gives 1,1,2,1 and 1:3 gives 2,1,2,2', () => {
    // count c has deadlines 1/2c, 3/2c, ...: 3 -> 1/6, 1/2, 5/6; 1 -> 1/2 (tie at 1/2: the earlier endpoint)
    const w = (a: number, b: number) => [ep(1, { weight: a }), ep(2, { weight: b })];
    assert.deepEqual(names(buildServerList(w(3, 1), { expandByWeight: true })), ['1', '1', '2', '1']);
    assert.deepEqual(names(buildServerList(w(1, 3), { expandByWeight: true })), ['2', '1', '2', '2']);
  });

  it('tokenOf gives each endpoint entry its token', () => {
    const l = buildServerList([ep(2), ep(1)], { tokenOf: (e) => `t${e.port}` });
    assert.deepEqual(
      l.map((e) => e.token),
      ['t1', 't2'],
    );
  });

  it('a drop rate below 0 or NaN is refused', () => {
    assert.throws(() => buildServerList([ep(1)], { dropRate: -0.1 }), /dropRate must be within 0\.\.1 \(got -0\.1\)/);
    assert.throws(() => buildServerList([ep(1)], { dropRate: Number.NaN }), /dropRate must be within 0\.\.1/);
  });

  it('a drop sits wherever the running share of drops steps up: 2 endpoints at 0.25 give 1,2,1,drop,2,1,2,drop', () => {
    // 2 drops per 6 backend entries is 2/8 = 0.25 exactly (1 per 2 or 4 is not): the list is repeated 3
    // times; floor(i * 2 / 8) steps up after positions 4 and 8
    assert.deepEqual(names(buildServerList([ep(1), ep(2)], { dropRate: 0.25, dropToken: 'shed' })), [
      '1',
      '2',
      '1',
      'drop:shed',
      '2',
      '1',
      '2',
      'drop:shed',
    ]);
  });

  it('a rate the list expresses exactly as it is is not repeated: one endpoint at 0.5 gives 1,drop', () => {
    // longer lists (2:2, 3:3, ...) express it no better, and the first best is kept
    assert.deepEqual(names(buildServerList([ep(1)], { dropRate: 0.5 })), ['1', 'drop:drop']);
  });

  it('within half a percent after fewer than 20 backend entries, a closer list up to 20 still wins: 5/19 gives 14 copies and 5 drops', () => {
    // one endpoint at 5/19 = 0.263: 11 copies with round(11 * 5 / 14) = 4 drops (4/15 = 0.267) are
    // already within half a percent, but the search goes on to 20 backend entries and 14 copies with 5
    // drops are exact. Drops where floor(i * 5 / 19) steps up: positions 4, 8, 12, 16, 19.
    const l = buildServerList([ep(1)], { dropRate: 5 / 19 });
    assert.equal(l.length, 19);
    assert.deepEqual(
      l.flatMap((e, i) => (e.drop ? [i + 1] : [])),
      [4, 8, 12, 16, 19],
    );
  });

  it('the search stops at 20 backend entries once within half a percent: one endpoint at 0.33 gives 1,1,drop', () => {
    // 1 drop per 2 copies (1/3) is 0.33 points off; no list of at most 20 copies (at most 30 entries)
    // comes strictly closer, and the search stops there (33 per 67 copies would be exact)
    assert.deepEqual(names(buildServerList([ep(1)], { dropRate: 0.33 })), ['1', '1', 'drop:drop']);
  });

  it('the search stops at the first length of at least 20 backend entries: one endpoint at 1/22 gives 20 copies and a drop', () => {
    // 1 drop per 20 copies (1/21) is 0.22 points off 1/22; 21 copies would be exact but are not tried
    const l = buildServerList([ep(1)], { dropRate: 1 / 22 });
    assert.equal(l.length, 21);
    assert.equal(dropCount(l), 1);
    assert.equal(l[20].drop, true);
  });

  it('exactly half a percent off is not close enough: one endpoint at 0.005 gives 100 copies and a drop', () => {
    // a single drop per 99 copies is 1 % (0.5 points off 0.5 %): not within; per 100 copies 0.99 % is
    const l = buildServerList([ep(1)], { dropRate: 0.005 });
    assert.equal(l.length, 101);
    assert.equal(dropCount(l), 1);
  });

  it('repeats stop at 1000 entries, a list of exactly 1000 included: one endpoint at 0.989 gives 11 copies and 989 drops', () => {
    // round(0.989 * k / 0.011) = 89.9k drops per k copies; 989/1000 is the only exact fraction and needs
    // 11 copies: exactly 1000 entries
    const l = buildServerList([ep(1)], { dropRate: 0.989 });
    assert.equal(l.length, 1000);
    assert.equal(dropCount(l), 989);
  });

  it('repeats stop at 1000 entries even when a longer list would be exact: two endpoints at 0.991 give 4 copies and 881 drops', () => {
    // k copies need round(220.2k) drops: k = 5 would be 10 + 1101 > 1000 entries. Of k = 1..4 (220/222,
    // 440/444, 661/667, 881/889) the last is closest to 0.991; 9 copies (18 + 1982 = 2000) would be exact.
    const l = buildServerList([ep(1), ep(2)], { dropRate: 0.991 });
    assert.equal(l.length, 889);
    assert.equal(dropCount(l), 881);
  });

  it('a list too long to repeat keeps its drop rate (was: a single drop): 600 endpoints at 0.5 give 600 drops', () => {
    // once with its drops the list already passes 1000 entries: it is sent once, with
    // round(0.5 * 600 / 0.5) = 600 drops, rather than with one drop (1 in 601, not half the calls)
    const l = buildServerList(eps(600), { dropRate: 0.5 });
    assert.equal(l.length, 1200);
    assert.equal(dropCount(l), 600);
    // more backend entries than the bound alone: round(0.1 * 1001 / 0.9) = 111 drops
    assert.equal(dropCount(buildServerList(eps(1001), { dropRate: 0.1 })), 111);
  });

  it('a rate near 1 keeps its drop rate (was: a single drop): one endpoint at 0.9995 gives 1999 drops', () => {
    // 1 copy with round(0.9995 / 0.0005) = 1999 drops (2000 entries) is exact; 2 copies would be 4000
    const l = buildServerList([ep(1)], { dropRate: 0.9995 });
    assert.equal(l.length, 2000);
    assert.equal(dropCount(l), 1999);
  });
});

describe('grpclb: pinned load-balance tokens (balancers/grpclb lbTokenFor)', () => {
  it('an id of 1 to 49 printable ASCII bytes is the token; empty, 50 bytes or a non-printable byte is hashed', () => {
    for (const id of ['x'.repeat(49), '!', '~', 'a!~z']) assert.equal(lbTokenFor(ep(1, { id })), id);
    for (const id of ['', 'x'.repeat(50), ' lead', 'trail ', 'del\x7f', 'é']) {
      assert.match(lbTokenFor(ep(1, { id })), /^h-[0-9a-f]{32}$/, JSON.stringify(id));
    }
  });

  it('the hashed token is h- and the first 32 hex digits of the SHA-256 of host:port (so the id does not matter)', () => {
    const hex = createHash('sha256').update('10.0.0.1:7').digest('hex');
    assert.equal(lbTokenFor(ep(7, { id: '' })), `h-${hex.slice(0, 32)}`);
    assert.equal(lbTokenFor(ep(7, { id: 'y'.repeat(80) })), `h-${hex.slice(0, 32)}`);
    assert.notEqual(lbTokenFor(ep(8, { id: '' })), lbTokenFor(ep(7, { id: '' })));
  });
});

describe('grpclb: pinned load totals (balancers/grpclb LoadReportAggregator)', () => {
  it('closing more client streams than were opened leaves 0 clients', () => {
    const agg = new LoadReportAggregator();
    agg.clientClosed('echo');
    assert.equal(agg.get('echo').clients, 0);
    agg.clientOpened('echo');
    agg.clientOpened('echo');
    agg.clientClosed('echo');
    assert.equal(agg.get('echo').clients, 1);
  });

  it('in flight is calls started minus finished so far, never below 0', () => {
    const agg = new LoadReportAggregator();
    agg.add('echo', report({ callsStarted: 10, callsFinished: 8 }));
    assert.equal(agg.get('echo').inFlight, 2);
    agg.add('echo', report({ callsStarted: 1, callsFinished: 5 }));
    // reports are since the previous one: 11 started, 13 finished (a client's counts can cross)
    assert.equal(agg.get('echo').inFlight, 0);
  });

  it('Infinity counts are ignored like negative ones', () => {
    const agg = new LoadReportAggregator();
    agg.add('echo', report({ callsStarted: Number.POSITIVE_INFINITY, callsFinished: 2, drops: { shed: Infinity } }));
    const t = agg.get('echo');
    assert.equal(t.callsStarted, 0);
    assert.equal(t.callsFinished, 2);
    assert.deepEqual(t.drops, { shed: 0 });
  });

  it('an unknown service has zero totals; totals handed out are copies', () => {
    const agg = new LoadReportAggregator();
    assert.deepEqual(agg.get('none'), {
      callsStarted: 0,
      callsFinished: 0,
      callsFailedToSend: 0,
      callsKnownReceived: 0,
      drops: {},
      reports: 0,
      clients: 0,
      inFlight: 0,
    });
    assert.deepEqual(agg.all(), {});
    agg.add('echo', report({ callsStarted: 3, drops: { shed: 1 } }));
    const t = agg.get('echo');
    t.callsStarted = 99;
    t.drops.shed = 99;
    agg.all().echo.drops.shed = 98;
    assert.equal(agg.get('echo').callsStarted, 3);
    assert.deepEqual(agg.get('echo').drops, { shed: 1 });
  });
});
