import assert from 'node:assert/strict';
import { checkInstanceSpec } from '../../core/endpoint';
import { BadValue, decodeValue, encodeInstance, instanceKey, prefixDir, servicePrefix } from './format';

// The etcd key layouts, value by value: what is written for an instance, and what each stored value
// decodes to (or the BAD_ENTRY reason it is refused with).
const buf = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));
const spec = (extra = {}) => checkInstanceSpec({ service: 'api', host: '127.0.0.1', port: 8080, id: 'i1', ...extra });
const bad = (format: 'wayfinder' | 'grpc-go', value: unknown, reason: string | RegExp) =>
  assert.throws(
    () => decodeValue(format, 'k', buf(value)),
    (e: Error) => e instanceof BadValue && (typeof reason === 'string' ? e.message === reason : reason.test(e.message)),
  );

describe('etcd key format (exact keys and values)', () => {
  it('keys: <prefix as a directory><service>/<id>; an empty prefix is none, as in Go targets', () => {
    assert.equal(servicePrefix('/services', 'api'), '/services/api/');
    assert.equal(servicePrefix('/services/', 'api'), '/services/api/');
    assert.equal(servicePrefix('/', 'api'), '/api/');
    assert.equal(servicePrefix('', 'api'), 'api/');
    assert.equal(servicePrefix('foo/bar', 'api'), 'foo/bar/api/');
    assert.equal(prefixDir('/a/b/'), '/a/b/');
    assert.equal(prefixDir('/a/b'), '/a/b/');
    assert.equal(prefixDir(''), '');
    assert.equal(instanceKey('/services/', { service: 'api', id: 'i1' }), '/services/api/i1');
  });

  it('wayfinder encoding is the registry-neutral instance JSON', () => {
    assert.deepEqual(JSON.parse(encodeInstance('wayfinder', spec({ weight: 3, zone: 'z', metadata: { a: 'b' } }))), {
      id: 'i1',
      service: 'api',
      host: '127.0.0.1',
      port: 8080,
      weight: 3,
      zone: 'z',
      metadata: { a: 'b' },
    });
  });

  it('grpc-go encoding: Op 0, Addr host:port, Metadata null when there is nothing to say', () => {
    assert.equal(encodeInstance('grpc-go', spec()), '{"Op":0,"Addr":"127.0.0.1:8080","Metadata":null}');
  });

  it('grpc-go encoding: weight other than 1 and a zone go into Metadata beside the metadata', () => {
    assert.deepEqual(JSON.parse(encodeInstance('grpc-go', spec({ weight: 4, zone: 'z1', metadata: { a: 'b' } }))), {
      Op: 0,
      Addr: '127.0.0.1:8080',
      Metadata: { a: 'b', weight: 4, zone: 'z1' },
    });
    assert.deepEqual(JSON.parse(encodeInstance('grpc-go', spec({ weight: 1, metadata: { a: 'b' } }))).Metadata, {
      a: 'b',
    });
    assert.equal(JSON.parse(encodeInstance('grpc-go', spec({ host: '::1' }))).Addr, '[::1]:8080');
  });

  it('wayfinder decoding: the object as stored, the key suffix as id when the value has none', () => {
    assert.deepEqual(decodeValue('wayfinder', 'k1', buf({ host: 'h', port: 1 })), { host: 'h', port: 1, id: 'k1' });
    assert.deepEqual(decodeValue('wayfinder', 'k1', buf({ id: 'own', host: 'h', port: 1 })), {
      id: 'own',
      host: 'h',
      port: 1,
    });
    assert.deepEqual(decodeValue('wayfinder', '', buf({ host: 'h', port: 1 })), { host: 'h', port: 1 });
  });

  it('refuses values that are not JSON objects, with the reason', () => {
    for (const f of ['wayfinder', 'grpc-go'] as const) {
      bad(f, '{', 'value is not JSON');
      bad(f, 'null', 'value is not a JSON object');
      bad(f, '[1]', 'value is not a JSON object');
      bad(f, '3', 'value is not a JSON object');
    }
  });

  it('grpc-go decoding: Addr becomes host and port, the key suffix the id (Addr when the suffix is empty)', () => {
    assert.deepEqual(decodeValue('grpc-go', 'k1', buf({ Op: 0, Addr: '10.0.0.1:50051' })), {
      id: 'k1',
      host: '10.0.0.1',
      port: 50051,
    });
    assert.deepEqual(decodeValue('grpc-go', '', buf({ Addr: 'h:1' })), { id: 'h:1', host: 'h', port: 1 });
    assert.deepEqual(decodeValue('grpc-go', 'k', buf({ Addr: '[::1]:80' })), { id: 'k', host: '::1', port: 80 });
  });

  it('grpc-go decoding refuses a missing, empty or malformed Addr, quoting it', () => {
    bad('grpc-go', { Op: 0 }, '"Addr" must be a non-empty "host:port" string');
    bad('grpc-go', { Addr: '' }, '"Addr" must be a non-empty "host:port" string');
    bad('grpc-go', { Addr: 5 }, '"Addr" must be a non-empty "host:port" string');
    bad('grpc-go', { Addr: 'h' }, '"Addr" "h" is not "host:port"');
    bad('grpc-go', { Addr: 'h:123456' }, '"Addr" "h:123456" is not "host:port"');
    bad('grpc-go', { Addr: 'a:b:1' }, '"Addr" "a:b:1" is not "host:port"');
    bad('grpc-go', { Addr: '[zz]:1' }, /^"Addr" "\[zz\]:1" is not/);
    bad('grpc-go', { Addr: 'x'.repeat(150) }, `"Addr" ${JSON.stringify('x'.repeat(100))} is not "host:port"`);
  });

  it('grpc-go Metadata object: values as strings (others JSON-encoded), weight and zone lifted out', () => {
    const d = decodeValue(
      'grpc-go',
      'k',
      buf({ Addr: 'h:1', Metadata: { a: 'x', n: 2, o: { p: 1 }, weight: 3, zone: 'z' } }),
    );
    assert.deepEqual(d, {
      id: 'k',
      host: 'h',
      port: 1,
      metadata: { a: 'x', n: '2', o: '{"p":1}', weight: '3', zone: 'z' },
      weight: 3,
      zone: 'z',
    });
  });

  it('grpc-go Metadata weight: a digit string counts, 0, negatives, fractions and other strings do not', () => {
    const w = (weight: unknown) => decodeValue('grpc-go', 'k', buf({ Addr: 'h:1', Metadata: { weight } })).weight;
    assert.equal(w('7'), 7);
    assert.equal(w(1), 1);
    assert.equal(w(0), undefined);
    assert.equal(w(-2), undefined);
    assert.equal(w(1.5), undefined);
    assert.equal(w('2x'), undefined);
    assert.equal(w(true), undefined);
    const z = (zone: unknown) => decodeValue('grpc-go', 'k', buf({ Addr: 'h:1', Metadata: { zone } })).zone;
    assert.equal(z(''), undefined);
    assert.equal(z(3), undefined);
  });

  it('grpc-go Metadata that is not an object is kept whole under metadata.metadata; null is no metadata', () => {
    const md = (Metadata: unknown) => decodeValue('grpc-go', 'k', buf({ Addr: 'h:1', Metadata })).metadata;
    assert.deepEqual(md('plain'), { metadata: 'plain' });
    assert.deepEqual(md([1, 'a']), { metadata: '[1,"a"]' });
    assert.deepEqual(md(5), { metadata: '5' });
    assert.equal(md(null), undefined);
    assert.equal(md(undefined), undefined);
  });
});
