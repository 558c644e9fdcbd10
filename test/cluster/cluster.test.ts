import '../../builtins'; // the built-in registries and balancers
import assert from 'node:assert/strict';
import { Discovery, endpointKey, isWayfinderError, type Registration, type Snapshot } from '../../core';
import { installGrpc } from '../../grpc';
import { startEchoServer, type EchoServer } from '../../testkit/echo';
import { findEtcd, findEtcdctl } from '../../testkit/etcd';
import { startEtcdCluster, type EtcdCluster } from '../../testkit/etcd-cluster';
import { requireBinaryOrSkip, waitFor } from '../../testkit/process';
import { findZooKeeper } from '../../testkit/zookeeper';
import { startZooKeeperEnsemble, type ZooKeeperEnsemble } from '../../testkit/zookeeper-ensemble';
import { Traffic } from '../traffic';

/**
 * The cluster suite: a 3-member etcd cluster (election timeout 500 ms) and a 3-server ZooKeeper
 * ensemble, each member behind its own fault proxy; the clients are given every member
 * (`etcd://m1,m2,m3`, `zk://s1,s2,s3`). Throughout, gRPC traffic (one unary call every 25 ms,
 * round robin over two echo backends registered in the registry) must not fail once. During every
 * single-member fault, register() + deregister() of a probe instance (another service, so traffic
 * is unaffected) must succeed: PROBES_PER_FAULT times per fault, 3 faults, so a 1-in-3 failure
 * (a call sent to the dead member) would show. Without quorum a register() may only fail with
 * REGISTRY_UNAVAILABLE, the last good set keeps being served, and registering works again after.
 *
 * Figures (calls, failures, probe latencies, convergence) are printed as a table at the end; the
 * "Clusters" section of docs/reliability.md was written by hand from a run.
 */

const CALL_GAP_MS = 25;
const PROBES_PER_FAULT = 5;
const QUORUM_LOSS_MS = 10_000;

interface Row {
  registry: string;
  scenario: string;
  calls: number;
  failed: number;
  probes: number;
  probeMaxMs: number;
  convergeMs?: number;
}
const rows: Row[] = [];

interface Member {
  kill(): Promise<void>;
  restart(): Promise<void>;
  proxy: { blackhole(): void; heal(): void };
}

interface ClusterUnderTest {
  registry: string;
  members: Member[];
  leader(): Promise<number>;
  /** A registry URL over every member, with `query`. */
  url(query: string): string;
  target(service: string): string;
  close(): Promise<void>;
}

