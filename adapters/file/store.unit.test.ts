import assert from 'node:assert/strict';
import {
  DocFormatError,
  FORMAT,
  entryExpiry,
  liveServices,
  parseDoc,
  purgeExpired,
  serviceView,
  type RegistryDoc,
} from './store';

// The file registry's document, value by value: what a file's text parses to (or the error it is
// refused with), when an entry expires, and which endpoints, bad entries and next expiry a service
// has at a given instant. No file: pure functions on crafted documents.

const NOW = 1_000_000;
const TTL = 10_000;
const doc = (services: Record<string, unknown>): RegistryDoc => ({ format: FORMAT, version: 1, revision: 1, services });
const formatError = (text: string, message: string | RegExp, newer = false) =>
  assert.throws(
    () => parseDoc(text),
    (e: Error) =>
      e instanceof DocFormatError &&
      e.newer === newer &&
      (typeof message === 'string' ? e.message === message : message.test(e.message)),
    `expected ${JSON.stringify(text)} to be refused`,
  );
/** Endpoint as the core hands it on. */
const ep = (id: string, host: string, port: number) => ({ id, host, port, metadata: {} });

describe('file registry document (exact parse, expiry and views)', () => {
  it('an empty or blank file is an empty registry', () => {
    const empty = { format: FORMAT, version: 1, revision: 0, services: {} };
    assert.deepEqual(parseDoc(''), empty);
    assert.deepEqual(parseDoc(' \n\t'), empty);
  });

  it('a document: revision if a safe integer, updated if a string, services as written; format is ours', () => {
    const services = { echo: { a: { host: '127.0.0.1', port: 1 } } };
    assert.deepEqual(
      parseDoc(JSON.stringify({ format: 'other', version: 1, revision: 7, updated: '2026-11-27T00:00:00Z', services })),
      { format: FORMAT, version: 1, revision: 7, updated: '2026-11-27T00:00:00Z', services },
    );
    assert.deepEqual(parseDoc('{}'), { format: FORMAT, version: 1, revision: 0, updated: undefined, services: {} });
    const rev = (revision: unknown) => parseDoc(JSON.stringify({ revision })).revision;
    assert.equal(rev(-3), -3);
    assert.equal(rev(0), 0);
    assert.equal(rev(2 ** 53 - 1), 2 ** 53 - 1);
    assert.equal(rev(2 ** 53), 0);
    assert.equal(rev(1.5), 0);
    assert.equal(rev('7'), 0);
    assert.equal(parseDoc('{"updated":5}').updated, undefined);
    assert.equal(parseDoc('{"version":0}').version, 1);
    assert.equal(parseDoc('{"version":1}').version, 1);
  });

  it('refuses text that is not a registry, with the reason; a newer version says so', () => {
    formatError('{', /^not valid JSON \(.+\)$/);
    for (const text of ['[]', 'null', '3', '"x"', 'true']) formatError(text, 'the top level must be a JSON object');
    formatError('{"version":2}', 'format version 2 is newer than this wayfinder reads (1)', true);
    formatError('{"version":1.5}', 'format version 1.5 is newer than this wayfinder reads (1)', true);
    formatError('{"version":"1"}', 'format version "1" is newer than this wayfinder reads (1)', true);
    formatError('{"version":null}', 'format version null is newer than this wayfinder reads (1)', true);
    for (const services of ['[]', '"x"', 'null', '1']) {
      formatError(`{"services":${services}}`, '"services" must be an object');
    }
  });

  it('expiry: heartbeat + own ttl, else + the default ttl; no heartbeat is static (never expires)', () => {
    assert.deepEqual(entryExpiry({ heartbeat: 1000, ttl: 500 }, TTL), { expires: 1500 });
    assert.deepEqual(entryExpiry({ heartbeat: 1000 }, TTL), { expires: 11_000 });
    assert.deepEqual(entryExpiry({ heartbeat: 1000, ttl: null }, TTL), { expires: 11_000 });
    assert.deepEqual(entryExpiry({ heartbeat: 1000, ttl: 0.5 }, TTL), { expires: 1000.5 });
    assert.deepEqual(entryExpiry({ heartbeat: 0, ttl: 1 }, TTL), { expires: 1 });
    assert.deepEqual(entryExpiry({ host: 'h', ttl: 5 }, TTL), { expires: Infinity });
    for (const raw of [null, 'x', 3, [1], undefined]) assert.deepEqual(entryExpiry(raw, TTL), { expires: Infinity });
  });

  it('expiry: a heartbeat that is not a finite number, or a ttl that is not positive, is the reason', () => {
    const hb = { bad: '"heartbeat" must be a timestamp in epoch milliseconds' };
    for (const heartbeat of ['1000', null, NaN, Infinity, -Infinity, {}])
      assert.deepEqual(entryExpiry({ heartbeat }, TTL), hb);
    const ttl = { bad: '"ttl" must be a positive number of milliseconds' };
    for (const t of [0, -1, '5', NaN, Infinity, {}])
      assert.deepEqual(entryExpiry({ heartbeat: 1000, ttl: t }, TTL), ttl);
    assert.deepEqual(entryExpiry({ heartbeat: 1000 }, 0), ttl);
  });

  it('a service view: live and static entries, the key as id when none, the earliest expiry of the live ones', () => {
    const d = doc({
      echo: {
        s: { host: '127.0.0.1', port: 1 },
        own: { id: 'mine', host: '127.0.0.1', port: 2 },
        late: { host: '127.0.0.1', port: 3, heartbeat: NOW - 100, ttl: 1000 },
        soon: { host: '127.0.0.1', port: 4, heartbeat: NOW - 100, ttl: 500 },
        dflt: { host: '127.0.0.1', port: 5, heartbeat: NOW - TTL + 1 },
        // Listed after the earliest one: the earliest wins, not the last seen.
        later: { host: '127.0.0.1', port: 8, heartbeat: NOW, ttl: 2000 },
        gone: { host: '127.0.0.1', port: 6, heartbeat: NOW - 500, ttl: 500 },
        older: { host: '127.0.0.1', port: 7, heartbeat: NOW - TTL },
      },
    });
    assert.deepEqual(serviceView(d, 'echo', NOW, TTL), {
      endpoints: [
        ep('s', '127.0.0.1', 1),
        ep('mine', '127.0.0.1', 2),
        ep('late', '127.0.0.1', 3),
        ep('soon', '127.0.0.1', 4),
        ep('dflt', '127.0.0.1', 5),
        ep('later', '127.0.0.1', 8),
      ],
      bad: [],
      nextExpiry: NOW + 1,
    });
    // An entry expires at heartbeat + ttl exactly: alive one millisecond before.
    assert.deepEqual(
      serviceView(d, 'echo', NOW - 1, TTL).endpoints.map((e) => e.port),
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
    assert.equal(serviceView(d, 'echo', NOW - 1, TTL).nextExpiry, NOW);
    assert.equal(serviceView(d, 'echo', NOW + 1, TTL).nextExpiry, NOW + 400);
    assert.equal(serviceView(d, 'echo', NOW + 400, TTL).nextExpiry, NOW + 900);
    // Only static entries: nothing expires.
    assert.deepEqual(serviceView(doc({ echo: { s: { host: 'h', port: 1 } } }), 'echo', NOW, TTL), {
      endpoints: [ep('s', 'h', 1)],
      bad: [],
      nextExpiry: undefined,
    });
  });

  it('a service view reports malformed entries (expiry reasons first, then the core checks) and skips them', () => {
    const d = doc({
      echo: {
        a: { host: '127.0.0.1', port: 1, heartbeat: 'x' },
        b: { port: 2 },
        c: { host: '127.0.0.1', port: 3, heartbeat: NOW, ttl: -5 },
        d: 'not an entry',
        e: { host: '127.0.0.1', port: 4 },
      },
    });
    assert.deepEqual(serviceView(d, 'echo', NOW, TTL), {
      endpoints: [ep('e', '127.0.0.1', 4)],
      bad: [
        { key: 'echo/a', reason: '"heartbeat" must be a timestamp in epoch milliseconds' },
        { key: 'echo/c', reason: '"ttl" must be a positive number of milliseconds' },
        { key: 'echo/b', reason: '"host" must be a non-empty string' },
        { key: 'echo/d', reason: 'not an object' },
      ],
      nextExpiry: undefined,
    });
  });

  it('a missing service is empty; a service that is not an object of entries is one bad entry', () => {
    assert.deepEqual(serviceView(doc({}), 'echo', NOW, TTL), { endpoints: [], bad: [] });
    for (const bucket of [[], 'x', null, 3]) {
      assert.deepEqual(serviceView(doc({ echo: bucket }), 'echo', NOW, TTL), {
        endpoints: [],
        bad: [{ key: 'echo', reason: 'a service must map instance ids to entries' }],
      });
    }
  });

  it('live services: those with at least one live valid endpoint, sorted', () => {
    const d = doc({
      zed: { a: { host: 'h', port: 1 } },
      beta: { a: { host: 'h', port: 1, heartbeat: NOW, ttl: 1 } },
      gone: { a: { host: 'h', port: 1, heartbeat: NOW - 1, ttl: 1 } },
      broken: { a: { port: 1 } },
      odd: [],
      none: {},
      alpha: { a: { host: 'h', port: 1, heartbeat: 'x' }, b: { host: 'h', port: 2 } },
    });
    assert.deepEqual(liveServices(d, NOW, TTL), ['alpha', 'beta', 'zed']);
    assert.deepEqual(liveServices(d, NOW + 1, TTL), ['alpha', 'zed']);
  });

  it('purge: drops expired entries and services left empty; keeps static, live and malformed entries and services', () => {
    const d = doc({
      echo: {
        gone: { host: 'h', port: 1, heartbeat: NOW - TTL },
        edge: { host: 'h', port: 2, heartbeat: NOW - 100, ttl: 100 },
        live: { host: 'h', port: 3, heartbeat: NOW - 100, ttl: 101 },
        static: { host: 'h', port: 4 },
        bad: { host: 'h', port: 5, heartbeat: 'x' },
      },
      old: { a: { heartbeat: 1 }, b: { heartbeat: 2, ttl: 5 } },
      empty: {},
      odd: ['kept'],
      none: null,
      list: [],
    });
    assert.equal(purgeExpired(d, NOW, TTL), 4);
    assert.deepEqual(d.services, {
      echo: {
        live: { host: 'h', port: 3, heartbeat: NOW - 100, ttl: 101 },
        static: { host: 'h', port: 4 },
        bad: { host: 'h', port: 5, heartbeat: 'x' },
      },
      odd: ['kept'],
      none: null,
      list: [],
    });
    assert.equal(purgeExpired(d, NOW, TTL), 0);
    assert.equal(purgeExpired(d, NOW + 1, TTL), 1);
    assert.deepEqual(Object.keys(d.services.echo as object), ['static', 'bad']);
  });
});
