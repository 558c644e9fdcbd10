/**
 * `npm run demo`: three gRPC echo servers (child processes, 10 ms each) register in the embedded
 * file registry; two clients call `wayfinder:///echo` side by side, one with `wayfinder_round_robin`,
 * one with `wayfinder_p2c_ewma`, and a live table shows both. At 5 s server s3 turns slow (SIGUSR2:
 * 200 ms per call): round-robin keeps sending it a third of the calls, p2c_ewma moves away from it,
 * and the clients' p50/p99 and s3's share diverge. Then s2 is killed with SIGKILL (no
 * deregistration: it drops out when grpc-js sees the connection die and, at the latest, when its
 * registry entry's TTL runs out); a replacement s4 starts and joins; s1 is stopped gracefully (deregister, drain,
 * shut down) under load.
 * It ends by itself in about 40 s (on an idle machine), cleans up, and exits non-zero if calls failed outside the
 * moment of the crash, or if p2c_ewma did not send the slow server a smaller share than round-robin.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Discovery } from '../../index';
import { installGrpc } from '../../grpc';
import { EchoClient } from '../../testkit/echo';

const TTL_MS = 3000;
const RATE_PER_SEC = 100; // per client
const BASE_MS = 10;
const SLOW_MS = 200;
const SLOW_ID = 's3';
/** The two clients: same target, same servers, a different balancer in the service config. */
const CLIENTS = [
  { name: 'round_robin', policy: 'wayfinder_round_robin' },
  { name: 'p2c_ewma', policy: 'wayfinder_p2c_ewma' },
] as const;
type ClientName = (typeof CLIENTS)[number]['name'];
const tty = !!process.stdout.isTTY && !process.env.CI;
const dir = mkdtempSync(path.join(os.tmpdir(), 'wayfinder-demo-'));
const registry = `file://${dir}/registry.json?ttl=${TTL_MS}ms`;
const t0 = Date.now();
const secs = () => ((Date.now() - t0) / 1000).toFixed(1).padStart(5);

interface Backend {
  id: string;
  latencyMs: number;
  child: ChildProcess;
  port?: number;
  state: 'starting' | 'up' | 'killed' | 'stopping' | 'stopped';
}
interface Stats {
  calls: number;
  recent: { at: number; ms: number }[];
}
interface ClientStats {
  /** Per backend id. */
  byServer: Map<string, Stats>;
  /** Every answered call: when, how long, which server. */
  all: { at: number; ms: number; server: string }[];
  calls: number;
}
const backends = new Map<string, Backend>();
const stats = new Map<ClientName, ClientStats>(
  CLIENTS.map((c) => [c.name, { byServer: new Map(), all: [], calls: 0 }]),
);
const events: string[] = [];
const failures: { at: number; code: string; client: ClientName }[] = [];
let totalCalls = 0;
let slowSince = Infinity;

function log(msg: string): void {
  events.push(`${secs()}s  ${msg}`);
  if (!tty) console.log(`${secs()}s  ${msg}`);
}

