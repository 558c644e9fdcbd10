import '../../builtins'; // the built-in registries and balancers
import assert from 'node:assert/strict';
import { Discovery } from '../../core';
import { installGrpc } from '../../grpc';
import { captures, setupTestDoubles } from '../../grpc/fixtures/support';
import { startBalancerServer } from '../../grpc/grpclb/server';
import { findDnsmasq, startDnsmasq, type Dnsmasq, type DnsRecords } from '../../testkit/dnsmasq';
import { EchoClient, startEchoServer, type EchoServer } from '../../testkit/echo';
import { requireBinaryOrSkip, waitFor } from '../../testkit/process';
import { closedAfterEach } from './support';

/**
 * gRPC channels taking their service config from a `_grpc_config.<name>` TXT record in a real
 * dnsmasq (gRFC A2), through the dns adapter and the bridge: the TXT record chooses the policy
 * (observed by the capture balancer's tag and by wayfinder_weighted's 3:1 spread), the TXT config
 * replaces the channel's own (its default), a malformed record leaves a working channel, a changed record switches
 * the policy of a live channel, and `grpclb` sends the channel to a grpclb balancer.
 */

const lbList = (...entries: object[]) => ({ loadBalancingConfig: entries });
const grpcConfig = (...choices: object[]) => `grpc_config=${JSON.stringify(choices)}`;
const REFRESH = 'min-refresh=100ms&max-refresh=300ms';

