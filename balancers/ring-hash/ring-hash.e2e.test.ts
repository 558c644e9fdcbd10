import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { Discovery, type Endpoint } from '../../core';
import { installGrpc, PICK_KEY_METADATA } from '../../grpc';
import { testBalancerContext } from '../../testkit';
import { EchoClient, startEchoServer, type EchoServer } from '../../testkit/echo';
import { waitFor } from '../../testkit/process';
import { RingHashBalancer } from '.';

// ring_hash end to end: across processes and over gRPC with real echo servers (loopback). Kept apart
// from ring-hash.test.ts so that the unit mutation run (stryker/balancers.json) can leave these
// slow cases out; `npm test` runs them as usual.

const keys = (n: number, prefix = 'user-') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

/** key -> endpoint id for a set, through a fresh balancer (a fresh ring). */
function mapping(eps: Endpoint[], ks: string[], config = {}): Map<string, string> {
  const picker = new RingHashBalancer(config).build(eps, testBalancerContext());
  return new Map(ks.map((k) => [k, picker.pick({ key: k }).endpoint!.id]));
}

const hostEndpoints = (n: number): Endpoint[] =>
  Array.from({ length: n }, (_, i) => ({
    id: `h${i}`,
    host: `10.1.${i >> 8}.${i & 255}`,
    port: 7000,
    metadata: {},
  }));

describe('ring_hash: determinism across processes', () => {
  const ks = keys(3000, 'acct:');

  it('maps keys the same in another process', function () {
    this.timeout(30_000);
    const eps = hostEndpoints(10);
    const sample = ks.slice(0, 500);
    const script = `
      const { RingHashBalancer } = require('./balancers/ring-hash');
      const eps = ${JSON.stringify(eps)};
      const p = new RingHashBalancer().build(eps, { now: () => 0, random: Math.random, logger: console });
      process.stdout.write(JSON.stringify(${JSON.stringify(sample)}.map((k) => p.pick({ key: k }).endpoint.id)));`;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '-e', script], {
      cwd: `${__dirname}/../..`,
      encoding: 'utf8',
    });
    const here = mapping(eps, sample);
    assert.deepEqual(
      JSON.parse(out),
      sample.map((k) => here.get(k)),
    );
  });
});

describe('ring_hash over gRPC: three echo servers, wayfinder-pick-key', function () {
  this.timeout(60_000);
  const cleanups: (() => Promise<void> | void)[] = [];
  after(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  it('sends the same key always to the same server (the one the ring predicts), and different keys to all three', async () => {
    installGrpc();
    const name = `ring-e2e-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
    const d = await Discovery.fromConfig(`memory://${name}`);
    cleanups.push(() => d.close());
    const servers: EchoServer[] = [];
    for (let i = 0; i < 3; i++) {
      const s = await startEchoServer({ discovery: d, drainMs: 0 });
      cleanups.push(() => s.kill());
      servers.push(s);
    }
    const c = new EchoClient(`memory://${name}/echo`, undefined, {
      'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ wayfinder_ring_hash: {} }] }),
    });
    cleanups.push(() => c.close());
    const call = (key?: string) => {
      const metadata = new grpc.Metadata();
      if (key !== undefined) metadata.set(PICK_KEY_METADATA, key);
      return c.echo({}, { metadata });
    };
    // Keyless calls are random by weight: wait until all three subchannels are ready and used.
    const seen = new Set<string>();
    await waitFor(
      'all three servers to answer',
      async () => {
        seen.add((await call()).serverId);
        return seen.size === 3;
      },
      { intervalMs: 1, timeoutMs: 10_000 },
    );

    // What the ring says, from the endpoints as registered.
    const registered = await d.resolver.resolve('echo');
    assert.equal(registered.length, 3);
    const predict = new RingHashBalancer().build(registered, testBalancerContext());
    const byPort = new Map<number, number>();
    for (const k of keys(60, 'tenant-')) {
      const want = predict.pick({ key: k }).endpoint!.port;
      for (let r = 0; r < 4; r++) {
        const reply = await call(k);
        assert.equal(
          reply.port,
          want,
          `key ${k} reached ${reply.serverId} on call ${r + 1}, the ring says port ${want}`,
        );
      }
      byPort.set(want, (byPort.get(want) ?? 0) + 1);
    }
    assert.deepEqual(
      [...byPort.keys()].sort(),
      servers.map((s) => s.port).sort(),
      `keys reached only ports ${[...byPort.keys()]}`,
    );
  });
});