function startBackend(id: string, latencyMs: number): Promise<Backend> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'server.ts')], {
    env: {
      ...process.env,
      WAYFINDER_REGISTRY: registry,
      DEMO_ID: id,
      DEMO_LATENCY_MS: String(latencyMs),
      DEMO_SLOW_MS: String(SLOW_MS),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const b: Backend = { id, latencyMs, child, state: 'starting' };
  backends.set(id, b);
  child.on('exit', () => {
    if (b.state !== 'killed') b.state = 'stopped';
  });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${id} did not start within 20 s`)), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      const m = /READY (\S+) (\d+)/.exec(d.toString());
      if (m) {
        clearTimeout(t);
        b.port = Number(m[2]);
        b.state = 'up';
        log(`started ${id} on port ${b.port} (latency ${latencyMs} ms), registered in the file registry`);
        resolve(b);
      }
    });
    child.once('exit', (code) => reject(new Error(`${id} exited with ${code} before it was ready`)));
  });
}

function pct(xs: number[], p: number): string {
  if (!xs.length) return '-';
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)].toFixed(1);
}

/** Share of a client's answered calls (since `from`) that the slow server answered. */
function slowShare(c: ClientStats, from: number): string {
  const xs = c.all.filter((r) => r.at >= from);
  if (!xs.length) return '-';
  return `${((xs.filter((r) => r.server === SLOW_ID).length / xs.length) * 100).toFixed(0)}%`;
}

function render(): string {
  const now = Date.now();
  const recent = (st: Stats) => (st.recent = st.recent.filter((r) => now - r.at < 5000));
  const rows = [...backends.values()].map((b) => {
    const cells = [b.id, String(b.port ?? '-'), b.state, `${b.latencyMs} ms`];
    for (const c of CLIENTS) {
      const st = stats.get(c.name)!.byServer.get(b.id) ?? { calls: 0, recent: [] };
      const lat = recent(st).map((r) => r.ms);
      cells.push(String(st.calls), (lat.length / 5).toFixed(0), pct(lat, 50), pct(lat, 99));
    }
    return cells;
  });
  const header = ['backend', 'port', 'state', 'latency'];
  for (const c of CLIENTS) header.push(`${c.name}: calls`, 'calls/s', 'p50', 'p99');
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join('  ');
  const failedRecent = failures.filter((f) => now - f.at < 5000).length;
  const clientLines = CLIENTS.map((c) => {
    const st = stats.get(c.name)!;
    const lat = st.all.filter((r) => now - r.at < 5000).map((r) => r.ms);
    const slow =
      slowSince === Infinity
        ? `${SLOW_ID} not slow yet`
        : `${SLOW_ID}'s share since it turned slow ${slowShare(st, slowSince)} (last 5 s ${slowShare(st, now - 5000)})`;
    return `${c.name.padEnd(12)} last 5 s: p50 ${pct(lat, 50).padStart(6)} ms  p99 ${pct(lat, 99).padStart(6)} ms   ${slow}`;
  });
  return [
    `Wayfinder demo: two clients -> wayfinder:///echo over ${registry}`,
    `t=${secs()}s  calls ${totalCalls}  failed ${failures.length} (last 5 s: ${failedRecent})`,
    ...clientLines,
    '',
    line(header),
    ...rows.map(line),
    '',
    ...events.slice(-8),
  ].join('\n');
}

