import assert from 'node:assert/strict';
import { ConfigError } from './errors';
import {
  parseDuration,
  parseRegistryUrl,
  redactFreeText,
  redactOptions,
  validateOptions,
  type OptionsSchema,
} from './options';

// Options and registry URLs, value by value: what each input becomes, and the exact error (naming
// the field) for what is refused.
const schema: OptionsSchema = {
  s: { type: 'string', doc: 'a string' },
  e: { type: 'enum', values: ['a', 'b'], doc: 'an enum' },
  b: { type: 'boolean', doc: 'a flag' },
  i: { type: 'integer', min: 1, max: 10, doc: 'an integer' },
  n: { type: 'number', min: 0.5, doc: 'a number' },
  m: { type: 'number', max: 2, doc: 'a capped number' },
  f: { type: 'number', doc: 'any number' },
  d: { type: 'duration', min: 10, max: 60_000, doc: 'a duration' },
  l: { type: 'list', doc: 'a list' },
  secret: { type: 'string', secret: true, doc: 'a secret' },
  c: { type: 'string', check: (v: string) => (v.startsWith('/') ? undefined : 'must start with "/"'), doc: 'checked' },
};
const ok = (input: Record<string, unknown>) => validateOptions('owner', schema, input);
const refused = (input: Record<string, unknown>, message: string, field: string) =>
  assert.throws(
    () => ok(input),
    (e: unknown) =>
      e instanceof ConfigError && e.message === message && (e as ConfigError & { field?: string }).field === field,
    message,
  );

describe('validateOptions: values and exact errors', () => {
  it('booleans: true, "true", "1" and "" are true; false, "false" and "0" are false; anything else is refused', () => {
    for (const t of [true, 'true', '1', '']) assert.equal(ok({ b: t }).b, true, JSON.stringify(t));
    for (const f of [false, 'false', '0']) assert.equal(ok({ b: f }).b, false, JSON.stringify(f));
    refused({ b: 'yes' }, 'owner: "b" must be true or false (got "yes")', 'b');
    refused({ b: 2 }, 'owner: "b" must be true or false (got 2)', 'b');
  });

  it('integers and numbers: strings are parsed, ranges are inclusive, the message says the range', () => {
    assert.equal(ok({ i: '3' }).i, 3);
    assert.equal(ok({ i: 1 }).i, 1);
    assert.equal(ok({ i: 10 }).i, 10);
    refused({ i: 0 }, 'owner: "i" must be an integer between 1 and 10 (got 0)', 'i');
    refused({ i: 11 }, 'owner: "i" must be an integer between 1 and 10 (got 11)', 'i');
    refused({ i: 2.5 }, 'owner: "i" must be an integer between 1 and 10 (got 2.5)', 'i');
    refused({ i: ' ' }, 'owner: "i" must be an integer between 1 and 10 (got " ")', 'i');
    refused({ i: true }, 'owner: "i" must be an integer between 1 and 10 (got true)', 'i');
    assert.equal(ok({ n: 0.5 }).n, 0.5);
    assert.equal(ok({ n: '2.5' }).n, 2.5);
    refused({ n: 0.4 }, 'owner: "n" must be a number of at least 0.5 (got 0.4)', 'n');
    refused({ n: 'Infinity' }, 'owner: "n" must be a number of at least 0.5 (got "Infinity")', 'n');
    assert.equal(ok({ m: 2 }).m, 2);
    refused({ m: 3 }, 'owner: "m" must be a number of at most 2 (got 3)', 'm');
    assert.equal(ok({ f: -7 }).f, -7);
    refused({ f: 'x' }, 'owner: "f" must be a number (got "x")', 'f');
  });

  it('durations: "250ms", "10s", "1.5m", "2h", bare ms; the range in ms, inclusive', () => {
    assert.equal(ok({ d: '10ms' }).d, 10);
    assert.equal(ok({ d: '1.5s' }).d, 1500);
    assert.equal(ok({ d: '1m' }).d, 60_000);
    assert.equal(ok({ d: 30 }).d, 30);
    refused({ d: '9' }, 'owner: "d" must be a duration (e.g. "500ms", "10s") between 10ms and 60000ms (got "9")', 'd');
    refused(
      { d: '61s' },
      'owner: "d" must be a duration (e.g. "500ms", "10s") between 10ms and 60000ms (got "61s")',
      'd',
    );
    refused(
      { d: '5 min' },
      'owner: "d" must be a duration (e.g. "500ms", "10s") between 10ms and 60000ms (got "5 min")',
      'd',
    );
  });

  it('parseDuration: units, rounding, and what is not a duration', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration(' 10s '), 10_000);
    assert.equal(parseDuration('1.5m'), 90_000);
    assert.equal(parseDuration('2h'), 7_200_000);
    assert.equal(parseDuration('1.0004s'), 1000);
    assert.equal(parseDuration('1.0006s'), 1001);
    assert.equal(parseDuration(0), 0);
    assert.equal(parseDuration(-1), undefined);
    assert.equal(parseDuration(Number.POSITIVE_INFINITY), undefined);
    assert.equal(parseDuration('-1s'), undefined);
    assert.equal(parseDuration('1d'), undefined);
    assert.equal(parseDuration(null), undefined);
  });

  it('strings, enums and lists', () => {
    assert.equal(ok({ s: 'x' }).s, 'x');
    refused({ s: 1 }, 'owner: "s" must be a string (got 1)', 's');
    assert.equal(ok({ e: 'b' }).e, 'b');
    refused({ e: 'c' }, 'owner: "e" must be one of "a", "b" (got "c")', 'e');
    refused({ e: 1 }, 'owner: "e" must be one of "a", "b" (got 1)', 'e');
    assert.deepEqual(ok({ l: ' a, b ,,c ' }).l, ['a', 'b', 'c']);
    assert.deepEqual(ok({ l: ['x', 'y'] }).l, ['x', 'y']);
    refused({ l: ['x', 1] }, 'owner: "l" must be a comma-separated list (got ["x",1])', 'l');
    refused({ l: 5 }, 'owner: "l" must be a comma-separated list (got 5)', 'l');
  });

  it('a secret value is never shown in the error; a check() message follows the field name', () => {
    refused({ secret: 5 }, 'owner: "secret" must be a string', 'secret');
    assert.equal(ok({ c: '/x' }).c, '/x');
    refused({ c: 'x' }, 'owner: "c" must start with "/"', 'c');
  });

  it('unknown options name the known ones; required options say their doc; defaults are applied (arrays copied)', () => {
    refused({ zz: 1 }, `owner: unknown option "zz"; known options: ${Object.keys(schema).join(', ')}`, 'zz');
    assert.throws(
      () => validateOptions('o', {}, { a: 1 }),
      /^ConfigError: o: unknown option "a"; known options: \(none\)$/,
    );
    const req: OptionsSchema = { r: { type: 'string', required: true, doc: 'the thing' } };
    assert.throws(
      () => validateOptions('o', req, {}),
      (e: Error) => e.message === 'o: "r" is required: the thing',
    );
    assert.throws(() => validateOptions('o', req, { r: null }), /is required/);
    const list = ['a'];
    const withDefaults: OptionsSchema = {
      l: { type: 'list', default: list, doc: '' },
      n: { type: 'integer', default: 3, doc: '' },
      u: { type: 'string', doc: '' },
    };
    const out = validateOptions<{ l: string[]; n: number }>('o', withDefaults, {});
    assert.deepEqual(out, { l: ['a'], n: 3 });
    assert.notEqual(out.l, list, 'a copy of the default array');
  });

  it('redactOptions replaces set secret values with ***', () => {
    assert.deepEqual(redactOptions(schema, { secret: 'pw', s: 'x', other: 1 }), { secret: '***', s: 'x', other: 1 });
    assert.deepEqual(redactOptions(schema, { secret: undefined }), { secret: undefined });
  });
});

