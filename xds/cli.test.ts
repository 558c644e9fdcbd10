import '../builtins'; // the built-in registries and balancers
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { capture } from '../cli/fixtures';
import { run } from '../cli/main';
import { Discovery } from '../core';
import { startEchoServer, tempDir, waitFor, withTimeout } from '../testkit';
import { grpcJsClient } from './fixtures/clients';
import { RawAds, resourcesOf } from './fixtures/raw';
import { TYPE, type DiscoveryResponse } from './protocol';

describe('cli: wayfinder xds', function () {
  this.timeout(60_000);
  const tmp = tempDir('wf-cli-xds-');
  after(() => tmp.remove());
  const reg = `file://${tmp.dir}/registry.json`;

  it('serves the registry to an xDS client until interrupted, with the policy of --config, and prints the load reports on exit', async () => {
    const policy = path.join(tmp.dir, 'policy.yaml');
    writeFileSync(policy, 'services:\n  echo:\n    lbPolicy: ring_hash\n    hashHeader: wayfinder-pick-key\n');
    const d = await Discovery.fromConfig(reg);
    const a = await startEchoServer({ discovery: d, service: 'echo', id: 'a', drainMs: 0 });
    const b = await startEchoServer({ discovery: d, service: 'echo', id: 'b', drainMs: 0 });
    const c = capture();
    const running = run(['xds', '-r', reg, '-p', '0', '-H', '127.0.0.1', '--config', policy], c.io);
    try {
      const line = await waitFor('the listening line', () => c.out.find((l) => l.startsWith('xds server listening')), {
        timeoutMs: 30_000,
      });
      assert.match(
        line,
        /^xds server listening on 127\.0\.0\.1:\d+ for file:\/\/.* with policy .*policy\.yaml; Ctrl-C to stop$/,
      );
      const client = grpcJsClient(Number(/:(\d+) for/.exec(line)![1]), 'xds:///echo', 'cli-test');
      try {
        // ring_hash from the policy file: once connected, one key goes to one server (round_robin
        // would alternate). The first batch connects the channel.
        assert.deepEqual((await client.calls(10, { key: 'k', waitForReady: true })).errors, []);
        const r = await client.calls(20, { key: 'k' });
        assert.deepEqual(r.errors, []);
        assert.equal(Object.keys(r.counts).length, 1, JSON.stringify(r.counts));
      } finally {
        await client.close();
      }
    } finally {
      c.stop('SIGINT');
    }
    assert.equal(await withTimeout(running, 10_000, 'the command to exit'), 0);
    assert.ok(JSON.parse(c.out.at(-1)!).stats, c.out.at(-1));
    await a.stop();
    await b.stop();
    await d.close();
  });

  it('SIGHUP reloads the policy file; a malformed one is reported naming the field and the policy in force stays', async () => {
    const policy = path.join(tmp.dir, 'reload.yaml');
    writeFileSync(policy, 'services:\n  echo:\n    maxRequests: 10\n');
    const d = await Discovery.fromConfig(reg);
    const r = await d.registrar.register({ service: 'echo', host: '127.0.0.1', port: 5001 });
    const c = capture();
    const running = run(['xds', '-r', reg, '-p', '0', '-H', '127.0.0.1', '--config', policy], c.io);
    const ads: RawAds[] = [];
    try {
      const line = await waitFor('the listening line', () => c.out.find((l) => l.startsWith('xds server listening')), {
        timeoutMs: 30_000,
      });
      const raw = new RawAds(Number(/:(\d+) for/.exec(line)![1]));
      ads.push(raw);
      type Cluster = {
        name?: string;
        lb_policy?: string;
        circuit_breakers: { thresholds: { max_requests: { value: number } }[] };
      };
      const maxRequests = (x: DiscoveryResponse) =>
        resourcesOf<Cluster>(x)[0].circuit_breakers.thresholds[0].max_requests.value;
      raw.send(TYPE.cluster, ['echo']);
      const c1 = await raw.next('the first CDS answer');
      assert.equal(maxRequests(c1), 10);
      raw.ack(c1, ['echo']);

      writeFileSync(policy, 'services:\n  echo:\n    maxRequests: 20\n    lbPolicy: ring_hash\n');
      c.hangup();
      const c2 = await raw.next('the CDS answer after the reload');
      assert.equal(maxRequests(c2), 20);
      assert.equal(resourcesOf<Cluster>(c2)[0].lb_policy, 'RING_HASH');
      raw.ack(c2, ['echo']);
      assert.ok(
        c.out.some((l) => l === `xds server: policy reloaded from ${policy}`),
        c.out.join('\n'),
      );

      writeFileSync(policy, 'services:\n  echo:\n    maxRequests: -1\n');
      c.hangup();
      assert.match(c.err.join('\n'), /not reloaded, the policy in force stays: .*"services\.echo\.maxRequests"/);
      // Nothing changed for the client: the next answer is the one to a new subscription, with the old policy.
      raw.send(TYPE.cluster, ['echo', 'other'], { version: c2.version_info, nonce: c2.nonce });
      const c3 = await raw.next('the CDS answer to the subscription change');
      assert.equal(maxRequests(c3), 20);
    } finally {
      for (const x of ads) x.close();
      c.stop('SIGINT');
    }
    assert.equal(await withTimeout(running, 10_000, 'the command to exit'), 0);
    await r.deregister();
    await d.close();
  });

  it('a malformed policy file exits with code 2 naming the field', async () => {
    const policy = path.join(tmp.dir, 'bad.json');
    writeFileSync(policy, JSON.stringify({ services: { echo: { maxRequests: -1 } } }));
    const c = capture();
    assert.equal(await run(['xds', '-r', reg, '-p', '0', '--config', policy], c.io), 2);
    assert.match(c.err.join('\n'), /"services\.echo\.maxRequests" must be an integer/);
  });
});
