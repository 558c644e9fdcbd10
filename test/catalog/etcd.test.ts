import { strict as assert } from 'node:assert';
import { Etcd3 } from 'etcd3';
import { createEtcdRegistry } from '../../adapters/etcd';
import {
  Discovery,
  FeedCatalog,
  REGISTRY_WATCH_THRESHOLD,
  RegistryFeed,
  type WatchResolver,
  type CatalogChange,
  type Snapshot,
  type Watch,
} from '../../index';
import { findEtcd, findEtcdctl, requireBinaryOrSkip, startEtcd, waitFor, type EtcdServer } from '../../testkit';

const ports = (s: Snapshot) =>
  s.endpoints
    .map((e) => e.port)
    .sort((a, b) => a - b)
    .join(',');
const value = (port: number) => JSON.stringify({ host: '127.0.0.1', port });

describe('etcd registry-wide watch (one prefix watch) and the catalog', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  let kv: Etcd3;
  let serial = 0;
  let prefix: string;
  const toClose: { close(): unknown }[] = [];

  before(async function () {
    this.timeout(60_000);
    requireBinaryOrSkip(this, () => {
      findEtcd();
      findEtcdctl();
    });
    etcd = await startEtcd();
    kv = new Etcd3({ hosts: etcd.url });
  });
  after(async () => {
    kv?.close();
    await etcd?.close();
  });
  beforeEach(() => {
    prefix = `/wf-catalog-${process.pid}-${serial++}`;
  });
  afterEach(async () => {
    for (const c of toClose.splice(0).reverse()) await c.close();
  });

  it('gives the complete first view of every service, then each change, from one range read and one stream', async () => {
    for (let i = 0; i < 40; i++)
      for (let j = 0; j < 3; j++) await kv.put(`${prefix}/svc-${i}/i${j}`).value(value(1000 * (j + 1) + i));
    await kv.put(`${prefix}/not-an-instance`).value('x'); // no service part: ignored
    const d = await Discovery.fromConfig(`etcd://${etcd.address}?prefix=${prefix}`);
    toClose.push(d);
    const got: CatalogChange[] = [];
    const w = d.catalog.watch((c) => got.push(c));
    toClose.push(w);
    await waitFor('first view', () => got.length >= 1);
    assert.ok(got[0].initial);
    assert.equal(got[0].snapshots.size, 40);
    assert.equal(ports(got[0].snapshots.get('svc-5')!), '1005,2005,3005');
    await kv.put(`${prefix}/svc-5/i9`).value(value(9005));
    await kv.delete().prefix(`${prefix}/svc-6/`);
    await kv.put(`${prefix}/svc-7/bad`).value('not json');
    await waitFor('three changes', () => got.length >= 4);
    const last = new Map<string, Snapshot>();
    for (const c of got.slice(1)) if (!c.initial) last.set(c.snapshot.service, c.snapshot);
    assert.equal(ports(last.get('svc-5')!), '1005,2005,3005,9005');
    assert.equal(ports(last.get('svc-6')!), '');
    assert.equal(last.get('svc-7')!.error?.code, 'BAD_ENTRY');
    assert.equal(ports(last.get('svc-7')!), '1007,2007,3007');
  });

  it('switches per-service <-> registry-wide while services change: no set repeated, none out of order, the last one seen', async () => {
    const N = REGISTRY_WATCH_THRESHOLD + 8;
    for (let i = 0; i < N; i++) await kv.put(`${prefix}/s${i}/a`).value(value(10_000 + i));
    const d = await Discovery.fromConfig(`etcd://${etcd.address}?prefix=${prefix}`);
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
    // A writer adds one endpoint at a time to the live services, without waiting for anyone.
    let writing = true;
    let n = 0;
    const writer = (async () => {
      while (writing) {
        const s = live[n % live.length];
        await kv.put(`${prefix}/${s}/w${n}`).value(value(20_000 + n));
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
      await waitFor('all on the stream', () => d.status().services.every((s) => s.source === 'registry'));
      for (let i = N - 1; i >= live.length; i--) {
        watches.get(`s${i}`)!.close();
        watches.delete(`s${i}`);
        await new Promise((r) => setTimeout(r, 2));
      }
      sources.push(resolver.watchSource);
      await waitFor('all on their own watches', () => d.status().services.every((s) => s.source === 'service'));
    }
    writing = false;
    await writer;
    assert.deepEqual(sources, ['registry', 'service', 'registry', 'service']);
    assert.ok(n > 20, `the writer made ${n} changes`);
    for (const s of live) {
      const want = (await kv.getAll().prefix(`${prefix}/${s}/`).strings()) as Record<string, string>;
      const final = Object.values(want)
        .map((v) => JSON.parse(v).port as number)
        .sort((a, b) => a - b)
        .join(',');
      await waitFor(`${s} final set`, () => seen.get(s)!.at(-1) === final);
      const sizes = seen.get(s)!.map((x) => x.split(',').length);
      for (let k = 1; k < sizes.length; k++)
        assert.ok(sizes[k] > sizes[k - 1], `${s}: set ${k} (${sizes[k]}) after ${sizes[k - 1]}: repeated or older`);
    }
    for (const w of watches.values()) w.close();
  });

  it('survives a compaction of the revision it was to watch from, and an etcd restart', async () => {
    await kv.put(`${prefix}/a/1`).value(value(1));
    let compacted = false;
    const r = createEtcdRegistry({
      hosts: [etcd.address],
      prefix,
      beforeWatch: async (startRev) => {
        if (compacted) return;
        compacted = true;
        await kv.put(`${prefix}/a/2`).value(value(2));
        await kv.put(`${prefix}/b/1`).value(value(3));
        const rev = etcd.revision();
        assert.ok(rev >= startRev);
        etcd.etcdctl(['compaction', String(rev)]);
      },
    });
    toClose.push({ close: () => r.close?.() });
    const feed = new RegistryFeed('etcd', r.watchAll!);
    toClose.push(feed);
    const got: CatalogChange[] = [];
    toClose.push(new FeedCatalog(feed).watch((c) => got.push(c)));
    const view = () => {
      const m = new Map<string, string>();
      for (const c of got)
        if (c.initial) for (const [k, s] of c.snapshots) m.set(k, ports(s));
        else m.set(c.snapshot.service, ports(c.snapshot));
      return m;
    };
    await waitFor('the set after the compacted gap', () => view().get('a') === '1,2' && view().get('b') === '3');
    assert.ok(compacted);
    await etcd.restart();
    await kv.put(`${prefix}/c/1`).value(value(4));
    await waitFor('a change after the restart', () => view().get('c') === '4', { timeoutMs: 20_000 });
    assert.equal(view().get('a'), '1,2');
  });

  it('tells catalog watchers of a registry outage (last view kept) and of the recovery', async () => {
    await kv.put(`${prefix}/a/1`).value(value(1));
    await kv.put(`${prefix}/b/1`).value(value(2));
    const d = await Discovery.fromConfig(`etcd://${etcd.address}?prefix=${prefix}&request-timeout=1s`);
    toClose.push(d);
    const events: string[] = [];
    const errors: Error[] = [];
    const got: CatalogChange[] = [];
    toClose.push(
      d.catalog.watch((c) => (got.push(c), events.push(c.initial ? 'initial' : `change ${c.snapshot.service}`)), {
        onError: (err) => (errors.push(err), events.push('error')),
        onRecover: () => events.push('recovered'),
      }),
    );
    const view = () => {
      const m = new Map<string, string>();
      for (const c of got)
        if (c.initial) for (const [k, s] of c.snapshots) m.set(k, ports(s));
        else if (c.snapshot.endpoints.length) m.set(c.snapshot.service, ports(c.snapshot));
        else m.delete(c.snapshot.service);
      return m;
    };
    await waitFor('first view', () => got.length >= 1);
    assert.deepEqual(
      [...view()],
      [
        ['a', '1'],
        ['b', '2'],
      ],
    );
    await etcd.stop();
    await waitFor('the outage told', () => errors.length >= 1, { timeoutMs: 20_000 });
    assert.equal((errors[0] as { code?: string }).code, 'REGISTRY_UNAVAILABLE');
    // A watcher joining during the outage gets the last view, then the error.
    const late: string[] = [];
    toClose.push(
      d.catalog.watch((c) => late.push(c.initial ? `initial ${c.snapshots.size}` : 'change'), {
        onError: () => late.push('error'),
        onRecover: () => late.push('recovered'),
      }),
    );
    await waitFor('the late watcher told', () => late.length >= 2);
    assert.deepEqual(late, ['initial 2', 'error']);
    assert.deepEqual(
      [...view()],
      [
        ['a', '1'],
        ['b', '2'],
      ],
    );
    // Nothing removed or changed during the outage; one error per distinct failure, not per retry.
    const outage = () => [...new Set(events)];
    assert.deepEqual(outage(), ['initial', 'error']);
    assert.ok(events.length <= 4, events.join());
    await etcd.restart();
    await waitFor('the recovery told', () => events.includes('recovered'), { timeoutMs: 30_000 });
    await kv.put(`${prefix}/c/1`).value(value(3));
    await waitFor('a change after the recovery', () => view().get('c') === '3', { timeoutMs: 20_000 });
    assert.deepEqual(outage(), ['initial', 'error', 'recovered', 'change c']);
    assert.deepEqual(events.slice(-2), ['recovered', 'change c']);
    assert.deepEqual(late.slice(0, 2), ['initial 2', 'error']);
    assert.deepEqual(late.slice(-2), ['recovered', 'change']);
  });
});
