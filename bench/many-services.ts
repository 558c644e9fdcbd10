/**
 * Fleet scale: one process watching many services (issue 15). Not a test.
 *
 *   node --expose-gc --import tsx bench/many-services.ts [--quick] [--backends etcd,file,k8s,consul,zookeeper]
 *        [--sizes 100x3,1000x3,10000x3,100x1000] [--ways service,auto,catalog] [--rest 10] [--changes 200]
 *
 * Per backend (etcd 3.4 real, the file registry, the fake Kubernetes API) and size (services x
 * endpoints), the registry is filled first, then one Discovery per way of watching:
 * - `service`: resolver.watch() once per service with watch=service (one registry watch each);
 * - `auto`: the same calls with the default watch=auto (registry-wide past the threshold);
 * - `catalog`: discovery.catalog.watch() once.
 * Measured: time from the first watch to every service's first snapshot; heap and RSS growth per
 * endpoint over a baseline taken after GC just before (registry filled, writer clients open); CPU
 * of this process at rest (`--rest` s, nothing changing); change-to-snapshot p50/p99 over
 * `--changes` changes of one service each, written one at a time (from the write being issued);
 * server-side cost: etcd's etcd_debugging_mvcc_watch_stream_total, the fake's open watches, the
 * fake Consul agent's open blocking queries (each renewed once per 5 min wait at rest: req/min),
 * ZooKeeper's watch count (`wchs`).
 * `after ack`: from the registry acknowledging the write to the snapshot (the client's share).
 * `--quick`: 100x3 and 1000x3, 3 s at rest, 50 changes. `--phases`: phase starts on stderr, on the
 * clock of `node --cpu-prof` (read with bench/cpuprofile-summary.ts --from/--to).
 */
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Etcd3 } from 'etcd3';
import { Discovery, type Snapshot, type Watch } from '../index';
import * as zookeeper from 'node-zookeeper-client';
import { ZkSession } from '../adapters/zookeeper';
import { startEtcd, startFakeConsul, startFakeKubeApi, startZooKeeper } from '../testkit';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const opt = (name: string, def: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : def;
};
const backends = opt('backends', 'etcd,file,k8s').split(',');
const sizes = opt('sizes', quick ? '100x3,1000x3' : '100x3,1000x3,10000x3,100x1000')
  .split(',')
  .map((s) => s.split('x').map(Number) as [number, number]);
const ways = opt('ways', 'service,auto,catalog').split(',') as Way[];
const restS = Number(opt('rest', quick ? '3' : '10'));
const changes = Number(opt('changes', quick ? '50' : '200'));
/** `--phases`: print each phase's start on stderr, on the clock of --cpu-prof profiles (µs). */
const phases = argv.includes('--phases');
const phase = (name: string) => {
  if (phases) console.error(`phase ${name} ${Number(process.hrtime.bigint() / 1000n)}`);
};
type Way = 'service' | 'auto' | 'catalog';

const gc = () => (global as { gc?: () => void }).gc?.();
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU time (ns on a CPU) of this process's main thread and of all its other threads, from /proc (Linux). */
function threadTicks(): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      const name = Number(tid) === process.pid ? 'main' : 'other threads (GC, libuv, loader)';
      const ns = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      out.set(name, (out.get(name) ?? 0) + ns);
    }
  } catch {
    /* not Linux */
  }
  return out;
}
/** `--threads`: where CPU at rest went, per thread name (main thread = the process's own name). */
const threads = argv.includes('--threads');

interface Backend {
  url(way: Way): string;
  /** Makes service i have endpoints with ports base..base+n-1 (writes what changed only). */
  fill(services: number, endpoints: number): Promise<void>;
  /** Adds one endpoint (port) to service i; resolves when the write is acknowledged. */
  add(i: number, port: number): Promise<void>;
  serverCost(): Promise<string>;
  /** Removes what add() added. */
  undo(): Promise<void>;
  clear(): Promise<void>;
  close(): Promise<void>;
}

const svc = (i: number) => `svc-${i}`;

