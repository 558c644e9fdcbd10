import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createFileRegistry, fileAdapter, type FileRegistration, type FileRegistry } from '.';
import {
  DEFAULT_FILE_REGISTRY,
  Discovery,
  endpointKey,
  resolveRegistry,
  type Registration,
  type Snapshot,
} from '../../core';
import {
  registrarConformance,
  resolverConformance,
  type ConformanceFaults,
  SnapshotRecorder,
  spawnManaged,
  tempDir,
  uniqueService,
  waitFor,
  withTimeout,
  type ManagedProcess,
} from '../../testkit';
import { acquireLock, LOCK_STALE_MS } from './lock';
import { bucketOf, fileStore, parseDoc } from './store';
import { FileWatcher } from './watcher';

const FIXTURE = path.join(__dirname, 'fixtures', 'register.ts');
const keys = (s: Snapshot) => s.endpoints.map(endpointKey).sort();
const hasExactly =
  (...want: string[]) =>
  (s: Snapshot) =>
    JSON.stringify(keys(s)) === JSON.stringify([...want].sort());
const readDoc = (file: string) => parseDoc(fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '');
const entriesOf = (file: string, service: string) =>
  Object.keys((readDoc(file).services[service] as object) ?? {}).sort();

const FAST = { timeoutMs: 5000, intervalMs: 5 };
/** A FileWatcher with the poll practically off (60 s): only fs.watch can tell it of a change. */
const watchOnly = (file: string) => {
  const watcher = new FileWatcher(file, { pollMs: 60_000, fsWatch: true });
  return { watcher, off: watcher.subscribe(() => {}) };
};
const hasEntry = (w: FileWatcher, service: string, key: string) =>
  Object.keys((w.lastGood?.services[service] as object) ?? {}).includes(key);

/** Writes a lock file as another process would hold it. */
const lockOf = (file: string, info: object) => {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(`${file}.lock`, JSON.stringify({ hostname: os.hostname(), nonce: 'test', ...info }));
};

/** Temp dirs and registries made by a test, removed after it. */
class Scratch {
  private dirs: { remove(): void }[] = [];
  private regs: FileRegistry[] = [];
  private procs: ManagedProcess[] = [];
  file(): string {
    const t = tempDir('wayfinder-file-');
    this.dirs.push(t);
    return path.join(t.dir, 'registry.json');
  }
  registry(
    opts: Parameters<typeof createFileRegistry>[0],
    ctx?: Parameters<typeof createFileRegistry>[1],
  ): FileRegistry {
    const r = createFileRegistry(opts, ctx);
    this.regs.push(r);
    return r;
  }
  track(p: ManagedProcess): ManagedProcess {
    this.procs.push(p);
    return p;
  }
  async cleanup(): Promise<void> {
    await Promise.allSettled(this.procs.splice(0).map((p) => p.kill('SIGKILL')));
    for (const r of this.regs.splice(0)) {
      await r.registrar.close().catch(() => {});
      await r.resolver.close();
    }
    for (const d of this.dirs.splice(0)) d.remove();
  }
}

/** A registrant child process (fixtures/register.ts) whose JSON-line events can be awaited. */
class Child {
  readonly events: { event: string; [k: string]: unknown }[] = [];
  private waiters: { pred: (e: Child['events'][number]) => boolean; resolve(): void }[] = [];
  readonly proc: ManagedProcess;
  constructor(scratch: Scratch, env: Record<string, string>) {
    this.proc = scratch.track(
      spawnManaged(process.execPath, ['--import', 'tsx', FIXTURE], {
        env: { ...process.env, ...env },
        cwd: path.resolve(__dirname, '..', '..'),
      }),
    );
    let buf = '';
    this.proc.child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const e = JSON.parse(line);
          this.events.push(e);
          for (const w of [...this.waiters])
            if (w.pred(e)) {
              this.waiters.splice(this.waiters.indexOf(w), 1);
              w.resolve();
            }
        } catch {
          /* not an event line */
        }
      }
    });
  }
  get pid(): number {
    return this.proc.child.pid!;
  }
  until(event: string, timeoutMs: number): Promise<void> {
    if (this.events.some((e) => e.event === event)) return Promise.resolve();
    const failed = this.events.find((e) => e.event === 'error');
    if (failed) return Promise.reject(new Error(`child failed: ${failed.message}`));
    return withTimeout(
      new Promise<void>((resolve) =>
        this.waiters.push({ pred: (e) => e.event === event || e.event === 'error', resolve }),
      ),
      timeoutMs,
      `child event "${event}" (output: ${this.proc.output().slice(-500)})`,
    ).then(() => {
      const failed2 = this.events.find((e) => e.event === 'error');
      if (failed2) throw new Error(`child failed: ${failed2.message}`);
    });
  }
}

// ---- the conformance kit ----

/**
 * A file-registry outage the kit can switch on and off. The tests run as root, so chmod cannot
 * make the file unreadable; instead the registry file is moved aside and a directory takes its
 * place: reads fail with EISDIR (the resolver must keep the last good set and report
 * REGISTRY_UNAVAILABLE) and writers cannot replace it (rename onto a directory fails), so nothing
 * is lost. heal() puts the file back. Both swaps hold the registry's lock, so they never interleave
 * with a heartbeat's read-modify-write. The registrar writes the same file, so it cannot write
 * during the outage: no re-list test (writesDuringOutage false).
 */
