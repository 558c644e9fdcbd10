/**
 * The setup of Linkerd's "Beyond Round Robin: Load Balancing for Latency" (2016), simulated in
 * virtual time against the real picker classes: 11 backends answering in N(167 ms, 5 ms), Poisson
 * arrivals at 1000 req/s for 60 s, a 1 s client timeout; from 15 s to 45 s one backend is stuck at
 * 2 s. Variants: two stuck backends; one backend failing fast (errors after 1 ms) instead.
 *
 * Every call is picked at arrival and reported with done({ ok, latencyMs }) when it ends (at its
 * latency, or at the timeout). Prints a table and writes docs/sim-latency.svg.
 *
 *   node --import tsx bench/sim-linkerd.ts        (SEED=n to change the seed)
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Balancer, Endpoint, Pick } from '../core';
import { createP2c } from '../balancers/p2c';
import { roundRobin } from '../balancers/round-robin';
import { makeEndpoints } from '../testkit/conformance';
import { pct, Rng, Sim } from './sim-lib';
import { table } from './stats';

export interface Scenario {
  name: string;
  slow: number;
  failing: number;
}
export const SCENARIOS: Scenario[] = [
  { name: 'one backend at 2 s (15-45 s)', slow: 1, failing: 0 },
  { name: 'two backends at 2 s (15-45 s)', slow: 2, failing: 0 },
  { name: 'one backend failing fast, 1 ms errors (15-45 s)', slow: 0, failing: 1 },
];

export const BALANCERS: { name: string; make: () => Balancer }[] = [
  { name: 'round_robin', make: () => roundRobin },
  { name: 'p2c least-request', make: () => createP2c({}) },
  { name: 'p2c peak-EWMA', make: () => createP2c({ ewma: true }) },
  { name: 'p2c least-request, errorPenalty 0', make: () => createP2c({ errorPenalty: 0 }) },
  { name: 'p2c peak-EWMA, errorPenalty 0', make: () => createP2c({ ewma: true, errorPenalty: 0 }) },
  { name: 'p2c peak-EWMA + outlier ejection', make: () => createP2c({ ewma: true, outlier: true }) },
];

const N = 11;
const RATE = 1000; // req/s
const DURATION = 60_000;
const TIMEOUT = 1000;
const BAD_FROM = 15_000;
const BAD_TO = 45_000;

export interface Result {
  latencies: Float64Array; // sorted, client-observed (ms), timeouts at 1000
  success: number; // fraction
  share: number; // fraction of calls sent to the bad backends during the bad window
}

export function simulate(sc: Scenario, balancer: Balancer, seed: number): Result {
  const sim = new Sim();
  const eps: Endpoint[] = makeEndpoints(N);
  const picker = balancer.build(eps, sim.ctx(seed));
  const arrivals = new Rng(seed * 7 + 1);
  const service = new Rng(seed * 13 + 5);
  const bad = new Set(eps.slice(0, sc.slow + sc.failing).map((e) => e.id));
  const total = Math.round((RATE * DURATION) / 1000) * 2;
  const lat = new Float64Array(total);
  let n = 0;
  let ok = 0;
  let inWindow = 0;
  let toBad = 0;
  const arrive = () => {
    const t = sim.now;
    const p = picker.pick() as Extract<Pick, { endpoint: Endpoint }>;
    let ms = Math.max(1, service.normal(167, 5));
    let fails = false;
    const isBad = bad.has(p.endpoint.id) && t >= BAD_FROM && t < BAD_TO;
    if (t >= BAD_FROM && t < BAD_TO) {
      inWindow++;
      if (bad.has(p.endpoint.id)) toBad++;
    }
    if (isBad && Number(p.endpoint.id.slice(3)) < sc.slow) ms = 2000;
    else if (isBad) {
      ms = 1;
      fails = true;
    }
    const seen = Math.min(ms, TIMEOUT);
    const success = !fails && ms <= TIMEOUT;
    sim.at(t + seen, () => {
      p.done({ ok: success, latencyMs: seen });
      lat[n++] = seen;
      if (success) ok++;
    });
    const next = t + arrivals.exp(1000 / RATE);
    if (next < DURATION) sim.at(next, arrive);
  };
  sim.at(arrivals.exp(1000 / RATE), arrive);
  sim.run();
  const out = lat.slice(0, n).sort();
  return { latencies: out, success: ok / n, share: inWindow ? toBad / inWindow : 0 };
}

const PCTS = [50, 95, 99, 99.9];

function main(): void {
  const seed = Number(process.env.SEED ?? 1);
  const t0 = Date.now();
  const results: { sc: Scenario; name: string; r: Result }[] = [];
  for (const sc of SCENARIOS) {
    const rows: (string | number)[][] = [];
    for (const b of BALANCERS) {
      const r = simulate(sc, b.make(), seed);
      results.push({ sc, name: b.name, r });
      rows.push([
        b.name,
        ...PCTS.map((p) => pct(r.latencies, p).toFixed(0)),
        (r.success * 100).toFixed(2) + '%',
        (r.share * 100).toFixed(2) + '%',
      ]);
    }
    console.log(`\n${sc.name}: 11 backends N(167 ms, 5 ms), 1000 req/s Poisson for 60 s, 1 s timeout, seed ${seed}`);
    console.log(
      table(
        ['balancer', 'p50 ms', 'p95 ms', 'p99 ms', 'p99.9 ms', 'success ≤ 1 s', 'calls to bad backend(s) 15-45 s'],
        rows,
      ),
    );
  }
  const svg = chart(results.filter((x) => !x.name.includes('errorPenalty 0')));
  const file = join(__dirname, '..', 'docs', 'sim-latency.svg');
  writeFileSync(file, svg);
  console.log(`\nwrote ${file}; ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

/** Latency-percentile chart: one panel per scenario, percentiles on a "nines" axis. */
function chart(results: { sc: Scenario; name: string; r: Result }[]): string {
  const ps = [50, 75, 90, 95, 98, 99, 99.5, 99.9, 99.95, 99.99];
  const xOf = (p: number) => Math.log10(100 / (100 - p)); // 50 -> 0.30, 99.99 -> 4
  const colors: Record<string, string> = {
    round_robin: '#d62728',
    'p2c least-request': '#1f77b4',
    'p2c peak-EWMA': '#2ca02c',
    'p2c peak-EWMA + outlier ejection': '#9467bd',
  };
  const W = 380;
  const H = 300;
  const m = { l: 56, r: 12, t: 36, b: 44 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const x0 = xOf(50);
  const x1 = xOf(99.99);
  const X = (p: number) => m.l + ((xOf(p) - x0) / (x1 - x0)) * pw;
  // Log latency axis from 150 ms to 1100 ms: the body (≈167 ms) and the timeouts both stay readable.
  const lo = Math.log(150);
  const hi = Math.log(1100);
  const Y = (ms: number) => m.t + ph - ((Math.log(Math.min(Math.max(ms, 150), 1100)) - lo) / (hi - lo)) * ph;
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const panels = SCENARIOS.map((sc, k) => {
    const ox = k * W;
    const g: string[] = [
      `<g transform="translate(${ox},0)">`,
      `<text x="${m.l + pw / 2}" y="20" text-anchor="middle" font-size="13" font-weight="bold">${esc(sc.name)}</text>`,
    ];
    for (const ms of [150, 170, 200, 300, 500, 1000]) {
      g.push(
        `<line x1="${m.l}" x2="${m.l + pw}" y1="${Y(ms)}" y2="${Y(ms)}" stroke="#ddd"/>`,
        `<text x="${m.l - 6}" y="${Y(ms) + 4}" text-anchor="end" font-size="10">${ms}</text>`,
      );
    }
    for (const p of [50, 90, 99, 99.9, 99.99]) {
      g.push(
        `<line x1="${X(p)}" x2="${X(p)}" y1="${m.t}" y2="${m.t + ph}" stroke="#eee"/>`,
        `<text x="${X(p)}" y="${m.t + ph + 14}" text-anchor="middle" font-size="10">p${p}</text>`,
      );
    }
    g.push(`<text x="${m.l + pw / 2}" y="${H - 8}" text-anchor="middle" font-size="11">percentile</text>`);
    if (k === 0)
      g.push(
        `<text transform="translate(14,${m.t + ph / 2}) rotate(-90)" text-anchor="middle" font-size="11">latency, ms (log; timeout 1000)</text>`,
      );
    for (const x of results.filter((r) => r.sc === sc)) {
      const pts = ps.map((p) => `${X(p).toFixed(1)},${Y(pct(x.r.latencies, p)).toFixed(1)}`).join(' ');
      g.push(`<polyline fill="none" stroke="${colors[x.name] ?? '#333'}" stroke-width="2" points="${pts}"/>`);
    }
    g.push('</g>');
    return g.join('\n');
  });
  const legend = Object.entries(colors).map(([name, c], i) => {
    const y = H + 8 + i * 16;
    return `<line x1="70" x2="95" y1="${y}" y2="${y}" stroke="${c}" stroke-width="3"/><text x="100" y="${y + 4}" font-size="11">${esc(name)} (success: ${SCENARIOS.map((sc) => (results.find((r) => r.sc === sc && r.name === name)!.r.success * 100).toFixed(2) + '%').join(' / ')})</text>`;
  });
  const total = H + 16 * Object.keys(colors).length + 14;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W * SCENARIOS.length}" height="${total}" viewBox="0 0 ${W * SCENARIOS.length} ${total}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${panels.join('\n')}
${legend.join('\n')}
</svg>
`;
}

if (require.main === module) main();
