/**
 * Pick cost of every Wayfinder balancer next to grpc-js's own round_robin and weighted_round_robin
 * pickers, in the same process and run, at 10, 100 and 10,000 endpoints:
 *  - ns per pick (our pickers: pick() + done(), since the stateful ones do their bookkeeping in done);
 *  - bytes allocated per pick (heap growth over a stretch of picks that fits in the young
 *    generation, checked to contain no GC);
 *  - rebuild time: build() of a new picker after one endpoint of 10,000 changed, (a) with the other
 *    9,999 Endpoint objects the same as in the previous build (a backend went unready: the gRPC
 *    bridge passes the same objects) and (b) with every object a fresh copy (a new registry
 *    snapshot); copies are made before the clock starts.
 * Rounds alternate between pickers so drift on a noisy machine hits all; figures are medians.
 *
 *   node --import tsx bench/picks.ts     (re-executes itself with --expose-gc; ROUNDS=9 PICKS=300000)
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import { seededRandom, silentLogger, type Balancer, type BalancerContext, type Endpoint } from '../core';
import { createP2c } from '../balancers/p2c';
import { createRingHash } from '../balancers/ring-hash';
import { roundRobin } from '../balancers/round-robin';
import { createWeighted } from '../balancers/weighted';
import { loadPrivateClass, median, table } from './stats';

if (typeof (globalThis as { gc?: unknown }).gc !== 'function') {
  const r = spawnSync(
    process.execPath,
    [
      '--expose-gc',
      '--min-semi-space-size=64',
      '--max-semi-space-size=64',
      ...process.execArgv,
      ...process.argv.slice(1),
    ],
    { stdio: 'inherit' },
  );
  process.exit(r.status ?? 1);
}
const gc = (globalThis as unknown as { gc: () => void }).gc;

// Module-private classes of grpc-js, loaded from its own compiled source (the code grpc-js runs).
const GrpcRoundRobinPicker = loadPrivateClass('@grpc/grpc-js/build/src/load-balancer-round-robin', 'RoundRobinPicker');
const GrpcWrrPicker = loadPrivateClass(
  '@grpc/grpc-js/build/src/load-balancer-weighted-round-robin',
  'WeightedRoundRobinPicker',
);

const { PickResultType } = require('@grpc/grpc-js/build/src/picker');

/** What pick_first's picker returns per child; WRR unwraps a subchannel wrapper, so give it one. */
class ChildPicker {
  private readonly result: object;
  constructor(port: number) {
    const sub = { port, getWrappedSubchannel: () => sub };
    this.result = {
      pickResultType: PickResultType.COMPLETE,
      subchannel: sub,
      status: null,
      onCallStarted: null,
      onCallEnded: null,
    };
  }
  pick() {
    return this.result;
  }
}

const ROUNDS = Number(process.env.ROUNDS ?? 9);
const PICKS = Number(process.env.PICKS ?? 300_000);
let sink = 0;

const ctx = (seed = 1): BalancerContext => ({
  now: () => performance.now(),
  random: seededRandom(seed),
  logger: silentLogger,
});
const endpoints = (n: number, offset = 0): Endpoint[] =>
  Array.from({ length: n }, (_, i) => ({
    id: `ep-${i}`,
    host: `10.0.${(i >> 8) & 255}.${i & 255}`,
    port: 1000 + ((i + offset) % 60000),
    weight: 1 + (i % 10),
    metadata: {},
  }));

interface Subject {
  name: string;
  /** One pick (and done), returning a number so the work cannot be optimised away. */
  make(n: number): () => number;
  /** A fresh Balancer (ours) or picker constructor (grpc-js) for the rebuild measurement. */
  rebuild(): (eps: Endpoint[]) => unknown;
}

const ours = (name: string, make: () => Balancer): Subject => ({
  name,
  make(n) {
    const picker = make().build(endpoints(n), ctx());
    const ok = { ok: true, latencyMs: 5 };
    return () => {
      const p = picker.pick();
      if (!p.endpoint) return 0;
      p.done(ok);
      return p.endpoint.port;
    };
  },
  rebuild() {
    const b = make();
    const c = ctx();
    return (eps) => b.build(eps, c);
  },
});

/** ring_hash picks with a key (its purpose): 4096 distinct keys in turn, hashed on every pick. */
const PICK_KEYS = Array.from({ length: 4096 }, (_, i) => ({ key: `user-${i * 7919}` }));
const keyed = (name: string, make: () => Balancer): Subject => ({
  ...ours(name, make),
  make(n) {
    const picker = make().build(endpoints(n), ctx());
    const ok = { ok: true, latencyMs: 5 };
    let i = 0;
    return () => {
      const p = picker.pick(PICK_KEYS[i++ & 4095]);
      if (!p.endpoint) return 0;
      p.done(ok);
      return p.endpoint.port;
    };
  },
});

const children = (eps: Endpoint[]) =>
  eps.map((e) => ({ endpoint: { addresses: [{ host: e.host, port: e.port }] }, picker: new ChildPicker(e.port) }));
const wrrChildren = (eps: Endpoint[]) =>
  eps.map((e) => ({ endpointName: `${e.host}:${e.port}`, picker: new ChildPicker(e.port), weight: e.weight ?? 1 }));

