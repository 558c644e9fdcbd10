import { strict as assert } from 'node:assert';
import { Etcd3 } from 'etcd3';
import { createEtcdRegistry } from '../../adapters/etcd';
import { Discovery, type CatalogChange, type Snapshot } from '../../index';
import { findEtcd, findEtcdctl, requireBinaryOrSkip, startEtcd, waitFor, type EtcdServer } from '../../testkit';
import { assertLiveSwitch, fold, ports, testScope } from './support';

const value = (port: number) => JSON.stringify({ host: '127.0.0.1', port });

describe('etcd registry-wide watch (one prefix watch) and the catalog', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  let kv: Etcd3;
  let serial = 0;
  let prefix: string;
  const scope = testScope();

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

  it('gives the complete first view of every service, then each change, from one range read and one stream', async () => {
    for (let i = 0; i < 40; i++)
      for (let j = 0; j < 3; j++) await kv.put(`${prefix}/svc-${i}/i${j}`).value(value(1000 * (j + 1) + i));
    await kv.put(`${prefix}/not-an-instance`).value('x'); // no service part: ignored
    const d = scope.track(await Discovery.fromConfig(`etcd://${etcd.address}?prefix=${prefix}`));
    const got = scope.catalog(d.catalog);
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
    await assertLiveSwitch(
      {
        put: async (s, key, port) => await kv.put(`${prefix}/${s}/${key}`).value(value(port)),
        open: () => Discovery.fromConfig(`etcd://${etcd.address}?prefix=${prefix}`),
        // What etcd holds at the end, read back from it.
        finalSet: async (s) => {
          const want = (await kv.getAll().prefix(`${prefix}/${s}/`).strings()) as Record<string, string>;
          return Object.values(want)
            .map((v) => JSON.parse(v).port as number)
            .sort((a, b) => a - b)
            .join(',');
        },
      },
      scope,
    );
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
    const { got } = scope.feed('etcd', r);
    const view = () => fold(got);
    await waitFor(
      'the set after the compacted gap',
      () => ports(view().get('a')) === '1,2' && ports(view().get('b')) === '3',
    );
    assert.ok(compacted);
    await etcd.restart();
    await kv.put(`${prefix}/c/1`).value(value(4));
    await waitFor('a change after the restart', () => ports(view().get('c')) === '4', { timeoutMs: 20_000 });
    assert.equal(ports(view().get('a')), '1,2');
  });

  it('tells catalog watchers of a registry outage (last view kept) and of the recovery', async () => {
    await kv.put(`${prefix}/a/1`).value(value(1));
    await kv.put(`${prefix}/b/1`).value(value(2));
    const d = scope.track(await Discovery.fromConfig(`etcd://${etcd.address}?prefix=${prefix}&request-timeout=1s`));
    const events: string[] = [];
    const errors: Error[] = [];
    const got: CatalogChange[] = [];
    scope.track(
      d.catalog.watch((c) => (got.push(c), events.push(c.initial ? 'initial' : `change ${c.snapshot.service}`)), {
        onError: (err) => (errors.push(err), events.push('error')),
        onRecover: () => events.push('recovered'),
      }),
    );
    /** The view as service -> ports, a service gone once it has no endpoints. */
    const view = () => new Map([...fold(got, { dropEmpty: true })].map(([k, s]) => [k, ports(s)]));
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
    scope.track(
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