function clusterSuite(name: string, start: () => Promise<ClusterUnderTest>, query: string): void {
  describe(`${name} cluster`, function () {
    this.timeout(180_000);
    let c: ClusterUnderTest;
    let servers: Discovery;
    let probes: Discovery;
    let backends: EchoServer[] = [];
    let regs: Registration[] = [];
    let traffic: Traffic;
    let probeSnaps: Snapshot[] = [];
    let stopWatch: (() => void) | undefined;
    let serial = 0;

    before(async function () {
      this.timeout(120_000);
      c = await start();
      installGrpc();
      servers = await Discovery.fromConfig(c.url(query));
      probes = await Discovery.fromConfig(c.url(query));
      for (const id of ['c1', 'c2']) {
        const b = await startEchoServer({ id, host: '127.0.0.1' });
        backends.push(b);
        regs.push(await servers.registrar.register({ service: 'echo', host: '127.0.0.1', port: b.port }));
      }
      const w = probes.resolver.watch('probe', (s) => void probeSnaps.push(s));
      stopWatch = () => w.close();
      traffic = new Traffic(c.target('echo'), { gapMs: CALL_GAP_MS });
      await waitFor('traffic to reach both backends', () => new Set(traffic.records.map((r) => r.id)).size >= 2, {
        timeoutMs: 15_000,
      });
    });
    after(async () => {
      await traffic?.stop();
      stopWatch?.();
      await Promise.allSettled(regs.map((r) => r.deregister()));
      await Promise.allSettled([servers?.close(), probes?.close()]);
      await Promise.allSettled(backends.map((b) => b.stop()));
      await c?.close();
      backends = [];
      regs = [];
      probeSnaps = [];
      const mine = rows.filter((r) => r.registry === name);
      if (mine.length) {
        console.log(`\n  ${name}: scenario | calls | failed | probes | probe max ms | converge ms`);
        for (const r of mine)
          console.log(
            `  ${r.scenario} | ${r.calls} | ${r.failed} | ${r.probes} | ${r.probeMaxMs} | ${r.convergeMs ?? '-'}`,
          );
      }
    });

    /** register() + see it in the watch + deregister(), `n` times; every one must succeed. */
    async function probe(n: number, what: string): Promise<number[]> {
      const times: number[] = [];
      for (let i = 0; i < n; i++) {
        const port = 20_000 + (serial++ % 10_000);
        const t0 = Date.now();
        let reg: Registration;
        try {
          reg = await probes.registrar.register({ service: 'probe', host: '127.0.0.1', port });
        } catch (e) {
          assert.fail(`${what}: register() #${i + 1} failed during a single-member fault: ${(e as Error).message}`);
        }
        const key = `127.0.0.1:${port}`;
        await waitFor(`${what}: the watch to show probe ${key}`, () =>
          probeSnaps.at(-1)?.endpoints.some((e) => endpointKey(e) === key),
        );
        times.push(Date.now() - t0);
        await reg.deregister();
        await waitFor(
          `${what}: the watch to drop probe ${key}`,
          () => !probeSnaps.at(-1)?.endpoints.some((e) => endpointKey(e) === key),
        );
      }
      return times;
    }

    async function scenario(label: string, fault: () => Promise<() => Promise<void>>): Promise<void> {
      const mark = traffic.mark();
      const heal = await fault();
      const times = await probe(PROBES_PER_FAULT, label);
      await heal();
      const { calls, failed } = traffic.check(mark, label);
      rows.push({
        registry: name,
        scenario: label,
        calls,
        failed,
        probes: times.length,
        probeMaxMs: Math.max(...times),
      });
    }

    it('the leader killed (kill -9): calls and registrations carry on', async () => {
      await scenario('leader killed', async () => {
        const m = c.members[await c.leader()];
        await m.kill();
        return () => m.restart();
      });
    });

    it('a follower killed: calls and registrations carry on', async () => {
      await scenario('follower killed', async () => {
        const l = await c.leader();
        const m = c.members[(l + 1) % c.members.length];
        await m.kill();
        return () => m.restart();
      });
    });

    it('a member partitioned from the client only (blackholed): calls and registrations carry on', async () => {
      await scenario('member blackholed', async () => {
        const m = c.members[await c.leader()];
        m.proxy.blackhole();
        return async () => m.proxy.heal();
      });
    });

    it('a rolling restart of every member: calls and registrations carry on', async () => {
      const mark = traffic.mark();
      const times: number[] = [];
      for (const m of c.members) {
        await m.restart();
        times.push(...(await probe(1, 'rolling restart')));
      }
      const { calls, failed } = traffic.check(mark, 'rolling restart');
      rows.push({
        registry: name,
        scenario: 'rolling restart',
        calls,
        failed,
        probes: times.length,
        probeMaxMs: Math.max(...times),
      });
    });

    it(`quorum lost for ${QUORUM_LOSS_MS / 1000} s: the last good set is served, registering fails clearly, then works again`, async () => {
      const mark = traffic.mark();
      const l = await c.leader();
      const down = [c.members[(l + 1) % 3], c.members[(l + 2) % 3]];
      await Promise.all(down.map((m) => m.kill()));
      const until = Date.now() + QUORUM_LOSS_MS;
      let attempts = 0;
      while (Date.now() < until - 2000) {
        attempts++;
        const err = await probes.registrar
          .register({ service: 'probe', host: '127.0.0.1', port: 19_000 + attempts })
          .then(
            (r) => (void r.deregister().catch(() => undefined), undefined),
            (e: unknown) => e,
          );
        if (err)
          assert.ok(
            isWayfinderError(err, 'REGISTRY_UNAVAILABLE'),
            `without quorum: expected REGISTRY_UNAVAILABLE, got ${err}`,
          );
      }
      await new Promise((r) => setTimeout(r, Math.max(0, until - Date.now())));
      const healed = Date.now();
      await Promise.all(down.map((m) => m.restart()));
      const times = await probe(1, 'after quorum regained');
      const { calls, failed } = traffic.check(mark, 'quorum lost');
      rows.push({
        registry: name,
        scenario: `quorum lost ${QUORUM_LOSS_MS / 1000} s`,
        calls,
        failed,
        probes: times.length,
        probeMaxMs: Math.max(...times),
        convergeMs: Date.now() - healed,
      });
    });
  });
}

clusterSuite(
  'etcd',
  async () => {
    const c: EtcdCluster = await startEtcdCluster({ members: 3, electionTimeoutMs: 500 });
    return {
      registry: 'etcd',
      members: c.members,
      leader: () => c.leader(),
      url: (q) => `etcd://${c.hosts.join(',')}?${q}`,
      target: (svc) => `etcd://${c.hosts.join(',')}/${svc}?progress-interval=2s&request-timeout=2s`,
      close: () => c.close(),
    };
  },
  'ttl=30s&progress-interval=2s&request-timeout=2s',
);

clusterSuite(
  'zookeeper',
  async () => {
    const z: ZooKeeperEnsemble = await startZooKeeperEnsemble({ servers: 3 });
    return {
      registry: 'zookeeper',
      members: z.members,
      leader: () => z.leader(),
      url: (q) => `zk://${z.connectString}/wf-cluster?${q}`,
      target: (svc) => `zk://${z.connectString}/${svc}?path=/wf-cluster&sessionTimeout=4s&timeout=2s`,
      close: () => z.close(),
    };
  },
  'sessionTimeout=4s&timeout=2s',
);

before(function () {
  requireBinaryOrSkip(this, () => {
    findEtcd();
    findEtcdctl();
    findZooKeeper();
  });
});
