import assert from 'node:assert/strict';
import {
  ClosedError,
  endpointKey,
  seededRandom,
  silentLogger,
  type Balancer,
  type BalancerContext,
  type Capabilities,
  type Endpoint,
  type Registrar,
  type Registration,
  type Resolver,
  type Snapshot,
} from '../core';

/**
 * The conformance kit: the same suites for every adapter and balancer, ours or a user's.
 * Pass `it`/`describe` from mocha or from node:test (`import { it, describe } from 'node:test'`),
 * a factory returning a fresh isolated instance, and the adapter's declared capabilities, which gate
 * the groups of tests that apply. Every test bounds its own waits and fails saying what it expected.
 */

/** A test body as either runner calls it: mocha binds `this` (a Context), node:test passes `t`. */
export type ConformanceTestFn = (this: unknown, ...args: unknown[]) => Promise<void> | void;
/** `it` from mocha or node:test. */
export type ItFn = (title: string, fn: ConformanceTestFn) => unknown;
/** `describe` from mocha or node:test. */
export type DescribeFn = (title: string, fn: (this: unknown, ...args: unknown[]) => void) => unknown;

/** Thrown to end a skipped test under node:test (whose t.skip() only marks it). */
const SKIPPED = Symbol('wayfinder.conformance.skipped');

/** Marks the running test skipped and ends it, under mocha (this.skip()) or node:test (t.skip()). */
function skipper(self: unknown, args: unknown[]): () => never {
  return () => {
    const m = self as { skip?: () => never } | undefined;
    if (m && typeof m.skip === 'function') m.skip();
    const t = args[0] as { skip?: (msg?: string) => void } | undefined;
    if (t && typeof t.skip === 'function') t.skip();
    throw SKIPPED;
  };
}

/** Wraps a body so it runs under either runner, bounded by `boundMs`, with `skip()` working in both. */
function portable(
  boundMs: number,
  title: string,
  body: (skip: () => never) => Promise<void> | void,
): ConformanceTestFn {
  return async function (this: unknown, ...args: unknown[]) {
    const m = this as { timeout?: (ms: number) => void } | undefined;
    if (m && typeof m.timeout === 'function') m.timeout(boundMs + 5000);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        body(skipper(this, args)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`conformance: "${title}" did not finish within ${boundMs} ms`)),
            boundMs,
          );
        }),
      ]);
    } catch (e) {
      if (e !== SKIPPED) throw e;
    } finally {
      clearTimeout(timer);
    }
  };
}

export interface ConformanceSubject {
  resolver: Resolver;
  /**
   * Writes instances. For read-only registries (DNS, Kubernetes) a test-only registrar that writes
   * records the registry's own way.
   */
  registrar: Registrar;
  /** Writes one malformed entry for `service` (enables the BAD_ENTRY test). */
  injectBadEntry?(service: string): Promise<void>;
  /**
   * Stops a registration's keep-alive without deregistering: a simulated crash (enables the TTL
   * test). It receives what this subject's `registrar.register()` returned.
   */
  crash?(reg: Registration): Promise<void>;
  /** Makes the registry fail for this subject's resolver, and heals it (enables the outage tests). */
  faults?: ConformanceFaults;
  cleanup(): Promise<void>;
}

/**
 * A registry outage the kit switches on and off. During an outage the resolver's transport fails
 * (connections refused or reset, reads fail); `writesDuringOutage` says whether the subject's
 * registrar still reaches the registry meanwhile (it writes through another path), which enables
 * the "re-list after a gap" test.
 */
export interface ConformanceFaults {
  outage(): Promise<void>;
  heal(): Promise<void>;
  writesDuringOutage?: boolean;
}

