/**
 * One demo backend: an Echo gRPC server that registers itself in the registry named by
 * WAYFINDER_REGISTRY, answers after DEMO_LATENCY_MS, and on SIGTERM deregisters, drains and exits.
 * SIGUSR2 makes it slow: every later answer takes DEMO_SLOW_MS (the demo's "server degrades").
 */
import { Discovery } from '../../index';
import { startEchoServer } from '../../testkit/echo';

async function main(): Promise<void> {
  const id = process.env.DEMO_ID ?? `echo-${process.pid}`;
  const latencyMs = Number(process.env.DEMO_LATENCY_MS ?? 0);
  const discovery = await Discovery.fromConfig(); // WAYFINDER_REGISTRY, set by the demo
  const server = await startEchoServer({
    discovery,
    id,
    latencyMs,
    drainMs: 1000, // file-registry watchers hear of the deregistration within ~100 ms
    signals: ['SIGTERM', 'SIGINT'],
    metadata: { demo: 'true' },
  });
  process.on('SIGUSR2', () => server.setLatency(Number(process.env.DEMO_SLOW_MS ?? 200)));
  process.stdout.write(`READY ${id} ${server.port}\n`);
}

main().catch((e) => {
  process.stderr.write(`demo server failed: ${e instanceof Error ? e.message : e}\n`);
  process.exit(1);
});
