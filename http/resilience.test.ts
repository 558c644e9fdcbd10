import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawnManaged, waitFor, type ManagedProcess } from '../testkit/process';
import { WayfinderAgent } from './index';
import { countBy, fileDiscovery, load, type Answer } from './fixtures/support';

/**
 * Servers in child processes registered in a file registry: killed with SIGKILL under load, and
 * rolled (SIGTERM: deregister, drain, close; then a replacement starts) under steady fetch load.
 */
describe('http WayfinderAgent with servers that die or restart', function () {
  this.timeout(60_000);
  const cleanups: (() => unknown)[] = [];
  const later = (fn: () => unknown) => cleanups.push(fn);
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  async function child(registry: string, id: string, env: Record<string, string> = {}) {
    const fixture = path.join(__dirname, 'fixtures', 'child-server.ts');
    const p: ManagedProcess = spawnManaged(process.execPath, ['--require', 'tsx/cjs', fixture], {
      env: { ...process.env, REGISTRY: registry, ID: id, ...env },
    });
    later(() => p.kill());
    let port = 0;
    await waitFor(
      `child ${id} to register`,
      () => {
        const m = /\{"event":"registered","port":(\d+)\}/.exec(p.output());
        if (m) port = Number(m[1]);
        return port > 0;
      },
      { timeoutMs: 20_000 },
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n${p.output()}`);
    });
    return { p, port, id };
  }

  async function fleet(ids: string[], env: Record<string, string> = {}) {
    const reg = await fileDiscovery('ttl=3s&poll=20ms');
    later(reg.cleanup);
    const children = await Promise.all(ids.map((id) => child(reg.url, id, env)));
    await waitFor('all registered', async () => (await reg.discovery.resolver.resolve('echo')).length === ids.length, {
      timeoutMs: 10_000,
    });
    const log: string[] = [];
    const logger = {
      debug: (o: object | string, m?: string) => log.push(`${Date.now() % 100000} ${m} ${JSON.stringify(o)}`),
      info() {},
      warn() {},
      error() {},
    };
    const agent = new WayfinderAgent({ discovery: reg.discovery, logger });
    later(() => process.env.DEBUG_HTTP_TEST && console.log(log.join('\n')));
    const w = reg.discovery.resolver.watch('echo', (s) =>
      log.push(`${Date.now() % 100000} snapshot ${s.endpoints.map((e) => e.port).join(',')} ${s.error?.message ?? ''}`),
    );
    later(() => w.close());
    later(() => agent.close());
    const get = async () => {
      const res = await fetch('http://echo/', { dispatcher: agent } as unknown as RequestInit);
      if (res.status !== 200) throw new Error(`status ${res.status}`);
      return (await res.json()) as Answer;
    };
    return { reg, children, agent, get };
  }

  it('a server killed with SIGKILL under load fails no idempotent request (connection errors are retried)', async () => {
    const { children, agent, get } = await fleet(['k1', 'k2', 'k3'], { LATENCY_MS: '5' });
    const l = load(16, get);
    later(() => l.stop());
    await waitFor('load on every server', () => Object.keys(countBy(l.results)).length === 3, { timeoutMs: 10_000 });
    const before = l.results.length;
    children[0].p.child.kill('SIGKILL');
    // Run on through the kill, the registry TTL (3 s) and beyond.
    await waitFor('the agent to drop k1', () => agent.status()[0]?.endpoints.length === 2, { timeoutMs: 10_000 });
    const at = l.results.length;
    await waitFor('more answers after the removal', () => l.results.length > at + 100, { timeoutMs: 10_000 });
    await l.stop();
    assert.deepEqual(l.failures, [], 'no request failed');
    assert.ok(l.results.length > before + 100);
    assert.ok(agent.stats.retries > 0, 'requests caught by the kill were retried');
    assert.deepEqual(Object.keys(countBy(l.results.slice(-50))).sort(), ['k2', 'k3']);
  });

  it('a rolling restart of one of three servers (SIGTERM: deregister, drain, close) under steady fetch load loses no request', async () => {
    const { reg, children, agent, get } = await fleet(['r1', 'r2', 'r3'], { LATENCY_MS: '5', DRAIN_MS: '500' });
    const l = load(16, get);
    later(() => l.stop());
    await waitFor('load on every server', () => Object.keys(countBy(l.results)).length === 3, { timeoutMs: 10_000 });
    const retriesBefore = agent.stats.retries;
    children[0].p.child.kill('SIGTERM');
    const exit = await children[0].p.exited;
    assert.equal(exit.signal, 'SIGTERM', 'the child ends by the signal after draining');
    const replacement = await child(reg.url, 'r1b', { LATENCY_MS: '5' });
    await waitFor('the replacement to get load', () => l.results.some((a) => a.id === 'r1b'), { timeoutMs: 10_000 });
    await l.stop();
    assert.deepEqual(l.failures, [], 'no request failed');
    assert.ok(replacement.port > 0);
    // Retries may happen (a keep-alive socket closed under a request) but none may be lost.
    assert.ok(agent.stats.retries - retriesBefore < 16, `retries ${agent.stats.retries - retriesBefore}`);
  });
});
