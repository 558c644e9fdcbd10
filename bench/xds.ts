/**
 * xDS control plane benchmark: 10,000 services in a memory registry, C simulated ADS clients each
 * subscribed (EDS) to 10 of them, over loopback.
 *
 *   node --import tsx bench/xds.ts [--services 10000] [--subs 10] [--clients 250,500,1000] [--writes 200]
 *
 * The server (registry + xDS server) runs in a child process, so its memory and CPU are measured
 * alone; the clients (raw ADS streams, one HTTP/2 connection each, ACKing every response) run in
 * this process. Per client count:
 *   - sync: time from opening the streams to every client holding its 10 assignments;
 *   - memory: the server's heap and RSS after GC, over its own baseline (the same registry with the
 *     xDS server started and no client), per subscription;
 *   - idle CPU: the server's CPU time over 5 s with every client connected and nothing changing;
 *   - propagation: `writes` registry writes, one at a time, each adding an endpoint to a random
 *     subscribed service; latency = from the write (in the server process) to the last subscribed
 *     client receiving the assignment that holds it. p50 / p99 / max.
 */
import '../builtins'; // the built-in registries and balancers
import { fork, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { Discovery } from '../core';
import { RawAds, resourcesOf } from '../xds/fixtures/raw';
import { startXdsServer } from '../xds';
import { TYPE, xdsRoot, type DiscoveryResponse } from '../xds/protocol';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}
const now = () => performance.timeOrigin + performance.now();
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

type Msg =
  | { op: 'ready'; port: number }
  | { op: 'mem'; heap: number; rss: number }
  | { op: 'cpu'; ms: number }
  | { op: 'written'; at: number; service: string; port: number };

// ---- server side (child process) ----

async function serverMain(): Promise<void> {
  const services = Number(arg('services', '10000'));
  const d = await Discovery.fromConfig('memory://bench-xds');
  for (let s = 0; s < services; s++)
    for (let e = 0; e < 2; e++)
      await d.registrar.register({ service: `svc-${s}`, host: '127.0.0.1', port: 10_000 + e, weight: 1 + e });
  const xds = await startXdsServer({ discovery: d, host: '127.0.0.1', port: 0, loadReporting: false });
  let nextPort = 20_000;
  const send = (m: Msg) => process.send!(m);
  process.on('message', (m: { op: string; service?: string; ms?: number }) => {
    if (m.op === 'mem') {
      (global as { gc?: () => void }).gc?.();
      const u = process.memoryUsage();
      send({ op: 'mem', heap: u.heapUsed, rss: u.rss });
    } else if (m.op === 'cpu') {
      const c0 = process.cpuUsage();
      setTimeout(() => {
        const c = process.cpuUsage(c0);
        send({ op: 'cpu', ms: (c.user + c.system) / 1000 });
      }, m.ms);
    } else if (m.op === 'write') {
      const port = nextPort++;
      const at = now();
      void d.registrar.register({ service: m.service!, host: '127.0.0.1', port }).then(() => {
        send({ op: 'written', at, service: m.service!, port });
      });
    } else if (m.op === 'stop') {
      void xds.stop().then(() => d.close().then(() => process.exit(0)));
    }
  });
  send({ op: 'ready', port: xds.port });
}

// ---- client side (this process) ----

