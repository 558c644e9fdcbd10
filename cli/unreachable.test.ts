import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { tempDir, withTimeout } from '../testkit';
import { capture } from './fixtures';
import { run } from './main';

/**
 * Every command against every registry that cannot be reached answers within its timeout with one
 * line `wayfinder: <message naming the registry and host> (<CODE>)`; watch says so instead of
 * staying silent; check never claims a connection it did not make.
 */

/** A loopback port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

const TIMEOUT_MS = 1500;
const MAIN = path.join(__dirname, 'main.ts');

describe('cli: unreachable registries', function () {
  this.timeout(60_000);
  const tmp = tempDir('wf-cli-unreach-');
  after(() => tmp.remove());
  const registries: { name: string; url: string; host: string; service: string }[] = [];
  before(async () => {
    const [etcd, zk, consul, dns, k8s] = await Promise.all([1, 2, 3, 4, 5].map(() => closedPort()));
    const kubeconfig = path.join(tmp.dir, 'kubeconfig');
    writeFileSync(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters: [{ name: c, cluster: { server: "http://127.0.0.1:' + k8s + '" } }]',
        'users: [{ name: u, user: { token: t } }]',
        'contexts: [{ name: x, context: { cluster: c, user: u, namespace: default } }]',
        'current-context: x',
      ].join('\n'),
    );
    registries.push(
      { name: 'etcd', url: `etcd://127.0.0.1:${etcd}`, host: `127.0.0.1:${etcd}`, service: 'echo' },
      { name: 'zookeeper', url: `zk://127.0.0.1:${zk}/services`, host: `127.0.0.1:${zk}`, service: 'echo' },
      { name: 'consul', url: `consul://127.0.0.1:${consul}`, host: `127.0.0.1:${consul}`, service: 'echo' },
      { name: 'dns', url: `dns://127.0.0.1:${dns}`, host: `127.0.0.1:${dns}`, service: 'echo:80' },
      { name: 'k8s', url: `k8s://?kubeconfig=${kubeconfig}`, host: `127.0.0.1:${k8s}`, service: 'echo:80' },
    );
  });

  const line = /^wayfinder: .+ \([A-Z_]+\)$/;

  for (const name of ['etcd', 'zookeeper', 'consul', 'dns', 'k8s']) {
    it(`${name}: resolve, services, register and check answer within the timeout, naming registry and host`, async () => {
      const r = registries.find((x) => x.name === name)!;
      const t = `${TIMEOUT_MS}ms`;
      for (const args of [
        ['resolve', r.service, '-t', t],
        ['services', '-t', t],
        ['register', r.service.split(':')[0], '-p', '8080', '-t', t],
      ]) {
        const c = capture();
        const code = await withTimeout(run([...args, '-r', r.url], c.io), TIMEOUT_MS + 3000, `${args[0]} on ${r.url}`);
        assert.notEqual(code, 0, `${args[0]} succeeded against ${r.url}`);
        assert.equal(c.err.length, 1, `${args[0]}: expected one line, got:\n${c.err.join('\n')}`);
        assert.match(c.err[0], line, `${args[0]}: ${c.err[0]}`);
        // Names the registry (its URL or the adapter's own name) and the host:port that did not answer.
        assert.ok(c.err[0].includes(r.host) || c.err[0].includes(r.url), `${args[0]}: no host in: ${c.err[0]}`);
      }
      const c = capture();
      assert.equal(await withTimeout(run(['check', '-t', t, '-r', r.url], c.io), 4 * TIMEOUT_MS + 3000, 'check'), 1);
      const out = c.out.join('\n');
      assert.doesNotMatch(out, /^ok\s+connect/m, `check claimed a connection:\n${out}`);
      assert.match(out, /^FAIL\s+connect and read/m, out);
      assert.match(out, /verdict: NOT healthy/);
    });
  }

  it('watch says something within its timeout instead of silence, and claims no "last change"', async () => {
    const r = registries.find((x) => x.name === 'zookeeper')!;
    const c = capture();
    const done = run(['watch', 'echo', '-t', `${TIMEOUT_MS}ms`, '-r', r.url], c.io);
    const deadline = Date.now() + TIMEOUT_MS + 3000;
    while (c.err.length === 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    c.stop('SIGINT');
    await withTimeout(done, 5000, 'watch to stop');
    assert.equal(c.err.length, 1, `watch said nothing within ${TIMEOUT_MS} ms`);
    assert.match(
      c.err[0],
      /^wayfinder: zk:\/\/127\.0\.0\.1:\d+\/services: no answer within \d+ ms while watching "echo".* \(REGISTRY_UNAVAILABLE\)$/,
    );
    for (const l of c.out) assert.doesNotMatch(l, /last change/);
  });

  it('--version prints the version; check | head -1 ends cleanly on EPIPE', async () => {
    const v = capture();
    assert.equal(await run(['--version'], v.io), 0);
    assert.match(v.out.join(''), /^\d+\.\d+\.\d+/);
    // The reader closes after the first line: no EPIPE stack trace, a clean exit.
    const out = await withTimeout(
      new Promise<{ code: number | null; err: string }>((resolve) => {
        const p = spawn(
          'sh',
          ['-c', `"${process.execPath}" --import tsx "${MAIN}" check -t 2s -r "file://${tmp.dir}/r.json" | head -c 1`],
          { stdio: ['ignore', 'pipe', 'pipe'], cwd: path.join(__dirname, '..') },
        );
        let err = '';
        p.stderr.on('data', (d) => (err += d));
        p.stdout.resume();
        p.on('exit', (code) => resolve({ code, err }));
      }),
      30_000,
      'check | head',
    );
    assert.doesNotMatch(out.err, /EPIPE|Error/, out.err);
  });
});
