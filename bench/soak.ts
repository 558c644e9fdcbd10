/**
 * Soak: churn against clustered registries with member restarts, watching memory and handles.
 *
 *   node --expose-gc --import tsx bench/soak.ts [--seconds 600] [--restart-every 20] [--sample-every 5]
 *     [--registries etcd,zookeeper] [--heap-snapshots 2,8,14] [--out <dir>]
 *
 * A 3-member etcd cluster and a 3-server ZooKeeper ensemble (testkit launchers, each member behind
 * its fault proxy). Per registry: a churning Discovery registers, updates (metadata, weight) and
 * deregisters instances of SERVICES (at most MAX_LIVE alive), one operation every CHURN_GAP_MS; a
 * second Discovery watches every service. Every `restart-every` seconds one member of each cluster
 * (round robin) is restarted. Every `sample-every` seconds heap used and RSS are sampled after a GC.
 *
 * At the end the churn stops, every registration is deregistered, both Discoveries of each registry
 * are closed, a GC runs, and process.getActiveResourcesInfo() counts by type are compared with the
 * start (taken with the clusters up, before any Discovery existed). Verdict: no resource type above
 * its start count, and heap after the warm-up (first fifth, at least one sample) grows by less
 * than 10% + 2 MiB; runs under ~30 s are too short to judge. It also prints the heap's trend after
 * the warm-up (MiB/min), which the verdict does not use.
 *
 * `--registries` limits the run to some registries (to attribute growth). `--heap-snapshots` takes
 * V8 heap snapshots after a forced GC at the given minutes (fractions allowed) into `--out` (default
 * a new `wayfinder-soak-*` folder under the OS temp dir, never the repository), beside samples.json
 * (every sample, with V8's code and bytecode sizes). Compare two snapshots with
 * `node --import tsx bench/heap-diff.ts <early> <late>`.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as v8 from 'node:v8';
import { Discovery, type Registration } from '../index';
import { startEtcdCluster } from '../testkit/etcd-cluster';
import { startZooKeeperEnsemble } from '../testkit/zookeeper-ensemble';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const SECONDS = arg('seconds', 600);
const RESTART_EVERY_S = arg('restart-every', 20);
const SAMPLE_EVERY_S = arg('sample-every', 5);
function strArg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const REGISTRIES = (strArg('registries') ?? 'etcd,zookeeper').split(',').filter(Boolean);
for (const r of REGISTRIES) {
  if (r !== 'etcd' && r !== 'zookeeper') {
    console.error(`--registries: unknown registry ${JSON.stringify(r)} (etcd, zookeeper)`);
    process.exit(2);
  }
}
const SNAPSHOT_MIN = (strArg('heap-snapshots') ?? '')
  .split(',')
  .filter(Boolean)
  .map(Number)
  .sort((a, b) => a - b);
if (SNAPSHOT_MIN.some((m) => !(m >= 0))) {
  console.error('--heap-snapshots: a comma-separated list of minutes, e.g. 2,8,14');
  process.exit(2);
}
const OUT = strArg('out');
const SERVICES = ['soak-a', 'soak-b', 'soak-c'];
const MAX_LIVE = 12;
const CHURN_GAP_MS = 20;
const MiB = 1024 * 1024;

const gc = (global as { gc?: () => void }).gc;
if (!gc) {
  console.error('run with --expose-gc: node --expose-gc --import tsx bench/soak.ts');
  process.exit(2);
}

function resources(): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) m.set(r, (m.get(r) ?? 0) + 1);
  return m;
}

interface Stats {
  registered: number;
  updated: number;
  deregistered: number;
  failed: number;
  errors: Map<string, number>;
  snapshots: number;
  restarts: number;
}

interface Sample {
  /** Seconds since the churn started. */
  s: number;
  /** MiB, after a forced GC. */
  heap: number;
  rss: number;
  oldSpace: number;
  codeSpace: number;
  /** V8's compiled code and bytecode (with metadata), MiB: warm-up, it plateaus. */
  code: number;
  bytecode: number;
  /** Registry operations done so far (all registries). */
  ops: number;
}

