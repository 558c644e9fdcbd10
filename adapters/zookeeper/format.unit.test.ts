import assert from 'node:assert/strict';
import { checkInstanceSpec } from '../../core/endpoint';
import { decode, decodeCurator, decodeWayfinder, encode, encodeCurator, encodeWayfinder, type Decoded } from './format';
import { assembleNodes, type NodeState } from './index';

// ZooKeeper node layouts, document by document: what is written (wayfinder JSON, Curator's
// ServiceInstance as Jackson writes it) and what each node's data decodes to, or why it is refused.
const buf = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));
const spec = (extra = {}) => checkInstanceSpec({ service: 'api', host: '127.0.0.1', port: 8080, id: 'i1', ...extra });
/** The decoded value of an accepted document (fails the test on a refusal). */
const valueOf = (d: Decoded): Record<string, unknown> => {
  assert.ok(d.ok, d.ok ? '' : d.reason);
  return d.value;
};
const instance = (extra: Record<string, unknown> = {}) => ({ address: '10.0.0.1', port: 9000, ...extra });

describe('ZooKeeper node formats (exact documents)', () => {
  it('no data or bad JSON is refused with the reason, in both formats', () => {
    for (const f of ['wayfinder', 'curator'] as const) {
      assert.deepEqual(decode(f, 'n', undefined), { ok: false, reason: 'the node has no data' });
      assert.deepEqual(decode(f, 'n', Buffer.alloc(0)), { ok: false, reason: 'the node has no data' });
      const r = decode(f, 'n', buf('{'));
      assert.equal(r.ok, false);
      assert.match((r as { reason: string }).reason, /^not valid JSON \(.+\)$/);
    }
  });

  it('wayfinder: the document, its id or else the node name as id; a non-object is refused', () => {
    assert.deepEqual(decodeWayfinder('node-1', buf({ host: 'h', port: 1 })), {
      ok: true,
      value: { host: 'h', port: 1, id: 'node-1' },
    });
    assert.deepEqual(decodeWayfinder('node-1', buf({ id: 'own' })), { ok: true, value: { id: 'own' } });
    assert.deepEqual(decodeWayfinder('node-1', buf({ id: '' })), { ok: true, value: { id: 'node-1' } });
    assert.deepEqual(decodeWayfinder('node-1', buf({ id: 5 })), { ok: true, value: { id: 'node-1' } });
    for (const v of ['[1]', 'null', '"s"'])
      assert.deepEqual(decodeWayfinder('n', buf(v)), { ok: false, reason: 'not a JSON object' });
  });

  it('wayfinder encoding is the instance JSON', () => {
    assert.deepEqual(JSON.parse(encodeWayfinder(spec({ zone: 'z' })).toString()), {
      id: 'i1',
      service: 'api',
      host: '127.0.0.1',
      port: 8080,
      weight: 1,
      zone: 'z',
      metadata: {},
    });
    assert.deepEqual(encode('wayfinder', spec(), 0), encodeWayfinder(spec()));
  });

  it('curator encoding: what JsonInstanceSerializer writes for a ServiceInstance<Map>', () => {
    assert.deepEqual(JSON.parse(encodeCurator(spec({ weight: 2, zone: 'z', metadata: { a: 'b' } }), 1700).toString()), {
      name: 'api',
      id: 'i1',
      address: '127.0.0.1',
      port: 8080,
      sslPort: null,
      payload: { '@class': 'java.util.LinkedHashMap', weight: 2, zone: 'z', metadata: { a: 'b' } },
      registrationTimeUTC: 1700,
      serviceType: 'DYNAMIC',
      uriSpec: null,
      enabled: true,
    });
    const plain = JSON.parse(encode('curator', spec(), 5).toString());
    assert.deepEqual(plain.payload, { '@class': 'java.util.LinkedHashMap', weight: 1, metadata: {} });
  });

  it('curator decoding: address, port, id (node name when absent or empty), empty metadata without payload', () => {
    assert.deepEqual(decodeCurator('node', buf(instance({ id: 'x' }))), {
      ok: true,
      value: { id: 'x', host: '10.0.0.1', port: 9000, metadata: {} },
    });
    assert.deepEqual(decodeCurator('node', buf(instance({ id: '' }))), {
      ok: true,
      value: { id: 'node', host: '10.0.0.1', port: 9000, metadata: {} },
    });
    assert.equal(valueOf(decode('curator', 'node', buf(instance()))).id, 'node');
  });

  it('curator decoding: sslPort when port is null; refuses a bad address or port with the reason', () => {
    const ok = decodeCurator('n', buf(instance({ port: null, sslPort: 443 })));
    assert.equal(valueOf(ok).port, 443);
    const addr = 'Curator ServiceInstance: "address" must be a non-empty string';
    assert.deepEqual(decodeCurator('n', buf(instance({ address: '' }))), { ok: false, reason: addr });
    assert.deepEqual(decodeCurator('n', buf(instance({ address: 5 }))), { ok: false, reason: addr });
    const port = 'Curator ServiceInstance: "port" (or "sslPort") must be an integer in 1..65535';
    for (const p of [0, 65536, 1.5, '80', null])
      assert.deepEqual(decodeCurator('n', buf(instance({ port: p }))), { ok: false, reason: port }, String(p));
    assert.equal(decodeCurator('n', buf(instance({ port: 1 }))).ok, true);
    assert.equal(decodeCurator('n', buf(instance({ port: 65535 }))).ok, true);
    assert.deepEqual(decodeCurator('n', buf([1])), {
      ok: false,
      reason: 'not a JSON object (Curator ServiceInstance)',
    });
  });

  it('curator payload with a metadata object: its scalars as strings, nested values left out', () => {
    const d = decodeCurator(
      'n',
      buf(instance({ payload: { metadata: { a: 'x', n: 2, b: true, o: {}, l: [] }, other: 'y' } })),
    );
    assert.deepEqual(valueOf(d), {
      id: 'n',
      host: '10.0.0.1',
      port: 9000,
      metadata: { a: 'x', n: '2', b: 'true' },
    });
  });

  it('curator Map payload: its own scalars are the metadata, without @class, metadata, weight and zone', () => {
    const d = decodeCurator(
      'n',
      buf(instance({ payload: { '@class': 'java.util.LinkedHashMap', k: 'v', weight: 3, zone: 'z1', n: 1 } })),
    );
    assert.deepEqual(valueOf(d), {
      id: 'n',
      host: '10.0.0.1',
      port: 9000,
      metadata: { k: 'v', n: '1' },
      weight: 3,
      zone: 'z1',
    });
  });

  it('curator payload weight: a digit string counts; 0, fractions and words are refused; null is no weight', () => {
    const w = (weight: unknown) => decodeCurator('n', buf(instance({ payload: { weight } })));
    assert.equal(valueOf(w('4')).weight, 4);
    assert.equal(valueOf(w(1)).weight, 1);
    assert.equal(valueOf(w(null)).weight, undefined);
    const reason = 'Curator ServiceInstance: payload "weight" must be a positive integer';
    for (const bad of [0, -1, 1.5, 'x', '1.0', true]) assert.deepEqual(w(bad), { ok: false, reason }, String(bad));
    const zone = (z: unknown) => valueOf(decodeCurator('n', buf(instance({ payload: { zone: z } })))).zone;
    assert.equal(zone(''), undefined);
    assert.equal(zone(7), undefined);
  });

  it('curator string payload becomes metadata.payload; enabled false marks the endpoint critical', () => {
    assert.deepEqual(valueOf(decodeCurator('n', buf(instance({ payload: 'hello' })))).metadata, {
      payload: 'hello',
    });
    assert.deepEqual(valueOf(decodeCurator('n', buf(instance({ payload: 5 })))).metadata, {});
    assert.equal(valueOf(decodeCurator('n', buf(instance({ enabled: false })))).health, 'critical');
    assert.equal(valueOf(decodeCurator('n', buf(instance({ enabled: true })))).health, undefined);
  });

  it('a Curator document round-trips through encodeCurator and decodeCurator', () => {
    const s = spec({ weight: 5, zone: 'z', metadata: { a: 'b' } });
    assert.deepEqual(decodeCurator('ignored', encodeCurator(s, 1)), {
      ok: true,
      value: { id: 'i1', host: '127.0.0.1', port: 8080, metadata: { a: 'b' }, weight: 5, zone: 'z' },
    });
  });
});

