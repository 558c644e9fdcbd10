import assert from 'node:assert/strict';
import { createMemoryRegistry } from '../adapters/memory';
import { P2cBalancer } from '../balancers/p2c';
import { SnapshotRecorder, makeEndpoints, testBalancerContext, uniqueService } from '../testkit';
import { captureGlobalMetrics } from './fixtures/metrics';

describe('core: OpenTelemetry metrics', () => {
  // A fresh provider and reader per run (see captureGlobalMetrics).
  const otel = captureGlobalMetrics();

  it('reports endpoints per service, snapshot updates and registry errors through the global meter', async () => {
    const reg = createMemoryRegistry();
    const svc = uniqueService('otel');
    const r = new SnapshotRecorder();
    const w = reg.resolver.watch(svc, r.onSnapshot);
    await reg.registrar!.register({ service: svc, host: '127.0.0.1', port: 1 });
    await reg.registrar!.register({ service: svc, host: '127.0.0.1', port: 2 });
    await r.until((s) => s.endpoints.length === 2, 1000);
    reg.store.put(svc, 'bad', { host: 7 });
    await r.until((s) => s.error?.code === 'BAD_ENTRY', 1000);
    const gauge = (await otel.points('wayfinder.resolver.endpoints')).find((p) => p.attributes.service === svc)!;
    assert.equal(gauge.value, 2);
    assert.equal(gauge.attributes.registry, 'memory');
    const updates = (await otel.points('wayfinder.resolver.updates')).find((p) => p.attributes.service === svc)!;
    assert.ok((updates.value as number) >= 2, `updates ${updates.value}`);
    w.close();
    await reg.registrar!.close();
    await reg.resolver.close();
  });

  it('exports the peak-EWMA latency estimate of latency-aware balancers per endpoint', async () => {
    const b = new P2cBalancer({ ewma: true });
    const ctx = testBalancerContext(3);
    const eps = makeEndpoints(2).map((e, i) => ({ ...e, host: '10.9.9.9', port: 9100 + i }));
    const picker = b.build(eps, ctx);
    for (let i = 0; i < 20; i++) {
      const p = picker.pick();
      if (p.endpoint) p.done({ ok: true, latencyMs: p.endpoint.port === 9100 ? 5 : 50 });
    }
    const points = (await otel.points('wayfinder.latency.ewma')).filter((p) =>
      String(p.attributes.endpoint).startsWith('10.9.9.9:'),
    );
    const by = Object.fromEntries(points.map((p) => [p.attributes.endpoint, p.value as number]));
    assert.ok(by['10.9.9.9:9100'] > 0 && by['10.9.9.9:9100'] <= 5.001, JSON.stringify(by));
    assert.ok(by['10.9.9.9:9101'] >= 40, JSON.stringify(by));
  });
});
