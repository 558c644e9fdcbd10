import assert from 'node:assert/strict';
import { Discovery } from '../../index';
import { installGrpc } from '../../grpc';
import { EchoClient, startEchoServer, type EchoServer } from '../../testkit/echo';
import { waitFor } from '../../testkit/process';

/**
 * End to end through grpc-js and the bridge's generic LB policy: three real echo servers on free
 * loopback ports in a memory registry, one of them slow. Peak-EWMA p2c must send the slow one
 * clearly less traffic than round-robin does under the same concurrent load.
 */
describe('p2c peak-EWMA over gRPC: one of three servers slow', function () {
  this.timeout(60_000);
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  async function run(policy: Record<string, unknown>): Promise<{ slowShare: number; counts: Map<string, number> }> {
    const name = `p2c-e2e-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
    const d = await Discovery.fromConfig(`memory://${name}`);
    cleanups.push(() => d.close());
    const servers: EchoServer[] = [];
    for (const latencyMs of [120, 5, 5]) {
      const s = await startEchoServer({ discovery: d, drainMs: 0, latencyMs });
      cleanups.push(() => s.kill());
      servers.push(s);
    }
    const slow = servers[0].id;
    const c = new EchoClient(`memory://${name}/echo`, undefined, {
      'grpc.service_config': JSON.stringify({ loadBalancingConfig: [policy] }),
    });
    cleanups.push(() => c.close());
    // Wait until every server answered once (subchannels connected), then measure.
    const seen = new Set<string>();
    await waitFor(
      'all three servers to answer',
      async () => {
        seen.add((await c.echo({})).serverId);
        return seen.size === 3;
      },
      { intervalMs: 1, timeoutMs: 10_000 },
    );
    const counts = new Map<string, number>();
    let left = 240;
    const worker = async () => {
      while (left-- > 0) {
        const r = await c.echo({}, { deadlineMs: 5000 });
        counts.set(r.serverId, (counts.get(r.serverId) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    assert.equal(total, 240);
    return { slowShare: (counts.get(slow) ?? 0) / total, counts };
  }

  before(() => {
    installGrpc();
  });

  it('sends the slow server under half the share round-robin sends it', async () => {
    const rr = await run({ wayfinder_round_robin: {} });
    const ewma = await run({ wayfinder_p2c: { ewma: true } });
    assert.ok(
      Math.abs(rr.slowShare - 1 / 3) < 0.03,
      `round-robin gave the slow server ${(rr.slowShare * 100).toFixed(1)}%`,
    );
    assert.ok(
      ewma.slowShare < rr.slowShare / 2,
      `p2c-EWMA gave the slow server ${(ewma.slowShare * 100).toFixed(1)}% vs round-robin ${(rr.slowShare * 100).toFixed(1)}%`,
    );
  });
});
