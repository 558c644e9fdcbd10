import { strict as assert } from 'node:assert';
import { createConsulRegistry } from '../../adapters/consul';
import { Discovery } from '../../index';
import { startFakeConsul, waitFor, type FakeConsul } from '../../testkit';
import { assertLiveSwitch, assertOutageKeepsLastSet, assertSameAsPerService, fold, ports, testScope } from './support';

async function put(c: FakeConsul, path: string, body?: unknown): Promise<void> {
  const send = () =>
    fetch(`${c.url}${path}`, { method: 'PUT', body: body === undefined ? undefined : JSON.stringify(body) });
  // A kept-alive socket from before an agent restart fails once; the retry gets a new one.
  const r = await send().catch(send);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${await r.text()}`);
}
const register = (c: FakeConsul, name: string, id: string, port: number, extra: Record<string, unknown> = {}) =>
  put(c, '/v1/agent/service/register', {
    Name: name,
    ID: id,
    Address: '127.0.0.1',
    Port: port,
    Meta: { zone: `z${port % 3}`, v: String(port) },
    Check: { CheckID: `service:${id}`, TTL: '10m', Status: 'passing' },
    ...extra,
  });
const deregister = (c: FakeConsul, id: string) => put(c, `/v1/agent/service/deregister/${id}`);

describe('consul registry-wide watch (catalog/services + health/state blocking) and the catalog', function () {
  this.timeout(60_000);
  let consul: FakeConsul;
  const scope = testScope();

  beforeEach(async () => {
    consul = await startFakeConsul();
  });
  afterEach(async () => {
    await consul.close();
  });

  it('gives the complete first view, then each change as the per-service path sees it, on bounded requests', async () => {
    for (let i = 0; i < 40; i++)
      for (let j = 1; j <= 3; j++) await register(consul, `svc-${i}`, `svc-${i}-${j}`, 1000 * j + i);
    const d = scope.track(await Discovery.fromConfig(`consul://${consul.address}?wait=2s&watch=registry`));
    const got = scope.catalog(d.catalog);
    await waitFor('first view', () => got.length >= 1);
    assert.ok(got[0].initial);
    assert.equal(got[0].snapshots.size, 41); // 40 + the agent's own "consul" service
    assert.equal(ports(got[0].snapshots.get('svc-5')), '1005,2005,3005');

    // At rest: the two blocking lists only, whatever the number of services.
    const atRest = consul.requests.length;
    await new Promise((r) => setTimeout(r, 5000));
    const restRequests = consul.requests.slice(atRest);
    assert.ok(restRequests.length <= 10, `${restRequests.length} requests at rest over 5 s`);
    assert.ok(
      restRequests.every((r) => r.path === '/v1/catalog/services' || r.path === '/v1/health/state/any'),
      restRequests.map((r) => r.path).join(' '),
    );

    // An instance added: one health read (its service), not forty.
    const before = consul.requests.length;
    await register(consul, 'svc-5', 'svc-5-9', 9005);
    await waitFor('svc-5 grew', () => ports(fold(got).get('svc-5')) === '1005,2005,3005,9005');
    const reads = consul.requests.slice(before).filter((r) => r.path.startsWith('/v1/health/service/'));
    assert.deepEqual(
      reads.map((r) => r.path),
      ['/v1/health/service/svc-5'],
    );

    await deregister(consul, 'svc-6-1');
    for (let j = 1; j <= 3; j++) await deregister(consul, `svc-7-${j}`);
    await put(consul, '/v1/agent/check/fail/service:svc-8-2');
    // In place: same check, new port (no check moves; every service is re-read for it).
    await register(consul, 'svc-9', 'svc-9-1', 7009);
    await waitFor('four changes', () => {
      const v = fold(got);
      if (process.env.DEBUG_CATALOG)
        console.log(['svc-6', 'svc-7', 'svc-8', 'svc-9'].map((s) => ports(v.get(s))).join(' | '));
      return (
        ports(v.get('svc-6')) === '2006,3006' &&
        ports(v.get('svc-7')) === '' &&
        ports(v.get('svc-8')) === '1008,3008' &&
        ports(v.get('svc-9')) === '2009,3009,7009'
      );
    });

    // The same registry through per-service watches gives the same snapshots.
    const d2 = scope.track(await Discovery.fromConfig(`consul://${consul.address}?wait=2s&watch=service`));
    const view = fold(got);
    await assertSameAsPerService(view, d2.resolver, scope);
    assert.equal(view.get('svc-9')!.endpoints.find((e) => e.port === 7009)?.metadata.v, '7009');
  });

  it('switches per-service <-> registry-wide while services change: no set repeated, none out of order, the last one seen', async () => {
    await assertLiveSwitch(
      {
        put: (s, key, port) => register(consul, s, `${s}-${key}`, port),
        open: () => Discovery.fromConfig(`consul://${consul.address}?wait=5s&rate=50&burst=50`),
        writePauseMs: 5,
      },
      scope,
    );
  });

  it('keeps the last good set through an agent outage, and resyncs after a restart that lost its state', async () => {
    await register(consul, 'a', 'a-1', 1);
    await register(consul, 'b', 'b-1', 2);
    const r = createConsulRegistry({ hosts: [consul.address], wait: '2s', timeout: '1s' });
    const { feed, got } = scope.feed('consul', r);
    await assertOutageKeepsLastSet(feed, got, () => consul.stop());
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(ports(fold(got).get('a')), '1', 'nothing dropped during the outage');

    await consul.start();
    await register(consul, 'c', 'c-1', 3);
    await waitFor('a change after the outage', () => ports(fold(got).get('c')) === '3', { timeoutMs: 20_000 });
    assert.equal(ports(fold(got).get('a')), '1');
    assert.equal(feed.lastError, undefined);

    // A restart that lost everything (index back to 1): the view is re-read, not patched.
    await consul.restart();
    await register(consul, 'd', 'd-1', 4);
    await waitFor(
      'the view after the state was lost',
      () => ports(fold(got).get('d')) === '4' && ports(fold(got).get('a')) === '' && ports(fold(got).get('c')) === '',
      { timeoutMs: 20_000 },
    );
  });
});
