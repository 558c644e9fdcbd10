/**
 * ZooKeeper adapter benchmark, against a real ZooKeeper started by the testkit on loopback.
 *
 *   node --import tsx bench/zk-propagation.ts [--changes 1000] [--trials 3]
 *
 * 1. Propagation: one watched service holding 10 instances; `changes` alternating creates and
 *    deletes of an 11th node by a second session, one at a time. Latency = from the write being
 *    acknowledged by ZooKeeper to the watcher's snapshot reflecting it (0 when the snapshot came
 *    first); also from the write being issued. Target: p99 < 50 ms.
 * 2. Dead registrant: a child process registers an instance and is SIGKILLed (no closeSession);
 *    time from the kill to the watcher's snapshot without it, against the session timeout. Run on
 *    a server with tickTime 100 ms (as the tests) and with ZooKeeper's default tickTime 2000 ms,
 *    whose session expiry is checked in tick-sized buckets.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as zookeeper from 'node-zookeeper-client';
import { createZooKeeperRegistry } from '../adapters/zookeeper';
import { ZkSession } from '../adapters/zookeeper/client';
import type { Snapshot } from '../core';
import { startZooKeeper } from '../testkit/zookeeper';
import { median, percentile, table } from './stats';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const OPEN = [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('world', 'anyone'))];

/** Resolves with the time a snapshot matching `pred` arrives (now, if the last one already does). */
class Waiter {
  last?: Snapshot;
  private w?: { pred: (s: Snapshot) => boolean; resolve: (t: number) => void };
  readonly on = (s: Snapshot) => {
    this.last = s;
    if (this.w?.pred(s)) {
      const w = this.w;
      this.w = undefined;
      w.resolve(performance.now());
    }
  };
  until(pred: (s: Snapshot) => boolean, timeoutMs = 30_000): Promise<number> {
    if (this.last && pred(this.last)) return Promise.resolve(performance.now());
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () =>
          reject(
            new Error(`no matching snapshot within ${timeoutMs} ms; last: ${this.last?.endpoints.length} endpoints`),
          ),
        timeoutMs,
      );
      this.w = {
        pred,
        resolve: (x) => {
          clearTimeout(t);
          resolve(x);
        },
      };
    });
  }
}

async function propagation(connect: string, changes: number): Promise<string> {
  const reg = createZooKeeperRegistry({ hosts: [connect], path: '/bench', sessionTimeout: 10_000 });
  const writer = new ZkSession({ hosts: [connect], sessionTimeoutMs: 10_000, opTimeoutMs: 10_000 });
  writer.start();
  const svc = 'prop';
  await writer.ensurePath(`/bench/${svc}`, OPEN);
  for (let i = 0; i < 10; i++)
    await writer.create(
      `/bench/${svc}/base-${i}`,
      Buffer.from(JSON.stringify({ host: '10.0.0.1', port: 9000 + i })),
      OPEN,
      zookeeper.CreateMode.PERSISTENT,
    );
  const w = new Waiter();
  const watch = reg.resolver.watch(svc, w.on);
  await w.until((s) => s.endpoints.length === 10);
  const fromAck: number[] = [];
  const fromIssue: number[] = [];
  const node = `/bench/${svc}/k`;
  for (let i = 0; i < changes; i++) {
    const create = i % 2 === 0;
    const want = create ? 11 : 10;
    const seen = w.until(
      (s) => s.endpoints.length === want && (!create || s.endpoints.some((e) => e.port === 20000 + i)),
    );
    const t0 = performance.now();
    if (create)
      await writer.create(
        node,
        Buffer.from(JSON.stringify({ host: '10.0.0.2', port: 20000 + i })),
        OPEN,
        zookeeper.CreateMode.PERSISTENT,
      );
    else await writer.remove(node);
    const tAck = performance.now();
    const tSeen = await seen;
    fromAck.push(Math.max(0, tSeen - tAck));
    fromIssue.push(tSeen - t0);
  }
  watch.close();
  await reg.close();
  await writer.close();
  const f = (x: number) => `${x.toFixed(2)} ms`;
  return table(
    ['measure', 'p50', 'p90', 'p99', 'max'],
    [
      [
        `ack → snapshot (${changes} changes)`,
        f(percentile(fromAck, 50)),
        f(percentile(fromAck, 90)),
        f(percentile(fromAck, 99)),
        f(Math.max(...fromAck)),
      ],
      [
        'issue → snapshot',
        f(percentile(fromIssue, 50)),
        f(percentile(fromIssue, 90)),
        f(percentile(fromIssue, 99)),
        f(Math.max(...fromIssue)),
      ],
    ],
  );
}

