import assert from 'node:assert/strict';
import { BadEntryError, RegistryUnavailableError, type Endpoint, type Snapshot } from './index';
import { checkServiceName, resolveFirst, WatchResolver, type SourceSink } from './watch-resolver';

// WatchResolver and resolveFirst driven by hand: the adapter side is a sink the test calls.
const ep = (port: number): Endpoint => ({ id: `127.0.0.1:${port}`, host: '127.0.0.1', port, metadata: {} });
const tick = () => new Promise<void>((r) => setImmediate(r));

function setup() {
  const sinks = new Map<string, SourceSink>();
  const stopped: string[] = [];
  const r = new WatchResolver('test', (service, sink) => {
    sinks.set(service, sink);
    return () => void stopped.push(service);
  });
  const got: Snapshot[] = [];
  const w = r.watch('api', (s) => got.push(s));
  return { r, sink: () => sinks.get('api')!, got, w, stopped, sinks };
}

describe('WatchResolver: duplicates, repeats and status (hand-driven sink)', () => {
  it('the same registry error twice is delivered once; a different message or code is delivered again', async () => {
    const { sink, got } = setup();
    sink().update([ep(1)], { revision: '1' });
    await tick();
    sink().error(new RegistryUnavailableError('down'));
    sink().error(new RegistryUnavailableError('down'));
    await tick();
    assert.equal(got.length, 2);
    assert.deepEqual(got[1], {
      service: 'api',
      endpoints: [ep(1)],
      revision: '1',
      error: new RegistryUnavailableError('down'),
      stale: true,
    });
    sink().error(new RegistryUnavailableError('down again'));
    await tick();
    assert.equal(got.length, 3, 'a new message is news');
    const auth = new RegistryUnavailableError('down again');
    (auth as { code: string }).code = 'AUTH_FAILED';
    sink().error(auth);
    await tick();
    assert.equal(got.length, 4, 'same message, other code: news');
  });

  it('status() records the last error with its code, message and time, and the stale flag', async () => {
    const { r, sink } = setup();
    sink().update([ep(1)], { revision: '9' });
    sink().error(new RegistryUnavailableError('down'));
    const [s] = r.status();
    assert.equal(s.service, 'api');
    assert.equal(s.watchers, 1);
    assert.deepEqual(s.endpoints, [ep(1)]);
    assert.equal(s.revision, '9');
    assert.equal(s.stale, true);
    assert.equal(s.lastError!.code, 'REGISTRY_UNAVAILABLE');
    assert.equal(s.lastError!.message, 'down');
    assert.match(s.lastError!.at, /^\d{4}-\d\d-\d\dT/);
    assert.match(s.lastUpdate!, /^\d{4}-\d\d-\d\dT/);
    sink().update([ep(1)]);
    assert.equal(r.status()[0].stale, false);
  });

  it('an unchanged set is not delivered again; the same set with a BAD_ENTRY, or a different one, is', async () => {
    const { sink, got } = setup();
    sink().update([ep(1)]);
    await tick();
    sink().update([ep(1)]);
    await tick();
    assert.equal(got.length, 1);
    sink().update([ep(1)], { bad: [{ key: 'k', reason: 'r' }] });
    await tick();
    assert.equal(got.length, 2);
    assert.ok(got[1].error instanceof BadEntryError);
    sink().update([ep(1)], { bad: [{ key: 'k', reason: 'r' }] });
    await tick();
    assert.equal(got.length, 2, 'the same bad entry again is no news');
    sink().update([ep(1)], { bad: [{ key: 'k2', reason: 'r' }] });
    await tick();
    assert.equal(got.length, 3, 'another bad entry is');
    sink().update([ep(1), ep(2)]);
    await tick();
    assert.equal(got.length, 4);
    assert.equal(got[3].error, undefined);
  });

  it('the last watcher leaving stops the registry watch; calls into its sink are then ignored', async () => {
    const { r, sink, got, w, stopped } = setup();
    const other = r.watch('api', () => {});
    w.close();
    assert.deepEqual(stopped, []);
    other.close();
    other.close();
    assert.deepEqual(stopped, ['api']);
    sink().update([ep(1)]);
    sink().error(new RegistryUnavailableError('x'));
    await tick();
    assert.deepEqual(got, []);
    assert.deepEqual(r.status(), []);
  });
});

describe('resolveFirst', () => {
  it('resolves the first set (copies), rejects with the error of an empty failed first snapshot', async () => {
    const { r, sink } = setup();
    const p = r.resolve('api');
    await tick();
    sink().update([ep(1)]);
    const eps = await p;
    assert.deepEqual(eps, [ep(1)]);
    const { r: r2, sinks } = setup();
    const q = r2.resolve('web');
    await tick();
    sinks.get('web')!.error(new RegistryUnavailableError('down'));
    await assert.rejects(q, /down/);
  });

  it('a BAD_ENTRY first snapshot with no endpoints resolves to the empty set', async () => {
    const { r, sinks } = setup();
    const p = r.resolve('web');
    await tick();
    sinks.get('web')!.update([], { bad: [{ key: 'k', reason: 'r' }] });
    assert.deepEqual(await p, []);
  });

  it('an aborted signal rejects with its reason, before or during the wait, and the watch is closed', async () => {
    const { r, stopped } = setup();
    const before = new AbortController();
    before.abort(new Error('early'));
    await assert.rejects(r.resolve('web', { signal: before.signal }), /early/);
    const during = new AbortController();
    const p = r.resolve('web', { signal: during.signal });
    during.abort(new Error('late'));
    await assert.rejects(p, /late/);
    await tick();
    assert.deepEqual(stopped, ['web']);
  });

  it('checks the service name first, naming resolve()', () => {
    assert.throws(() => resolveFirst({ watch: () => ({ close() {} }) }, 'bad name'), /^TypeError: resolve\(\)/);
    assert.throws(() => checkServiceName('x'.repeat(254)), /watch\(\): service name/);
    assert.doesNotThrow(() => checkServiceName('x'.repeat(253)));
    assert.doesNotThrow(() => checkServiceName('_grpc._tcp.name:80'));
  });
});
