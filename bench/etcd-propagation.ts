/**
 * etcd adapter benchmark, against a real etcd started by the testkit on loopback.
 *
 *   node --expose-gc --import tsx bench/etcd-propagation.ts [--changes 1000] [--instances 10000]
 *
 * 1. Propagation: one watched service; `changes` alternating puts and deletes written by a second
 *    client, one at a time. Latency = from the write being acknowledged by etcd to the watcher's
 *    snapshot reflecting it (0 when the snapshot came first); also from the write being issued.
 * 2. Scale, in a child process so the writer's memory does not count: `instances` instances of one
 *    service already in etcd; time from watch() to the first complete snapshot, time for one more
 *    change to reach the snapshot, and RSS / heap growth per endpoint over the process baseline
 *    (client created, nothing watched, after GC).
 */
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { createEtcdRegistry, EtcdClient } from '../adapters/etcd';
import type { Snapshot } from '../core';
import { startEtcd } from '../testkit/etcd';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const fmt = (ms: number) => `${ms.toFixed(2)} ms`;
const gc = () => (global as { gc?: () => void }).gc?.();

async function propagation(address: string, changes: number): Promise<void> {
  const reg = createEtcdRegistry({ hosts: [address], prefix: '/bench' });
  const writer = new EtcdClient({ hosts: [address], requestTimeoutMs: 5000 });
  const svc = 'prop';
  let waiting: { pred: (s: Snapshot) => boolean; resolve: (t: number) => void } | undefined;
  let last: Snapshot | undefined;
  const w = reg.resolver.watch(svc, (s) => {
    last = s;
    if (waiting?.pred(s)) {
      const t = performance.now();
      const wt = waiting;
      waiting = undefined;
      wt.resolve(t);
    }
  });
  // A fixed base of 10 endpoints, so each snapshot is a realistic small set.
  for (let i = 0; i < 10; i++)
    await writer.put(`/bench/${svc}/base-${i}`, JSON.stringify({ host: '10.0.0.1', port: 9000 + i }));
  await new Promise<void>((r) => {
    const check = () => (last?.endpoints.length === 10 ? r() : setTimeout(check, 10));
    check();
  });
  const fromAck: number[] = [];
  const fromIssue: number[] = [];
  for (let i = 0; i < changes; i++) {
    const put = i % 2 === 0;
    const key = `/bench/${svc}/k`;
    const want = put ? 11 : 10;
    const seen = new Promise<number>((resolve) => {
      waiting = {
        pred: (s) => s.endpoints.length === want && (!put || s.endpoints.some((e) => e.port === 20000 + i)),
        resolve,
      };
    });
    const t0 = performance.now();
    if (put) await writer.put(key, JSON.stringify({ host: '10.0.0.2', port: 20000 + i }));
    else await writer.delete(key);
    const tAck = performance.now();
    const tSeen = await seen;
    fromAck.push(Math.max(0, tSeen - tAck));
    fromIssue.push(tSeen - t0);
  }
  w.close();
  await reg.close!();
  writer.close();
  console.log(
    `propagation over ${changes} changes (${changes / 2} puts, ${changes / 2} deletes), 10-endpoint service:`,
  );
  console.log(
    `  ack -> snapshot    p50 ${fmt(pct(fromAck, 50))}  p99 ${fmt(pct(fromAck, 99))}  max ${fmt(Math.max(...fromAck))}`,
  );
  console.log(
    `  issue -> snapshot  p50 ${fmt(pct(fromIssue, 50))}  p99 ${fmt(pct(fromIssue, 99))}  max ${fmt(Math.max(...fromIssue))}`,
  );
}

async function fill(address: string, n: number): Promise<void> {
  const writer = new EtcdClient({ hosts: [address], requestTimeoutMs: 10_000 });
  const conc = 64;
  let next = 0;
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (next < n) {
        const i = next++;
        const host = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
        await writer.put(
          `/scale/big/${host}:50051`,
          JSON.stringify({
            id: `${host}:50051`,
            service: 'big',
            host,
            port: 50051,
            weight: 1,
            zone: `zone-${i % 3}`,
            metadata: { version: '1.2.3' },
          }),
        );
      }
    }),
  );
  writer.close();
}