// Spring Cloud Zookeeper registers a Curator ServiceInstance whose payload is its ZookeeperInstance
// (fields id, name, metadata: Map<String, String>), typed by Jackson's "@class".
describe('ZooKeeper curator-payload=spring-cloud (Spring Cloud Zookeeper ZookeeperInstance)', () => {
  const SPRING = 'org.springframework.cloud.zookeeper.discovery.ZookeeperInstance';

  it('encodes the exact ServiceInstance<ZookeeperInstance> document; weight and zone as metadata strings', () => {
    const s = spec({ weight: 2, zone: 'eu-1', metadata: { version: 'v2', lane: 'blue' } });
    assert.equal(
      encodeCurator(s, 1700, 'spring-cloud').toString(),
      '{"name":"api","id":"i1","address":"127.0.0.1","port":8080,"sslPort":null,' +
        `"payload":{"@class":"${SPRING}","id":"i1","name":"api",` +
        '"metadata":{"version":"v2","lane":"blue","weight":"2","zone":"eu-1"}},' +
        '"registrationTimeUTC":1700,"serviceType":"DYNAMIC","uriSpec":null,"enabled":true}',
    );
    // The default weight (1) and no zone are not written; the spec's metadata is not changed.
    const plain = spec({ metadata: { a: 'b' } });
    assert.deepEqual(JSON.parse(encode('curator', plain, 5, 'spring-cloud').toString()).payload, {
      '@class': SPRING,
      id: 'i1',
      name: 'api',
      metadata: { a: 'b' },
    });
    assert.deepEqual(plain.metadata, { a: 'b' });
  });

  it('decodes its own document back: endpoint from the instance, metadata from the ZookeeperInstance', () => {
    const s = spec({ weight: 2, zone: 'eu-1', metadata: { version: 'v2' } });
    assert.deepEqual(decode('curator', 'node', encode('curator', s, 1700, 'spring-cloud')), {
      ok: true,
      // weight and zone travel in Spring's metadata (it has no field for them) and are read back as metadata.
      value: { id: 'i1', host: '127.0.0.1', port: 8080, metadata: { version: 'v2', weight: '2', zone: 'eu-1' } },
    });
  });

  it('decodes a document as a Spring Cloud service writes it (uriSpec parts, payload id not the instance id)', () => {
    const doc = {
      name: 'orders',
      id: '5c3e0a4e-9e8f-4b52-9d4d-1f0e6b2a7c10',
      address: '127.0.0.1',
      port: 8081,
      sslPort: null,
      payload: {
        '@class': SPRING,
        id: 'orders-1',
        name: 'orders',
        metadata: { instance_status: 'UP', zone: 'eu-1' },
      },
      registrationTimeUTC: 1700000000000,
      serviceType: 'DYNAMIC',
      uriSpec: {
        parts: [
          { value: 'scheme', variable: true },
          { value: '://', variable: false },
          { value: 'address', variable: true },
          { value: ':', variable: false },
          { value: 'port', variable: true },
        ],
      },
    };
    assert.deepEqual(decodeCurator('5c3e0a4e-9e8f-4b52-9d4d-1f0e6b2a7c10', buf(doc)), {
      ok: true,
      value: {
        id: '5c3e0a4e-9e8f-4b52-9d4d-1f0e6b2a7c10',
        host: '127.0.0.1',
        port: 8081,
        metadata: { instance_status: 'UP', zone: 'eu-1' },
      },
    });
  });

  it('a malformed Spring Cloud node is skipped and reported with its path; the others are served', () => {
    const good = encode('curator', spec({ metadata: { version: 'v2' } }), 1700, 'spring-cloud');
    const noPort = JSON.parse(encode('curator', spec({ id: 'i3', port: 8083 }), 1700, 'spring-cloud').toString());
    noPort.port = null;
    const nodes = new Map<string, NodeState>([
      ['i1', { decoded: decode('curator', 'i1', good), mzxid: 7n }],
      ['i2', { decoded: decode('curator', 'i2', good.subarray(0, good.length - 20)), mzxid: 8n }],
      ['i3', { decoded: decode('curator', 'i3', buf(noPort)), mzxid: 9n }],
    ]);
    const v = assembleNodes('/services/api', nodes, 5n);
    assert.deepEqual(
      v.endpoints.map((e) => [e.id, e.host, e.port, e.metadata]),
      [['i1', '127.0.0.1', 8080, { version: 'v2' }]],
    );
    assert.deepEqual(
      v.bad.map((b) => b.key),
      ['/services/api/i2', '/services/api/i3'],
    );
    assert.match(v.bad[0].reason, /^not valid JSON \(.+\)$/);
    assert.equal(v.bad[1].reason, 'Curator ServiceInstance: "port" (or "sslPort") must be an integer in 1..65535');
    assert.equal(v.revision, '9');
  });
});
