import { strict as assert } from 'node:assert';
import * as zookeeper from 'node-zookeeper-client';
import { createZooKeeperRegistry, ZkSession } from '../../adapters/zookeeper';
import { Discovery, type CatalogChange } from '../../index';
import { requireBinaryOrSkip, waitFor } from '../../testkit';
import { findZooKeeper, startZooKeeper, type ZooKeeperServer } from '../../testkit/zookeeper';
import { assertLiveSwitch, assertOutageKeepsLastSet, assertSameAsPerService, fold, ports, testScope } from './support';

const OPEN = [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('world', 'anyone'))];
const PERSISTENT = zookeeper.CreateMode.PERSISTENT;

describe('zookeeper registry-wide watch (one persistent recursive addWatch) and the catalog', function () {
  this.timeout(90_000);
  let zk: ZooKeeperServer;
  let writer: ZkSession;
  let base: string;
  let serial = 0;
  const scope = testScope();

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

  it('gives the complete first view, then each change as the per-service path sees it, on one watch', async () => {
    for (let i = 0; i < 40; i++) for (let j = 1; j <= 3; j++) await put(`svc-${i}`, `i${j}`, 1000 * j + i);
    await writer.create(`${base}/svc-3/bad`, Buffer.from('not json'), OPEN, PERSISTENT);
    const d = scope.track(await Discovery.fromConfig(zk.url(base, 'watch=registry')));
    const got = scope.catalog(d.catalog);
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
    const d2 = scope.track(await Discovery.fromConfig(zk.url(base, 'watch=service')));
    const view = fold(got);
    const per = await assertSameAsPerService(view, d2.resolver, scope, { timeoutMs: 30_000 });
    for (const [name, s] of view) assert.equal(per.get(name)!.error?.message, s.error?.message, name);
  });

  /** Counts the reads `session` makes from now on (a spy on the real session: every call still goes to ZooKeeper). */
  const countReads = (session: ZkSession) => {
    const n = { getChildren: 0, getData: 0, exists: 0 };
    for (const m of ['getChildren', 'getData', 'exists'] as const) {
      const orig = session[m].bind(session) as (...a: unknown[]) => Promise<unknown>;
      (session as unknown as Record<string, unknown>)[m] = (...a: unknown[]) => {
        n[m]++;
        return orig(...a);
      };
    }
    return {
      counts: n,
      total: () => n.getChildren + n.getData + n.exists,
      reset: () => Object.assign(n, { getChildren: 0, getData: 0, exists: 0 }),
    };
  };

  /** The catalog's view gives the same endpoints and the same revisions as per-service watches of the registry. */
  const assertSameRevisionsAsPerService = async (got: CatalogChange[]) => {
    const d2 = scope.track(await Discovery.fromConfig(zk.url(base, 'watch=service')));
    const view = fold(got);
    const per = await assertSameAsPerService(view, d2.resolver, scope, { timeoutMs: 30_000 });
    for (const [name, s] of view) {
      assert.ok(s.revision, `a revision for ${name}`);
      assert.equal(per.get(name)!.revision, s.revision, `revision of ${name}`);
    }
  };

  it('reads O(1) nodes, not the whole service, when one instance of a large service is added or removed', async () => {
    const N = 200;
    await Promise.all(Array.from({ length: N }, (_, i) => put('big', `i${i}`, 10_000 + i)));
    await put('small', 'i1', 1);
    const r = createZooKeeperRegistry({ hosts: [zk.connectString], path: base });
    const reads = countReads(r.session);
    const { got } = scope.feed('zk', r);
    await waitFor('first view', () => fold(got).get('big')?.endpoints.length === N, { timeoutMs: 30_000 });
    assert.ok(reads.counts.getData >= N, 'the first view read every node');

    reads.reset();
    await put('big', 'added', 9999);
    await waitFor('the added instance', () => fold(got).get('big')?.endpoints.length === N + 1, { timeoutMs: 10_000 });
    await put('big', 'i1', 20_001); // data changed
    await waitFor('the changed instance', () => ports(fold(got).get('big')).includes('20001'), { timeoutMs: 10_000 });
    // Removed last: the deletion's zxid (the service's pzxid) is then the revision.
    await del('big', 'i0');
    await waitFor('the removed instance', () => fold(got).get('big')?.endpoints.length === N, { timeoutMs: 10_000 });
    // One stat read per created/deleted pass, one data read per created/changed node: 4 (N + 1 before).
    assert.ok(reads.total() <= 6, `reads for 3 changes in a service of ${N}: ${JSON.stringify(reads.counts)}`);
    assert.equal(reads.counts.getChildren, 0, 'no service re-listed');
    assert.equal(
      fold(got)
        .get('big')!
        .endpoints.some((e) => e.port === 10_000),
      false,
    );

    await assertSameRevisionsAsPerService(got);
  });

  it('ends a burst of churn (create/delete/create of one id, adds, removals, changes) with the per-service sets and revisions', async () => {
    for (let i = 0; i < 30; i++) await put('churn', `i${i}`, 100 + i);
    const r = createZooKeeperRegistry({ hosts: [zk.connectString], path: base });
    const { got } = scope.feed('zk', r);
    await waitFor('first view', () => fold(got).get('churn')?.endpoints.length === 30, { timeoutMs: 30_000 });

    const expect = new Map<string, number>(Array.from({ length: 30 }, (_, i) => [`i${i}`, 100 + i]));
    const ops: Promise<unknown>[] = [];
    // The same id created, deleted and created again back to back (and one left deleted).
    for (const id of ['flip', 'flop']) {
      ops.push(put('churn', id, 500).then(() => del('churn', id)));
    }
    await Promise.all(ops.splice(0));
    await put('churn', 'flip', 501);
    expect.set('flip', 501);
    for (let i = 0; i < 10; i++) {
      ops.push(del('churn', `i${i}`)); // removed
      expect.delete(`i${i}`);
      ops.push(put('churn', `i${10 + i}`, 1000 + i)); // changed
      expect.set(`i${10 + i}`, 1000 + i);
      ops.push(put('churn', `n${i}`, 2000 + i)); // added
      expect.set(`n${i}`, 2000 + i);
    }
    ops.push(put('other', 'i1', 7)); // a new service meanwhile
    await Promise.all(ops);
    await del('churn', 'i29'); // removed last: its zxid (the pzxid) is the revision both paths must give
    expect.delete('i29');
    const want = [...expect.values()].sort((a, b) => a - b).join(',');
    await waitFor(
      'the burst applied',
      () => ports(fold(got).get('churn')) === want && ports(fold(got).get('other')) === '7',
      {
        timeoutMs: 20_000,
      },
    );

    await assertSameRevisionsAsPerService(got);
  });

  it('switches per-service <-> registry-wide while services change: no set repeated, none out of order, the last one seen', async () => {
    await assertLiveSwitch({ put, open: () => Discovery.fromConfig(zk.url(base)), switchTimeoutMs: 20_000 }, scope);
  });

  it('keeps the last good set through a server restart and a session expiry, and re-reads what changed meanwhile', async () => {
    await put('a', 'i1', 1);
    await put('b', 'i1', 2);
    const r = createZooKeeperRegistry({ hosts: [zk.connectString], path: base, sessionTimeout: 4000 });
    const { feed, got } = scope.feed('zk', r);
    await assertOutageKeepsLastSet(feed, got, () => zk.stop());
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
