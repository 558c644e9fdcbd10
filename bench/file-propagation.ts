/**
 * File registry benchmark: how fast a change in the registry file reaches a watcher, and what
 * watching costs when nothing changes. No server: a temp directory on the local filesystem.
 *
 *   node --import tsx bench/file-propagation.ts [--changes 400] [--idle-seconds 5]
 *
 * 1. Propagation: one watched service holding 10 instances; `changes` alternating registers and
 *    deregisters of an 11th by a second registry (another process would behave the same: the
 *    reader learns of it only through the file), 5-45 ms apart so the poll phase is random.
 *    Latency = from the rename that made the write visible to the watcher's snapshot, and from the
 *    register()/deregister() call. Modes: fs.watch on (poll 50 ms as fallback) and poll only
 *    (watch=false, poll 50 ms). Baseline in the same run: a bare fs.watch on the same directory
 *    (no Wayfinder), rename -> its event for the file, for the same renames.
 * 2. Idle cost: one registry watching N services of one unchanged file (poll 50 ms, fs.watch on)
 *    for `idle-seconds`: poll ticks/s, full reads, CPU % of one core of the whole process, against
 *    the same process idle with nothing watched.
 */
import { watch as fsWatch } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createFileRegistry, type FileRegistry } from '../adapters/file';
import { fileStore } from '../adapters/file/store';
import type { Snapshot } from '../core';
import { SnapshotRecorder, tempDir } from '../testkit';
import { median, percentile, table } from './stats';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const load = () =>
  os
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(' ');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const f = (x: number) => `${x.toFixed(2)} ms`;
const row = (what: string, xs: number[]) => [
  what,
  f(median(xs)),
  f(percentile(xs, 90)),
  f(percentile(xs, 99)),
  f(Math.max(...xs)),
];

/** Waits for a snapshot matching `pred`; resolves with it and the time it arrived. */
async function timed(rec: SnapshotRecorder, pred: (s: Snapshot) => boolean): Promise<{ s: Snapshot; at: number }> {
  let at = 0;
  const s = await rec.until((x) => pred(x) && (at = performance.now()) > 0, 10_000);
  return { s, at };
}

interface Propagation {
  fromRename: number[];
  fromCall: number[];
  /** Bare fs.watch: rename -> the directory watch's event naming the file. */
  bare: number[];
  polls: number;
  events: number;
}

async function propagation(watch: boolean, changes: number): Promise<Propagation> {
  const dir = tempDir('wayfinder-bench-file-');
  const file = path.join(dir.dir, 'registry.json');
  const regs: FileRegistry[] = [];
  const open = (o: Parameters<typeof createFileRegistry>[0]) => {
    const r = createFileRegistry(o);
    regs.push(r);
    return r;
  };
  const svc = 'prop';
  const writer = open({ path: file, ttl: '1h' }); // no heartbeat write during the run
  for (let i = 0; i < 10; i++) await writer.registrar.register({ service: svc, host: '127.0.0.1', port: 9000 + i });
  const reader = open({ path: file, watch, poll: '50ms' });
  const visible = new Map<string, number>();
  const off = fileStore(file).onWrite((w) => visible.set(String(w.revision), w.visibleAt));
  const events: number[] = [];
  const bare = fsWatch(dir.dir, { persistent: false }, (_e, name) => {
    if (name === 'registry.json') events.push(performance.now());
  });
  const w = new SnapshotRecorder();
  const sub = reader.resolver.watch(svc, w.onSnapshot);
  const out: Propagation = { fromRename: [], fromCall: [], bare: [], polls: 0, events: 0 };
  try {
    await timed(w, (s) => s.endpoints.length === 10);
    const s0 = reader.watchStats();
    let handle: { deregister(): Promise<void> } | undefined;
    for (let i = 0; i < changes; i++) {
      const add = i % 2 === 0;
      const port = 20000 + i;
      const seen = timed(w, (s) => (add ? s.endpoints.some((e) => e.port === port) : s.endpoints.length === 10));
      const t0 = performance.now();
      if (add) handle = await writer.registrar.register({ service: svc, host: '127.0.0.1', port });
      else await handle!.deregister();
      const { s, at: tSeen } = await seen;
      const rev = s.revision!;
      const at = visible.get(rev);
      if (at === undefined) throw new Error(`no write recorded for revision ${rev}`);
      out.fromRename.push(tSeen - at);
      out.fromCall.push(tSeen - t0);
      // The bare watch's event may come after the snapshot: give it a moment.
      for (let k = 0; k < 100 && !events.some((e) => e >= at); k++) await sleep(1);
      const ev = events.find((e) => e >= at);
      if (ev !== undefined) out.bare.push(ev - at);
      events.length = 0;
      await sleep(5 + Math.random() * 40);
    }
    const s1 = reader.watchStats();
    out.polls = s1.polls - s0.polls;
    out.events = s1.events - s0.events;
  } finally {
    bare.close();
    off();
    sub.close();
    for (const r of regs) {
      await r.registrar.close().catch(() => {});
      await r.resolver.close();
    }
    dir.remove();
  }
  return out;
}

