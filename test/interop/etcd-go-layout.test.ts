import '../../builtins'; // the built-in registries and balancers
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { Discovery, endpointKey, resolveRegistry, type Snapshot } from '../../core';
import '../../index';
import { SnapshotRecorder, uniqueService } from '../../testkit/conformance';
import { findEtcd, findEtcdctl, startEtcd, type EtcdServer } from '../../testkit/etcd';
import { requireBinaryOrSkip } from '../../testkit/process';
import { closedAfterEach } from './support';

/**
 * Node and Go sharing etcd in the layout of go.etcd.io/etcd/client/v3/naming/endpoints, with every
 * kind of key prefix: none, without a leading "/", with one, the root, a trailing "/".
 * A Go endpoints manager on target T writes key `T/<addr>` with value
 * `{"Op":0,"Addr":"<addr>","Metadata":<any>}` (endpoints.internal.Update marshalled by encoding/json);
 * a Go client dialing `etcd:///T` (resolver.NewBuilder) watches the `T/` range.
 */
describe('interop: etcd keys in the grpc-go layout under any prefix', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  const toClose = closedAfterEach();
  const run = `wf${process.pid}`;

  before(async function () {
    this.timeout(60_000);
    requireBinaryOrSkip(this, () => {
      findEtcd();
      findEtcdctl();
    });
    etcd = await startEtcd();
  });
  after(async () => {
    await etcd?.close();
  });

  /** prefix option → the Go target of service `svc` under it (what `etcd:///<target>` dials). */
  const cases: { name: string; prefix: (svc: string) => string; target: (svc: string) => string }[] = [
    { name: 'no prefix ("")', prefix: () => '', target: (svc) => svc },
    { name: 'foo/bar (no leading "/")', prefix: () => `${run}/foo/bar`, target: (svc) => `${run}/foo/bar/${svc}` },
    { name: 'foo/bar/ (trailing "/")', prefix: () => `${run}/foo/bar/`, target: (svc) => `${run}/foo/bar/${svc}` },
    { name: '/services (leading "/")', prefix: () => `/${run}/services`, target: (svc) => `/${run}/services/${svc}` },
    { name: '"/" (the root "/")', prefix: () => '/', target: (svc) => `/${svc}` },
  ];

  const keys = (s: Snapshot) => s.endpoints.map(endpointKey).sort();

  async function open(registry: string | Record<string, unknown>): Promise<Discovery> {
    const d = await Discovery.fromConfig({ registry } as Parameters<typeof Discovery.fromConfig>[0]);
    toClose.push(d);
    return d;
  }

  describe('URL and config object', () => {
    it('expresses "no prefix" as ?prefix= and "foo/bar" as ?prefix=foo/bar', () => {
      assert.equal(resolveRegistry('etcd://127.0.0.1:2379?prefix=').options.prefix, '');
      assert.equal(resolveRegistry('etcd://127.0.0.1:2379?prefix=foo/bar').options.prefix, 'foo/bar');
      assert.equal(resolveRegistry('etcd://127.0.0.1:2379?prefix=foo%2Fbar%2F').options.prefix, 'foo/bar/');
      assert.equal(resolveRegistry('etcd://127.0.0.1:2379').options.prefix, '/services', 'default unchanged');
      assert.equal(resolveRegistry({ scheme: 'etcd', prefix: '' }).options.prefix, '');
    });
  });

  for (const c of cases) {
    describe(`prefix ${c.name}`, () => {
      it('resolves endpoints etcdctl wrote as Go does (URL form)', async () => {
        const svc = uniqueService('go');
        const target = c.target(svc);
        etcd.etcdctl(['put', `${target}/127.0.0.1:50051`, '{"Op":0,"Addr":"127.0.0.1:50051","Metadata":null}']);
        etcd.etcdctl([
          'put',
          `${target}/127.0.0.2:50051`,
          '{"Op":0,"Addr":"127.0.0.2:50051","Metadata":{"zone":"z1","weight":3}}',
        ]);
        // A key of another target sharing the text prefix must not leak in.
        etcd.etcdctl(['put', `${target}-other/127.0.0.9:1`, '{"Op":0,"Addr":"127.0.0.9:1","Metadata":null}']);
        toClose.push({ close: () => void etcd.etcdctl(['del', '--prefix', `${target}`]) });
        const d = await open(`etcd://${etcd.address}?format=grpc-go&prefix=${encodeURIComponent(c.prefix(svc))}`);
        const rec = new SnapshotRecorder();
        const w = d.resolver.watch(svc, rec.onSnapshot);
        toClose.push({ close: () => w.close() });
        const s = await rec.until((x) => x.endpoints.length === 2, 5000, 'the two Go endpoints');
        assert.deepEqual(keys(s), ['127.0.0.1:50051', '127.0.0.2:50051']);
        assert.equal(s.endpoints.find((e) => e.host === '127.0.0.2')!.weight, 3);
        etcd.etcdctl(['del', `${target}/127.0.0.1:50051`]);
        await rec.until((x) => x.endpoints.length === 1, 5000, 'the Go-style delete');
      });

      it('resolves endpoints the etcd3 client wrote as Go does (config object)', async () => {
        const svc = uniqueService('go');
        const target = c.target(svc);
        const raw = new Etcd3({ hosts: etcd.address });
        toClose.push({ close: () => raw.close() });
        await raw
          .put(`${target}/127.0.0.3:50051`)
          .value(JSON.stringify({ Op: 0, Addr: '127.0.0.3:50051', Metadata: { version: 'v2' } }));
        toClose.push({
          close: () =>
            raw
              .delete()
              .prefix(`${target}/`)
              .then(() => undefined),
        });
        const d = await open({ scheme: 'etcd', hosts: [etcd.address], format: 'grpc-go', prefix: c.prefix(svc) });
        const eps = await d.resolver.resolve(svc);
        assert.deepEqual(
          eps.map((e) => [endpointKey(e), e.metadata.version]),
          [['127.0.0.3:50051', 'v2']],
        );
      });

      it('registers where a Go client of etcd:///<target> reads, in its JSON (read back by etcdctl)', async () => {
        const svc = uniqueService('go');
        const target = c.target(svc);
        const d = await open({ scheme: 'etcd', hosts: [etcd.address], format: 'grpc-go', prefix: c.prefix(svc) });
        const reg = await d.registrar.register({ service: svc, host: '127.0.0.1', port: 7301, zone: 'z2' });
        const out = etcd
          .etcdctl(['get', '--prefix', `${target}/`])
          .trim()
          .split('\n');
        assert.equal(out.length, 2, `one key under ${target}/: ${out.join(' | ')}`);
        assert.equal(out[0], `${target}/127.0.0.1:7301`);
        assert.deepEqual(JSON.parse(out[1]), { Op: 0, Addr: '127.0.0.1:7301', Metadata: { zone: 'z2' } });
        await reg.deregister();
        assert.equal(etcd.etcdctl(['get', '--prefix', `${target}/`]).trim(), '');
      });

      it('works in the wayfinder layout too, and lists the service', async () => {
        const svc = uniqueService('wf');
        const d = await open({ scheme: 'etcd', hosts: [etcd.address], prefix: c.prefix(svc) });
        const reg = await d.registrar.register({ service: svc, host: '127.0.0.1', port: 7302 });
        toClose.push({ close: () => reg.deregister() });
        const out = etcd.etcdctl(['get', '--prefix', `${c.target(svc)}/`, '--keys-only']).trim();
        assert.equal(out, `${c.target(svc)}/127.0.0.1:7302`);
        assert.deepEqual(keys({ endpoints: await d.resolver.resolve(svc) } as Snapshot), ['127.0.0.1:7302']);
        assert.ok((await d.listServices()).includes(svc), 'listServices names the service');
      });
    });
  }
});