interface Target {
  name: string;
  url: string;
  members: { restart(): Promise<void> }[];
  stats: Stats;
}

/** One registry's churn: register / update / deregister, one at a time, until `stopped()`; returns what is still live. */
async function churn(t: Target, d: Discovery, stopped: () => boolean): Promise<Registration[]> {
  const live: Registration[] = [];
  let port = 30_000;
  const fail = (op: string, e: unknown) => {
    t.stats.failed++;
    const code = `${op} ${(e as { code?: string }).code ?? (e as Error).message.slice(0, 60)}`;
    t.stats.errors.set(code, (t.stats.errors.get(code) ?? 0) + 1);
  };
  while (!stopped()) {
    const r = Math.random();
    let op = 'register';
    try {
      if (live.length < MAX_LIVE && (live.length === 0 || r < 0.4)) {
        const service = SERVICES[port % SERVICES.length];
        live.push(await d.registrar.register({ service, host: '127.0.0.1', port: port++, metadata: { gen: '0' } }));
        t.stats.registered++;
      } else if (r < 0.7) {
        op = 'update';
        const reg = live[Math.floor(Math.random() * live.length)];
        await reg.update({ metadata: { gen: String(Date.now()) }, weight: 1 + Math.floor(Math.random() * 10) });
        t.stats.updated++;
      } else {
        op = 'deregister';
        const [reg] = live.splice(Math.floor(Math.random() * live.length), 1);
        await reg.deregister();
        t.stats.deregistered++;
      }
    } catch (e) {
      fail(op, e);
    }
    await sleep(CHURN_GAP_MS);
  }
  return live;
}

/**
 * Restarts one member every RESTART_EVERY_S until `stop` aborts. Sleeps on the abort signal (its
 * listener goes with each sleep): a Promise.race against one long-lived "stop" promise would leave
 * a reaction on it per round, which heap-diff showed as a PromiseReaction chain growing per restart.
 */
async function restarts(t: Target, stop: AbortSignal): Promise<void> {
  let i = 0;
  while (!stop.aborted) {
    await sleep(RESTART_EVERY_S * 1000, undefined, { signal: stop }).catch(() => undefined);
    if (stop.aborted) return;
    await t.members[i++ % t.members.length].restart();
    t.stats.restarts++;
  }
}

const newStats = (): Stats => ({
  registered: 0,
  updated: 0,
  deregistered: 0,
  failed: 0,
  errors: new Map(),
  snapshots: 0,
  restarts: 0,
});

