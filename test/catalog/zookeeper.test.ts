import { strict as assert } from 'node:assert';
import * as zookeeper from 'node-zookeeper-client';
import { createZooKeeperRegistry, ZkSession } from '../../adapters/zookeeper';
import {
  Discovery,
  FeedCatalog,
  REGISTRY_WATCH_THRESHOLD,
  RegistryFeed,
  type CatalogChange,
  type Endpoint,
  type Snapshot,
  type Watch,
  type WatchResolver,
} from '../../index';
import { requireBinaryOrSkip, waitFor } from '../../testkit';
import { findZooKeeper, startZooKeeper, type ZooKeeperServer } from '../../testkit/zookeeper';

const ports = (s: Snapshot | undefined) =>
  (s?.endpoints ?? [])
    .map((e) => e.port)
    .sort((a, b) => a - b)
    .join(',');
const content = (eps: Endpoint[]) => JSON.stringify([...eps].sort((a, b) => (a.id < b.id ? -1 : 1)));
const OPEN = [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('world', 'anyone'))];
const PERSISTENT = zookeeper.CreateMode.PERSISTENT;

function fold(got: CatalogChange[]): Map<string, Snapshot> {
  const m = new Map<string, Snapshot>();
  for (const c of got)
    if (c.initial) for (const [k, s] of c.snapshots) m.set(k, s);
    else m.set(c.snapshot.service, c.snapshot);
  return m;
}

