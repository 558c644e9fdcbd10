import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { Discovery } from '../../core';
import {
  EchoClient,
  findDnsmasq,
  startDnsmasq,
  startEchoServer,
  tempDir,
  waitFor,
  withTimeout,
  type Dnsmasq,
} from '../../testkit';
import { findEtcd, startEtcd, type EtcdServer } from '../../testkit/etcd';
import { requireBinaryOrSkip } from '../../testkit/process';
import { installGrpc } from '../index';
import { BALANCE_LOAD_PATH, balanceLoadMethod, durationToMs, unpackIp, type LoadBalanceResponse } from './protocol';
import { startBalancerServer, type BalancerServer } from './server';

/**
 * The balancer's view follows the registry: instances registered and deregistered in a file
 * registry and in a real etcd show up in (and leave) the ServerList streamed to a raw BalanceLoad
 * client.
 */

interface RawStream {
  interval: Promise<number>;
  /** Resolves with the first list (as "ip:port" strings, in order, drops as "drop") matching. */
  waitForList(pred: (l: string[]) => boolean, what: string): Promise<string[]>;
  close(): void;
}

function openRaw(port: number, name: string): RawStream {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const m = balanceLoadMethod();
  const call = client.makeBidiStreamRequest(BALANCE_LOAD_PATH, m.requestSerialize, m.responseDeserialize);
  let latest: string[] | undefined;
  const waiters = new Set<() => void>();
  let gotInterval: (ms: number) => void = () => {};
  const interval = new Promise<number>((r) => (gotInterval = r));
  call.on('data', (r: LoadBalanceResponse) => {
    if (r.initialResponse) gotInterval(durationToMs(r.initialResponse.clientStatsReportInterval));
    if (r.serverList) {
      latest = (r.serverList.servers ?? []).map((s) => (s.drop ? 'drop' : `${unpackIp(s.ipAddress)}:${s.port}`));
      for (const w of [...waiters]) w();
    }
  });
  call.on('error', () => undefined);
  call.write({ initialRequest: { name } });
  return {
    interval,
    waitForList(pred, what) {
      return withTimeout(
        new Promise<string[]>((resolve) => {
          const check = () => {
            if (latest && pred(latest)) {
              waiters.delete(check);
              resolve(latest);
            }
          };
          waiters.add(check);
          check();
        }),
        10_000,
        `${what} (last list: ${JSON.stringify(latest)})`,
      );
    },
    close() {
      call.cancel();
      client.close();
    },
  };
}