function fileOutage(file: string): ConformanceFaults {
  const aside = `${file}.outage`;
  const swap = async (fn: () => void) => {
    const release = await acquireLock(`${file}.lock`);
    try {
      fn();
    } finally {
      await release();
    }
  };
  return {
    outage: () =>
      swap(() => {
        if (fs.existsSync(file)) fs.renameSync(file, aside);
        fs.mkdirSync(file);
      }),
    heal: () =>
      swap(() => {
        if (!fs.statSync(file, { throwIfNoEntry: false })?.isDirectory()) return;
        fs.rmdirSync(file);
        if (fs.existsSync(aside)) fs.renameSync(aside, file);
      }),
    writesDuringOutage: false,
  };
}

const TEST_TTL_MS = 1500;
const conformanceFactory = async () => {
  const dir = tempDir('wayfinder-file-conf-');
  const file = path.join(dir.dir, 'registry.json');
  const reg = createFileRegistry({ path: file, ttl: TEST_TTL_MS });
  return {
    resolver: reg.resolver,
    registrar: reg.registrar,
    faults: fileOutage(file),
    crash: async (r: Registration) => (r as FileRegistration).abandon(),
    injectBadEntry: async (service: string) => {
      await fileStore(file).mutate((doc, now) => {
        bucketOf(doc, service)['corrupt'] = { host: 42, port: 'x', heartbeat: now, ttl: 60_000 };
      }, TEST_TTL_MS);
    },
    cleanup: async () => {
      await reg.registrar.close();
      await reg.resolver.close();
      dir.remove();
    },
  };
};
resolverConformance({
  it,
  describe,
  name: 'file',
  factory: conformanceFactory,
  capabilities: fileAdapter.capabilities,
  timing: { propagationMs: 1000, ttlMs: TEST_TTL_MS },
});
registrarConformance({
  it,
  describe,
  name: 'file',
  factory: conformanceFactory,
  capabilities: fileAdapter.capabilities,
  timing: { propagationMs: 1000, ttlMs: TEST_TTL_MS },
});

// ---- adapter-specific ----

