import assert from 'node:assert/strict';
import { Discovery } from '../../core';
import { installGrpc } from '../../grpc';
import { EchoClient, startEchoServer, type EchoServer } from '../../testkit/echo';
import { waitFor } from '../../testkit/process';

/**
 * End to end through grpc-js and the bridge: six real echo servers on loopback in a memory
 * registry, two per zone a/b/c; a client in zone a (`localZone` in the service config) keeps every
 * call in zone a, and after one zone-a server deregisters (1 of 2 left: u = 1/5, d = 2/6) keeps
 * u/d = 60% local and spills the rest to b and c (zoneMinClusterSize 4: 5 endpoints are enough).
 */
describe('zone-aware routing over gRPC', function () {
  this.timeout(60_000);
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });
  before(() => installGrpc());

  it('round_robin with localZone: all local, then 60% local after a local server leaves', async () => {
    const name = `zones-e2e-${process.pid}-${Date.now().toString(36)}`;
    const d = await Discovery.fromConfig(`memory://${name}`);
    cleanups.push(() => d.close());
    const servers: EchoServer[] = [];
    for (const zone of ['a', 'a', 'b', 'b', 'c', 'c']) {
      const s = await startEchoServer({ discovery: d, drainMs: 0, zone });
      cleanups.push(() => s.kill());
      servers.push(s);
    }
    const c = new EchoClient(`memory://${name}/echo`, undefined, {
      'grpc.service_config': JSON.stringify({
        loadBalancingConfig: [{ wayfinder_round_robin: { localZone: 'a', zoneMinClusterSize: 4 } }],
      }),
    });
    cleanups.push(() => c.close());
    const zonesOf = async (n: number) => {
      const counts: Record<string, number> = {};
      for (let i = 0; i < n; i++) {
        const r = await c.echo({}, { deadlineMs: 5000 });
        counts[r.zone] = (counts[r.zone] ?? 0) + 1;
      }
      return counts;
    };
    // Both zone-a servers answer (the channel has the full set), and nothing else does.
    const seen = new Set<string>();
    await waitFor(
      'both zone-a servers to answer',
      async () => {
        seen.add((await c.echo({})).serverId);
        return seen.size === 2;
      },
      { intervalMs: 1, timeoutMs: 10_000 },
    );
    assert.deepEqual(await zonesOf(100), { a: 100 });

    await servers[0].stop(); // deregisters: the set shrinks to a:1, b:2, c:2
    await waitFor('a call to leave zone a', async () => (await c.echo({})).zone !== 'a', {
      intervalMs: 1,
      timeoutMs: 10_000,
    });
    const n = 600;
    const counts = await zonesOf(n);
    // Binomial(600, 0.6): sd 2 points; ±8 points is 4 sd.
    assert.ok(Math.abs(counts.a / n - 0.6) <= 0.08, `local share ${counts.a / n}`);
    assert.ok(counts.b > 0 && counts.c > 0, `spill reached b and c: ${JSON.stringify(counts)}`);
  });
});