async function etcdBackend(): Promise<Backend> {
  const etcd = await startEtcd();
  const kv = new Etcd3({ hosts: etcd.url });
  let prefix = '';
  let serial = 0;
  const added: string[] = [];
  return {
    url: (way) => `etcd://${etcd.address}?prefix=${prefix}&watch=${way === 'service' ? 'service' : 'auto'}`,
    async fill(S, E) {
      prefix = `/bench${serial++}`;
      // 100 puts per transaction (etcd's default limit is 128 operations): 30,000 keys in 300 writes.
      const keys: [string, string][] = [];
      for (let i = 0; i < S; i++)
        for (let j = 0; j < E; j++)
          keys.push([`${prefix}/${svc(i)}/e${j}`, JSON.stringify({ host: '127.0.0.1', port: 1000 + j })]);
      let next = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < keys.length) {
            const batch = keys.slice(next, (next += 100));
            await kv
              .if(`${prefix}/`, 'Create', '==', 0)
              .then(...batch.map(([k, v]) => kv.put(k).value(v)))
              .commit();
          }
        }),
      );
    },
    add: async (i, port) => {
      added.push(`${prefix}/${svc(i)}/x${port}`);
      await kv.put(added.at(-1)!).value(JSON.stringify({ host: '127.0.0.1', port }));
    },
    async undo() {
      for (const k of added.splice(0)) await kv.delete().key(k);
    },
    async serverCost() {
      const text = await (await fetch(`${etcd.url}/metrics`)).text();
      const m = /^etcd_debugging_mvcc_watch_stream_total (\S+)/m.exec(text);
      return `${m ? Number(m[1]) : '?'} watch streams`;
    },
    async clear() {
      await kv.delete().prefix(`${prefix}/`);
      etcd.etcdctl(['compaction', String(etcd.revision())]);
    },
    async close() {
      kv.close();
      await etcd.close();
    },
  };
}