/** Runs in a child process: baseline, then watch the big service. Prints one JSON line. */
async function scaleChild(address: string, n: number): Promise<void> {
  const reg = createEtcdRegistry({ hosts: [address], prefix: '/scale' });
  // Warm the client (connection, protobuf code paths) on another service, then take the baseline.
  await reg.resolver.resolve('warmup');
  for (let i = 0; i < 5; i++) gc();
  const base = process.memoryUsage();
  let last: Snapshot | undefined;
  let onSnap: (() => void) | undefined;
  const t0 = performance.now();
  const first = new Promise<number>((resolve) => {
    onSnap = () => {
      if (last && last.endpoints.length >= n) {
        onSnap = undefined;
        resolve(performance.now());
      }
    };
  });
  const w = reg.resolver.watch('big', (s) => {
    last = s;
    onSnap?.();
  });
  const tFirst = await first;
  for (let i = 0; i < 5; i++) gc();
  await new Promise((r) => setTimeout(r, 200));
  gc();
  const after = process.memoryUsage();
  // One more change at this size: how long a complete 10k snapshot takes to rebuild and deliver.
  const writer = new EtcdClient({ hosts: [address], requestTimeoutMs: 5000 });
  const changeTimes: number[] = [];
  for (let i = 0; i < 20; i++) {
    const seen = new Promise<number>((resolve) => {
      onSnap = () => {
        if (last && last.endpoints.length === (i % 2 === 0 ? n + 1 : n)) {
          onSnap = undefined;
          resolve(performance.now());
        }
      };
    });
    const key = '/scale/big/extra';
    if (i % 2 === 0) await writer.put(key, JSON.stringify({ host: '192.168.0.1', port: 1 }));
    else await writer.delete(key);
    const tAck = performance.now();
    changeTimes.push(Math.max(0, (await seen) - tAck));
  }
  writer.close();
  w.close();
  await reg.close!();
  console.log(
    JSON.stringify({
      n,
      firstSnapshotMs: tFirst - t0,
      changeP50Ms: pct(changeTimes, 50),
      changeP99Ms: pct(changeTimes, 99),
      rssPerEndpoint: (after.rss - base.rss) / n,
      heapPerEndpoint: (after.heapUsed - base.heapUsed) / n,
      heapTotalPerEndpoint: (after.heapTotal - base.heapTotal) / n,
      externalPerEndpoint: (after.external - base.external) / n,
      baseRssMB: base.rss / 2 ** 20,
      afterRssMB: after.rss / 2 ** 20,
    }),
  );
}

async function main(): Promise<void> {
  if (process.argv[2] === '--scale-child') return scaleChild(process.argv[3], Number(process.argv[4]));
  const changes = arg('changes', 1000);
  const n = arg('instances', 10_000);
  const etcd = await startEtcd();
  try {
    console.log(
      `etcd ${etcd.url} (${execFileSync('etcd', ['--version']).toString().split('\n')[0]}), node ${process.version}`,
    );
    await propagation(etcd.address, changes);
    const tf = performance.now();
    await fill(etcd.address, n);
    console.log(`wrote ${n} instances in ${((performance.now() - tf) / 1000).toFixed(1)} s`);
    const out = execFileSync(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', __filename, '--scale-child', etcd.address, String(n)],
      { encoding: 'utf8' },
    );
    const r = JSON.parse(out.trim().split('\n').pop()!);
    console.log(`scale: ${r.n} instances of one service`);
    console.log(`  watch() -> first complete snapshot   ${fmt(r.firstSnapshotMs)}`);
    console.log(
      `  one change -> snapshot at this size  p50 ${fmt(r.changeP50Ms)}  p99 ${fmt(r.changeP99Ms)} (20 changes)`,
    );
    console.log(
      `  resolver memory per endpoint         RSS ${(r.rssPerEndpoint / 1024).toFixed(2)} KiB, heap ${(r.heapPerEndpoint / 1024).toFixed(2)} KiB (baseline RSS ${r.baseRssMB.toFixed(1)} MiB -> ${r.afterRssMB.toFixed(1)} MiB)`,
    );
    console.log(
      `  of which V8 heap reserved (heapTotal) ${(r.heapTotalPerEndpoint / 1024).toFixed(2)} KiB, external ${(r.externalPerEndpoint / 1024).toFixed(2)} KiB per endpoint`,
    );
  } finally {
    await etcd.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
