/**
 * Requests per second with 64 requests in flight to two local HTTP servers (each in its own child
 * process, registered in a file registry through serveHttp()), through:
 *   - undici Pool           one origin (a baseline: no balancing at all)
 *   - undici BalancedPool   both origins (undici's own static balancing)
 *   - WayfinderAgent        http://echo/ : registry, round_robin, one Pool per endpoint
 * All in one process and run; each round runs every variant for ROUND_MS, rotating the order so
 * drift on a noisy machine hits all alike; the figure is the median over rounds.
 *
 *   node --import tsx bench/http.ts        (ROUNDS=7 ROUND_MS=2000 INFLIGHT=64 to change)
 */
import '../builtins'; // the built-in registries and balancers
import * as os from 'node:os';
import * as path from 'node:path';
import { BalancedPool, Pool, request, type Dispatcher } from 'undici';
import { Discovery } from '../core';
import { WayfinderAgent } from '../http';
import { spawnManaged, tempDir, waitFor } from '../testkit/process';
import { median, table } from './stats';

const ROUNDS = Number(process.env.ROUNDS ?? 7);
const ROUND_MS = Number(process.env.ROUND_MS ?? 2000);
const INFLIGHT = Number(process.env.INFLIGHT ?? 64);

/** Keeps INFLIGHT requests running for `ms`; returns completed requests per second. */
async function run(dispatcher: Dispatcher, origin: string, ms: number): Promise<number> {
  let done = 0;
  let failed = 0;
  const end = performance.now() + ms;
  const worker = async () => {
    while (performance.now() < end) {
      try {
        const { statusCode, body } = await request(`${origin}/bench`, { dispatcher });
        await body.dump();
        if (statusCode === 200) done++;
        else failed++;
      } catch {
        failed++;
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: INFLIGHT }, worker));
  if (failed > 0) throw new Error(`${failed} requests failed`);
  return done / ((performance.now() - t0) / 1000);
}

async function main() {
  const tmp = tempDir('wayfinder-bench-http-');
  const registry = `file://${path.join(tmp.dir, 'registry.json')}`;
  const fixture = path.join(__dirname, '..', 'http', 'fixtures', 'child-server.ts');
  const children = ['b1', 'b2'].map((id) =>
    spawnManaged(process.execPath, ['--require', 'tsx/cjs', fixture], {
      env: { ...process.env, REGISTRY: registry, ID: id, DRAIN_MS: '0' },
    }),
  );
  const discovery = await Discovery.fromConfig(registry);
  try {
    const eps = await waitFor(
      'both servers registered',
      async () => {
        const e = await discovery.resolver.resolve('echo');
        return e.length === 2 ? e : undefined;
      },
      { timeoutMs: 30_000 },
    );
    const origins = eps.map((e) => `http://${e.host}:${e.port}`);
    const variants: { name: string; dispatcher: Dispatcher; origin: string }[] = [
      { name: 'undici Pool (one origin)', dispatcher: new Pool(origins[0]), origin: origins[0] },
      { name: 'undici BalancedPool (both)', dispatcher: new BalancedPool(origins), origin: origins[0] },
      { name: 'WayfinderAgent (http://echo)', dispatcher: new WayfinderAgent({ discovery }), origin: 'http://echo' },
    ];
    for (const v of variants) await run(v.dispatcher, v.origin, 500); // warm-up: connections, JIT
    const samples: number[][] = variants.map(() => []);
    for (let r = 0; r < ROUNDS; r++) {
      for (let k = 0; k < variants.length; k++) {
        const i = (r + k) % variants.length;
        samples[i].push(await run(variants[i].dispatcher, variants[i].origin, ROUND_MS));
      }
      process.stderr.write(`round ${r + 1}/${ROUNDS}\n`);
    }
    const med = samples.map(median);
    const balanced = med[1];
    console.log(
      table(
        ['client', 'requests/s (median)', 'min', 'max', 'vs BalancedPool'],
        variants.map((v, i) => [
          v.name,
          Math.round(med[i]),
          Math.round(Math.min(...samples[i])),
          Math.round(Math.max(...samples[i])),
          (med[i] / balanced).toFixed(2),
        ]),
      ),
    );
    console.log(
      `\nnode ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} vCPUs, ${ROUNDS} rounds x ${ROUND_MS} ms, ${INFLIGHT} in flight`,
    );
    await Promise.all(variants.map((v) => v.dispatcher.close()));
  } finally {
    await discovery.close();
    await Promise.all(children.map((c) => c.kill('SIGKILL')));
    tmp.remove();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
