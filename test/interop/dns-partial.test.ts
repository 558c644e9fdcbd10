import assert from 'node:assert/strict';
import { endpointKey, isWayfinderError, type Snapshot } from '../../core';
import { createDnsRegistry } from '../../adapters/dns';
import { SnapshotRecorder } from '../../testkit/conformance';
import { findDnsmasq, startDnsmasq, type Dnsmasq } from '../../testkit/dnsmasq';
import { requireBinaryOrSkip } from '../../testkit/process';
import { closedAfterEach } from './support';

/**
 * A real dnsmasq with no upstream answers names of its hosts file that lie outside its --local
 * domains with their A records, and REFUSES their AAAA query (it would have to ask upstream).
 * Some corporate resolvers do the same. family=any must deliver the A set, not fail.
 */
describe('interop: DNS server answering A but refusing AAAA', function () {
  this.timeout(30_000);
  let dnsmasq: Dnsmasq;
  const toClose = closedAfterEach();

  before(async function () {
    requireBinaryOrSkip(this, () => findDnsmasq());
    dnsmasq = await startDnsmasq({
      domains: ['test'],
      records: {
        hosts: {
          // Outside the local domain "test": A from the hosts file, AAAA refused.
          'echo.corp.example': ['127.0.0.11', '127.0.0.12'],
          // Inside it: AAAA is an authoritative "no such record" (NODATA), the usual case.
          'echo.svc.test': ['127.0.0.21'],
        },
      },
    });
  });
  after(async () => {
    await dnsmasq?.stop();
  });

  function registry(family: 'any' | 'ipv4' | 'ipv6' = 'any') {
    const r = createDnsRegistry({ hosts: [dnsmasq.address], family, timeout: 500, tries: 1 });
    toClose.push({ close: () => r.resolver.close() });
    return r;
  }

  const keys = (s: Snapshot) => s.endpoints.map(endpointKey).sort();

  it('the server really refuses AAAA and answers A (what the other tests rely on)', async () => {
    const { Resolver } = await import('node:dns/promises');
    const res = new Resolver({ timeout: 500, tries: 1 });
    res.setServers([dnsmasq.address]);
    assert.deepEqual((await res.resolve4('echo.corp.example')).sort(), ['127.0.0.11', '127.0.0.12']);
    await assert.rejects(res.resolve6('echo.corp.example'), { code: 'EREFUSED' });
  });

  it('family=any delivers the A set in the first snapshot; its error names the AAAA failure', async () => {
    const r = registry();
    const rec = new SnapshotRecorder();
    const w = r.resolver.watch('echo.corp.example:50051', rec.onSnapshot);
    toClose.push({ close: () => w.close() });
    const s = await rec.until((x) => x.endpoints.length > 0 || !!x.error, 5000, 'the first snapshot');
    assert.deepEqual(keys(s), ['127.0.0.11:50051', '127.0.0.12:50051']);
    assert.ok(!s.stale, 'the A set is fresh, not a kept one');
    assert.ok(s.error, 'the snapshot says a family failed');
    assert.equal(s.error.code, 'BAD_ENTRY');
    assert.match(s.error.message, /echo\.corp\.example AAAA: query failed with EREFUSED/);
    assert.deepEqual(
      (await r.resolver.resolve('echo.corp.example:50051')).map(endpointKey).sort(),
      ['127.0.0.11:50051', '127.0.0.12:50051'],
      'resolve() gives the A set',
    );
  });

  it('an answered empty AAAA (NODATA) is no error at all', async () => {
    const r = registry();
    const rec = new SnapshotRecorder();
    const w = r.resolver.watch('echo.svc.test:50051', rec.onSnapshot);
    toClose.push({ close: () => w.close() });
    const s = await rec.until((x) => x.endpoints.length > 0 || !!x.error, 5000, 'the first snapshot');
    assert.deepEqual(keys(s), ['127.0.0.21:50051']);
    assert.equal(s.error, undefined);
  });

  it('fails only when no family answered: family=ipv6 alone is REGISTRY_UNAVAILABLE naming AAAA', async () => {
    const r = registry('ipv6');
    await assert.rejects(
      r.resolver.resolve('echo.corp.example:50051'),
      (e: unknown) =>
        isWayfinderError(e, 'REGISTRY_UNAVAILABLE') &&
        /AAAA echo\.corp\.example failed with EREFUSED/.test(String((e as Error).message)),
    );
  });

  it('a name refused for both families fails, keeping nothing made up', async () => {
    const r = registry();
    await assert.rejects(r.resolver.resolve('unknown.corp.example:50051'), (e: unknown) =>
      isWayfinderError(e, 'REGISTRY_UNAVAILABLE'),
    );
  });

  it('SRV targets answering A only still give endpoints, with the AAAA failure reported', async () => {
    await dnsmasq.updateRecords((cur) => ({
      ...cur,
      srv: [{ name: '_grpc._tcp.echo.svc.test', target: 'echo.corp.example', port: 7400 }],
    }));
    const r = registry();
    const rec = new SnapshotRecorder();
    const w = r.resolver.watch('_grpc._tcp.echo.svc.test', rec.onSnapshot);
    toClose.push({ close: () => w.close() });
    const s = await rec.until((x) => x.endpoints.length > 0 || !!x.error, 5000, 'the first snapshot');
    assert.deepEqual(keys(s), ['127.0.0.11:7400', '127.0.0.12:7400']);
    assert.match(s.error?.message ?? '', /echo\.corp\.example AAAA: query failed with EREFUSED/);
  });
});