describe('interop: gRPC service config from DNS TXT records (dnsmasq)', function () {
  this.timeout(60_000);
  let dnsmasq: Dnsmasq;
  let light: EchoServer;
  let heavy: EchoServer;
  const toClose = closedAfterEach();
  const name = 'sc.svc.test';

  before(async function () {
    requireBinaryOrSkip(this, () => findDnsmasq());
    installGrpc();
    setupTestDoubles();
    installGrpc();
    light = await startEchoServer({ id: 'light', drainMs: 0 });
    heavy = await startEchoServer({ id: 'heavy', drainMs: 0 });
    dnsmasq = await startDnsmasq();
  });
  after(async () => {
    await Promise.allSettled([dnsmasq?.stop(), light?.kill(), heavy?.kill()]);
  });

  /** SRV _grpc._tcp.<name> with weights 1 (light) and 3 (heavy), and the given TXT text. */
  function records(text?: string | string[]): DnsRecords {
    return {
      hosts: { 'backend.svc.test': ['127.0.0.1'] },
      srv: [
        { name: `_grpc._tcp.${name}`, target: 'backend.svc.test', port: light.port, weight: 1 },
        { name: `_grpc._tcp.${name}`, target: 'backend.svc.test', port: heavy.port, weight: 3 },
      ],
      txt: text === undefined ? [] : [{ name: `_grpc_config.${name}`, text }],
    };
  }

  function client(target: string, options?: Record<string, unknown>): EchoClient {
    const c = new EchoClient(target, undefined, options);
    toClose.push(c);
    return c;
  }
  const target = (query = REFRESH) => `wayfinder+dns://${dnsmasq.address}/_grpc._tcp.${name}?${query}`;

  /** The capture balancer's tag in the last picker built after `from` (set by the policy config). */
  const tagSince = (from: number) => captures.slice(from).at(-1)?.config.tag;

  /** Calls until the capture balancer was built with `tag` (bounded). */
  async function untilTag(c: EchoClient, from: number, tag: string): Promise<void> {
    await waitFor(
      `a picker built with tag ${tag}`,
      async () => {
        await c.echo({}, { deadlineMs: 2000 });
        return tagSince(from) === tag;
      },
      { timeoutMs: 10_000, intervalMs: 20 },
    );
  }

  /** How many of `n` calls reach the heavy server. */
  async function heavyShare(c: EchoClient, n = 80): Promise<number> {
    const seen = new Set<string>();
    await waitFor(
      'both servers answering',
      async () => {
        seen.add((await c.echo()).serverId);
        return seen.size === 2;
      },
      { timeoutMs: 10_000, intervalMs: 1 },
    );
    let h = 0;
    for (let i = 0; i < n; i++) if ((await c.echo()).serverId === 'heavy') h++;
    return h;
  }

  it('the TXT record chooses the policy: wayfinder_weighted follows the SRV weights 3:1, the default round-robin does not', async () => {
    await dnsmasq.setRecords(
      records(grpcConfig({ clientLanguage: ['node'], serviceConfig: lbList({ wayfinder_weighted: {} }) })),
    );
    const weighted = await heavyShare(client(target()));
    assert.ok(Math.abs(weighted - 60) <= 2, `heavy got ${weighted} of 80 (weights 3:1)`);
    // The same channel setup with TXT lookup off: the bridge's default (round-robin), 1:1.
    const plain = await heavyShare(client(target(`${REFRESH}&service-config=false`)));
    assert.ok(Math.abs(plain - 40) <= 2, `heavy got ${plain} of 80 without the TXT record's policy`);
  });

  it('a choice for another language is skipped; the capture policy named by the TXT record gets its options', async () => {
    await dnsmasq.setRecords(
      records(
        grpcConfig(
          { clientLanguage: ['go', 'python'], serviceConfig: lbList({ wayfinder_grpctest_capture: { tag: 'go' } }) },
          { clientLanguage: ['NODE'], serviceConfig: lbList({ wayfinder_grpctest_capture: { tag: 'node' } }) },
        ),
      ),
    );
    const from = captures.length;
    const c = client(target());
    await c.echo();
    assert.equal(tagSince(from), 'node');
  });

  it("the TXT record replaces the channel's own grpc.service_config, which stays the default without one; grpc.service_config_disable_resolution=1 keeps the channel's", async () => {
    const channelConfig = {
      'grpc.service_config': JSON.stringify(lbList({ wayfinder_grpctest_capture: { tag: 'channel' } })),
    };
    // A record: it replaces the channel's config, as in grpc-js and C-core.
    await dnsmasq.setRecords(
      records(grpcConfig({ serviceConfig: lbList({ wayfinder_grpctest_capture: { tag: 'dns' } }) })),
    );
    const from1 = captures.length;
    const c = client(target(), channelConfig);
    await c.echo();
    assert.equal(tagSince(from1), 'dns');
    // Off switch per channel: the channel's own config again, the record ignored.
    const from2 = captures.length;
    await client(target(), { ...channelConfig, 'grpc.service_config_disable_resolution': 1 }).echo();
    assert.equal(tagSince(from2), 'channel');
    // Off switch without a channel config: the default policy (round-robin, 1:1), not the capture one.
    const from3 = captures.length;
    const off = client(target(), { 'grpc.service_config_disable_resolution': 1 });
    const share = await heavyShare(off, 40);
    assert.equal(captures.length, from3, 'the capture policy was never built');
    assert.ok(Math.abs(share - 20) <= 1, `heavy got ${share} of 40`);
    // The record removed: the live channel goes back to its own config, its default. Counted from
    // before the change: the channel may rebuild its picker before setRecords() has returned.
    const from4 = captures.length;
    await dnsmasq.setRecords(records());
    await untilTag(c, from4, 'channel');
  });

  it('a malformed TXT record leaves the channel working with the default policy', async () => {
    await dnsmasq.setRecords(
      records('grpc_config=[{"serviceConfig":{"loadBalancingConfig":[{"wayfinder_weighted":{}}]}'),
    );
    const share = await heavyShare(client(target()));
    assert.ok(Math.abs(share - 40) <= 2, `heavy got ${share} of 80: round-robin, the truncated config was not used`);
  });

  it('a TXT record changed on the fly switches the policy of a live channel; a malformed or refused one keeps the last good', async () => {
    const choice = (lb: object) => grpcConfig({ serviceConfig: lbList(lb) });
    await dnsmasq.setRecords(records(choice({ wayfinder_grpctest_capture: { tag: 'v1' } })));
    const from = captures.length;
    const c = client(target());
    await untilTag(c, from, 'v1');
    await dnsmasq.setRecords(records(choice({ wayfinder_grpctest_capture: { tag: 'v2' } })));
    await untilTag(c, from, 'v2');
    // To a real balancer: the heavy server's share goes from 1:1 (the capture policy round-robins) to 3:1.
    await dnsmasq.setRecords(records(choice({ wayfinder_weighted: {} })));
    await waitFor('wayfinder_weighted in use', async () => Math.abs((await heavyShare(c, 40)) - 30) <= 1, {
      timeoutMs: 15_000,
      intervalMs: 10,
    });
    /** Resolves once the adapter completed a lookup that started after the last change. */
    const lookedUp = async () => {
      const q = dnsmasq.queryCount('TXT');
      await waitFor('two TXT lookups', async () => dnsmasq.queryCount('TXT') >= q + 2, {
        timeoutMs: 5000,
        intervalMs: 20,
      });
    };
    // Malformed (the adapter keeps its last config) and refused by the balancer's schema (the bridge keeps it).
    for (const text of ['grpc_config=[{"serviceConfig":', choice({ wayfinder_weighted: { bogus: 1 } })]) {
      await dnsmasq.setRecords(records(text));
      await lookedUp();
      const share = await heavyShare(c, 40);
      assert.ok(Math.abs(share - 30) <= 1, `heavy got ${share} of 40 after ${text}: the last good policy must stay`);
    }
    // The record removed: no service config, the bridge's default (round-robin, 1:1).
    await dnsmasq.setRecords(records());
    await waitFor('the default policy back', async () => Math.abs((await heavyShare(c, 40)) - 20) <= 1, {
      timeoutMs: 15_000,
      intervalMs: 10,
    });
  });

  it('installGrpc({ replaceDns: true }): a plain dns: target takes the TXT record too', async () => {
    await dnsmasq.setRecords(
      records(grpcConfig({ serviceConfig: lbList({ wayfinder_grpctest_capture: { tag: 'dns-scheme' } }) })),
    );
    installGrpc({ replaceDns: true });
    toClose.push({ close: () => installGrpc({ replaceDns: false }) });
    const from = captures.length;
    const c = client(`dns://${dnsmasq.address}/_grpc._tcp.${name}?${REFRESH}`);
    await c.echo();
    assert.equal(tagSince(from), 'dns-scheme');
  });

  it('{"grpclb":{}} in the TXT record sends the channel to the balancer named by _grpclb._tcp.<name> (SRV)', async () => {
    const discovery = await Discovery.fromConfig({ registry: 'memory://dns-txt-grpclb' });
    toClose.push(discovery);
    const lbName = 'lb-only.svc.test';
    const backends: EchoServer[] = [];
    for (let i = 0; i < 2; i++) {
      const b = await startEchoServer({ id: `lb-backend-${i}`, service: lbName, discovery, drainMs: 0 });
      backends.push(b);
      toClose.push({ close: () => b.kill() });
    }
    const balancer = await startBalancerServer({ discovery, host: '127.0.0.1', port: 0, statsIntervalMs: 0 });
    toClose.push({ close: () => balancer.stop() });
    await dnsmasq.setRecords({
      hosts: { 'lb.svc.test': ['127.0.0.1'] },
      srv: [{ name: `_grpclb._tcp.${lbName}`, target: 'lb.svc.test', port: balancer.port }],
      txt: [{ name: `_grpc_config.${lbName}`, text: grpcConfig({ serviceConfig: lbList({ grpclb: {} }) }) }],
    });
    // lb-only.svc.test has no A record: every backend address can only come from the balancer.
    const c = client(`wayfinder+dns://${dnsmasq.address}/${lbName}:443?${REFRESH}`);
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add((await c.echo({}, { waitForReady: true, deadlineMs: 10_000 })).serverId);
    assert.deepEqual([...seen].sort(), ['lb-backend-0', 'lb-backend-1']);
  });
});