function registryCases(name: string, setup: () => Promise<{ url: string; cleanup(): Promise<void> }>) {
  describe(`grpclb balancer over the ${name} registry`, function () {
    this.timeout(30_000);
    let url: string;
    let cleanupRegistry: () => Promise<void>;
    let d: Discovery;
    let lb: BalancerServer;
    const cleanups: (() => unknown)[] = [];

    before(async function () {
      ({ url, cleanup: cleanupRegistry } = await setup.call(this));
      d = await Discovery.fromConfig(url);
      // The balancer owns a Discovery of its own, built from the URL (as the CLI does).
      lb = await startBalancerServer({
        registry: url,
        host: '127.0.0.1',
        port: 0,
        expandByWeight: true,
        statsIntervalMs: 1500,
      });
    });
    after(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
      await lb?.stop();
      await d?.close();
      await cleanupRegistry?.();
    });

    it("streams the service's instances as they are registered and deregistered", async () => {
      const raw = openRaw(lb.port, 'echo:443'); // a port in the name is ignored
      cleanups.push(() => raw.close());
      assert.equal(await raw.interval, 1500);
      const a = await d.registrar.register({ service: 'echo', host: '127.0.0.1', port: 41001, weight: 2 });
      await raw.waitForList(
        (l) => l.length === 1 && l[0] === '127.0.0.1:41001',
        'a (alone: one entry, whatever its weight)',
      );
      const b = await d.registrar.register({ service: 'echo', host: '::1', port: 41002 });
      const both = await raw.waitForList((l) => l.length === 3, 'a and b (weights 2:1: three entries)');
      assert.deepEqual([...both].sort(), ['127.0.0.1:41001', '127.0.0.1:41001', '::1:41002']);
      assert.notEqual(both[0], both[1], 'repeats are spread, not adjacent');
      await a.deregister();
      await raw.waitForList((l) => l.length === 1 && l[0] === '::1:41002', 'only b after a deregistered');
      await b.deregister();
      await raw.waitForList((l) => l.length === 0, 'an empty list once b is gone');
    });

    it('resolves registered hostnames to packed IP addresses', async () => {
      const raw = openRaw(lb.port, 'named');
      cleanups.push(() => raw.close());
      const r = await d.registrar.register({ service: 'named', host: 'localhost', port: 41003 });
      cleanups.push(() => r.deregister());
      const l = await raw.waitForList((x) => x.length === 1, 'the localhost instance');
      assert.match(l[0], /^(127\.0\.0\.1|::1):41003$/);
    });

    it('reads the registry catalog (one registry-wide stream), not one resolver watch per asked service', async () => {
      const lb2 = await startBalancerServer({ discovery: d, host: '127.0.0.1', port: 0 });
      cleanups.push(() => lb2.stop());
      const r = await d.registrar.register({ service: 'cat', host: '127.0.0.1', port: 41004 });
      cleanups.push(() => r.deregister());
      const raw = openRaw(lb2.port, 'cat');
      cleanups.push(() => raw.close());
      await raw.waitForList((l) => l.length === 1 && l[0] === '127.0.0.1:41004', 'the cat instance');
      assert.deepEqual(
        d.status().services.map((s) => s.service),
        [],
        'the resolver watches nothing',
      );
    });

    it('a client finds the balancer in the registry (balancerRegistry) and its calls reach a registered backend', async () => {
      installGrpc();
      const echo = await startEchoServer({ discovery: d, service: 'echo2', drainMs: 0 });
      cleanups.push(() => echo.kill());
      const lbReg = await d.registrar.register({ service: 'echo2-lb', host: '127.0.0.1', port: lb.port });
      cleanups.push(() => lbReg.deregister());
      const cfg = {
        loadBalancingConfig: [
          {
            wayfinder_grpclb: {
              balancerRegistry: url,
              balancerName: 'echo2-lb',
              serviceName: 'echo2',
              fallbackTimeout: '20s',
            },
          },
        ],
      };
      // The channel's own resolver is static (ipv4:), so only the balancer can have named the backend.
      const c = new EchoClient('ipv4:127.0.0.1:9', grpc.credentials.createInsecure(), {
        'grpc.service_config': JSON.stringify(cfg),
      });
      cleanups.push(() => c.close());
      const r = await c.echo({}, { deadlineMs: 10_000 });
      assert.equal(r.port, echo.port);
      await waitFor("the client's stream on the balancer", () => lb.stats('echo2').clients === 1);
    });
  });
}

registryCases('file', async () => {
  const tmp = tempDir('wf-grpclb-');
  return { url: `file://${tmp.dir}/registry.json`, cleanup: async () => tmp.remove() };
});

registryCases('etcd', async function (this: Mocha.Context) {
  requireBinaryOrSkip(this, findEtcd);
  const etcd: EtcdServer = await startEtcd();
  return { url: `etcd://${etcd.address}?prefix=/grpclb-test`, cleanup: () => etcd.close() };
});

describe('grpclb client: balancers found through the _grpclb._tcp SRV record (DNS adapter, real dnsmasq)', function () {
  this.timeout(30_000);
  let dnsmasq: Dnsmasq | undefined;
  const cleanups: (() => unknown)[] = [];
  before(async function () {
    requireBinaryOrSkip(this, findDnsmasq);
    dnsmasq = await startDnsmasq();
  });
  after(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await dnsmasq?.stop();
  });

  it('looks up _grpclb._tcp.<serviceName> and uses the balancer it names', async () => {
    installGrpc();
    const d = await Discovery.fromConfig(`memory://grpclb-srv-${process.pid}`);
    cleanups.push(() => d.close());
    const echo = await startEchoServer({ discovery: d, service: 'echo.svc.test', drainMs: 0 });
    cleanups.push(() => echo.kill());
    const lb = await startBalancerServer({ discovery: d, host: '127.0.0.1', port: 0 });
    cleanups.push(() => lb.kill());
    await dnsmasq!.setRecords({
      hosts: { 'lb.svc.test': ['127.0.0.1'] },
      srv: [{ name: '_grpclb._tcp.echo.svc.test', target: 'lb.svc.test', port: lb.port }],
    });
    const cfg = {
      loadBalancingConfig: [
        { wayfinder_grpclb: { balancerRegistry: dnsmasq!.url, serviceName: 'echo.svc.test', fallbackTimeout: '20s' } },
      ],
    };
    const c = new EchoClient('ipv4:127.0.0.1:9', grpc.credentials.createInsecure(), {
      'grpc.service_config': JSON.stringify(cfg),
    });
    cleanups.push(() => c.close());
    assert.equal((await c.echo({}, { deadlineMs: 10_000 })).port, echo.port);
    assert.equal(lb.streams, 1);
  });
});