describe('parseRegistryUrl: parts and redaction', () => {
  it('splits scheme, hosts, path and params; lower-cases the scheme', () => {
    const u = parseRegistryUrl('ETCD://h1:2379,[::1]:2380,h3/base%20dir?prefix=/x&ttl=5s#frag');
    assert.equal(u.scheme, 'etcd');
    assert.deepEqual(u.hosts, [{ host: 'h1', port: 2379 }, { host: '::1', port: 2380 }, { host: 'h3' }]);
    assert.equal(u.path, '/base dir');
    assert.deepEqual(u.params, { prefix: '/x', ttl: '5s' });
    assert.equal(u.redacted, 'etcd://h1:2379,[::1]:2380,h3/base%20dir?prefix=/x&ttl=5s');
    assert.equal(parseRegistryUrl('memory:').redacted, 'memory:');
    assert.equal(parseRegistryUrl('file:/tmp/reg.json').path, '/tmp/reg.json');
  });

  it('user info is decoded, and redacted as user:***@; secret params as ***', () => {
    const u = parseRegistryUrl('consul://al%40ice:p%3Ass@h:8500?token=abc&dc=x');
    assert.equal(u.username, 'al@ice');
    assert.equal(u.password, 'p:ss');
    assert.equal(u.redacted, 'consul://al%40ice:***@h:8500?token=***&dc=x');
    const v = parseRegistryUrl('consul://bob@h');
    assert.equal(v.username, 'bob');
    assert.equal(v.password, undefined);
    assert.equal(v.redacted, 'consul://bob@h');
  });

  it('refuses, naming the field: bad URL, bad host, bad port, repeated parameter, bad percent-encoding', () => {
    const refuses = (url: string, message: string, field: string) =>
      assert.throws(
        () => parseRegistryUrl(url),
        (e: unknown) => e instanceof ConfigError && e.message === message && (e as { field?: string }).field === field,
        url,
      );
    refuses(
      'no scheme',
      'registry URL "no scheme" is not a URL of the form scheme://host:port/path?option=value',
      'registry',
    );
    refuses('etcd://a:b:c', 'etcd: "a:b:c" is not a valid host[:port]', 'hosts');
    refuses('etcd://h:0', 'etcd: port in "h:0" must be in 1..65535', 'hosts');
    refuses('etcd://h:65536', 'etcd: port in "h:65536" must be in 1..65535', 'hosts');
    refuses('etcd://h?a=1&a=2', 'etcd: parameter "a" is given more than once', 'a');
    refuses('etcd://h/%zz', 'etcd: the URL path is not validly percent-encoded', 'path');
    refuses('etcd://%zz@h', 'etcd: the user info (user:password@) is not validly percent-encoded', 'username');
    assert.deepEqual(parseRegistryUrl('etcd://h:65535').hosts, [{ host: 'h', port: 65535 }]);
    assert.deepEqual(parseRegistryUrl('etcd://h:').hosts, [{ host: 'h' }]);
    assert.throws(() => parseRegistryUrl(5 as unknown as string), /^TypeError: registry URL must be a string$/);
  });

  it('redactFreeText hides user info and secret parameters of a string that is not a URL', () => {
    assert.equal(redactFreeText('x://u:p@h y?token=t&password=q&a=1'), 'x://***@h y?token=***&password=***&a=1');
    assert.equal(redactFreeText('plain'), 'plain');
  });
});
