import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  CACHE_FORMAT,
  CACHE_VERSION,
  CachedResolver,
  cacheDirFor,
  cacheFileFor,
  DEFAULT_CACHE_START_WAIT_MS,
  parseCacheFile,
} from './cache';
import { AuthFailedError, BadEntryError, ClosedError, RegistryUnavailableError } from './errors';
import type { Endpoint, Logger, Resolver, Snapshot } from './model';

// What the last-known-good cache writes and skips, and when it serves from disk, without a registry:
// the inner resolver is a hand-driven one (push() delivers a snapshot to its watchers).

const REGISTRY = 'etcd://127.0.0.1:2379';
const ep = (port: number, extra: Partial<Endpoint> = {}): Endpoint => ({
  id: `127.0.0.1:${port}`,
  host: '127.0.0.1',
  port,
  metadata: {},
  ...extra,
});

class DrivenResolver implements Resolver {
  readonly watchers = new Map<string, Set<(s: Snapshot) => void>>();
  closed = 0;
  refreshed: string[] = [];
  statusList: { service: string; endpoints: Endpoint[] }[] = [];
  watch(service: string, cb: (s: Snapshot) => void) {
    const set = this.watchers.get(service) ?? new Set();
    set.add(cb);
    this.watchers.set(service, set);
    return { close: () => void set.delete(cb) };
  }
  push(s: Snapshot): void {
    for (const cb of this.watchers.get(s.service) ?? []) cb(s);
  }
  async resolve(): Promise<Endpoint[]> {
    return [];
  }
  refresh(service: string): void {
    this.refreshed.push(service);
  }
  status() {
    return this.statusList as never;
  }
  async close(): Promise<void> {
    this.closed++;
  }
}

function recordingLogger() {
  const lines: { level: string; obj: Record<string, unknown> }[] = [];
  const at = (level: string) => (obj: Record<string, unknown>) => void lines.push({ level, obj });
  return { lines, log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } as Logger };
}