describe('file adapter', function () {
  this.timeout(30_000);
  const scratch = new Scratch();
  afterEach(() => scratch.cleanup());

  describe('config', () => {
    it('parses file:///abs/path and defaults to DEFAULT_FILE_REGISTRY, ttl 10s, heartbeat ttl/3, poll 50ms', () => {
      const a = resolveRegistry('file:///var/lib/wayfinder/reg.json?ttl=2s&poll=20ms');
      assert.equal(a.def.scheme, 'file');
      assert.deepEqual(a.options, { path: '/var/lib/wayfinder/reg.json', ttl: 2000, poll: 20, watch: true });
      const b = resolveRegistry('file://');
      assert.equal(b.options.path, DEFAULT_FILE_REGISTRY);
      assert.equal(b.options.ttl, 10_000);
      const c = resolveRegistry({ scheme: 'file', path: '/tmp/x/registry.json', ttl: 9000 });
      assert.equal(c.options.ttl, 9000);
      const r = scratch.registry({ path: scratch.file() });
      assert.equal(r.options.heartbeat, 3333);
      assert.equal(r.options.poll, 50);
    });

    it('names the field in every config error', async () => {
      const cases: [string, RegExp][] = [
        ['file:///tmp/r.json?ttl=soon', /^file: "ttl" must be a duration/],
        ['file:///tmp/r.json?ttl=100ms', /^file: "ttl" must be a duration .*between 1000ms and/],
        ['file:///tmp/r.json?ttl=10s&heartbeat=10s', /^file: "heartbeat" must be shorter than "ttl"/],
        ['file:///tmp/r.json?heartbeat=5ms', /^file: "heartbeat" must be a duration .*at least 100ms/],
        ['file:///tmp/r.json?poll=1s', /^file: "poll" must be a duration .*between 5ms and 100ms/],
        ['file:///tmp/r.json?watch=maybe', /^file: "watch" must be true or false/],
        ['file:///tmp/r.json?tll=1s', /^file: unknown option "tll"; known options: path, ttl, heartbeat, poll, watch/],
        ['file:relative/registry.json', /^file: "path" must be an absolute path/],
        ['file://otherhost/tmp/r.json', /^file: the registry is a local file/],
        ['file:///tmp/r.json?path=/x', /^file: "path" goes in the URL itself/],
      ];
      for (const [url, re] of cases) {
        assert.throws(
          () => resolveRegistry(url),
          (e: Error & { code?: string }) => re.test(e.message) && e.code === 'CONFIG_INVALID',
          url,
        );
      }
      assert.throws(() => createFileRegistry({ ttl: '0.5s' }), /file: "ttl" must be a duration/);
      assert.throws(
        () => createFileRegistry({ ttl: '0.5s' }),
        (e: Error & { field?: string }) => e.field === 'ttl',
      );
      await assert.rejects(
        Discovery.fromConfig('file:///tmp/r.json?heartbeat=1h'),
        (e: Error & { field?: string }) => e.field === 'heartbeat',
      );
    });

    it('is the default registry of Discovery.fromConfig()', async () => {
      const d = await Discovery.fromConfig(undefined, { env: {} });
      try {
        assert.equal(d.scheme, 'file');
        assert.ok(d.description.includes(DEFAULT_FILE_REGISTRY), d.description);
        assert.equal(d.capabilities.ttl, true);
      } finally {
        await d.close();
      }
    });
  });

  describe('across processes', () => {
    it('8 child processes registering concurrently lose no entry', async function () {
      this.timeout(60_000);
      const file = scratch.file();
      const go = path.join(path.dirname(file), 'go');
      const service = uniqueService('crowd');
      const N = 8;
      const PER = 5;
      const children = Array.from(
        { length: N },
        (_, i) =>
          new Child(scratch, {
            REG_PATH: file,
            REG_SERVICE: service,
            REG_PORTS: Array.from({ length: PER }, (_, j) => String(20000 + i * 100 + j)).join(','),
            REG_TTL: '3s',
            REG_HEARTBEAT: '100ms',
            REG_GO: go,
          }),
      );
      await Promise.all(children.map((c) => c.until('ready', 30_000)));
      const want = children
        .flatMap((_, i) => Array.from({ length: PER }, (_, j) => `127.0.0.1:${20000 + i * 100 + j}`))
        .sort();
      const reader = scratch.registry({ path: file, ttl: '3s' });
      const rec = new SnapshotRecorder();
      const w = reader.resolver.watch(service, rec.onSnapshot);
      fs.writeFileSync(go, '');
      await Promise.all(children.map((c) => c.until('registered', 15_000)));
      // Every registration resolved only after its write landed; all must be there at once.
      assert.deepEqual(entriesOf(file, service), want, 'an entry was lost');
      await rec.until(hasExactly(...want), 2000, 'all 40 endpoints');
      // Keep them heartbeating against each other (8 processes x 100 ms) for a while: still all there.
      await new Promise((r) => setTimeout(r, 1000));
      assert.deepEqual(entriesOf(file, service), want, 'an entry was lost under concurrent heartbeats');
      const lost = children.flatMap((c) => c.events.filter((e) => e.event === 'lost'));
      assert.deepEqual(lost, [], 'a registrant saw its entry vanish');
      const first = rec.snapshots.findIndex(hasExactly(...want));
      for (const s of rec.snapshots.slice(first))
        assert.equal(
          s.endpoints.length,
          want.length,
          `a snapshot after the full set was missing entries: ${keys(s).length}`,
        );
      // SIGTERM: each deregisters (concurrently) and the registry ends empty.
      await Promise.all(children.map((c) => c.proc.stop(5000)));
      assert.deepEqual(
        children.map((c) => c.proc.child.exitCode),
        Array(N).fill(0),
      );
      await rec.until(hasExactly(), 2000, 'everything deregistered');
      assert.deepEqual(entriesOf(file, service), []);
      w.close();
    });

    it('a registrant killed with SIGKILL disappears within its TTL, not before ~ttl - heartbeat, with no write', async function () {
      const file = scratch.file();
      const service = uniqueService('kill');
      const child = new Child(scratch, {
        REG_PATH: file,
        REG_SERVICE: service,
        REG_PORTS: '21001',
        REG_TTL: '1.5s',
        REG_HEARTBEAT: '500ms',
      });
      await child.until('registered', 20_000);
      const reader = scratch.registry({ path: file, ttl: '1.5s' });
      const rec = new SnapshotRecorder();
      const w = reader.resolver.watch(service, rec.onSnapshot);
      await rec.until(hasExactly('127.0.0.1:21001'), 1000, 'the child endpoint');
      // Let at least one heartbeat pass so the kill lands at a random point of the cycle.
      await new Promise((r) => setTimeout(r, 700));
      const t0 = Date.now();
      await child.proc.kill('SIGKILL');
      await rec.until(hasExactly(), 3000, 'the killed instance to expire');
      const gone = Date.now() - t0;
      // Last heartbeat was at most 500 ms (+ write time) before the kill: expiry in [~1000, 1500] ms.
      assert.ok(gone >= 900, `dropped after ${gone} ms: before its TTL could have run out`);
      // Upper bound: the ttl plus 1 s for a loaded machine's late timers (the wait above gives up at 3 s).
      assert.ok(gone <= 1500 + 1000, `dropped after ${gone} ms: later than ttl 1500 ms + 1 s`);
      // Nobody wrote: the reader dropped it on its own expiry timer. The next writer purges it.
      assert.deepEqual(entriesOf(file, service), ['127.0.0.1:21001']);
      const other = scratch.registry({ path: file, ttl: '1.5s' });
      await other.registrar.register({ service: uniqueService('other'), host: '127.0.0.1', port: 21002 });
      assert.deepEqual(entriesOf(file, service), [], 'a writer did not purge the expired entry');
      console.log(`      SIGKILLed registrant dropped after ${gone} ms (ttl 1500, heartbeat 500)`);
      w.close();
    });
  });

  describe('watchers', () => {
    // Latency and idle cost are figures in bench/file-propagation.ts (docs/benchmarks.md); these
    // tests pin which mechanism delivers a change, with bounded waits that only a hang exceeds.

    it('fs.watch alone tells a watcher of each register: with the poll at 60 s it never ticks', async () => {
      const file = scratch.file();
      const service = uniqueService('fsw');
      const writer = scratch.registry({ path: file, ttl: '60s' }); // no heartbeat write during the test
      await writer.registrar.register({ service, host: '127.0.0.1', port: 22000 });
      const fw = watchOnly(file);
      try {
        await waitFor('the first read', () => hasEntry(fw.watcher, service, '127.0.0.1:22000'), FAST);
        for (let i = 1; i <= 5; i++) {
          const events = fw.watcher.events;
          await writer.registrar.register({ service, host: '127.0.0.1', port: 22000 + i });
          await waitFor(
            `127.0.0.1:${22000 + i} by fs.watch`,
            () => hasEntry(fw.watcher, service, `127.0.0.1:${22000 + i}`),
            FAST,
          );
          assert.ok(fw.watcher.events > events, 'seen with no fs.watch event');
        }
        assert.equal(fw.watcher.polls, 0, 'the 60 s poll ticked: the test did not isolate fs.watch');
      } finally {
        fw.off();
      }
      // The registry's resolver (watch defaults to true) hears of it through the same fs.watch.
      const reader = scratch.registry({ path: file });
      const rec = new SnapshotRecorder();
      const w = reader.resolver.watch(service, rec.onSnapshot);
      try {
        await rec.until((s) => s.endpoints.length === 6, 5000, 'the six endpoints');
        const events = reader.watchStats().events;
        await writer.registrar.register({ service, host: '127.0.0.1', port: 22010 });
        await rec.until((s) => keys(s).includes('127.0.0.1:22010'), 5000, '127.0.0.1:22010');
        await waitFor('an fs.watch event for the write', () => reader.watchStats().events > events, FAST);
      } finally {
        w.close();
      }
    });

    it('with watch=false the poll alone tells a watcher of each register (no fs.watch event at all)', async () => {
      const file = scratch.file();
      const service = uniqueService('poll');
      const reader = scratch.registry({ path: file, watch: false });
      const writer = scratch.registry({ path: file, ttl: '60s' });
      const rec = new SnapshotRecorder();
      const w = reader.resolver.watch(service, rec.onSnapshot);
      try {
        await rec.until(() => true, 5000, 'a first snapshot');
        for (let i = 0; i < 5; i++) {
          const key = `127.0.0.1:${22100 + i}`;
          const before = reader.watchStats();
          await writer.registrar.register({ service, host: '127.0.0.1', port: 22100 + i });
          await rec.until((s) => keys(s).includes(key), 5000, key);
          const after = reader.watchStats();
          assert.ok(after.polls > before.polls, `${key} seen with no poll tick and fs.watch off: who told it?`);
          assert.ok(after.reads > before.reads, `${key} seen without reading the file`);
        }
        assert.equal(reader.watchStats().events, 0, 'fs.watch notified a watcher created with watch=false');
      } finally {
        w.close();
      }
    });

    it('idle, one watcher of 20 services stats the file each poll tick, never re-reads it, and ticks no faster than its poll', async () => {
      const file = scratch.file();
      const writer = scratch.registry({ path: file });
      for (let i = 0; i < 20; i++)
        await writer.registrar.register({ service: `idle-${i}`, host: '127.0.0.1', port: 23000 + i });
      const reader = scratch.registry({ path: file, poll: '50ms' });
      const recs = Array.from({ length: 20 }, (_, i) => {
        const r = new SnapshotRecorder();
        reader.resolver.watch(`idle-${i}`, r.onSnapshot);
        return r;
      });
      await Promise.all(recs.map((r) => r.until((s) => s.endpoints.length === 1, 5000)));
      await writer.registrar.close();
      await Promise.all(recs.map((r) => r.until((s) => s.endpoints.length === 0, 5000)));
      const s0 = reader.watchStats();
      const t0 = performance.now();
      await waitFor('40 poll ticks', () => reader.watchStats().polls - s0.polls >= 40, {
        timeoutMs: 30_000,
        intervalMs: 20,
      });
      const ms = performance.now() - t0;
      const s1 = reader.watchStats();
      const ticks = s1.polls - s0.polls;
      // One watcher for all 20 services; an unchanged file is only stat'ed, never re-read.
      assert.equal(s1.reads - s0.reads, 0, 'an unchanged file was re-read');
      // Each tick is armed 50 ms after the previous one fired and timers never fire early, so ticks
      // <= ms / 50 + 1; 250 ms of slack for the event loop's cached clock and ms rounding. A lower
      // bound would measure the scheduler; this one catches a poll running at twice its rate or more.
      assert.ok(ticks <= Math.floor((ms + 250) / 50) + 1, `${ticks} poll ticks in ${ms.toFixed(0)} ms (poll 50 ms)`);
    });

    it('a corrupt file keeps the last good set with REGISTRY_UNAVAILABLE, then recovers when fixed', async () => {
      const file = scratch.file();
      const service = uniqueService('corrupt');
      // Long ttl/heartbeat: no registrant writes during the test, so the file stays as we make it.
      const writer = scratch.registry({ path: file, ttl: '60s' });
      await writer.registrar.register({ service, host: '127.0.0.1', port: 24001 });
      await writer.registrar.register({ service, host: '127.0.0.1', port: 24002 });
      const good = fs.readFileSync(file, 'utf8');
      const reader = scratch.registry({ path: file, ttl: '60s' });
      const rec = new SnapshotRecorder();
      const w = reader.resolver.watch(service, rec.onSnapshot);
      const both = hasExactly('127.0.0.1:24001', '127.0.0.1:24002');
      await rec.until(both, 1000, 'both endpoints');
      for (const [what, text] of [
        ['garbage', '\u0000\u0001 not json at all'],
        ['truncated JSON', good.slice(0, Math.floor(good.length / 2))],
        ['a JSON array', '[1, 2]'],
      ]) {
        fs.writeFileSync(file, text);
        const s = await rec.until(
          (x) =>
            x.error?.code === 'REGISTRY_UNAVAILABLE' &&
            x.error.message.includes(what === 'a JSON array' ? 'top level' : 'JSON'),
          1000,
          `REGISTRY_UNAVAILABLE for ${what}`,
        );
        assert.ok(both(s), `${what}: the last good set was not kept: ${keys(s)}`);
        assert.equal(s.stale, true);
        await assert.rejects(
          reader.listServices(),
          (e: Error & { code?: string }) => e.code === 'REGISTRY_UNAVAILABLE',
        );
      }
      fs.writeFileSync(file, good);
      const fixed = await rec.until((x) => !x.error, 1000, 'recovery once the file is fixed');
      assert.ok(both(fixed));
      assert.deepEqual(await reader.listServices(), [service]);
      // A zero-length file (a non-atomic writer between truncate and write) is not "no services".
      const reads = reader.watchStats().reads;
      const seen = rec.snapshots.length;
      fs.writeFileSync(file, '');
      await waitFor('the reader to read the empty file', () => reader.watchStats().reads > reads, {
        timeoutMs: 2000,
        intervalMs: 10,
      });
      assert.equal(rec.snapshots.length, seen, 'an empty file changed the set');
      fs.writeFileSync(file, good);
      w.close();
    });

    it('a registrant moves a corrupt file aside and restores its entry (lost, then restored)', async () => {
      const file = scratch.file();
      const service = uniqueService('heal');
      const reg = scratch.registry({ path: file, ttl: '1.5s', heartbeat: '150ms' });
      const r = await reg.registrar.register({ service, host: '127.0.0.1', port: 24101 });
      const events: string[] = [];
      const restored = new Promise<void>((resolve) => r.on('restored', () => (events.push('restored'), resolve())));
      r.on('lost', (err) => events.push(`lost:${(err as Error & { code?: string }).code}`));
      const reader = scratch.registry({ path: file });
      const rec = new SnapshotRecorder();
      reader.resolver.watch(service, rec.onSnapshot);
      await rec.until(hasExactly('127.0.0.1:24101'), 1000, 'the endpoint');
      fs.writeFileSync(file, '{"services": {"x": ');
      await withTimeout(restored, 1000, 'restored');
      assert.deepEqual(events, ['lost:REGISTRATION_LOST', 'restored']);
      const aside = fs.readdirSync(path.dirname(file)).filter((f) => f.startsWith('registry.json.corrupt-'));
      assert.equal(aside.length, 1, 'the unreadable file was not kept aside');
      assert.equal(fs.readFileSync(path.join(path.dirname(file), aside[0]), 'utf8'), '{"services": {"x": ');
      await rec.until((s) => !s.error && hasExactly('127.0.0.1:24101')(s), 1000, 'the endpoint again without error');
    });

    it('skips a malformed entry as BAD_ENTRY, keeps the others, and writers keep it in the file', async () => {
      const file = scratch.file();
      const now = Date.now();
      fs.writeFileSync(
        file,
        JSON.stringify({
          services: {
            api: {
              'static-a': { host: '127.0.0.1', port: 25001 },
              'live-b': {
                host: '127.0.0.1',
                port: 25002,
                weight: 3,
                zone: 'z1',
                metadata: { v: '2' },
                heartbeat: now,
                ttl: 60_000,
              },
              'bad-port': { host: '127.0.0.1', port: 'x', heartbeat: now, ttl: 60_000 },
              'bad-heartbeat': { host: '127.0.0.1', port: 25003, heartbeat: 'yesterday' },
              dead: { host: '127.0.0.1', port: 25004, heartbeat: now - 120_000, ttl: 60_000 },
            },
            broken: 'not an object',
          },
        }),
      );
      const reader = scratch.registry({ path: file });
      const rec = new SnapshotRecorder();
      reader.resolver.watch('api', rec.onSnapshot);
      const s = await rec.until((x) => x.error?.code === 'BAD_ENTRY', 1000, 'BAD_ENTRY');
      assert.deepEqual(keys(s), ['127.0.0.1:25001', '127.0.0.1:25002']);
      const b = s.endpoints.find((e) => e.port === 25002)!;
      assert.deepEqual(
        { id: b.id, weight: b.weight, zone: b.zone, metadata: b.metadata },
        { id: 'live-b', weight: 3, zone: 'z1', metadata: { v: '2' } },
      );
      const bad = (s.error as unknown as { entries: { key: string }[] }).entries.map((e) => e.key).sort();
      assert.deepEqual(bad, ['api/bad-heartbeat', 'api/bad-port']);
      const rb = new SnapshotRecorder();
      reader.resolver.watch('broken', rb.onSnapshot);
      const sb = await rb.until((x) => x.error?.code === 'BAD_ENTRY', 1000, 'BAD_ENTRY for a non-object service');
      assert.deepEqual(sb.endpoints, []);
      // A writer purges the expired entry but keeps malformed ones: they are not its to lose.
      await reader.registrar.register({ service: 'api', host: '127.0.0.1', port: 25005 });
      assert.deepEqual(entriesOf(file, 'api'), ['127.0.0.1:25005', 'bad-heartbeat', 'bad-port', 'live-b', 'static-a']);
      assert.equal(readDoc(file).services.broken, 'not an object');
      assert.deepEqual(await reader.listServices(), ['api']);
    });

    it('a missing file is an empty registry; register creates the directory; the watcher follows', async () => {
      const file = path.join(path.dirname(scratch.file()), 'deep', 'er', 'registry.json');
      const service = uniqueService('mkdir');
      const reg = scratch.registry({ path: file });
      const rec = new SnapshotRecorder();
      reg.resolver.watch(service, rec.onSnapshot);
      const first = await rec.until(() => true, 1000, 'a first snapshot');
      assert.deepEqual(first.endpoints, []);
      assert.equal(first.error, undefined);
      assert.deepEqual(await reg.listServices(), []);
      await reg.registrar.register({ service, host: '127.0.0.1', port: 26001 });
      assert.ok(fs.existsSync(file));
      await rec.until(hasExactly('127.0.0.1:26001'), 500, 'the endpoint in the new file');
    });
  });

  it('a process sees its own registrations at once: resolve() and watch() right after register()/deregister()', async () => {
    const file = path.join(path.dirname(scratch.file()), 'not', 'yet', 'registry.json');
    const service = uniqueService('own');
    // No fs.watch and the slowest poll: only the registrar's own notification can make this prompt.
    const reg = scratch.registry({ path: file, watch: false, poll: 100 });
    const rec = new SnapshotRecorder();
    reg.resolver.watch(service, rec.onSnapshot);
    await rec.until(() => true, 1000, 'a first snapshot');
    const a = await reg.registrar.register({ service, host: '127.0.0.1', port: 26201 });
    assert.deepEqual((await reg.resolver.resolve(service)).map(endpointKey), ['127.0.0.1:26201']);
    const b = await reg.registrar.register({ service, host: '127.0.0.1', port: 26202 });
    assert.deepEqual((await reg.resolver.resolve(service)).map(endpointKey).sort(), [
      '127.0.0.1:26201',
      '127.0.0.1:26202',
    ]);
    await b.deregister();
    assert.deepEqual((await reg.resolver.resolve(service)).map(endpointKey), ['127.0.0.1:26201']);
    await a.deregister();
    assert.deepEqual(await reg.resolver.resolve(service), []);
    // The watcher was told of each step, not only of the last.
    assert.ok(
      rec.snapshots.some((s) => s.endpoints.length === 2),
      'the watch never saw both instances',
    );
  });

  it('a watcher of a directory that does not exist yet hears the first registration by fs.watch, not the poll', async () => {
    for (let i = 0; i < 3; i++) {
      // Two missing levels: the watch starts on the temp dir and moves down as they are created.
      const file = path.join(path.dirname(scratch.file()), 'fresh', `d${i}`, 'registry.json');
      const service = uniqueService('fresh');
      const fw = watchOnly(file);
      try {
        await waitFor('the first read (an empty registry)', () => fw.watcher.state !== undefined, FAST);
        const writer = scratch.registry({ path: file, ttl: '60s' });
        await writer.registrar.register({ service, host: '127.0.0.1', port: 26301 });
        await waitFor('the first registration', () => hasEntry(fw.watcher, service, '127.0.0.1:26301'), FAST);
        assert.equal(fw.watcher.polls, 0, 'the 60 s poll ticked: the test did not isolate fs.watch');
      } finally {
        fw.off();
      }
    }
  });

  it('keeps following the file when its directory is removed and recreated', async () => {
    const file = scratch.file();
    const service = uniqueService('redir');
    const reg = scratch.registry({ path: file, ttl: '60s' });
    const reader = scratch.registry({ path: file });
    const rec = new SnapshotRecorder();
    reader.resolver.watch(service, rec.onSnapshot);
    const a = await reg.registrar.register({ service, host: '127.0.0.1', port: 26101 });
    await rec.until(hasExactly('127.0.0.1:26101'), 5000, 'the endpoint');
    fs.rmSync(path.dirname(file), { recursive: true });
    const empty = await rec.until(hasExactly(), 5000, 'an empty set once the file is gone');
    assert.equal(empty.error, undefined);
    await a.deregister();
    await reg.registrar.register({ service, host: '127.0.0.1', port: 26102 });
    await rec.until(hasExactly('127.0.0.1:26102'), 5000, 'the endpoint in the recreated directory');
    // The directory watch comes back on the new directory (at once through the ancestor watch, or
    // at the poll's next re-arm check, every 1 s): a write there gives the reader fs.watch events again.
    let port = 26110;
    await waitFor(
      'an fs.watch event for a write in the recreated directory',
      async () => {
        const events = reader.watchStats().events;
        const key = `127.0.0.1:${++port}`;
        await reg.registrar.register({ service, host: '127.0.0.1', port });
        await rec.until((s) => keys(s).includes(key), 5000, key);
        return waitFor('its event', () => reader.watchStats().events > events, { timeoutMs: 500, intervalMs: 5 }).then(
          () => true,
          () => false,
        );
      },
      { timeoutMs: 10_000, intervalMs: 10 },
    );
  });

  describe('registrant', () => {
    it('notices its entry vanished (file deleted, entry removed) on the next heartbeat: lost, rewrite, restored', async () => {
      const file = scratch.file();
      const service = uniqueService('lost');
      const reg = scratch.registry({ path: file, ttl: '1.5s', heartbeat: '150ms' });
      const r = await reg.registrar.register({ service, host: '127.0.0.1', port: 27001, metadata: { v: '1' } });
      const other = await reg.registrar.register({ service, host: '127.0.0.1', port: 27002 });
      const events: string[] = [];
      r.on('lost', () => events.push('lost'));
      r.on('restored', () => events.push('restored'));
      const cycle = async (n: number) =>
        waitFor(`lost+restored #${n}`, () => events.length >= 2 * n, { timeoutMs: 1000, intervalMs: 10 });

      fs.unlinkSync(file);
      await cycle(1);
      // Each registration restores itself on its own heartbeat.
      await waitFor('both entries back', () => entriesOf(file, service).length === 2, {
        timeoutMs: 1000,
        intervalMs: 10,
      });
      assert.deepEqual(entriesOf(file, service), ['127.0.0.1:27001', '127.0.0.1:27002']);

      // Remove just r's entry, atomically, as another tool might.
      const doc = readDoc(file);
      delete (doc.services[service] as Record<string, unknown>)['127.0.0.1:27001'];
      fs.writeFileSync(`${file}.edit`, JSON.stringify(doc));
      fs.renameSync(`${file}.edit`, file);
      await cycle(2);
      assert.deepEqual(events, ['lost', 'restored', 'lost', 'restored']);
      const back = (
        readDoc(file).services[service] as Record<string, { metadata: Record<string, string>; pid: number }>
      )['127.0.0.1:27001'];
      assert.deepEqual(back.metadata, { v: '1' });
      assert.equal(back.pid, process.pid);
      // deregister() removes at once; the other stays.
      await r.deregister();
      assert.deepEqual(entriesOf(file, service), ['127.0.0.1:27002']);
      await other.deregister();
      assert.deepEqual(entriesOf(file, service), []);
    });

    it('emits lost once no heartbeat could be written for a ttl (lock held by a live process), restored after', async () => {
      const file = scratch.file();
      const service = uniqueService('held');
      const reg = scratch.registry({ path: file, ttl: '1.5s', heartbeat: '150ms' });
      const r = await reg.registrar.register({ service, host: '127.0.0.1', port: 27201 });
      const reader = scratch.registry({ path: file });
      const rec = new SnapshotRecorder();
      reader.resolver.watch(service, rec.onSnapshot);
      await rec.until(hasExactly('127.0.0.1:27201'), 1000, 'the endpoint');
      const events: { e: string; at: number; code?: string }[] = [];
      r.on('lost', (err) => events.push({ e: 'lost', at: Date.now(), code: (err as Error & { code?: string }).code }));
      r.on('restored', () => events.push({ e: 'restored', at: Date.now() }));
      const t0 = Date.now();
      lockOf(file, { pid: process.ppid, time: t0 });
      await waitFor('lost', () => events.length > 0, { timeoutMs: 5000, intervalMs: 10 });
      const lostAfter = events[0].at - t0;
      assert.equal(events[0].code, 'REGISTRATION_LOST');
      // The last heartbeat landed at most one interval (150 ms) before the lock was taken: not before
      // ttl - interval; the upper bound is the ttl plus 1 s for a loaded machine's late timers.
      assert.ok(lostAfter >= 1200 && lostAfter <= 1500 + 1000, `lost after ${lostAfter} ms`);
      await rec.until(hasExactly(), 1000, 'the entry expired for readers meanwhile');
      fs.unlinkSync(`${file}.lock`);
      await waitFor('restored', () => events.some((x) => x.e === 'restored'), { timeoutMs: 1000, intervalMs: 10 });
      await rec.until(hasExactly('127.0.0.1:27201'), 1000, 'the endpoint back');
      assert.deepEqual(
        events.map((x) => x.e),
        ['lost', 'restored'],
      );
    });

    it('update() changes weight/zone/metadata in place and heartbeats keep the new values', async () => {
      const file = scratch.file();
      const service = uniqueService('upd');
      const reg = scratch.registry({ path: file, ttl: '1.5s', heartbeat: '100ms' });
      const r = await reg.registrar.register({ service, host: '127.0.0.1', port: 27101, weight: 1 });
      const before = readDoc(file).revision;
      const updatedAt = Date.now();
      await r.update({ weight: 7, zone: 'eu-1', metadata: { color: 'blue' } });
      // Heartbeats after the update (one write for update(), two more heartbeats), however slow the machine.
      await waitFor('two heartbeats after update()', () => readDoc(file).revision >= before + 3, {
        timeoutMs: 5000,
        intervalMs: 20,
      });
      const e = (readDoc(file).services[service] as Record<string, Record<string, unknown>>)['127.0.0.1:27101'];
      assert.deepEqual(
        { weight: e.weight, zone: e.zone, metadata: e.metadata },
        { weight: 7, zone: 'eu-1', metadata: { color: 'blue' } },
      );
      assert.ok((e.heartbeat as number) >= updatedAt, 'the heartbeat was not rewritten after update()');
    });
  });

  describe('lock', () => {
    it('breaks a stale lock whose holder pid is dead', async () => {
      const file = scratch.file();
      const dead = spawnSync(process.execPath, ['-e', '']).pid;
      assert.ok(dead > 0);
      lockOf(file, { pid: dead, time: Date.now() });
      const reg = scratch.registry({ path: file });
      // The lock is fresh, so only the dead-pid rule can break it before LOCK_STALE_MS: a bound
      // under that age tells the two rules apart (and is generous enough for a loaded machine).
      await withTimeout(
        reg.registrar.register({ service: 'locked', host: '127.0.0.1', port: 28001 }),
        LOCK_STALE_MS - 1000,
        "register past a dead holder's fresh lock",
      );
      assert.deepEqual(entriesOf(file, 'locked'), ['127.0.0.1:28001']);
      assert.equal(fs.existsSync(`${file}.lock`), false, 'lock left behind');
      // A lock carrying our own pid that this process does not hold: left by an earlier process
      // that had the same pid (containers reuse low pids).
      lockOf(file, { pid: process.pid, time: Date.now() });
      await withTimeout(
        reg.registrar.register({ service: 'locked', host: '127.0.0.1', port: 28004 }),
        1000,
        'register past our-pid lock',
      );
      assert.deepEqual(entriesOf(file, 'locked'), ['127.0.0.1:28001', '127.0.0.1:28004']);
    });

    it(`breaks a lock older than ${LOCK_STALE_MS} ms even if its pid lives, and respects a fresh one`, async () => {
      const file = scratch.file();
      const reg = scratch.registry({ path: file });
      lockOf(file, { pid: process.ppid, time: Date.now() - LOCK_STALE_MS - 1000 });
      await withTimeout(
        reg.registrar.register({ service: 'old', host: '127.0.0.1', port: 28002 }),
        1000,
        'register past an old lock',
      );

      // A fresh lock of a live process is respected until it is released.
      lockOf(file, { pid: process.ppid, time: Date.now() });
      let done = false;
      const p = reg.registrar
        .register({ service: 'old', host: '127.0.0.1', port: 28003 })
        .then((x) => ((done = true), x));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(done, false, 'registered while another process held the lock');
      assert.deepEqual(entriesOf(file, 'old'), ['127.0.0.1:28002']);
      fs.unlinkSync(`${file}.lock`);
      await withTimeout(p, 1000, 'register after the lock was released');
      assert.deepEqual(entriesOf(file, 'old'), ['127.0.0.1:28002', '127.0.0.1:28003']);
    });

    it('heartbeats, the write time and lock ages run on the injected wall clock (AdapterContext.wallNow)', async () => {
      const file = scratch.file();
      const ahead = Date.now() + 3_600_000; // an hour ahead of the machine's clock
      const reg = scratch.registry({ path: file, ttl: '10s', heartbeat: '5s' }, { wallNow: () => ahead });
      // A lock a live process took just now (machine clock) is an hour old on the injected clock: broken.
      lockOf(file, { pid: process.ppid, time: Date.now() });
      await withTimeout(
        reg.registrar.register({ service: 'clock', host: '127.0.0.1', port: 28005 }),
        1000,
        'register past a lock that is stale on the injected clock',
      );
      const doc = readDoc(file);
      const entry = (doc.services.clock as Record<string, { heartbeat: number }>)['127.0.0.1:28005'];
      assert.equal(entry.heartbeat, ahead);
      assert.equal(doc.updated, new Date(ahead).toISOString());
    });
  });

  it('works end to end through Discovery.fromConfig(file:///...)', async () => {
    const file = scratch.file();
    const d = await Discovery.fromConfig(`file://${file}?ttl=2s`);
    try {
      await d.registrar.register({ service: 'echo', host: '127.0.0.1', port: 29001, zone: 'a' });
      await d.registrar.register({ service: 'other', host: '127.0.0.1', port: 29002 });
      const eps = await d.resolver.resolve('echo');
      assert.deepEqual(
        eps.map((e) => [endpointKey(e), e.zone]),
        [['127.0.0.1:29001', 'a']],
      );
      assert.deepEqual(await d.listServices(), ['echo', 'other']);
      const e = (readDoc(file).services.echo as Record<string, Record<string, unknown>>)['127.0.0.1:29001'];
      assert.equal(e.ttl, 2000);
    } finally {
      await d.close();
    }
    assert.deepEqual(readDoc(file).services, {}, 'close() did not deregister');
  });
});