async function fileBackend(): Promise<Backend> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wf-bench-'));
  const file = path.join(dir, 'registry.json');
  let services: Record<string, Record<string, unknown>> = {};
  let revision = 0;
  const added: [number, number][] = [];
  const write = () => {
    const tmp = `${file}.tmp`;
    writeFileSync(
      tmp,
      JSON.stringify({ format: 'wayfinder-file-registry', version: 1, revision: ++revision, services }),
    );
    renameSync(tmp, file);
  };
  return {
    url: (way) => `file://${file}?watch=${way === 'service' ? 'service' : 'auto'}`,
    async fill(S, E) {
      services = {};
      for (let i = 0; i < S; i++) {
        const b: Record<string, unknown> = {};
        for (let j = 0; j < E; j++) b[`e${j}`] = { host: '127.0.0.1', port: 1000 + j };
        services[svc(i)] = b;
      }
      write();
    },
    add: async (i, port) => {
      services[svc(i)][`x${port}`] = { host: '127.0.0.1', port };
      added.push([i, port]);
      write();
    },
    async undo() {
      for (const [i, port] of added.splice(0)) delete services[svc(i)][`x${port}`];
      write();
    },
    serverCost: async () => '-',
    async clear() {
      services = {};
      write();
    },
    async close() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs fn(0..n-1), `width` at a time. */
async function inParallel(n: number, width: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

async function consulBackend(): Promise<Backend> {
  const fake = await startFakeConsul();
  const put = async (p: string, body?: unknown) => {
    const r = await fetch(`${fake.url}${p}`, {
      method: 'PUT',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!r.ok) throw new Error(`${p}: HTTP ${r.status}`);
    await r.arrayBuffer();
  };
  const reg = (i: number, id: string, port: number) =>
    put('/v1/agent/service/register', {
      Name: svc(i),
      ID: id,
      Address: '127.0.0.1',
      Port: port,
      Check: { CheckID: `service:${id}`, TTL: '1h', Status: 'passing' },
    });
  const ids: string[] = [];
  const added: string[] = [];
  return {
    url: (way) => `consul://${fake.address}?watch=${way === 'service' ? 'service' : 'auto'}`,
    async fill(S, E) {
      await inParallel(S * E, 16, async (k) => {
        const i = Math.floor(k / E);
        const id = `${svc(i)}-${k % E}`;
        await reg(i, id, 1000 + (k % E));
        ids.push(id);
      });
    },
    add: async (i, port) => {
      const id = `${svc(i)}-x${port}`;
      await reg(i, id, port);
      added.push(id);
    },
    // At rest every blocking query is renewed once per wait (5 min by default).
    serverCost: async () => `${fake.blockingOpen()} blocking (${(fake.blockingOpen() / 5).toFixed(1)} req/min)`,
    async undo() {
      for (const id of added.splice(0)) await put(`/v1/agent/service/deregister/${id}`);
    },
    async clear() {
      await inParallel(ids.length, 16, (k) => put(`/v1/agent/service/deregister/${ids[k]}`));
      ids.length = 0;
    },
    close: () => fake.close(),
  };
}

async function zookeeperBackend(): Promise<Backend> {
  const zk = await startZooKeeper();
  const s = new ZkSession({ hosts: [zk.connectString], sessionTimeoutMs: 30_000, opTimeoutMs: 30_000 });
  s.start();
  const open = [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('world', 'anyone'))];
  const node = (port: number) => Buffer.from(JSON.stringify({ host: '127.0.0.1', port }));
  const added: string[] = [];
  return {
    url: (way) => zk.url('/services', `watch=${way === 'service' ? 'service' : 'auto'}`),
    async fill(S, E) {
      await s.ensurePath('/services', open);
      await inParallel(S, 64, (i) => s.create(`/services/${svc(i)}`, null, open, zookeeper.CreateMode.PERSISTENT));
      await inParallel(S * E, 256, (k) =>
        s.create(
          `/services/${svc(Math.floor(k / E))}/i${k % E}`,
          node(1000 + (k % E)),
          open,
          zookeeper.CreateMode.PERSISTENT,
        ),
      );
    },
    add: async (i, port) => {
      const p = `/services/${svc(i)}/x${port}`;
      await s.create(p, node(port), open, zookeeper.CreateMode.PERSISTENT);
      added.push(p);
    },
    serverCost: async () => {
      const m = /Total watches:(\d+)/.exec(await zk.fourLetter('wchs'));
      return `${m?.[1] ?? '?'} watches`;
    },
    async undo() {
      for (const p of added.splice(0)) await s.remove(p);
    },
    async clear() {
      const kids = await s.getChildren('/services');
      await inParallel(kids.children.length, 32, async (k) => {
        const p = `/services/${kids.children[k]}`;
        const c = await s.getChildren(p);
        await Promise.all(c.children.map((x) => s.remove(`${p}/${x}`)));
        await s.remove(p);
      });
    },
    close: async () => {
      await s.close();
      await zk.close();
    },
  };
}

async function k8sBackend(): Promise<Backend> {
  const fake = await startFakeKubeApi();
  const kc = fake.writeKubeconfig();
  const addr = (j: number) => `10.${(j >> 16) & 255}.${(j >> 8) & 255}.${(j & 255) + 1}`;
  const have = new Map<number, number>();
  let filled = 0;
  return {
    url: (way) => `k8s://?kubeconfig=${encodeURIComponent(kc)}&watch=${way === 'service' ? 'service' : 'auto'}`,
    async fill(S, E) {
      for (let i = 0; i < S; i++)
        fake.setEndpoints(
          'default',
          svc(i),
          Array.from({ length: E }, (_, j) => ({ address: addr(j), ports: [{ port: 8080 }] })),
        );
      for (let i = 0; i < S; i++) have.set(i, E);
      filled = E;
    },
    add: async (i) => {
      const j = have.get(i)!;
      have.set(i, j + 1);
      fake.upsertEndpoint('default', svc(i), { address: addr(j), ports: [{ port: 8080 }] });
    },
    serverCost: async () => `${fake.openWatches()} watches`,
    async undo() {
      for (const [i, n] of have) {
        if (n === filled) continue;
        for (let j = filled; j < n; j++) fake.deleteEndpoint('default', svc(i), addr(j));
        have.set(i, filled);
      }
    },
    async clear() {
      for (const i of have.keys()) fake.setEndpoints('default', svc(i), []);
      have.clear();
    },
    close: () => fake.stop(),
  };
}

interface Row {
  backend: string;
  size: string;
  way: Way;
  firstMs: number;
  heapB: number;
  rssB: number;
  restMsPerS: number;
  p50: number;
  p99: number;
  ackP50: number;
  ackP99: number;
  server: string;
}

async function measure(b: Backend, name: string, S: number, E: number, way: Way): Promise<Row> {
  phase(`${name} ${S}x${E} ${way} start`);
  const d = await Discovery.fromConfig(b.url(way));
  gc();
  await sleep(100);
  gc();
  const heap0 = process.memoryUsage().heapUsed;
  const rss0 = process.memoryUsage().rss;
  const counts = new Map<string, number>();
  let firsts = 0;
  let waiting: { service: string; n: number; done: () => void } | undefined;
  let seenAt: number | undefined;
  const onSnap = (s: Snapshot) => {
    if (!counts.has(s.service)) firsts++;
    counts.set(s.service, s.endpoints.length);
    if (waiting && waiting.service === s.service && s.endpoints.length >= waiting.n) {
      seenAt = performance.now();
      waiting.done();
    }
  };
  const watches: Watch[] = [];
  let allFirst!: () => void;
  const first = new Promise<void>((r) => (allFirst = r));
  const t0 = performance.now();
  if (way === 'catalog') {
    watches.push(
      d.catalog.watch((c) => {
        if (c.initial) for (const s of c.snapshots.values()) onSnap(s);
        else onSnap(c.snapshot);
        if (firsts >= S) allFirst();
      }),
    );
  } else {
    for (let i = 0; i < S; i++)
      watches.push(
        d.resolver.watch(svc(i), (s) => {
          onSnap(s);
          if (firsts >= S) allFirst();
        }),
      );
  }
  await Promise.race([first, sleep(120_000)]);
  const firstMs = firsts >= S ? performance.now() - t0 : NaN;
  phase(`${name} ${S}x${E} ${way} settle`);
  await sleep(1000); // let an automatic switch to the registry stream settle
  gc();
  await sleep(100);
  gc();
  const heapB = (process.memoryUsage().heapUsed - heap0) / (S * E);
  const rssB = (process.memoryUsage().rss - rss0) / (S * E);
  phase(`${name} ${S}x${E} ${way} rest`);
  const t0s = threadTicks();
  const c0 = process.cpuUsage();
  const r0 = performance.now();
  await sleep(restS * 1000);
  const cpu = process.cpuUsage(c0);
  const restS_ = (performance.now() - r0) / 1000;
  const restMsPerS = (cpu.user + cpu.system) / 1000 / restS_;
  if (threads) {
    const parts = [...threadTicks()]
      .map(([n, t]) => [n, (t - (t0s.get(n) ?? 0)) / 1e6 / restS_] as const)
      .filter(([, v]) => v >= 0.005)
      .map(([n, v]) => `${n} ${v.toFixed(2)}`);
    console.error(`rest ${name} ${S}x${E} ${way}: ms/s by thread: ${parts.join(', ') || 'none'}`);
  }
  const server = await b.serverCost();
  phase(`${name} ${S}x${E} ${way} changes`);
  const lat: number[] = [];
  const afterAck: number[] = [];
  for (let k = 0; k < changes; k++) {
    const i = (k * 7919) % S;
    const n = (counts.get(svc(i)) ?? 0) + 1;
    const seen = new Promise<void>((resolve) => (waiting = { service: svc(i), n, done: resolve }));
    seenAt = undefined;
    const t = performance.now();
    await b.add(i, 40_000 + k);
    const acked = performance.now();
    await Promise.race([seen, sleep(5000)]);
    lat.push(performance.now() - t);
    // Our share: from the registry acknowledging the write to the snapshot (0 when seen before the ack).
    afterAck.push(seenAt === undefined ? 5000 : Math.max(0, seenAt - acked));
    waiting = undefined;
  }
  phase(`${name} ${S}x${E} ${way} end`);
  for (const w of watches) w.close();
  await d.close();
  return {
    backend: name,
    size: `${S}x${E}`,
    way,
    firstMs,
    heapB,
    rssB,
    restMsPerS,
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    ackP50: pct(afterAck, 50),
    ackP99: pct(afterAck, 99),
    server,
  };
}

const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');

async function main() {
  const makers: Record<string, () => Promise<Backend>> = {
    etcd: etcdBackend,
    file: fileBackend,
    k8s: k8sBackend,
    consul: consulBackend,
    zookeeper: zookeeperBackend,
  };
  console.log(
    `| backend | services x endpoints | way | all first snapshots (ms) | heap B/endpoint | RSS B/endpoint | CPU at rest (ms/s) | change p50 / p99 (ms) | after ack p50 / p99 (ms) | server |`,
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const name of backends) {
    const b = await makers[name]();
    try {
      for (const [S, E] of sizes) {
        phase(`${name} ${S}x${E} fill`);
        await b.fill(S, E);
        for (const way of ways) {
          const r = await measure(b, name, S, E, way);
          console.log(
            `| ${r.backend} | ${r.size} | ${r.way} | ${f(r.firstMs)} | ${f(r.heapB)} | ${f(r.rssB)} | ${f(r.restMsPerS, 2)} | ${f(r.p50, 1)} / ${f(r.p99, 1)} | ${f(r.ackP50, 1)} / ${f(r.ackP99, 1)} | ${r.server} |`,
          );
          await b.undo();
        }
        await b.clear();
      }
    } finally {
      await b.close();
    }
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
