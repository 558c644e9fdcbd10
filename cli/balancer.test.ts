import '../builtins'; // the built-in registries and balancers
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { Discovery } from '../core';
import { installGrpc } from '../grpc';
import { EchoClient, startEchoServer, tempDir, waitFor, withTimeout } from '../testkit';
import { capture } from './fixtures';
import { run } from './main';

describe('cli: wayfinder balancer', function () {
  this.timeout(20_000);
  const tmp = tempDir('wf-cli-lb-');
  after(() => tmp.remove());
  const reg = `file://${tmp.dir}/registry.json`;

  it('serves BalanceLoad over the registry until interrupted, registers itself with --register-as, and prints the load reports on exit', async () => {
    installGrpc();
    const d = await Discovery.fromConfig(reg);
    const echo = await startEchoServer({ discovery: d, service: 'echo', drainMs: 0 });
    const c = capture();
    const running = run(
      [
        'balancer',
        '-r',
        reg,
        '-p',
        '0',
        '-H',
        '127.0.0.1',
        '--stats-interval',
        '200ms',
        '--register-as',
        'echo-lb',
        '--print-reports',
      ],
      c.io,
    );
    let client: EchoClient | undefined;
    try {
      const line = await waitFor('the listening line', () => c.out.find((l) => l.startsWith('balancer listening')));
      assert.match(
        line,
        /^balancer listening on 127\.0\.0\.1:\d+ for file:\/\/.*, registered as echo-lb; Ctrl-C to stop$/,
      );
      const cfg = {
        loadBalancingConfig: [
          {
            wayfinder_grpclb: {
              balancerRegistry: reg,
              balancerName: 'echo-lb',
              serviceName: 'echo',
              fallbackTimeout: '20s',
            },
          },
        ],
      };
      client = new EchoClient('ipv4:127.0.0.1:9', grpc.credentials.createInsecure(), {
        'grpc.service_config': JSON.stringify(cfg),
      });
      for (let i = 0; i < 5; i++) assert.equal((await client.echo({}, { deadlineMs: 10_000 })).port, echo.port);
      const reported = () =>
        c.out
          .filter((l) => l.startsWith('{"service"'))
          .map((l) => JSON.parse(l))
          .reduce((n, r) => n + r.report.callsFinished, 0);
      await waitFor('reports covering the 5 calls', () => reported() === 5, { timeoutMs: 5000 });
    } finally {
      c.stop('SIGINT');
      client?.close();
    }
    assert.equal(await withTimeout(running, 10_000, 'the command to exit'), 0);
    const stats = JSON.parse(c.out.at(-1)!).stats;
    assert.equal(stats.echo.callsFinished, 5);
    assert.equal(stats.echo.callsKnownReceived, 5);
    assert.deepEqual(await d.resolver.resolve('echo-lb'), [], 'the balancer deregistered itself');
    echo.kill();
    await d.close();
  });

  it('rejects a bad --drop-rate with exit code 2', async () => {
    const c = capture();
    assert.equal(await run(['balancer', '-r', reg, '-p', '0', '--drop-rate', '2'], c.io), 2);
    assert.match(c.err.join('\n'), /--drop-rate must be a number within 0\.\.1, got "2"/);
  });
});
