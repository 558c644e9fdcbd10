import '../builtins'; // the built-in registries and balancers
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { capture } from '../cli/fixtures';
import { run } from '../cli/main';
import { Discovery } from '../core';
import { startEchoServer, tempDir, waitFor, withTimeout } from '../testkit';
import { grpcJsClient } from './fixtures/clients';

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

  it('a malformed policy file exits with code 2 naming the field', async () => {
    const policy = path.join(tmp.dir, 'bad.json');
    writeFileSync(policy, JSON.stringify({ services: { echo: { maxRequests: -1 } } }));
    const c = capture();
    assert.equal(await run(['xds', '-r', reg, '-p', '0', '--config', policy], c.io), 2);
    assert.match(c.err.join('\n'), /"services\.echo\.maxRequests" must be an integer/);
  });
});
