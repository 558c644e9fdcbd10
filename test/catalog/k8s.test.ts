import { strict as assert } from 'node:assert';
import { Discovery, type WatchResolver, type CatalogChange, type Snapshot, type Watch } from '../../index';
import { startFakeKubeApi, waitFor, type FakeKubeApi } from '../../testkit';
import { WatchedServices } from './support';

/** Pod addresses differ, the port is the same: a set as host:port, sorted. */
const addresses = (s: Snapshot) =>
  s.endpoints
    .map((e) => `${e.host}:${e.port}`)
    .sort()
    .join(',');
const ep = (i: number) => ({ address: `10.0.${Math.floor(i / 250)}.${(i % 250) + 1}`, ports: [{ port: 8080 }] });

describe('Kubernetes registry-wide watch (one EndpointSlice watch per namespace) and the catalog', function () {
  this.timeout(30_000);
  let fake: FakeKubeApi;
  let d: Discovery | undefined;
  beforeEach(async () => {
    fake = await startFakeKubeApi({ bookmarkIntervalMs: 200 });
  });
  afterEach(async () => {
    await d?.close();
    d = undefined;
    await fake.stop();
  });
  const open = (q = '') =>
    Discovery.fromConfig(`k8s://?kubeconfig=${encodeURIComponent(fake.writeKubeconfig())}&backoff-base=20ms${q}`);

  it('serves 40 watched services through one watch, and the catalog through the same one', async () => {
    for (let i = 0; i < 40; i++) fake.setEndpoints('default', `svc-${i}`, [ep(i), ep(i + 100)]);
    fake.setEndpoints('other', 'elsewhere', [ep(999)]);
    d = await open();
    const services = new WatchedServices(d.resolver, addresses);
    const { seen } = services;
    for (let i = 0; i < 40; i++) services.watch(`svc-${i}`);
    const ws: Watch[] = [];
    // A target the namespace stream cannot serve (another namespace) keeps its own watch.
    const other: Snapshot[] = [];
    ws.push(d.resolver.watch('elsewhere.other', (s) => other.push(s)));
    await waitFor('all first snapshots', () => [...seen.values()].every((v) => v.length >= 1) && other.length >= 1);
    await waitFor('on the namespace stream', () =>
      d!.status().services.every((s) => s.source === (s.service === 'elsewhere.other' ? 'service' : 'registry')),
    );
    assert.equal((d.resolver as WatchResolver).watchSource, 'registry');
    // One namespace watch + one for the other-namespace target.
    await waitFor('two watches open', () => fake.openWatches() === 2);
    const got: CatalogChange[] = [];
    ws.push(d.catalog.watch((c) => got.push(c)));
    await waitFor('catalog first view', () => got.length >= 1);
    assert.ok(got[0].initial);
    assert.equal(got[0].snapshots.size, 40);
    assert.equal(fake.openWatches(), 2, 'the catalog shares the stream');

    fake.upsertEndpoint('default', 'svc-3', ep(500));
    await waitFor('svc-3 change', () => seen.get('svc-3')!.at(-1)!.includes(ep(500).address));
    await waitFor('catalog change', () => got.some((c) => !c.initial && c.snapshot.service === 'svc-3'));
    assert.deepEqual(
      [...seen].filter(([s, v]) => s !== 'svc-3' && v.length !== 1),
      [],
      'other services saw no snapshot',
    );
    for (const w of ws) w.close();
    services.close();
  });

  it('re-lists after 410 Expired and keeps every service (nothing lost, nothing repeated)', async () => {
    for (let i = 0; i < 5; i++) fake.setEndpoints('default', `svc-${i}`, [ep(i)]);
    d = await open('&watch=registry');
    const services = new WatchedServices(d.resolver, addresses);
    const { seen } = services;
    for (let i = 0; i < 5; i++) services.watch(`svc-${i}`);
    await waitFor('first snapshots', () => [...seen.values()].every((v) => v.length === 1));
    await waitFor('watch open', () => fake.openWatches() === 1);
    // The stream misses the changes, history is forgotten, the stream is cut: the re-watch from
    // the old resourceVersion gets 410 and must re-list.
    fake.stallWatches();
    fake.upsertEndpoint('default', 'svc-1', ep(201));
    fake.deleteEndpoint('default', 'svc-2', ep(2).address);
    fake.compact();
    fake.closeWatches();
    await waitFor('a 410 answered', () => fake.requests.some((r) => r.expired));
    await waitFor('svc-1 changed', () => seen.get('svc-1')!.length === 2);
    await waitFor('svc-2 emptied', () => seen.get('svc-2')!.length === 2);
    assert.deepEqual(seen.get('svc-2'), [`${ep(2).address}:8080`, '']);
    fake.upsertEndpoint('default', 'svc-4', ep(204));
    await waitFor('a change after the re-list', () => seen.get('svc-4')!.length === 2);
    for (const s of ['svc-0', 'svc-3']) assert.equal(seen.get(s)!.length, 1, `${s} repeated`);
    services.close();
  });
});