async function main(): Promise<void> {
  const discovery = await Discovery.fromConfig(registry);
  installGrpc({ discovery });
  const clients = CLIENTS.map((c) => ({
    ...c,
    client: new EchoClient('wayfinder:///echo', undefined, {
      'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ [c.policy]: {} }] }),
    }),
  }));
  const cleanup = async () => {
    for (const b of backends.values())
      if (b.child.exitCode === null && b.child.signalCode === null) b.child.kill('SIGKILL');
    for (const c of clients) c.client.close();
    await discovery.close();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));

  // Piped (no terminal): the title first, not only with the summary.
  if (!tty) console.log(render().split('\n')[0]);
  try {
    await Promise.all([startBackend('s1', BASE_MS), startBackend('s2', BASE_MS), startBackend(SLOW_ID, BASE_MS)]);
    const load = setInterval(() => {
      for (const c of clients) {
        const started = performance.now();
        totalCalls++;
        const cs = stats.get(c.name)!;
        c.client.echo({ message: 'hi' }, { deadlineMs: 2000, waitForReady: true }).then(
          (r) => {
            const at = Date.now();
            const ms = performance.now() - started;
            const s = cs.byServer.get(r.serverId) ?? { calls: 0, recent: [] };
            s.calls++;
            s.recent.push({ at, ms });
            cs.byServer.set(r.serverId, s);
            cs.calls++;
            cs.all.push({ at, ms, server: r.serverId });
          },
          (e: { code?: number; details?: string }) =>
            failures.push({ at: Date.now(), code: String(e.details ?? e.code), client: c.name }),
        );
      }
    }, 1000 / RATE_PER_SEC);
    const screen = setInterval(() => {
      if (tty) process.stdout.write(`\x1b[2J\x1b[H${render()}\n`);
    }, 500);
    const table = tty
      ? undefined
      : setInterval(
          () =>
            console.log(
              `\n${render()
                .split('\n')
                .slice(1, 3 + CLIENTS.length + backends.size + 1)
                .join('\n')}\n`,
            ),
          5000,
        );
    const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

    await wait(5000);
    const slow = backends.get(SLOW_ID)!;
    slow.child.kill('SIGUSR2');
    slow.latencyMs = SLOW_MS;
    slowSince = Date.now();
    log(`${SLOW_ID} turns slow: ${SLOW_MS} ms per call from now on (round_robin keeps sending it a third)`);
    await wait(8000);
    log(
      `after 8 s of slow ${SLOW_ID}: its share ${CLIENTS.map((c) => `${c.name} ${slowShare(stats.get(c.name)!, slowSince)}`).join(', ')}`,
    );
    const victim = backends.get('s2')!;
    victim.state = 'killed';
    victim.child.kill('SIGKILL');
    const killedAt = Date.now();
    log(`kill -9 s2: no deregistration; its entry stays until its ${TTL_MS} ms TTL runs out`);
    // s4's process starts now (a replacement being scheduled) and joins when it is ready.
    const joining = startBackend('s4', BASE_MS);
    joining.catch(() => undefined);
    // The entry's last heartbeat was at most ttl/3 before the kill, so it is gone TTL_MS after it
    // at the latest (plus one poll of the watchers).
    await wait(TTL_MS + 100);
    const windowEnd = Date.now();
    log(
      `TTL window over (${windowEnd - killedAt} ms after the kill, TTL ${TTL_MS} ms): failures since the kill: ${failures.filter((f) => f.at >= killedAt).length}`,
    );
    await joining;
    await wait(4000);
    const s1 = backends.get('s1')!;
    s1.state = 'stopping';
    log('SIGTERM s1: deregister, drain 1 s, shut down (graceful: expect no failed calls)');
    s1.child.kill('SIGTERM');
    const termAt = Date.now();
    await new Promise((r) => s1.child.once('exit', r));
    log(`s1 exited ${((Date.now() - termAt) / 1000).toFixed(1)} s after SIGTERM`);
    await wait(3000);
    clearInterval(load);
    await wait(2100); // let the last calls finish (their deadline is 2 s)
    clearInterval(screen);
    if (table) clearInterval(table);
    if (tty) process.stdout.write(`\x1b[2J\x1b[H${render()}\n`);
    else console.log(`\n${render()}`);

    const late = failures.filter((f) => f.at >= windowEnd);
    const atCrash = failures.filter((f) => f.at >= killedAt && f.at < windowEnd);
    const before = failures.filter((f) => f.at < killedAt);
    console.log(
      `\nsummary: ${totalCalls} calls; failed before the crash: ${before.length}; at the crash (within the TTL window): ${atCrash.length}; after the TTL window (incl. the graceful stop): ${late.length}`,
    );
    for (const f of failures.slice(0, 5))
      console.log(`  failure at ${((f.at - t0) / 1000).toFixed(1)}s (${f.client}): ${f.code}`);
    // The slow server's share and the latency while it was slow (until the crash changed the set).
    const during = (c: ClientStats) => c.all.filter((r) => r.at >= slowSince + 2000 && r.at < killedAt);
    const shares = CLIENTS.map((c) => {
      const xs = during(stats.get(c.name)!);
      const ms = xs.map((r) => r.ms);
      const share = xs.filter((r) => r.server === SLOW_ID).length / Math.max(1, xs.length);
      console.log(
        `${c.name.padEnd(12)} while ${SLOW_ID} was slow: ${SLOW_ID}'s share ${(share * 100).toFixed(1)}%, p50 ${pct(ms, 50)} ms, p99 ${pct(ms, 99)} ms (${xs.length} calls)`,
      );
      return share;
    });
    const diverged = shares[1] < shares[0];
    const failedOutside = before.length + late.length;
    process.exitCode = failedOutside === 0 && diverged ? 0 : 1;
    console.log(
      process.exitCode === 0
        ? 'demo OK: p2c_ewma moved away from the slow server; failover and recovery with no failed calls outside the crash window'
        : failedOutside
          ? 'demo FAILED: calls failed outside the crash window'
          : 'demo FAILED: p2c_ewma did not send the slow server less than round_robin did',
    );
  } finally {
    for (const b of backends.values()) if (b.state !== 'killed' && b.child.exitCode === null) b.child.kill('SIGTERM');
    await Promise.all(
      [...backends.values()].map((b) =>
        b.child.exitCode === null && b.child.signalCode === null
          ? new Promise((r) => b.child.once('exit', r))
          : undefined,
      ),
    );
    await cleanup();
  }
}

main().catch((e) => {
  console.error(`demo failed: ${e instanceof Error ? e.stack : e}`);
  process.exitCode = 1;
});