const SUBJECTS: Subject[] = [
  ours('wayfinder round_robin', () => roundRobin),
  ours('wayfinder weighted (EDF)', () => createWeighted({})),
  ours('wayfinder p2c least-request', () => createP2c({})),
  ours('wayfinder p2c peak-EWMA', () => createP2c({ ewma: true })),
  ours('wayfinder p2c peak-EWMA + outlier + slow start', () =>
    createP2c({ ewma: true, outlier: true, slowStart: 30_000 }),
  ),
  keyed('wayfinder ring_hash (keyed picks)', () => createRingHash({})),
  {
    name: 'grpc-js round_robin',
    make(n) {
      const p = new GrpcRoundRobinPicker(children(endpoints(n)), 0);
      return () => (p.pick({}).subchannel as { port: number }).port;
    },
    rebuild: () => (eps) => new GrpcRoundRobinPicker(children(eps), 0),
  },
  {
    name: 'grpc-js weighted_round_robin',
    make(n) {
      const p = new GrpcWrrPicker(wrrChildren(endpoints(n)), null);
      return () => (p.pick({}).subchannel as { port: number }).port;
    },
    rebuild: () => (eps) => new GrpcWrrPicker(wrrChildren(eps), null),
  },
];

function timeLoop(f: () => number, picks: number): number {
  const t0 = process.hrtime.bigint();
  let acc = 0;
  for (let i = 0; i < picks; i++) acc += f();
  sink += acc;
  return Number(process.hrtime.bigint() - t0) / picks;
}

/**
 * Bytes allocated per pick: heap growth over picks that fit in the young generation (64 MB
 * semi-spaces). A scavenge in between shows as the heap shrinking; then the sample is retried.
 */
async function bytesPerPick(f: () => number): Promise<number> {
  const chunks = 50;
  const per = 1000;
  for (let attempt = 0; attempt < 5; attempt++) {
    gc();
    await new Promise((r) => setImmediate(r));
    const h0 = process.memoryUsage().heapUsed;
    let last = h0;
    let clean = true;
    let acc = 0;
    for (let c = 0; c < chunks && clean; c++) {
      for (let i = 0; i < per; i++) acc += f();
      const h = process.memoryUsage().heapUsed;
      if (h < last) clean = false;
      last = h;
    }
    sink += acc;
    if (clean) return Math.max(0, (last - h0) / (chunks * per));
  }
  return Number.NaN;
}

async function main(): Promise<void> {
  const sizes = [10, 100, 10_000];
  const ns = new Map<string, number>();
  const bytes = new Map<string, number>();
  for (const n of sizes) {
    const loops = SUBJECTS.map((s) => s.make(n));
    for (let w = 0; w < 2; w++) loops.forEach((f) => timeLoop(f, PICKS));
    const samples = SUBJECTS.map(() => [] as number[]);
    for (let r = 0; r < ROUNDS; r++) {
      const order = SUBJECTS.map((_, i) => i);
      if (r % 2) order.reverse();
      for (const i of order) samples[i].push(timeLoop(loops[i], PICKS));
    }
    SUBJECTS.forEach((s, i) => ns.set(`${s.name}@${n}`, median(samples[i])));
    for (let i = 0; i < SUBJECTS.length; i++) bytes.set(`${SUBJECTS[i].name}@${n}`, await bytesPerPick(loops[i]));
  }
  // Rebuild after one changed endpoint in 10,000: alternate between two sets differing in one port.
  const a = endpoints(10_000);
  const b = a.map((e, i) => (i === 4321 ? { ...e, port: 65000 } : e));
  const rebuildMs = new Map<string, number>();
  const rebuildFreshMs = new Map<string, number>();
  for (const s of SUBJECTS) {
    for (const fresh of [false, true]) {
      const build = s.rebuild();
      build(a);
      const t: number[] = [];
      for (let r = 0; r < 41; r++) {
        const set = r % 2 ? a : b;
        const input = fresh ? set.map((e) => ({ ...e })) : set;
        const t0 = process.hrtime.bigint();
        build(input);
        t.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      (fresh ? rebuildFreshMs : rebuildMs).set(s.name, median(t));
    }
  }
  const rows = SUBJECTS.map((s) => [
    s.name,
    ...sizes.map((n) => ns.get(`${s.name}@${n}`)!.toFixed(1)),
    sizes.map((n) => bytes.get(`${s.name}@${n}`)!.toFixed(0)).join(' / '),
    `${rebuildMs.get(s.name)!.toFixed(2)} / ${rebuildFreshMs.get(s.name)!.toFixed(2)}`,
  ]);
  console.log(
    `node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, load avg ${os.loadavg()[0].toFixed(1)}; ${ROUNDS} rounds x ${PICKS.toLocaleString('en')} picks, medians`,
  );
  console.log(
    table(
      [
        'picker',
        'ns/pick @10',
        'ns/pick @100',
        'ns/pick @10,000',
        'bytes/pick @10 / 100 / 10,000',
        'rebuild ms, 1 of 10,000 changed: same / fresh objects',
      ],
      rows,
    ),
  );
  if (sink === 42) console.log('');
}

void main();
