/**
 * How long must serve() drain during a rolling restart, with and without client-side health
 * checking (gRFC A17)? Real gRPC servers (serve()) and one client channel on loopback.
 *
 * The registry is the in-memory one with a propagation delay of PROPAGATION_MS (default 1000 ms:
 * a DNS TTL, a poll interval, a far watch): a deregistration is acknowledged at once and reaches
 * the client that much later, as with the polling registries. Three servers (echo with 5 ms of
 * latency) under a steady load of 8 callers; each round restarts them one by one (stop(), start a
 * replacement, wait until it answers).
 *
 * 1. Needed drain window: each stop() drains for PROPAGATION_MS + 1000 ms; the window it needed is
 *    the time from the start of stop() to the last new call the stopping server received (after
 *    that it could have shut down losing nothing). Median and max over the restarts.
 * 2. Short drain: the same rolling restart with drainMs = 150; failed calls counted.
 *
 *   node --import tsx bench/health-drain.ts        (ROUNDS=n restarts of all 3, PROPAGATION_MS=ms)
 */
import '../builtins'; // the built-in registries and balancers
import * as grpc from '@grpc/grpc-js';
import { Discovery, type Registrar, type Registration } from '../core';
import { installGrpc, serve, type Served } from '../grpc';
import { EchoClient, echoServiceDefinition } from '../testkit/echo';
import { waitFor } from '../testkit/process';
import { table } from './stats';

const ROUNDS = Number(process.env.ROUNDS ?? 2);
const PROPAGATION_MS = Number(process.env.PROPAGATION_MS ?? 1000);

interface Backend {
  served: Served;
  arrivals: number[];
}

/** A registrar whose deregistrations reach the registry PROPAGATION_MS after they are acknowledged. */
function delayedRegistrar(d: Discovery): { registrar: Registrar } {
  const registrar: Registrar = Object.create(d.registrar);
  registrar.register = async (spec) => {
    const r = await d.registrar.register(spec);
    return Object.assign(Object.create(r) as Registration, {
      deregister: async () => {
        setTimeout(() => void r.deregister(), PROPAGATION_MS);
      },
    });
  };
  return { registrar };
}

async function startBackend(reg: ReturnType<typeof delayedRegistrar>, drainMs: number): Promise<Backend> {
  const server = new grpc.Server();
  const b = { arrivals: [] as number[] } as Backend;
  server.addService(echoServiceDefinition, {
    Echo: (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => {
      b.arrivals.push(performance.now());
      setTimeout(() => cb(null, { message: 'ok', serverId: '', port: 0, peer: call.getPeer(), zone: '' }), 5);
    },
  });
  b.served = await serve(server, { discovery: reg, service: 'echo', host: '127.0.0.1', drainMs, signals: false });
  return b;
}

async function rollingRestart(healthChecking: boolean, drainMs: number, name: string) {
  const d = await Discovery.fromConfig(`memory://${name}`);
  const reg = delayedRegistrar(d);
  let backends = await Promise.all([0, 1, 2].map(() => startBackend(reg, drainMs)));
  const sc: Record<string, unknown> = { loadBalancingConfig: [{ wayfinder_round_robin: {} }] };
  if (healthChecking) sc.healthCheckConfig = { serviceName: 'echo' };
  const client = new EchoClient(`memory://${name}/echo`, undefined, { 'grpc.service_config': JSON.stringify(sc) });
  const st = { running: true, ok: 0, failed: 0 };
  const worker = async () => {
    while (st.running) {
      try {
        await client.echo({}, { deadlineMs: 5000 });
        st.ok++;
      } catch {
        st.failed++;
      }
    }
  };
  const workers = Promise.all(Array.from({ length: 8 }, worker));
  await waitFor('all backends called', () => backends.every((b) => b.arrivals.length > 10), { intervalMs: 5 });
  const windows: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < backends.length; i++) {
      const old = backends[i]!;
      const t0 = performance.now();
      await old.served.stop();
      windows.push(Math.max(0, ...old.arrivals.map((t) => t - t0)));
      const fresh = await startBackend(reg, drainMs);
      await waitFor('replacement called', () => fresh.arrivals.length > 10, { intervalMs: 5, timeoutMs: 20_000 });
      backends = backends.map((b, j) => (j === i ? fresh : b));
    }
  }
  st.running = false;
  await workers;
  client.close();
  await Promise.all(backends.map((b) => b.served.stop({ force: true })));
  await d.close();
  return { windows, ok: st.ok, failed: st.failed };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  installGrpc();
  const rows: string[][] = [];
  for (const hc of [false, true]) {
    const r = await rollingRestart(hc, PROPAGATION_MS + 1000, `drain-long-${hc}-${process.pid}`);
    const s = await rollingRestart(hc, 150, `drain-short-${hc}-${process.pid}`);
    rows.push([
      hc ? 'on' : 'off',
      String(r.windows.length),
      median(r.windows).toFixed(1),
      Math.max(...r.windows).toFixed(1),
      `${s.failed} / ${s.ok + s.failed}`,
    ]);
  }
  console.log(`registry propagation ${PROPAGATION_MS} ms, ${ROUNDS} rolling restart(s) of 3 servers, 8 callers\n`);
  console.log(
    table(
      [
        'health checking',
        'restarts',
        'needed drain, median (ms)',
        'needed drain, max (ms)',
        'failed calls with drainMs=150',
      ],
      rows,
    ),
  );
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