/** Faults through a testkit fault proxy (resolver connects through the proxy): outage = refuse + reset. */
export function proxyFaults(
  proxy: { cut(ms: number): Promise<void>; heal(): void },
  opts: { writesDuringOutage?: boolean } = {},
): ConformanceFaults {
  return {
    outage: async () => void proxy.cut(3_600_000),
    heal: async () => proxy.heal(),
    writesDuringOutage: opts.writesDuringOutage ?? true,
  };
}

export interface ConformanceTiming {
  /** Bound for a registry change to reach a watcher (default 5000 ms). */
  propagationMs?: number;
  /**
   * Bound for a crashed registrant to disappear (its TTL, lease or session timeout; default 15000 ms).
   * Deregistration must be seen within a third of it (and within propagationMs), sooner than an
   * expiry could make it look done, so keep it close to the real TTL.
   */
  ttlMs?: number;
  /** Bound for an outage to be reported as an error snapshot (default: propagationMs * 2 + 5000). */
  outageMs?: number;
}

export interface ConformanceOptions {
  it: ItFn;
  describe: DescribeFn;
  /** Shown in the suite title. */
  name: string;
  factory: () => Promise<ConformanceSubject>;
  capabilities: Capabilities;
  timing?: ConformanceTiming;
  /** Per-test bound (default: derived from timing). */
  timeoutMs?: number;
}