describe('last-known-good cache (no registry: a hand-driven inner resolver)', () => {
  let dir: string;
  const cleanups: (() => Promise<void> | void)[] = [];
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'wayfinder-cache-unit-'));
  });
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
    rmSync(dir, { recursive: true, force: true });
  });

  function setup(opts: { startWaitMs?: number } = {}) {
    const inner = new DrivenResolver();
    const { lines, log } = recordingLogger();
    const cache = new CachedResolver(inner, {
      dir,
      registry: REGISTRY,
      logger: log,
      startWaitMs: opts.startWaitMs ?? 0,
    });
    cleanups.push(() => cache.close());
    const got: Snapshot[] = [];
    const watch = (service = 'api') => cache.watch(service, (s) => got.push(s));
    const file = (service = 'api') => cacheFileFor(dir, REGISTRY, service);
    const seed = (endpoints: Endpoint[], service = 'api', extra: Record<string, unknown> = {}) => {
      mkdirSync(path.dirname(file(service)), { recursive: true });
      writeFileSync(
        file(service),
        JSON.stringify({
          format: CACHE_FORMAT,
          version: CACHE_VERSION,
          registry: REGISTRY,
          service,
          savedAt: '2026-01-01T00:00:00.000Z',
          revision: '7',
          endpoints,
          ...extra,
        }),
      );
    };
    return { inner, cache, got, watch, file, seed, lines };
  }

  it('file layout: <dir>/<scheme>-<first 16 hex of sha256(registry)>/<service, ":" as %3a>.json', () => {
    // sha256("etcd://127.0.0.1:2379") = 7ab2c878681208e5… (printf %s … | sha256sum)
    assert.equal(cacheDirFor('/var/cache/wf', REGISTRY), '/var/cache/wf/etcd-7ab2c878681208e5');
    assert.equal(cacheFileFor('/c', REGISTRY, 'ns:api'), '/c/etcd-7ab2c878681208e5/ns%3aapi.json');
    assert.equal(cacheFileFor('/c', REGISTRY, 'a.b_c-d'), '/c/etcd-7ab2c878681208e5/a.b_c-d.json');
    assert.match(cacheDirFor('/c', 'no scheme here'), /^\/c\/registry-[0-9a-f]{16}$/);
    assert.match(cacheDirFor('/c', 'ZK+Curator://h'), /^\/c\/zk\+curator-[0-9a-f]{16}$/);
    assert.equal(DEFAULT_CACHE_START_WAIT_MS, 3000);
  });

  it('writes a good snapshot: format, version, registry, service, revision, endpoints and an ISO savedAt', async () => {
    const { inner, cache, watch, file } = setup();
    watch();
    inner.push({ service: 'api', endpoints: [ep(1, { weight: 2 })], revision: '42' });
    await cache.flush();
    const doc = JSON.parse(readFileSync(file(), 'utf8'));
    assert.match(doc.savedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.deepEqual(
      { ...doc, savedAt: 'x' },
      {
        format: 'wayfinder-cache',
        version: 1,
        registry: REGISTRY,
        service: 'api',
        savedAt: 'x',
        revision: '42',
        endpoints: [ep(1, { weight: 2 })],
      },
    );
    assert.ok(readFileSync(file(), 'utf8').endsWith('}\n'), 'pretty-printed, newline-terminated');
  });

  it('writes a snapshot whose only error is BAD_ENTRY (the good part of the set)', async () => {
    const { inner, cache, watch, file } = setup();
    watch();
    inner.push({
      service: 'api',
      endpoints: [ep(1)],
      error: new BadEntryError([{ key: 'k', reason: 'bad' }]),
    });
    await cache.flush();
    assert.deepEqual(JSON.parse(readFileSync(file(), 'utf8')).endpoints, [ep(1)]);
  });

  it('skips snapshots with any other error (REGISTRY_UNAVAILABLE, AUTH_FAILED), even with endpoints', async () => {
    const { inner, cache, watch, file, got } = setup();
    watch();
    inner.push({ service: 'api', endpoints: [ep(1)], error: new RegistryUnavailableError('down') });
    inner.push({ service: 'api', endpoints: [ep(2)], error: new AuthFailedError('denied') });
    await cache.flush();
    assert.equal(existsSync(file()), false);
    assert.equal(got.length, 2, 'both still delivered');
  });

  it('skips an unchanged set (a new revision alone does not rewrite), writes again when the set changes', async () => {
    const { inner, cache, watch, file } = setup();
    watch();
    inner.push({ service: 'api', endpoints: [ep(1)], revision: '1' });
    await cache.flush();
    rmSync(file());
    inner.push({ service: 'api', endpoints: [ep(1)], revision: '2' });
    await cache.flush();
    assert.equal(existsSync(file()), false, 'same set: not rewritten');
    inner.push({ service: 'api', endpoints: [ep(1), ep(2)], revision: '3' });
    await cache.flush();
    const doc = JSON.parse(readFileSync(file(), 'utf8'));
    assert.deepEqual(doc.endpoints, [ep(1), ep(2)]);
    assert.equal(doc.revision, '3');
  });

  it('a failed write is logged and retried with the next snapshot of the same set', async () => {
    const { inner, cache, watch, file, lines } = setup();
    mkdirSync(path.dirname(path.dirname(file())), { recursive: true });
    writeFileSync(path.dirname(file()), 'not a directory');
    watch();
    inner.push({ service: 'api', endpoints: [ep(1)] });
    await cache.flush();
    const warns = lines.filter((l) => l.level === 'warn');
    assert.equal(warns.length, 1);
    assert.equal(warns[0].obj.service, 'api');
    rmSync(path.dirname(file()));
    inner.push({ service: 'api', endpoints: [ep(1)] });
    await cache.flush();
    assert.deepEqual(JSON.parse(readFileSync(file(), 'utf8')).endpoints, [ep(1)]);
  });

  it('serves the cached set, stale with the error attached, when the registry fails before any good set', async () => {
    const { inner, watch, seed, got } = setup();
    seed([ep(5)]);
    watch();
    const down = new RegistryUnavailableError('down');
    inner.push({ service: 'api', endpoints: [], error: down });
    assert.equal(got.length, 1);
    assert.deepEqual(got[0], { service: 'api', endpoints: [ep(5)], revision: '7', error: down, stale: true });
    const again = new RegistryUnavailableError('still down');
    inner.push({ service: 'api', endpoints: [], error: again });
    assert.deepEqual(got[1], { service: 'api', endpoints: [ep(5)], error: again, stale: true });
    inner.push({ service: 'api', endpoints: [ep(6)] });
    assert.deepEqual(got[2], { service: 'api', endpoints: [ep(6)] });
    inner.push({ service: 'api', endpoints: [], error: down });
    assert.deepEqual(got[3], { service: 'api', endpoints: [], error: down }, 'after a good set: passed through');
  });

  it('hands out copies of the cached endpoints: a consumer that edits them does not change the next delivery', () => {
    const { inner, watch, seed, got } = setup();
    seed([ep(5, { metadata: { a: '1' } })]);
    watch();
    inner.push({ service: 'api', endpoints: [], error: new RegistryUnavailableError('down') });
    got[0].endpoints[0].metadata.a = 'changed';
    got[0].endpoints[0].port = 9;
    inner.push({ service: 'api', endpoints: [], error: new RegistryUnavailableError('down') });
    assert.deepEqual(got[1].endpoints, [ep(5, { metadata: { a: '1' } })]);
  });

  it('never answers AUTH_FAILED, or an error that came with endpoints, from the cache', () => {
    const { inner, watch, seed, got } = setup();
    seed([ep(5)]);
    watch();
    const denied = new AuthFailedError('denied');
    inner.push({ service: 'api', endpoints: [], error: denied });
    const partial = new RegistryUnavailableError('partial');
    inner.push({ service: 'api', endpoints: [ep(1)], error: partial });
    assert.deepEqual(got, [
      { service: 'api', endpoints: [], error: denied },
      { service: 'api', endpoints: [ep(1)], error: partial },
    ]);
  });

  it('a good set seen by one watch means a later watch of that service is not served from the cache', () => {
    const { inner, cache, watch, seed } = setup();
    seed([ep(5)]);
    watch();
    inner.push({ service: 'api', endpoints: [ep(1)] });
    const second: Snapshot[] = [];
    cache.watch('api', (s) => second.push(s));
    const down = new RegistryUnavailableError('down');
    inner.push({ service: 'api', endpoints: [], error: down });
    assert.deepEqual(second, [{ service: 'api', endpoints: [], error: down }]);
  });

  it('without a cache file, the error snapshot is delivered as is', () => {
    const { inner, watch, got, lines } = setup();
    watch();
    const down = new RegistryUnavailableError('down');
    inner.push({ service: 'api', endpoints: [], error: down });
    assert.deepEqual(got, [{ service: 'api', endpoints: [], error: down }]);
    assert.deepEqual(lines, [], 'an absent file is not worth a warning');
  });

  it('a corrupt cache file is ignored with a warning naming the service and file', () => {
    const { inner, watch, seed, got, lines, file } = setup();
    seed([{ host: '', port: 1 } as Endpoint]);
    watch();
    const down = new RegistryUnavailableError('down');
    inner.push({ service: 'api', endpoints: [], error: down });
    assert.deepEqual(got, [{ service: 'api', endpoints: [], error: down }]);
    assert.deepEqual(lines, [{ level: 'warn', obj: { service: 'api', file: file() } }]);
  });

  it('no answer within startWaitMs: the cached set is served with a REGISTRY_UNAVAILABLE error', async () => {
    const { inner, watch, seed, got } = setup({ startWaitMs: 30 });
    seed([ep(5)]);
    watch();
    await until(() => got.length === 1, 'the cache served after startWaitMs');
    assert.equal(got[0].stale, true);
    assert.deepEqual(got[0].endpoints, [ep(5)]);
    assert.equal(got[0].error?.code, 'REGISTRY_UNAVAILABLE');
    assert.match(got[0].error!.message, /within 30 ms/);
    inner.push({ service: 'api', endpoints: [ep(6)] });
    assert.deepEqual(got[1], { service: 'api', endpoints: [ep(6)] });
  });

  it('a good answer before startWaitMs cancels the timer: the cache is never served', async () => {
    const { inner, watch, seed, got } = setup({ startWaitMs: 30 });
    seed([ep(5)]);
    watch();
    inner.push({ service: 'api', endpoints: [ep(6)] });
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(got, [{ service: 'api', endpoints: [ep(6)] }]);
  });

  it('a closed watch gets nothing more, from the registry or from the start timer', async () => {
    const { inner, cache, seed, got } = setup({ startWaitMs: 30 });
    seed([ep(5)]);
    const w = cache.watch('api', (s) => got.push(s));
    w.close();
    w.close();
    inner.push({ service: 'api', endpoints: [ep(6)] });
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(got, []);
  });

  it('status() shows a service answered from the cache as stale with the cached endpoints, until a good set', () => {
    const { inner, cache, watch, seed } = setup();
    seed([ep(5)]);
    inner.statusList = [
      { service: 'api', endpoints: [] },
      { service: 'web', endpoints: [ep(9)] },
    ];
    watch();
    inner.push({ service: 'api', endpoints: [], error: new RegistryUnavailableError('down') });
    assert.deepEqual(cache.status(), [
      { service: 'api', endpoints: [ep(5)], stale: true },
      { service: 'web', endpoints: [ep(9)] },
    ]);
    inner.push({ service: 'api', endpoints: [ep(6)] });
    assert.deepEqual(cache.status(), inner.statusList);
  });

  it('refresh() and close() reach the inner resolver; watch() after close() is refused', async () => {
    const { inner, cache } = setup();
    cache.refresh('api');
    assert.deepEqual(inner.refreshed, ['api']);
    await cache.close();
    await cache.close();
    assert.equal(inner.closed, 1);
    assert.throws(() => cache.watch('api', () => {}), ClosedError);
    assert.throws(() => cache.watch('bad name', () => {}), TypeError);
  });

  it('refuses a missing or empty dir with a TypeError naming "dir"', () => {
    assert.throws(() => new CachedResolver(new DrivenResolver(), { dir: '', registry: REGISTRY }), /"dir"/);
    assert.throws(
      () => new CachedResolver(new DrivenResolver(), undefined as unknown as { dir: string; registry: string }),
      /"dir"/,
    );
    assert.equal(
      new CachedResolver(new DrivenResolver(), { dir: '/x', registry: REGISTRY }).directory,
      cacheDirFor('/x', REGISTRY),
    );
  });
});

