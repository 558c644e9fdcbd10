/**
 * Discrete-event simulation helpers: a virtual clock with an event heap, seeded random variates,
 * and a BalancerContext on the simulated clock, so the real picker classes run in virtual time.
 * Deterministic: same seeds, same results, on any machine.
 */
import { seededRandom, silentLogger, type BalancerContext } from '../core';

type Ev = { t: number; seq: number; fn: () => void };

export class Sim {
  now = 0;
  private heap: Ev[] = [];
  private seq = 0;

  at(t: number, fn: () => void): void {
    const e = { t, seq: this.seq++, fn };
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(e, h[p])) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = e;
  }

  /** Runs events in time order (ties in scheduling order) until none is left or `until` passes. */
  run(until = Infinity): void {
    const h = this.heap;
    while (h.length) {
      const top = h[0];
      if (top.t > until) break;
      const last = h.pop()!;
      if (h.length) {
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          if (l >= h.length) break;
          const r = l + 1;
          const c = r < h.length && less(h[r], h[l]) ? r : l;
          if (!less(h[c], last)) break;
          h[i] = h[c];
          i = c;
        }
        h[i] = last;
      }
      this.now = top.t;
      top.fn();
    }
  }

  ctx(seed: number): BalancerContext {
    return { now: () => this.now, random: seededRandom(seed), logger: silentLogger };
  }
}

const less = (a: Ev, b: Ev) => a.t < b.t || (a.t === b.t && a.seq < b.seq);

export class Rng {
  private readonly u: () => number;
  private spare: number | undefined;
  constructor(seed: number) {
    this.u = seededRandom(seed);
  }
  uniform(): number {
    return this.u();
  }
  /** Exponential with the given mean. */
  exp(mean: number): number {
    return -Math.log(1 - this.u()) * mean;
  }
  /** Normal (Box-Muller). */
  normal(mean: number, sd: number): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return mean + sd * s;
    }
    const u1 = 1 - this.u();
    const u2 = this.u();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spare = r * Math.sin(2 * Math.PI * u2);
    return mean + sd * r * Math.cos(2 * Math.PI * u2);
  }
}

/** Percentile of an ascending-sorted array (nearest rank). */
export function pct(sorted: Float64Array | number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
