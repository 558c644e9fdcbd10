import { strict as assert } from 'node:assert';
import * as zookeeper from 'node-zookeeper-client';
import { createZooKeeperRegistry, ZkSession } from '../../adapters/zookeeper';
import { Discovery } from '../../index';
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
