/**
 * `npm run demo`: three gRPC echo servers (child processes) register in the embedded file registry
 * with different latencies; a client calls `wayfinder:///echo` with round-robin and shows a live
 * table. Midway one server is killed with SIGKILL (no deregistration: it drops out when grpc-js
 * sees the connection die and, at the latest, when its registry entry's TTL runs out); later a new
 * server joins; then one is stopped gracefully (deregister, drain, shut down) under load.
 * It ends by itself in about 45 s, cleans up, and exits non-zero if calls failed outside the
 * moment of the crash.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Discovery } from '../../index';
import { installGrpc } from '../../grpc';
import { EchoClient } from '../../testkit/echo';

const TTL_MS = 3000;
const RATE_PER_SEC = 100;
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
const backends = new Map<string, Backend>();
const stats = new Map<string, Stats>();
const events: string[] = [];
const failures: { at: number; code: string }[] = [];
let totalCalls = 0;

function log(msg: string): void {
  events.push(`${secs()}s  ${msg}`);
  if (!tty) console.log(`${secs()}s  ${msg}`);
}

function startBackend(id: string, latencyMs: number): Promise<Backend> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'server.ts')], {
    env: { ...process.env, WAYFINDER_REGISTRY: registry, DEMO_ID: id, DEMO_LATENCY_MS: String(latencyMs) },
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

function render(): string {
  const now = Date.now();
  const rows = [...backends.values()].map((b) => {
    const s = stats.get(b.id) ?? { calls: 0, recent: [] };
    s.recent = s.recent.filter((r) => now - r.at < 5000);
    const lat = s.recent.map((r) => r.ms);
    const rate = (s.recent.length / 5).toFixed(0);
    return [
      b.id,
      String(b.port ?? '-'),
      b.state,
      `${b.latencyMs} ms`,
      String(s.calls),
      rate,
      pct(lat, 50),
      pct(lat, 99),
    ];
  });
  const header = ['backend', 'port', 'state', 'latency', 'calls', 'calls/s (5s)', 'p50 ms', 'p99 ms'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join('  ');
  const failedRecent = failures.filter((f) => now - f.at < 5000).length;
  return [
    `Wayfinder demo: client -> wayfinder:///echo (round-robin) over ${registry}`,
    `t=${secs()}s  calls ${totalCalls}  failed ${failures.length} (last 5 s: ${failedRecent})`,
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
  const client = new EchoClient('wayfinder:///echo');
  const cleanup = async () => {
    for (const b of backends.values())
      if (b.child.exitCode === null && b.child.signalCode === null) b.child.kill('SIGKILL');
    client.close();
    await discovery.close();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));

  // Piped (no terminal): the title first, not only with the summary.
  if (!tty) console.log(render().split('\n')[0]);
  try {
    await Promise.all([startBackend('s1', 5), startBackend('s2', 20), startBackend('s3', 40)]);
    const load = setInterval(() => {
      const started = performance.now();
      totalCalls++;
      client.echo({ message: 'hi' }, { deadlineMs: 2000, waitForReady: true }).then(
        (r) => {
          const s = stats.get(r.serverId) ?? { calls: 0, recent: [] };
          s.calls++;
          s.recent.push({ at: Date.now(), ms: performance.now() - started });
          stats.set(r.serverId, s);
        },
        (e: { code?: number; details?: string }) =>
          failures.push({ at: Date.now(), code: String(e.details ?? e.code) }),
      );
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
                .slice(1, 3 + backends.size + 1)
                .join('\n')}\n`,
            ),
          5000,
        );
    const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

    await wait(10_000);
    const victim = backends.get('s2')!;
    victim.state = 'killed';
    victim.child.kill('SIGKILL');
    const killedAt = Date.now();
    log(`kill -9 s2: no deregistration; its entry stays until its ${TTL_MS} ms TTL runs out`);
    // The entry's last heartbeat was at most ttl/3 before the kill, so it is gone TTL_MS after it
    // at the latest (plus one poll of the watchers).
    await wait(TTL_MS + 100);
    const windowEnd = Date.now();
    log(
      `TTL window over (${windowEnd - killedAt} ms after the kill, TTL ${TTL_MS} ms): failures since the kill: ${failures.filter((f) => f.at >= killedAt).length}`,
    );
    await startBackend('s4', 10);
    await wait(8000);
    const s1 = backends.get('s1')!;
    s1.state = 'stopping';
    log('SIGTERM s1: deregister, drain 1 s, shut down (graceful: expect no failed calls)');
    s1.child.kill('SIGTERM');
    const termAt = Date.now();
    await new Promise((r) => s1.child.once('exit', r));
    log(`s1 exited ${((Date.now() - termAt) / 1000).toFixed(1)} s after SIGTERM`);
    await wait(5000);
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
    for (const f of failures.slice(0, 5)) console.log(`  failure at ${((f.at - t0) / 1000).toFixed(1)}s: ${f.code}`);
    process.exitCode = before.length + late.length === 0 ? 0 : 1;
    console.log(
      process.exitCode === 0
        ? 'demo OK: failover and recovery with no failed calls outside the crash window'
        : 'demo FAILED: calls failed outside the crash window',
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