/** The registrant: registers, says so on stdout, then waits to be killed. */
async function child(): Promise<void> {
  const [connect, timeout, svc, port] = process.argv.slice(process.argv.indexOf('--child') + 1);
  const reg = createZooKeeperRegistry({ hosts: [connect], path: '/bench-kill', sessionTimeout: Number(timeout) });
  await reg.registrar.register({ service: svc, host: '127.0.0.1', port: Number(port) });
  process.stdout.write(`registered ${reg.session.sessionTimeoutMs}\n`);
  setInterval(() => {}, 1 << 30);
}

async function killTrial(
  connect: string,
  sessionTimeoutMs: number,
  n: number,
): Promise<{ ms: number; granted: number }> {
  const svc = `kill-${sessionTimeoutMs}-${n}`;
  const reg = createZooKeeperRegistry({ hosts: [connect], path: '/bench-kill', sessionTimeout: 30_000 });
  const w = new Waiter();
  const watch = reg.resolver.watch(svc, w.on);
  const proc = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(__dirname, 'zk-propagation.ts'),
      '--child',
      connect,
      String(sessionTimeoutMs),
      svc,
      '7000',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const granted = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /registered (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`registrant exited early (${code})`)));
  });
  await w.until((s) => s.endpoints.length === 1);
  const t0 = performance.now();
  proc.kill('SIGKILL');
  const t1 = await w.until((s) => s.endpoints.length === 0, sessionTimeoutMs * 3 + 10_000);
  watch.close();
  await reg.close();
  return { ms: t1 - t0, granted };
}

async function deadRegistrant(trials: number): Promise<string> {
  const rows: (string | number)[][] = [];
  for (const tick of [100, 2000]) {
    const zk = await startZooKeeper({ tickTimeMs: tick });
    try {
      for (const timeout of tick === 100 ? [2000, 5000] : [4000, 10_000]) {
        const xs: number[] = [];
        let granted = 0;
        for (let i = 0; i < trials; i++) {
          const r = await killTrial(zk.connectString, timeout, i);
          xs.push(r.ms);
          granted = r.granted;
        }
        rows.push([
          `${tick} ms`,
          `${granted} ms`,
          `${median(xs).toFixed(0)} ms`,
          `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)} ms`,
          `${(median(xs) / granted).toFixed(2)}×`,
        ]);
      }
    } finally {
      await zk.close();
    }
  }
  return table(['tickTime', 'session timeout (granted)', 'SIGKILL → gone, median', 'range', 'median / timeout'], rows);
}

async function main(): Promise<void> {
  if (process.argv.includes('--child')) return child();
  const changes = arg('changes', 1000);
  const trials = arg('trials', 3);
  const os = await import('node:os');
  console.log(
    `# ZooKeeper adapter (node ${process.version}, ${os.cpus().length} cores, load ${os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')})\n`,
  );
  const zk = await startZooKeeper();
  try {
    console.log('## Propagation (create/delete → snapshot)\n');
    console.log(await propagation(zk.connectString, changes));
  } finally {
    await zk.close();
  }
  console.log('\n## A SIGKILLed registrant disappears\n');
  console.log(await deadRegistrant(trials));
  console.log(
    `\nload after: ${os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}`,
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