async function main(): Promise<void> {
  console.log(
    `soak: ${SECONDS} s, a member restart every ${RESTART_EVERY_S} s per cluster, sample every ${SAMPLE_EVERY_S} s`,
  );
  const [etcd, zk] = await Promise.all([
    REGISTRIES.includes('etcd') ? startEtcdCluster({ members: 3, electionTimeoutMs: 500 }) : undefined,
    REGISTRIES.includes('zookeeper') ? startZooKeeperEnsemble({ servers: 3 }) : undefined,
  ]);
  const targets: Target[] = [];
  if (etcd) {
    targets.push({
      name: 'etcd',
      url: `etcd://${etcd.hosts.join(',')}?ttl=30s&progress-interval=2s&request-timeout=2s`,
      members: etcd.members,
      stats: newStats(),
    });
  }
  if (zk) {
    targets.push({
      name: 'zookeeper',
      url: zk.url('/wf-soak', 'sessionTimeout=4s&timeout=2s'),
      members: zk.members,
      stats: newStats(),
    });
  }
  const out = OUT ?? mkdtempSync(path.join(os.tmpdir(), 'wayfinder-soak-'));
  mkdirSync(out, { recursive: true });
  console.log(`registries: ${REGISTRIES.join(', ')}; samples (and heap snapshots) in ${out}`);
  try {
    gc!();
    await sleep(500);
    const before = resources();

    const discoveries: Discovery[] = [];
    const watches: { close(): void }[] = [];
    let stop = false;
    const stopRestarts = new AbortController();
    const stopped = () => stop;
    const churns: Promise<Registration[]>[] = [];
    const restartLoops: Promise<void>[] = [];
    for (const t of targets) {
      const churner = await Discovery.fromConfig(t.url);
      const watcher = await Discovery.fromConfig(t.url);
      discoveries.push(churner, watcher);
      for (const s of SERVICES) watches.push(watcher.resolver.watch(s, () => void t.stats.snapshots++));
      churns.push(churn(t, churner, stopped));
      restartLoops.push(restarts(t, stopRestarts.signal));
    }

    const t0 = Date.now();
    const samples: Sample[] = [];
    const sample = () => {
      gc!();
      const m = process.memoryUsage();
      const code = v8.getHeapCodeStatistics();
      const space = (name: string) =>
        (v8.getHeapSpaceStatistics().find((x) => x.space_name === name)?.space_used_size ?? 0) / MiB;
      const row: Sample = {
        s: Math.round((Date.now() - t0) / 1000),
        heap: m.heapUsed / MiB,
        rss: m.rss / MiB,
        oldSpace: space('old_space'),
        codeSpace: space('code_space'),
        code: code.code_and_metadata_size / MiB,
        bytecode: code.bytecode_and_metadata_size / MiB,
        ops: targets.reduce((a, t) => a + t.stats.registered + t.stats.updated + t.stats.deregistered, 0),
      };
      samples.push(row);
      const ops = targets.map((t) => `${t.name} ${t.stats.registered + t.stats.updated + t.stats.deregistered} ops`);
      console.log(
        `  ${String(row.s).padStart(5)} s | heap ${row.heap.toFixed(1).padStart(6)} MiB | rss ${row.rss.toFixed(1).padStart(6)} MiB | ` +
          `code ${row.code.toFixed(2)} bytecode ${row.bytecode.toFixed(2)} MiB | ${ops.join(', ')}`,
      );
      writeFileSync(path.join(out, 'samples.json'), JSON.stringify(samples));
    };
    const snapshot = (minute: number) => {
      gc!();
      const started = Date.now();
      const file = v8.writeHeapSnapshot(path.join(out, `heap-${minute}m.heapsnapshot`));
      console.log(`  heap snapshot at ${minute} min: ${file} (${Date.now() - started} ms, the event loop was blocked)`);
    };
    console.log('      t | heap used (after GC) | rss');
    sample();
    const pending = SNAPSHOT_MIN.filter((m) => m * 60 < SECONDS);
    let nextSample = SAMPLE_EVERY_S * 1000;
    while (Date.now() - t0 < SECONDS * 1000) {
      const nextSnap = pending.length ? pending[0] * 60_000 : Infinity;
      const at = Math.min(nextSample, nextSnap, SECONDS * 1000);
      await sleep(Math.max(0, at - (Date.now() - t0)));
      if (at === nextSnap) {
        snapshot(pending.shift()!);
      } else {
        sample();
        nextSample += SAMPLE_EVERY_S * 1000;
      }
    }
    if (SNAPSHOT_MIN.some((m) => m * 60 >= SECONDS)) snapshot(SECONDS / 60);

    // Wind down: stop churn and restarts, deregister, close, GC, compare.
    stop = true;
    stopRestarts.abort();
    const lives = await Promise.all(churns);
    await Promise.all(restartLoops);
    for (const live of lives) await Promise.allSettled(live.map((r) => r.deregister()));
    for (const w of watches) w.close();
    await Promise.allSettled(discoveries.map((d) => d.close()));
    // Sockets through the fault proxies close asynchronously: wait (bounded) for the counts to settle.
    let after = resources();
    const settleUntil = Date.now() + 10_000;
    const grown = (a: Map<string, number>) => [...a].filter(([k, n]) => n > (before.get(k) ?? 0));
    while (grown(after).length && Date.now() < settleUntil) {
      await sleep(250);
      gc!();
      after = resources();
    }

    console.log('\n  registry  | registered | updated | deregistered | failed ops | watch snapshots | member restarts');
    for (const t of targets) {
      const s = t.stats;
      console.log(
        `  ${t.name.padEnd(9)} | ${s.registered} | ${s.updated} | ${s.deregistered} | ${s.failed} | ${s.snapshots} | ${s.restarts}`,
      );
      if (s.errors.size) console.log(`    failures: ${[...s.errors].map(([k, n]) => `${k} x${n}`).join(', ')}`);
    }

    console.log('\n  resource type | start | end');
    const types = [...new Set([...before.keys(), ...after.keys()])].sort();
    for (const k of types) console.log(`  ${k.padEnd(22)} | ${before.get(k) ?? 0} | ${after.get(k) ?? 0}`);

    const warm = samples[Math.max(1, Math.floor(samples.length / 5))] ?? samples[0];
    const last = samples[samples.length - 1];
    const heapLimit = warm.heap * 1.1 + 2;
    const leaks = grown(after);
    if (leaks.some(([k]) => k === 'TCPSocketWrap')) {
      // Name the sockets still open (local -> remote) so they can be told apart: client, proxy, member.
      const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
      for (const h of handles) {
        const s = h as { localPort?: number; remotePort?: number; remoteAddress?: string; destroyed?: boolean };
        if (s.localPort !== undefined && s.remotePort !== undefined)
          console.log(
            `  open socket ${s.localPort} -> ${s.remoteAddress}:${s.remotePort}${s.destroyed ? ' (destroyed)' : ''}`,
          );
      }
      console.log(`  etcd members ${etcd?.hosts.join(' ') ?? '-'}; zookeeper ${zk?.url('/', '') ?? '-'}`);
    }
    const heapOk = last.heap <= heapLimit;
    // Least-squares slope of heap (after GC) over the samples after the warm-up, MiB per minute.
    const tail = samples.slice(samples.indexOf(warm));
    const mx = tail.reduce((a, p) => a + p.s, 0) / tail.length;
    const my = tail.reduce((a, p) => a + p.heap, 0) / tail.length;
    const sxx = tail.reduce((a, p) => a + (p.s - mx) ** 2, 0);
    const slope = sxx ? (tail.reduce((a, p) => a + (p.s - mx) * (p.heap - my), 0) / sxx) * 60 : 0;
    console.log(
      `\n  heap after warm-up ${warm.heap.toFixed(1)} MiB (at ${warm.s} s) -> end ${last.heap.toFixed(1)} MiB (limit ${heapLimit.toFixed(1)}); ` +
        `rss ${warm.rss.toFixed(1)} -> ${last.rss.toFixed(1)} MiB; heap trend after warm-up ${slope.toFixed(2)} MiB/min` +
        (tail.length > 1 && last.ops > warm.ops
          ? ` (${Math.round((slope * MiB * ((last.s - warm.s) / 60)) / (last.ops - warm.ops))} B per registry operation)`
          : ''),
    );
    const verdict =
      heapOk && leaks.length === 0
        ? 'PASS: flat heap, no leaked handles'
        : `FAIL: ${[
            heapOk ? '' : `heap grew ${(last.heap - warm.heap).toFixed(1)} MiB`,
            ...leaks.map(([k, n]) => `${k} ${before.get(k) ?? 0} -> ${n}`),
          ]
            .filter(Boolean)
            .join('; ')}`;
    console.log(`verdict: ${verdict}`);
    process.exitCode = verdict.startsWith('PASS') ? 0 : 1;
  } finally {
    await Promise.allSettled([etcd?.close(), zk?.close()]);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