describe('zookeeper registry-wide watch (one persistent recursive addWatch) and the catalog', function () {
  this.timeout(90_000);
  let zk: ZooKeeperServer;
  let writer: ZkSession;
  let base: string;
  let serial = 0;
  const toClose: { close(): unknown }[] = [];

  const put = async (service: string, id: string, port: number) => {
    const data = Buffer.from(JSON.stringify({ host: '127.0.0.1', port, metadata: { v: String(port) } }));
    await writer.ensurePath(`${base}/${service}`, OPEN);
    try {
      await writer.create(`${base}/${service}/${id}`, data, OPEN, PERSISTENT);
    } catch (e) {
      if ((e as { code?: number }).code !== zookeeper.Exception.NODE_EXISTS) throw e;
      await writer.setData(`${base}/${service}/${id}`, data);
    }
  };
  const del = (service: string, id: string) => writer.remove(`${base}/${service}/${id}`);

  before(async function () {
    requireBinaryOrSkip(this, () => findZooKeeper());
    zk = await startZooKeeper();
    writer = new ZkSession({ hosts: [zk.connectString], sessionTimeoutMs: 10_000, opTimeoutMs: 10_000 });
    writer.start();
  });
  after(async () => {
    await writer?.close();
    await zk?.close();
  });
  beforeEach(() => {
    base = `/wf-catalog-${process.pid}-${serial++}`;
  });
  afterEach(async () => {
    for (const c of toClose.splice(0).reverse()) await c.close();
  });

  it('gives the complete first view, then each change as the per-service path sees it, on one watch', async () => {
    for (let i = 0; i < 40; i++) for (let j = 1; j <= 3; j++) await put(`svc-${i}`, `i${j}`, 1000 * j + i);
    await writer.create(`${base}/svc-3/bad`, Buffer.from('not json'), OPEN, PERSISTENT);
    const d = await Discovery.fromConfig(zk.url(base, 'watch=registry'));
    toClose.push(d);
    const got: CatalogChange[] = [];
    toClose.push(d.catalog.watch((c) => got.push(c)));
    await waitFor('first view', () => got.length >= 1, { timeoutMs: 30_000 });
    assert.ok(got[0].initial);
    assert.equal(got[0].snapshots.size, 40);
    assert.equal(ports(got[0].snapshots.get('svc-5')), '1005,2005,3005');
    assert.equal(got[0].snapshots.get('svc-3')!.error?.code, 'BAD_ENTRY');
    assert.match(await zk.fourLetter('wchs'), /Total watches:1\b/, 'one watch for 40 services');

    await put('svc-5', 'i9', 9005); // created
    await del('svc-6', 'i1'); // deleted
    await put('svc-7', 'i1', 7007); // data changed
    await put('svc-new', 'i1', 5555); // a new service
    await waitFor('four changes', () => {
      const v = fold(got);
      return (
        ports(v.get('svc-5')) === '1005,2005,3005,9005' &&
        ports(v.get('svc-6')) === '2006,3006' &&
        ports(v.get('svc-7')) === '2007,3007,7007' &&
        ports(v.get('svc-new')) === '5555'
      );
    });
    assert.match(await zk.fourLetter('wchs'), /Total watches:1\b/);

    // The same registry through per-service watches gives the same snapshots.
    const d2 = await Discovery.fromConfig(zk.url(base, 'watch=service'));
    toClose.push(d2);
    const per = new Map<string, Snapshot>();
    const view = fold(got);
    for (const name of view.keys()) toClose.push(d2.resolver.watch(name, (s) => per.set(name, s)));
    await waitFor('per-service first snapshots', () => per.size === view.size, { timeoutMs: 30_000 });
    for (const [name, s] of view) {
      assert.equal(content(per.get(name)!.endpoints), content(s.endpoints), name);
      assert.equal(per.get(name)!.error?.message, s.error?.message, name);
    }
  });

  it('switches per-service <-> registry-wide while services change: no set repeated, none out of order, the last one seen', async () => {
    const N = REGISTRY_WATCH_THRESHOLD + 8;
    for (let i = 0; i < N; i++) await put(`s${i}`, 'a', 10_000 + i);
    const d = await Discovery.fromConfig(zk.url(base));
    toClose.push(d);
    const resolver = d.resolver as WatchResolver;
    const seen = new Map<string, string[]>();
    const watches = new Map<string, Watch>();
    const watch = (s: string) => {
      seen.set(s, []);
      watches.set(
        s,
        resolver.watch(s, (snap) => seen.get(s)!.push(ports(snap))),
      );
    };
    const live = ['s0', 's1', 's2', 's3'];
    for (const s of live) watch(s);
    const want = new Map(live.map((s, i) => [s, [10_000 + i]]));
    let writing = true;
    let n = 0;
    const writerLoop = (async () => {
      while (writing) {
        const s = live[n % live.length];
        await put(s, `w${n}`, 20_000 + n);
        want.get(s)!.push(20_000 + n);
        n++;
      }
    })();
    const sources: string[] = [];
    for (let round = 0; round < 2; round++) {
      for (let i = live.length; i < N; i++) {
        watch(`s${i}`);
        await new Promise((r) => setTimeout(r, 2));
      }
      sources.push(resolver.watchSource);
      await waitFor('all on the stream', () => d.status().services.every((s) => s.source === 'registry'), {
        timeoutMs: 20_000,
      });
      for (let i = N - 1; i >= live.length; i--) {
        watches.get(`s${i}`)!.close();
        watches.delete(`s${i}`);
        await new Promise((r) => setTimeout(r, 2));
      }
      sources.push(resolver.watchSource);
      await waitFor('all on their own watches', () => d.status().services.every((s) => s.source === 'service'), {
        timeoutMs: 20_000,
      });
    }
    writing = false;
    await writerLoop;
    assert.deepEqual(sources, ['registry', 'service', 'registry', 'service']);
    assert.ok(n > 20, `the writer made ${n} changes`);
    for (const s of live) {
      const final = want
        .get(s)!
        .sort((a, b) => a - b)
        .join(',');
      await waitFor(`${s} final set`, () => seen.get(s)!.at(-1) === final);
      const sizes = seen.get(s)!.map((x) => x.split(',').length);
      for (let k = 1; k < sizes.length; k++)
        assert.ok(sizes[k] > sizes[k - 1], `${s}: set ${k} (${sizes[k]}) after ${sizes[k - 1]}: repeated or older`);
    }
    for (const w of watches.values()) w.close();
  });

  it('keeps the last good set through a server restart and a session expiry, and re-reads what changed meanwhile', async () => {
    await put('a', 'i1', 1);
    await put('b', 'i1', 2);
    const r = createZooKeeperRegistry({ hosts: [zk.connectString], path: base, sessionTimeout: 4000 });
    toClose.push({ close: () => r.close?.() });
    const feed = new RegistryFeed('zk', r.watchAll!);
    toClose.push(feed);
    const got: CatalogChange[] = [];
    toClose.push(new FeedCatalog(feed).watch((c) => got.push(c)));
    await waitFor('first view', () => ports(fold(got).get('a')) === '1' && ports(fold(got).get('b')) === '2');

    await zk.stop();
    await waitFor('the outage reported', () => feed.lastError?.code === 'REGISTRY_UNAVAILABLE', { timeoutMs: 10_000 });
    assert.equal(ports(feed.get('a')), '1');
    assert.equal(ports(feed.get('b')), '2');
    await zk.restart(); // starts it again on the same port and data
    await put('c', 'i1', 3);
    await waitFor('a change after the restart', () => ports(fold(got).get('c')) === '3', { timeoutMs: 30_000 });
    assert.equal(ports(fold(got).get('a')), '1');

    // Expire the watcher's session; change things while it is re-establishing.
    const session = (r as unknown as { session: ZkSession }).session;
    await zk.expireSession(session.credentials());
    await del('b', 'i1');
    await put('a', 'i2', 11);
    await waitFor(
      'the changes made around the expiry',
      () => ports(fold(got).get('a')) === '1,11' && ports(fold(got).get('b')) === '',
      {
        timeoutMs: 30_000,
      },
    );
    await put('d', 'i1', 4);
    await waitFor('events on the new session', () => ports(fold(got).get('d')) === '4', { timeoutMs: 20_000 });
    assert.match(await zk.fourLetter('wchs'), /Total watches:1\b/);
  });
});