describe('parseCacheFile: what is refused, and why', () => {
  const good = {
    format: CACHE_FORMAT,
    version: CACHE_VERSION,
    registry: REGISTRY,
    service: 'api',
    savedAt: 'when',
    revision: '3',
    endpoints: [ep(1)],
  };
  const parse = (o: unknown, service = 'api') => parseCacheFile(typeof o === 'string' ? o : JSON.stringify(o), service);

  it('accepts a good file with its endpoints, revision and savedAt', () => {
    assert.deepEqual(parse(good), { ok: true, endpoints: [ep(1)], revision: '3', savedAt: 'when' });
  });

  it('a non-string revision is dropped and a missing savedAt reads as empty', () => {
    assert.deepEqual(parse({ ...good, revision: 3, savedAt: undefined }), {
      ok: true,
      endpoints: [ep(1)],
      revision: undefined,
      savedAt: '',
    });
  });

  for (const [what, doc, reason] of [
    ['bad JSON', '{', /^not JSON \(/],
    ['an array', [], /^not an object$/],
    ['null', 'null', /^not an object$/],
    ['a number', '3', /^not an object$/],
    ['another format', { ...good, format: 'x' }, /^not a wayfinder-cache v1 file$/],
    ['another version', { ...good, version: 2 }, /^not a wayfinder-cache v1 file$/],
    ['another service', { ...good, service: 'web' }, /^holds service "web", not "api"$/],
    ['endpoints not an array', { ...good, endpoints: {} }, /^"endpoints" is not an array$/],
    ['an invalid endpoint', { ...good, endpoints: [ep(1), { host: 'h', port: 0 }] }, /^endpoint 1: "port"/],
  ] as const) {
    it(`refuses ${what}`, () => {
      const r = parse(doc);
      assert.equal(r.ok, false);
      assert.match((r as { reason: string }).reason, reason);
    });
  }
});

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