interface Idle {
  services: number;
  ms: number;
  ticks: number;
  reads: number;
  cpuPct: number;
}

/** One process idle for `seconds`, watching `services` services of one unchanged file (0: nothing watched). */
async function idle(services: number, seconds: number): Promise<Idle> {
  const dir = tempDir('wayfinder-bench-file-');
  const file = path.join(dir.dir, 'registry.json');
  const writer = createFileRegistry({ path: file, ttl: '1h' });
  const reader = createFileRegistry({ path: file, poll: '50ms' });
  const closers: (() => void)[] = [];
  try {
    for (let i = 0; i < Math.max(services, 1); i++)
      await writer.registrar.register({ service: `idle-${i}`, host: '127.0.0.1', port: 23000 + i });
    const waits: Promise<unknown>[] = [];
    for (let i = 0; i < services; i++) {
      const w = new SnapshotRecorder();
      closers.push(reader.resolver.watch(`idle-${i}`, w.onSnapshot).close);
      waits.push(timed(w, (s) => s.endpoints.length === 1));
    }
    await Promise.all(waits);
    await sleep(200); // let the last fs.watch events of the setup writes drain
    const s0 = reader.watchStats();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await sleep(seconds * 1000);
    const c = process.cpuUsage(c0);
    const ms = performance.now() - t0;
    const s1 = reader.watchStats();
    return {
      services,
      ms,
      ticks: s1.polls - s0.polls,
      reads: s1.reads - s0.reads,
      cpuPct: ((c.user + c.system) / 1000 / ms) * 100,
    };
  } finally {
    for (const c of closers) c();
    await writer.registrar.close().catch(() => {});
    await writer.resolver.close();
    await reader.resolver.close();
    dir.remove();
  }
}

async function main(): Promise<void> {
  const changes = arg('changes', 400);
  const idleSeconds = arg('idle-seconds', 5);
  console.log(`# File registry (node ${process.version}, ${os.cpus().length} cores, load ${load()})\n`);

  console.log(`## Propagation (${changes} alternating registers/deregisters, 10 instances, poll 50 ms)\n`);
  const fsw = await propagation(true, changes);
  const poll = await propagation(false, changes);
  console.log(
    table(
      ['measure', 'p50', 'p90', 'p99', 'max'],
      [
        row('baseline: bare fs.watch, rename → event (same renames as the next row)', fsw.bare),
        row('fs.watch on: rename → snapshot', fsw.fromRename),
        row('fs.watch on: register()/deregister() call → snapshot', fsw.fromCall),
        row('poll only: rename → snapshot', poll.fromRename),
        row('poll only: register()/deregister() call → snapshot', poll.fromCall),
      ],
    ),
  );
  console.log(
    `\nreader counters over the run: fs.watch on: ${fsw.events} fs.watch events, ${fsw.polls} poll ticks; ` +
      `poll only: ${poll.events} events, ${poll.polls} poll ticks (bare events matched: ${fsw.bare.length}/${changes})`,
  );

  console.log(`\n## Idle cost (unchanged file, poll 50 ms, fs.watch on, ${idleSeconds} s each)\n`);
  const rows: (string | number)[][] = [];
  for (const n of [0, 1, 20, 200]) {
    const r = await idle(n, idleSeconds);
    rows.push([
      n === 0 ? 'baseline: nothing watched' : `${n} service${n === 1 ? '' : 's'}`,
      (r.ticks / (r.ms / 1000)).toFixed(1),
      r.reads,
      `${r.cpuPct.toFixed(2)} %`,
    ]);
  }
  console.log(table(['watching', 'poll ticks/s', 'full reads', 'CPU (whole process, % of one core)'], rows));
  console.log(`\nload after: ${load()}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