class Server {
  private readonly child: ChildProcess;
  private readonly waiters: ((m: Msg) => boolean)[] = [];
  constructor(services: number) {
    this.child = fork(__filename, ['--server', '--services', String(services)], {
      execArgv: ['--import', 'tsx', '--expose-gc'],
    });
    this.child.on('message', (m: Msg) => {
      const i = this.waiters.findIndex((w) => w(m));
      if (i >= 0) this.waiters.splice(i, 1);
    });
  }
  ask<T extends Msg['op']>(req: object | undefined, op: T): Promise<Extract<Msg, { op: T }>> {
    const p = new Promise<Extract<Msg, { op: T }>>((resolve) =>
      this.waiters.push((m) => (m.op === op ? (resolve(m as Extract<Msg, { op: T }>), true) : false)),
    );
    if (req) this.child.send(req);
    return p;
  }
  async stop(): Promise<void> {
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.send({ op: 'stop' });
    await exited;
  }
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface SimClient {
  ads: RawAds;
  subs: string[];
  /** service -> ports in the latest assignment received, and when. */
  seen: Map<string, { ports: Set<number>; at: number }>;
}

async function runSize(clients: number, services: number, subsPer: number, writes: number) {
  const server = new Server(services);
  const { port } = await server.ask(undefined, 'ready');
  const base = await server.ask({ op: 'mem' }, 'mem');
  const random = seeded(clients);
  xdsRoot(); // load the protos before timing
  const sims: SimClient[] = [];
  const t0 = now();
  let synced = 0;
  let onSynced: () => void = () => {};
  const allSynced = new Promise<void>((r) => (onSynced = r));
  const waiters = new Set<() => void>();
  for (let i = 0; i < clients; i++) {
    const subs = new Set<string>();
    while (subs.size < subsPer) subs.add(`svc-${Math.floor(random() * services)}`);
    const sim: SimClient = {
      ads: new RawAds(port, { id: `sim-${i}`, locality: { zone: 'z' } }),
      subs: [...subs],
      seen: new Map(),
    };
    let done = false;
    sim.ads.onResponse = (r: DiscoveryResponse) => {
      const at = now();
      for (const cla of resourcesOf<{
        cluster_name: string;
        endpoints?: { lb_endpoints?: { endpoint: { address: { socket_address: { port_value: number } } } }[] }[];
      }>(r)) {
        const ports = new Set(
          (cla.endpoints ?? []).flatMap((l) =>
            (l.lb_endpoints ?? []).map((e) => e.endpoint.address.socket_address.port_value),
          ),
        );
        sim.seen.set(cla.cluster_name, { ports, at });
      }
      sim.ads.ack(r, sim.subs);
      if (!done && sim.seen.size === sim.subs.length) {
        done = true;
        if (++synced === clients) onSynced();
      }
      for (const w of [...waiters]) w();
    };
    sim.ads.send(TYPE.endpoint, sim.subs);
    sims.push(sim);
  }
  await allSynced;
  const syncMs = now() - t0;
  const mem = await server.ask({ op: 'mem' }, 'mem');
  const idleMs = 5000;
  const cpu = await server.ask({ op: 'cpu', ms: idleMs }, 'cpu');

  const subscribers = new Map<string, SimClient[]>();
  for (const s of sims) for (const name of s.subs) subscribers.set(name, [...(subscribers.get(name) ?? []), s]);
  const subscribed = [...subscribers.keys()];
  const latencies: number[] = [];
  for (let w = 0; w < writes; w++) {
    const service = subscribed[Math.floor(random() * subscribed.length)];
    const written = await server.ask({ op: 'write', service }, 'written');
    const holders = subscribers.get(service)!;
    const has = () => holders.every((h) => h.seen.get(service)?.ports.has(written.port));
    if (!has())
      await new Promise<void>((resolve) => {
        const check = () => {
          if (has()) {
            waiters.delete(check);
            resolve();
          }
        };
        waiters.add(check);
      });
    latencies.push(Math.max(...holders.map((h) => h.seen.get(service)!.at)) - written.at);
  }
  for (const s of sims) s.ads.close();
  await server.stop();
  const subscriptions = clients * subsPer;
  return {
    clients,
    subscriptions,
    syncMs,
    heapMB: (mem.heap - base.heap) / 2 ** 20,
    rssMB: (mem.rss - base.rss) / 2 ** 20,
    heapPerSubKB: (mem.heap - base.heap) / subscriptions / 1024,
    baseHeapMB: base.heap / 2 ** 20,
    idleCpuPct: (cpu.ms / idleMs) * 100,
    p50: pct(latencies, 50),
    p99: pct(latencies, 99),
    max: Math.max(...latencies),
  };
}

async function main(): Promise<void> {
  const services = Number(arg('services', '10000'));
  const subs = Number(arg('subs', '10'));
  const writes = Number(arg('writes', '200'));
  const sizes = arg('clients', '250,500,1000').split(',').map(Number);
  const rows = [];
  for (const c of sizes) {
    const r = await runSize(c, services, subs, writes);
    rows.push(r);
    console.error(JSON.stringify(r));
  }
  const f = (x: number, d = 1) => x.toFixed(d);
  console.log(
    '| clients | subscriptions | initial sync | server heap over baseline | per subscription | RSS over baseline | idle CPU | write -> all subscribers p50 | p99 | max |',
  );
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows)
    console.log(
      `| ${r.clients} | ${r.subscriptions} | ${f(r.syncMs, 0)} ms | ${f(r.heapMB)} MB | ${f(r.heapPerSubKB, 2)} KB | ${f(r.rssMB)} MB | ${f(r.idleCpuPct, 2)} % | ${f(r.p50, 2)} ms | ${f(r.p99, 2)} ms | ${f(r.max, 2)} ms |`,
    );
  console.log(
    `\nbaseline server heap (${services} services x 2 endpoints, xDS server, no client): ${f(rows[0].baseHeapMB)} MB`,
  );
}

if (process.argv.includes('--server')) void serverMain();
else
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
