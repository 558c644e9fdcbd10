/**
 * Subsetting: connections per backend and churn. M clients each connect to `subset` of N backends.
 *  - deterministic: the real subsetOf() (SRE book algorithm) with client ids 0..M-1;
 *  - deterministic, book shuffle: the same with the book's seeded Fisher-Yates shuffle;
 *  - random: each client takes `subset` distinct backends uniformly at random (seeded).
 * Spread: min / max connections per backend and as % of the mean (the SRE book reports random
 * subsetting with 300 clients, 300 backends, subset 90: least loaded 63%, most loaded 121%).
 * Churn: connections that move (closed + opened, counted once per moved connection) when one
 * backend is added or removed, versus the minimum any algorithm must move.
 *
 *   node --import tsx bench/sim-subsetting.ts      (SEED=n for the random rows)
 */
import { endpointKey, seededRandom, type Endpoint } from '../core';
import { murmur3 } from '../balancers/shared/hash';
import { subsetOf } from '../balancers/subset';
import { makeEndpoints } from '../testkit/conformance';
import { table } from './stats';

type Assign = (eps: readonly Endpoint[], clients: number, size: number) => Set<string>[];

export const deterministic: Assign = (eps, clients, size) =>
  Array.from({ length: clients }, (_, c) => new Set(subsetOf(eps, size, c).map(endpointKey)));

/**
 * The book's form of the shuffle, for comparison: the host:port-sorted list shuffled by
 * Fisher-Yates with a generator seeded by the round (subsetOf ranks by a hash of round and key).
 */
export const bookShuffle: Assign = (eps, clients, size) => {
  const sorted = eps.map(endpointKey).sort();
  const count = Math.floor(sorted.length / size);
  return Array.from({ length: clients }, (_, c) => {
    if (sorted.length <= size) return new Set(sorted);
    const list = sorted.slice();
    const random = seededRandom(Math.floor(c / count));
    for (let i = list.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [list[i], list[j]] = [list[j], list[i]];
    }
    const start = (c % count) * size;
    return new Set(list.slice(start, start + size));
  });
};

/**
 * Random subsetting as the SRE book's naive version: each client shuffles the backends once and
 * keeps the first `size`. The client's shuffle is a per-client random rank of each backend key
 * (hash of seed, client and key), so it stays put when a backend comes or goes: the sticky form
 * the book credits with little churn.
 */
export function randomAssign(seed: number): Assign {
  return (eps, clients, size) =>
    Array.from({ length: clients }, (_, c) => {
      const ranked = eps.map((e) => {
        const k = endpointKey(e);
        return { k, r: murmur3(`${c}:${k}`, seed) };
      });
      ranked.sort((a, b) => a.r - b.r);
      return new Set(ranked.slice(0, size).map((x) => x.k));
    });
}

export function spread(eps: readonly Endpoint[], subsets: Set<string>[]): { min: number; max: number; mean: number } {
  const counts = new Map(eps.map((e) => [endpointKey(e), 0]));
  for (const s of subsets) for (const k of s) counts.set(k, counts.get(k)! + 1);
  const v = [...counts.values()];
  return { min: Math.min(...v), max: Math.max(...v), mean: v.reduce((a, b) => a + b, 0) / v.length };
}

/** Connections that differ between two assignments (each moved connection counted once). */
export function moved(a: Set<string>[], b: Set<string>[]): number {
  let n = 0;
  for (let c = 0; c < a.length; c++) for (const k of b[c]) if (!a[c].has(k)) n++;
  return n;
}

function main(): void {
  const seed = Number(process.env.SEED ?? 1);
  const rows: (string | number)[][] = [];
  const churn: (string | number)[][] = [];
  const cases: [number, number, number][] = [
    [300, 100, 10],
    [300, 105, 10],
    [300, 300, 90],
  ];
  for (const [clients, n, size] of cases) {
    const eps = makeEndpoints(n).map((e, i) => ({ ...e, host: `10.0.${i >> 8}.${i & 255}`, port: 8000 }));
    for (const [name, assign] of [
      ['deterministic', deterministic],
      ['deterministic, book shuffle', bookShuffle],
      ['random', randomAssign(seed)],
    ] as const) {
      const base = assign(eps, clients, size);
      const s = spread(eps, base);
      rows.push([
        clients,
        n,
        size,
        name,
        s.mean.toFixed(1),
        `${s.min} (${((s.min / s.mean) * 100).toFixed(0)}%)`,
        `${s.max} (${((s.max / s.mean) * 100).toFixed(0)}%)`,
      ]);
      if (size !== 10) continue;
      const extra = { ...eps[0], id: 'new', host: '10.0.9.9' };
      const added = assign([...eps, extra], clients, size);
      const removed = assign(eps.slice(1), clients, size);
      const total = clients * size;
      // Reference: adding, the new backend's fair share of connections; removing, the removed
      // backend's connections (what a perfectly even, minimal-churn scheme moves).
      const minAdd = Math.round(total / (n + 1));
      const minRemove = base.filter((b) => b.has(endpointKey(eps[0]))).length;
      const fmt = (m: number) => `${m} of ${total} (${((m / total) * 100).toFixed(1)}%)`;
      churn.push([clients, `${n} -> ${n + 1}`, size, name, fmt(moved(base, added)), minAdd]);
      churn.push([clients, `${n} -> ${n - 1}`, size, name, fmt(moved(base, removed)), minRemove]);
    }
  }
  console.log(`connections per backend (seed ${seed} for random subsetting)`);
  console.log(
    table(['clients', 'backends', 'subset', 'subsetting', 'mean', 'min (% of mean)', 'max (% of mean)'], rows),
  );
  console.log('\nconnections moved when one backend is added or removed');
  console.log(table(['clients', 'backends', 'subset', 'subsetting', 'moved', 'reference'], churn));
}

if (require.main === module) main();
