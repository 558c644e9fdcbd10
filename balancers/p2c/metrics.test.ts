import assert from 'node:assert/strict';
import type { Endpoint } from '../../core';
import { captureGlobalMetrics } from '../../core/fixtures/metrics';
import { testBalancerContext } from '../../testkit';
import { P2cBalancer } from '.';

// The wayfinder.latency.ewma gauge of p2c_ewma, value by value: each measured endpoint's estimate
// decayed to the read time, nothing for unmeasured endpoints, nothing from least-request p2c.

const eps = (host: string): Endpoint[] => [0, 1, 2].map((i) => ({ id: `e${i}`, host, port: 9200 + i, metadata: {} }));

describe('p2c latency gauge (exact values)', () => {
  // A fresh provider and reader per run (see captureGlobalMetrics).
  const otel = captureGlobalMetrics();

  /** The gauge's points for endpoints of `host`, as endpoint -> ms. */
  async function gauge(host: string): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const p of await otel.points('wayfinder.latency.ewma'))
      if (String(p.attributes.endpoint).startsWith(`${host}:`)) out[String(p.attributes.endpoint)] = p.value as number;
    return out;
  }

  it('p2c_ewma: 40 ms and 10 ms at t = 0, read at t = 500 with decay 1000: 40e^-0.5 = 24.26 and 10e^-0.5 = 6.07', async () => {
    const b = new P2cBalancer({ ewma: true, decay: 1000 });
    const ctx = testBalancerContext(1);
    const set = eps('10.9.8.7');
    b.build(set, ctx);
    b.loads.get('10.9.8.7:9200')!.observe(true, 40, 0, 1000, 0, 1000);
    b.loads.get('10.9.8.7:9201')!.observe(true, 10, 0, 1000, 0, 1000);
    ctx.advance(500);
    b.build(set, ctx); // a rebuild keeps reporting the same table
    const g = await gauge('10.9.8.7');
    assert.deepEqual(
      Object.keys(g).sort(),
      ['10.9.8.7:9200', '10.9.8.7:9201'],
      'the unmeasured endpoint is not reported',
    );
    assert.ok(Math.abs(g['10.9.8.7:9200'] - 40 * Math.exp(-0.5)) < 1e-9, `${g['10.9.8.7:9200']}`);
    assert.ok(Math.abs(g['10.9.8.7:9201'] - 10 * Math.exp(-0.5)) < 1e-9, `${g['10.9.8.7:9201']}`);
  });

  it('least-request p2c reports no latency', async () => {
    const b = new P2cBalancer();
    const ctx = testBalancerContext(1);
    b.build(eps('10.9.8.6'), ctx);
    b.loads.get('10.9.8.6:9200')!.observe(true, 40, 0, 1000, 0, 1000);
    assert.deepEqual(await gauge('10.9.8.6'), {});
  });
});
