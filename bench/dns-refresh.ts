/**
 * DNS adapter benchmark, against a real dnsmasq started by the testkit on loopback.
 *
 *   node --import tsx bench/dns-refresh.ts [--trials 8] [--rest-window 30]
 *
 * 1. Scale-up latency relative to the configured refresh: one watched `name:port` service; a new
 *    A record is added (SIGHUP reload, acknowledged by dnsmasq's log) at a random phase of the
 *    polling cycle; latency = from the reload to the snapshot holding the new address. With a
 *    long TTL the bound is max-refresh; with a short TTL it is the TTL (clamped to min-refresh).
 * 2. Queries per minute at rest: nothing changes; dnsmasq's --log-queries lines are counted over
 *    a window, for the default bounds (5 s / 30 s) with TTL 0, 10 s and 3600 s, for an A/AAAA name
 *    (2 queries per lookup) and an SRV name with one target (3 queries per lookup).
 */
import { createDnsRegistry } from '../adapters/dns';
import type { Snapshot } from '../core';
import { startDnsmasq } from '../testkit/dnsmasq';
import { median, percentile, table } from './stats';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function scaleUp(ttl: number, minMs: number, maxMs: number, trials: number): Promise<(string | number)[]> {
  const d = await startDnsmasq({ localTtl: ttl, records: { hosts: { 'echo.svc.test': ['127.0.1.1'] } } });
  const { resolver } = createDnsRegistry({ hosts: [d.address], 'min-refresh': minMs, 'max-refresh': maxMs });
  let last: Snapshot | undefined;
  let waiter: { n: number; resolve: () => void } | undefined;
  const w = resolver.watch('echo.svc.test:80', (s) => {
    last = s;
    if (waiter && s.endpoints.length === waiter.n) waiter.resolve();
  });
  const lat: number[] = [];
  try {
    for (let i = 0; i < trials; i++) {
      const n = i + 2;
      await sleep(Math.random() * maxMs); // a random phase of the polling cycle
      const hosts = { 'echo.svc.test': Array.from({ length: n }, (_, k) => `127.0.1.${k + 1}`) };
      const seen = new Promise<void>((resolve) => (waiter = { n, resolve }));
      await d.setRecords({ hosts });
      const t0 = performance.now();
      if (last?.endpoints.length !== n) await seen;
      lat.push(performance.now() - t0);
    }
  } finally {
    w.close();
    await resolver.close();
    await d.stop();
  }
  const bound = ttl * 1000 >= maxMs ? maxMs : Math.max(minMs, ttl * 1000);
  return [
    ttl,
    `${minMs}/${maxMs}`,
    bound,
    median(lat).toFixed(0),
    percentile(lat, 95).toFixed(0),
    Math.max(...lat).toFixed(0),
    (Math.max(...lat) / bound).toFixed(2),
  ];
}

async function atRest(ttl: number, windowS: number): Promise<(string | number)[]> {
  const d = await startDnsmasq({
    localTtl: ttl,
    records: {
      hosts: { 'echo.svc.test': ['127.0.1.1'], 't.svc.test': ['127.0.1.2'] },
      srv: [{ name: '_grpc._tcp.echo.svc.test', target: 't.svc.test', port: 80 }],
    },
  });
  const { resolver } = createDnsRegistry({ hosts: [d.address] });
  const w1 = resolver.watch('echo.svc.test:80', () => {});
  const w2 = resolver.watch('_grpc._tcp.echo.svc.test', () => {});
  try {
    await sleep(500);
    const before = { a: d.queryCount('A'), aaaa: d.queryCount('AAAA'), srv: d.queryCount('SRV') };
    await sleep(windowS * 1000);
    const per = (n: number) => ((n * 60) / windowS).toFixed(1);
    const a = d.queryCount('A') - before.a;
    const aaaa = d.queryCount('AAAA') - before.aaaa;
    const srv = d.queryCount('SRV') - before.srv;
    return [ttl, windowS, per(srv), per(a), per(aaaa), per(a + aaaa + srv)];
  } finally {
    w1.close();
    w2.close();
    await resolver.close();
    await d.stop();
  }
}

async function main(): Promise<void> {
  const trials = arg('trials', 8);
  const windowS = arg('rest-window', 30);
  const rows: (string | number)[][] = [];
  for (const [ttl, min, max] of [
    [3600, 250, 1000],
    [3600, 500, 3000],
    [1, 200, 10_000],
    [0, 500, 10_000],
  ]) {
    rows.push(await scaleUp(ttl, min, max, trials));
  }
  console.log(`\n## Scale-up latency (${trials} trials each, ms, from dnsmasq's reload to the snapshot)\n`);
  console.log(table(['TTL s', 'min/max refresh ms', 'expected bound ms', 'median', 'p95', 'max', 'max / bound'], rows));
  const rest: (string | number)[][] = [];
  for (const ttl of [0, 10, 3600]) rest.push(await atRest(ttl, windowS));
  console.log(`\n## Queries per minute at rest (default bounds 5 s / 30 s; one name:port watch + one SRV watch)\n`);
  console.log(table(['TTL s', 'window s', 'SRV/min', 'A/min', 'AAAA/min', 'total/min'], rest));
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
