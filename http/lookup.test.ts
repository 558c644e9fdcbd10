import assert from 'node:assert/strict';
import * as http from 'node:http';
import { freePort } from '../testkit/process';
import { wayfinderHttpAgent, wayfinderLookup } from './index';
import { countBy, fileDiscovery, startServer, type Answer } from './fixtures/support';

/** What axios, got and node-fetch do with an agent: http.request({ hostname, port, path, agent }). */
function get(url: string, agent: http.Agent): Promise<Answer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    http
      .request({ hostname: u.hostname, port: u.port || 80, path: u.pathname, agent }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(body))));
      })
      .on('error', reject)
      .end();
  });
}

describe('http wayfinderLookup() and wayfinderHttpAgent() (node:http clients)', function () {
  this.timeout(20_000);
  const cleanups: (() => unknown)[] = [];
  const later = (fn: () => unknown) => cleanups.push(fn);
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  /** Three servers on one port, on 127.0.0.1, .2 and .3 (all loopback). */
  async function samePort() {
    const reg = await fileDiscovery();
    later(reg.cleanup);
    const port = await freePort();
    for (const i of [1, 2, 3]) {
      const s = await startServer({ id: `s${i}`, discovery: reg.discovery, host: `127.0.0.${i}`, port });
      later(() => s.stop());
    }
    return { ...reg, port };
  }

  it('lookup balances new connections across the endpoints (one connection per request without keep-alive)', async () => {
    const { discovery, port } = await samePort();
    const lookup = wayfinderLookup({ discovery });
    later(() => lookup.close());
    const agent = new http.Agent({ lookup, keepAlive: false });
    later(() => agent.destroy());
    const answers: Answer[] = [];
    for (let i = 0; i < 30; i++) answers.push(await get(`http://echo:${port}/x`, agent));
    assert.deepEqual(countBy(answers), { s1: 10, s2: 10, s3: 10 });
    assert.equal(answers[0].host, `echo:${port}`);
  });

  it('with keep-alive it balances connections, not requests: one socket carries every request', async () => {
    const { discovery, port } = await samePort();
    const lookup = wayfinderLookup({ discovery });
    later(() => lookup.close());
    const agent = new http.Agent({ lookup, keepAlive: true, maxSockets: 1 });
    later(() => agent.destroy());
    const answers: Answer[] = [];
    for (let i = 0; i < 12; i++) answers.push(await get(`http://echo:${port}/`, agent));
    assert.equal(Object.keys(countBy(answers)).length, 1);
  });

  it('lookup refuses a service whose endpoints use several ports, naming them; passes other hosts to DNS', async () => {
    const reg = await fileDiscovery();
    later(reg.cleanup);
    const a = await startServer({ id: 'a', discovery: reg.discovery });
    later(() => a.stop());
    const b = await startServer({ id: 'b', discovery: reg.discovery });
    later(() => b.stop());
    const lookup = wayfinderLookup({ discovery: reg.discovery });
    later(() => lookup.close());
    const agent = new http.Agent({ lookup });
    later(() => agent.destroy());
    await assert.rejects(get(`http://echo:${a.port}/`, agent), (e: Error) => {
      assert.match(e.message, /several ports/);
      assert.ok(e.message.includes(String(a.port)) && e.message.includes(String(b.port)), e.message);
      assert.match(e.message, /wayfinderHttpAgent/);
      return true;
    });
    assert.equal((await get(`http://127.0.0.1:${a.port}/`, agent)).id, 'a');
    await assert.rejects(get(`http://billing:${a.port}/`, agent), /unknown service "billing"/);
  });

  it('wayfinderHttpAgent connects to each endpoint’s own port (axios-style http.request with an agent)', async () => {
    const reg = await fileDiscovery();
    later(reg.cleanup);
    for (const id of ['p1', 'p2']) {
      const s = await startServer({ id, discovery: reg.discovery });
      later(() => s.stop());
    }
    const agent = wayfinderHttpAgent({ discovery: reg.discovery, keepAlive: false });
    later(() => agent.closeDiscovery());
    later(() => agent.destroy());
    const answers: Answer[] = [];
    for (let i = 0; i < 10; i++) answers.push(await get('http://echo/y', agent));
    assert.deepEqual(countBy(answers), { p1: 5, p2: 5 });
    assert.equal(answers[0].host, 'echo');
  });

  it('wayfinderHttpAgent holds off an endpoint that refuses connections', async () => {
    const reg = await fileDiscovery();
    later(reg.cleanup);
    const live = await startServer({ id: 'live', discovery: reg.discovery });
    later(() => live.stop());
    const dead = await reg.discovery.registrar.register({ service: 'echo', host: '127.0.0.1', port: await freePort() });
    later(() => dead.deregister());
    const agent = wayfinderHttpAgent({ discovery: reg.discovery, keepAlive: false });
    later(() => agent.closeDiscovery());
    later(() => agent.destroy());
    const outcomes: string[] = [];
    for (let i = 0; i < 10; i++)
      outcomes.push(
        await get('http://echo/', agent).then(
          (a) => a.id,
          (e: Error & { code?: string }) => e.code ?? e.message,
        ),
      );
    assert.equal(outcomes.filter((o) => o === 'ECONNREFUSED').length, 1, outcomes.join(','));
    assert.equal(outcomes.filter((o) => o === 'live').length, 9);
  });
});