let serial = 0;
/** A service name unique within the process, so suites sharing a registry never collide. */
export function uniqueService(prefix = 'svc'): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${serial++}`;
}

/** Records a watch's snapshots and lets a test wait, with a bound, for one matching a predicate. */
export class SnapshotRecorder {
  readonly snapshots: Snapshot[] = [];
  private waiters: { pred: (s: Snapshot) => boolean; resolve: (s: Snapshot) => void }[] = [];
  readonly onSnapshot = (s: Snapshot): void => {
    this.snapshots.push(s);
    for (const w of [...this.waiters]) {
      if (w.pred(s)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(s);
      }
    }
  };
  get last(): Snapshot | undefined {
    return this.snapshots[this.snapshots.length - 1];
  }
  /** Resolves with the first snapshot (already seen, latest first, or future) matching `pred`. */
  until(pred: (s: Snapshot) => boolean, timeoutMs: number, what = 'a matching snapshot'): Promise<Snapshot> {
    const last = this.last;
    if (last && pred(last)) return Promise.resolve(last);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (s: Snapshot) => {
          clearTimeout(t);
          resolve(s);
        },
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        const seen = this.last
          ? JSON.stringify(this.last.endpoints.map(endpointKey)) +
            (this.last.error ? ` error=${this.last.error.code}` : '')
          : 'none';
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last snapshot: ${seen}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }
}

const keys = (s: Snapshot) => s.endpoints.map(endpointKey).sort();
const hasExactly =
  (...want: string[]) =>
  (s: Snapshot) =>
    JSON.stringify(keys(s)) === JSON.stringify([...want].sort());

/** Each test gets a fresh subject; its watches are closed and cleanup() runs after it, pass or fail. */
function harness(o: ConformanceOptions, boundMs: number, setSubject: (s: ConformanceSubject) => void) {
  let current: ConformanceSubject | undefined;
  const open: { close(): void }[] = [];
  return {
    open,
    watch(service: string): SnapshotRecorder {
      const r = new SnapshotRecorder();
      open.push(current!.resolver.watch(service, r.onSnapshot));
      return r;
    },
    it(title: string, fn: (skip: () => never) => Promise<void>): void {
      o.it(
        title,
        portable(boundMs, title, async (skip) => {
          current = await o.factory();
          setSubject(current);
          try {
            await fn(skip);
          } finally {
            for (const w of open.splice(0)) w.close();
            await current.faults?.heal().catch(() => {});
            await current.cleanup();
          }
        }),
      );
    },
  };
}

export function resolverConformance(o: ConformanceOptions): void {
  const prop = o.timing?.propagationMs ?? 5000;
  const caps = o.capabilities;
  const outageMs = o.timing?.outageMs ?? prop * 2 + 5000;
  const bound = o.timeoutMs ?? prop * 4 + outageMs + 10_000;
  o.describe(`${o.name}: resolver conformance`, function () {
    let s!: ConformanceSubject;
    const { it, watch, open } = harness(o, bound, (x) => (s = x));

    it('delivers the first snapshot asynchronously, never from inside watch()', async () => {
      const svc = uniqueService();
      await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7001 });
      let inside = true;
      let calledInside = false;
      const r = new SnapshotRecorder();
      open.push(
        s.resolver.watch(svc, (snap) => {
          if (inside) calledInside = true;
          r.onSnapshot(snap);
        }),
      );
      inside = false;
      assert.equal(calledInside, false, 'watch() called back synchronously');
      await r.until(hasExactly('127.0.0.1:7001'), prop, 'the registered endpoint');
    });

    it('delivers an empty snapshot (no error) for a service with no instances', async () => {
      const r = watch(uniqueService('empty'));
      const snap = await r.until(() => true, prop, 'a first snapshot');
      assert.deepEqual(snap.endpoints, []);
      assert.equal(snap.error, undefined, `unexpected error: ${snap.error?.message}`);
    });

    it('propagates additions and removals as complete sets', async () => {
      const svc = uniqueService();
      const r = watch(svc);
      await r.until(() => true, prop, 'a first snapshot');
      const a = await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7001 });
      await r.until(hasExactly('127.0.0.1:7001'), prop, 'A');
      const b = await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7002 });
      await r.until(hasExactly('127.0.0.1:7001', '127.0.0.1:7002'), prop, 'A and B');
      await a.deregister();
      await r.until(hasExactly('127.0.0.1:7002'), prop, 'B alone after A deregistered');
      await b.deregister();
      await r.until(hasExactly(), prop, 'an empty set after both deregistered');
      for (const snap of r.snapshots) {
        const k = keys(snap);
        assert.equal(new Set(k).size, k.length, `snapshot holds duplicates: ${k}`);
        assert.equal(snap.service, svc);
      }
      // Every snapshot is a complete set: once both are seen, B is never missing until A is gone.
      const both = r.snapshots.findIndex(hasExactly('127.0.0.1:7001', '127.0.0.1:7002'));
      const aGone = r.snapshots.findIndex((x, i) => i > both && !keys(x).includes('127.0.0.1:7001'));
      for (let i = both; i < aGone; i++)
        assert.ok(keys(r.snapshots[i]).includes('127.0.0.1:7002'), 'a snapshot was a delta');
    });

    if (caps.weights || caps.metadata) {
      it('propagates weight and metadata updates without changing identity', async () => {
        const svc = uniqueService();
        const r = watch(svc);
        const reg = await s.registrar.register({
          service: svc,
          host: '127.0.0.1',
          port: 7003,
          weight: 1,
          metadata: { version: '1' },
        });
        const first = await r.until(hasExactly('127.0.0.1:7003'), prop, 'the endpoint');
        const id = first.endpoints[0].id;
        await reg.update({
          weight: caps.weights ? 5 : undefined,
          metadata: caps.metadata ? { version: '2' } : undefined,
        });
        const snap = await r.until(
          (x) =>
            x.endpoints.length === 1 &&
            (!caps.weights || x.endpoints[0].weight === 5) &&
            (!caps.metadata || x.endpoints[0].metadata.version === '2'),
          prop,
          'the updated weight/metadata',
        );
        assert.equal(snap.endpoints[0].id, id, 'an update changed the endpoint id');
        assert.equal(endpointKey(snap.endpoints[0]), '127.0.0.1:7003');
      });
    }

    it('keeps two services separate', async () => {
      const s1 = uniqueService('one');
      const s2 = uniqueService('two');
      const r1 = watch(s1);
      const r2 = watch(s2);
      await s.registrar.register({ service: s1, host: '127.0.0.1', port: 7011 });
      await s.registrar.register({ service: s2, host: '127.0.0.1', port: 7012 });
      await r1.until(hasExactly('127.0.0.1:7011'), prop, 'service one');
      await r2.until(hasExactly('127.0.0.1:7012'), prop, 'service two');
      for (const x of r1.snapshots) assert.ok(!keys(x).includes('127.0.0.1:7012'), 'service two leaked into one');
      for (const x of r2.snapshots) assert.ok(!keys(x).includes('127.0.0.1:7011'), 'service one leaked into two');
    });

    it('shares state between watchers of one service, and a closed watch gets no more callbacks', async () => {
      const svc = uniqueService();
      const a = new SnapshotRecorder();
      const wa = s.resolver.watch(svc, a.onSnapshot);
      const b = watch(svc);
      await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7021 });
      await a.until(hasExactly('127.0.0.1:7021'), prop, 'watcher A sees the endpoint');
      await b.until(hasExactly('127.0.0.1:7021'), prop, 'watcher B sees the endpoint');
      wa.close();
      wa.close(); // idempotent
      const seen = a.snapshots.length;
      await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7022 });
      await b.until(hasExactly('127.0.0.1:7021', '127.0.0.1:7022'), prop, 'watcher B sees the second endpoint');
      assert.equal(a.snapshots.length, seen, 'a closed watch was called back');
      // A late watcher of an already-watched service gets the current set, asynchronously.
      const c = watch(svc);
      await c.until(hasExactly('127.0.0.1:7021', '127.0.0.1:7022'), prop, 'a late watcher gets the current set');
    });

    it('isolates a throwing callback from other watchers', async () => {
      const svc = uniqueService();
      open.push(
        s.resolver.watch(svc, () => {
          throw new Error('boom from a user callback');
        }),
      );
      const r = watch(svc);
      await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7031 });
      await r.until(hasExactly('127.0.0.1:7031'), prop, 'the endpoint despite a throwing watcher');
    });

    it('resolve() returns the current endpoints and honours an aborted signal', async () => {
      const svc = uniqueService();
      await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7041, metadata: { k: 'v' } });
      const r = watch(svc);
      await r.until(hasExactly('127.0.0.1:7041'), prop, 'the endpoint');
      const eps = await s.resolver.resolve(svc);
      assert.deepEqual(eps.map(endpointKey), ['127.0.0.1:7041']);
      if (caps.metadata) assert.equal(eps[0].metadata.k, 'v');
      const ac = new AbortController();
      ac.abort(new Error('caller gave up'));
      await assert.rejects(s.resolver.resolve(svc, { signal: ac.signal }), /caller gave up/);
    });

    it('rejects malformed service names with a TypeError', async () => {
      assert.throws(() => s.resolver.watch('', () => {}), TypeError);
      assert.throws(() => s.resolver.watch('a/b', () => {}), TypeError);
      await assert.rejects(async () => s.resolver.resolve('has space'), TypeError);
    });

    it('refuses new watches after close()', async () => {
      await s.resolver.close();
      assert.throws(() => s.resolver.watch(uniqueService(), () => {}), ClosedError);
    });

    it('an outage keeps the last good set with the error attached, never an empty set, and recovers', async (skip) => {
      if (!s.faults) return skip();
      const svc = uniqueService('outage');
      const r = watch(svc);
      await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7061 });
      await r.until(hasExactly('127.0.0.1:7061'), prop, 'the endpoint before the outage');
      const from = r.snapshots.length;
      await s.faults.outage();
      const failed = await r.until(
        (x) => !!x.error,
        outageMs,
        'a snapshot with `error` set during the outage (sink.error on a transport failure)',
      );
      assert.deepEqual(
        keys(failed),
        ['127.0.0.1:7061'],
        'the error snapshot must carry the last good set, not drop it',
      );
      assert.equal(failed.stale, true, 'a snapshot delivered because of an error must be marked stale');
      await s.faults.heal();
      const svc2Port = 7062;
      await s.registrar.register({ service: svc, host: '127.0.0.1', port: svc2Port });
      await r.until(
        hasExactly('127.0.0.1:7061', `127.0.0.1:${svc2Port}`),
        outageMs,
        'the new endpoint after the outage healed',
      );
      for (const x of r.snapshots.slice(from))
        assert.ok(
          x.endpoints.length > 0,
          `an empty set was delivered during/after an outage (error ${x.error?.code ?? 'none'}): a transport error must keep the last good set`,
        );
    });

    it('re-lists after a gap: changes made during an outage are seen once it heals', async (skip) => {
      if (!s.faults?.writesDuringOutage) return skip();
      const svc = uniqueService('gap');
      const r = watch(svc);
      const a = await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7071 });
      await r.until(hasExactly('127.0.0.1:7071'), prop, 'the endpoint before the outage');
      await s.faults.outage();
      await r.until((x) => !!x.error, outageMs, 'a snapshot with `error` set during the outage');
      await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7072 });
      await a.deregister();
      await s.faults.heal();
      const after = await r.until(
        hasExactly('127.0.0.1:7072'),
        outageMs,
        'exactly the set written during the outage, once healed (a re-list after the gap)',
      );
      assert.equal(after.error, undefined, 'the error must clear once the registry answers again');
    });

    o.it(
      'skips a malformed entry, reports BAD_ENTRY and keeps the rest',
      portable(bound, 'BAD_ENTRY', async (skip) => {
        const subj = await o.factory();
        try {
          if (!subj.injectBadEntry) return skip();
          const svc = uniqueService();
          const r = new SnapshotRecorder();
          const w = subj.resolver.watch(svc, r.onSnapshot);
          try {
            await subj.registrar.register({ service: svc, host: '127.0.0.1', port: 7051 });
            await r.until(hasExactly('127.0.0.1:7051'), prop, 'the good endpoint');
            await subj.injectBadEntry(svc);
            const snap = await r.until((x) => x.error?.code === 'BAD_ENTRY', prop, 'a BAD_ENTRY report');
            assert.deepEqual(keys(snap), ['127.0.0.1:7051'], 'the good entry was lost');
          } finally {
            w.close();
          }
        } finally {
          await subj.cleanup();
        }
      }),
    );
  });
}

export function registrarConformance(o: ConformanceOptions): void {
  const prop = o.timing?.propagationMs ?? 5000;
  const ttl = o.timing?.ttlMs ?? 15_000;
  // Removal must be seen before an expiry could fake it: an entry whose heartbeat stopped at
  // deregister() lives on for at least ttl minus one heartbeat interval (ttl/3 by convention), so
  // half the ttl is the longest wait that still tells a removal from an expiry.
  const gone = o.timing?.ttlMs !== undefined ? Math.min(prop, Math.floor(ttl / 2)) : prop;
  if (!o.capabilities.register) return;
  o.describe(`${o.name}: registrar conformance`, function () {
    let s!: ConformanceSubject;
    const { it, watch } = harness(o, o.timeoutMs ?? prop * 4 + ttl * 2 + 10_000, (x) => (s = x));

    it('registers with a stable id (host:port by default, or the given one)', async () => {
      const svc = uniqueService();
      const a = await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7101 });
      const b = await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7102, id: 'instance-b' });
      assert.equal(a.id, '127.0.0.1:7101');
      assert.equal(b.id, 'instance-b');
      const r = watch(svc);
      const snap = await r.until(hasExactly('127.0.0.1:7101', '127.0.0.1:7102'), prop, 'both instances');
      const ids = snap.endpoints.map((e) => e.id).sort();
      assert.deepEqual(ids, ['127.0.0.1:7101', 'instance-b']);
    });

    it('deregister() removes the instance and is idempotent', async () => {
      const svc = uniqueService();
      const r = watch(svc);
      const a = await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7111 });
      await r.until(hasExactly('127.0.0.1:7111'), prop, 'the instance');
      await a.deregister();
      await a.deregister();
      await r.until(
        hasExactly(),
        gone,
        `the instance gone within ${gone} ms of deregister() (before its TTL could expire it)`,
      );
    });

    it('close() deregisters everything it registered and refuses new registrations', async () => {
      const svc = uniqueService();
      const r = watch(svc);
      await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7121 });
      await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7122 });
      await r.until(hasExactly('127.0.0.1:7121', '127.0.0.1:7122'), prop, 'both instances');
      await s.registrar.close();
      await r.until(hasExactly(), gone, `everything gone within ${gone} ms of close() (before a TTL could expire it)`);
      await assert.rejects(s.registrar.register({ service: svc, host: '127.0.0.1', port: 7123 }), ClosedError);
    });

    it('rejects invalid instances and identity changes with a TypeError', async () => {
      const svc = uniqueService();
      await assert.rejects(s.registrar.register({ service: svc, host: '127.0.0.1', port: 0 }), TypeError);
      await assert.rejects(s.registrar.register({ service: 'bad name', host: '127.0.0.1', port: 80 }), TypeError);
      await assert.rejects(s.registrar.register({ service: svc, host: '127.0.0.1', port: 80, weight: 0 }), TypeError);
      const a = await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7131 });
      await assert.rejects(a.update({ port: 7132 }), TypeError);
    });

    if (o.capabilities.ttl) {
      it('a dead registrant disappears within its TTL', async (skip) => {
        if (!s.crash) return skip();
        const svc = uniqueService();
        const r = watch(svc);
        const keep = await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7141 });
        const dead = await s.registrar.register({ service: svc, host: '127.0.0.1', port: 7142 });
        await r.until(hasExactly('127.0.0.1:7141', '127.0.0.1:7142'), prop, 'both instances');
        const t0 = Date.now();
        await s.crash(dead);
        await r.until(hasExactly('127.0.0.1:7141'), ttl + prop, 'the crashed instance to expire');
        assert.ok(Date.now() - t0 <= ttl + prop, 'expired too late');
        assert.ok(!keep.id.includes('7142'));
      });
    }
  });
}

// ---- balancers ----

export interface BalancerConformanceOptions {
  it: ItFn;
  describe: DescribeFn;
  name: string;
  /**
   * The balancer, or a factory for a fresh one per test (for balancers that keep load state
   * across picker rebuilds, so one test's load does not leak into the next).
   */
  balancer: Balancer | (() => Balancer);
  /** Whether the balancer honours Endpoint.weight (enables the weighted distribution test). */
  weighted?: boolean;
  /** Whether equal-weight endpoints with equal outcomes get equal shares (true for most). */
  even?: boolean;
  /** Allowed absolute deviation of a share (default 0.02 = 2 points). */
  tolerance?: number;
  picks?: number;
}

/** A deterministic BalancerContext: virtual clock (advanced by the caller) and seeded randomness. */
export function testBalancerContext(seed = 1): BalancerContext & { advance(ms: number): void } {
  let t = 0;
  return { now: () => t, random: seededRandom(seed), logger: silentLogger, advance: (ms: number) => void (t += ms) };
}

export function makeEndpoints(n: number, weights?: number[]): Endpoint[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `ep-${i}`,
    host: '10.0.0.1',
    port: 8000 + i,
    weight: weights?.[i],
    metadata: {},
  }));
}

function shares(b: Balancer, eps: Endpoint[], n: number, seed: number): Map<string, number> {
  const ctx = testBalancerContext(seed);
  const picker = b.build(eps, ctx);
  const counts = new Map<string, number>(eps.map((e) => [e.id, 0]));
  for (let i = 0; i < n; i++) {
    const p = picker.pick({});
    assert.ok(p.endpoint, `pick ${i} returned no endpoint`);
    counts.set(p.endpoint.id, (counts.get(p.endpoint.id) ?? 0) + 1);
    ctx.advance(1);
    p.done({ ok: true, latencyMs: 5 });
  }
  return counts;
}

export function balancerConformance(opts: BalancerConformanceOptions): void {
  const make = typeof opts.balancer === 'function' ? opts.balancer : () => opts.balancer as Balancer;
  const o = {
    ...opts,
    get balancer(): Balancer {
      return make();
    },
  };
  const tol = o.tolerance ?? 0.02;
  const n = o.picks ?? 30_000;
  o.describe(`${o.name}: balancer conformance`, () => {
    o.it('returns no-endpoints for an empty set, without throwing', () => {
      const p = o.balancer.build([], testBalancerContext()).pick();
      assert.equal(p.endpoint, null);
      assert.equal((p as { reason: string }).reason, 'no-endpoints');
    });

    o.it('always picks the only endpoint of a one-endpoint set', () => {
      const [e] = makeEndpoints(1);
      const picker = o.balancer.build([e], testBalancerContext());
      for (let i = 0; i < 100; i++) {
        const p = picker.pick();
        assert.equal(p.endpoint?.id, e.id);
        if (p.endpoint) p.done({ ok: i % 2 === 0, latencyMs: 1 });
      }
    });

    o.it('picks only endpoints of the set, and every one of them', () => {
      const eps = makeEndpoints(7);
      const counts = shares(o.balancer, eps, 7000, 3);
      assert.deepEqual([...counts.keys()].sort(), eps.map((e) => e.id).sort());
      for (const [id, c] of counts) assert.ok(c > 0, `${id} was never picked`);
    });

    if (o.even !== false) {
      o.it(`spreads equal endpoints evenly within ±${tol * 100}% over ${n} picks`, () => {
        const eps = makeEndpoints(3);
        const counts = shares(o.balancer, eps, n, 5);
        for (const [id, c] of counts)
          assert.ok(Math.abs(c / n - 1 / 3) <= tol, `${id} got ${((c / n) * 100).toFixed(2)}% of picks`);
      });
    }

    if (o.weighted) {
      o.it(`honours weights 1:2:3 within ±${tol * 100}% over ${n} picks`, () => {
        const eps = makeEndpoints(3, [1, 2, 3]);
        const counts = shares(o.balancer, eps, n, 7);
        eps.forEach((e, i) => {
          const share = counts.get(e.id)! / n;
          assert.ok(Math.abs(share - (i + 1) / 6) <= tol, `${e.id} (weight ${i + 1}) got ${(share * 100).toFixed(2)}%`);
        });
      });
    }

    o.it('is deterministic for a seeded random source and virtual clock', () => {
      const eps = makeEndpoints(5);
      const run = () => {
        const ctx = testBalancerContext(42);
        const picker = o.balancer.build(eps, ctx);
        const seq: string[] = [];
        for (let i = 0; i < 500; i++) {
          const p = picker.pick({ key: `k${i % 17}` });
          seq.push(p.endpoint?.id ?? '-');
          ctx.advance(1);
          if (p.endpoint) p.done({ ok: i % 5 !== 0, latencyMs: (i % 7) + 1 });
        }
        return seq.join(',');
      };
      assert.equal(run(), run());
    });

    o.it('never throws on odd pick input or repeated done()', () => {
      const picker = o.balancer.build(makeEndpoints(3), testBalancerContext());
      for (const info of [undefined, {}, { key: '' }, { key: 'x'.repeat(1000) }, { metadata: {} }]) {
        const p = picker.pick(info);
        if (p.endpoint) {
          p.done({ ok: false, latencyMs: -1 });
          p.done({ ok: true, latencyMs: Number.NaN });
        }
      }
    });
  });
}
