import type { Endpoint, Logger } from './model';

/**
 * The done() of balancers that ignore call outcomes (round-robin, weighted without decorators).
 * Callers may skip per-call bookkeeping for picks whose done is this function and that have no
 * started() (the gRPC bridge then returns grpc-js's own pick result untouched).
 */
export const ignoreOutcome = (_result: { ok: boolean; latencyMs: number }): void => {};

/** A logger that drops everything: Wayfinder is silent unless given a logger. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Adapts `console` (or anything with the same methods) to the pino-style (obj, msg) signature. */
export function consoleLogger(
  c: Pick<Console, 'debug' | 'info' | 'warn' | 'error'> = console,
  level: 'debug' | 'info' | 'warn' | 'error' = 'info',
): Logger {
  const order = ['debug', 'info', 'warn', 'error'];
  const min = order.indexOf(level);
  const make = (l: 'debug' | 'info' | 'warn' | 'error') => (obj: object | string, msg?: string) => {
    if (order.indexOf(l) < min) return;
    if (typeof obj === 'string') c[l](`[wayfinder] ${obj}`);
    else c[l](`[wayfinder] ${msg ?? ''}`, obj);
  };
  return { debug: make('debug'), info: make('info'), warn: make('warn'), error: make('error') };
}

/** Exponential backoff with full jitter: delays in [0, min(max, base * 2^n)]. */
export class Backoff {
  private attempt = 0;
  constructor(
    private readonly baseMs = 100,
    private readonly maxMs = 10_000,
    private readonly random: () => number = Math.random,
  ) {}
  next(): number {
    const cap = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.max(this.baseMs / 2, Math.floor(this.random() * cap));
  }
  reset(): void {
    this.attempt = 0;
  }
}

/**
 * Token bucket: `take()` returns 0 when a token is available now, otherwise the ms to wait.
 * Used to bound re-resolution and polling rates however fast the caller asks.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    private readonly now: () => number = monotonicNow,
  ) {
    this.tokens = burst;
    this.last = now();
  }
  take(): number {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.ratePerSec);
    this.last = t;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) / this.ratePerSec) * 1000);
  }
}

export function monotonicNow(): number {
  return performance.now();
}

/** Deterministic PRNG (mulberry32) for seeded tests and simulations. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Resolves after ms, or rejects when the signal aborts. The timer never keeps the process alive. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    t.unref?.();
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** `host:port`, with IPv6 hosts bracketed: an endpoint's identity. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

export function endpointKey(e: Pick<Endpoint, 'host' | 'port'>): string {
  return hostPort(e.host, e.port);
}

/**
 * An endpoint's identity plus attributes (host:port, id, weight, zone, health, metadata) as one
 * string: equal signatures mean equal endpoints for every consumer (watch dedup, pickers).
 */
export function endpointSignature(e: Endpoint): string {
  return JSON.stringify([
    endpointKey(e),
    e.id,
    e.weight ?? 1,
    e.zone ?? '',
    e.health ?? '',
    Object.entries(e.metadata).sort(),
  ]);
}

/** Order-independent equality of two complete endpoint sets, attributes included. */
export function sameEndpoints(a: readonly Endpoint[], b: readonly Endpoint[]): boolean {
  if (a.length !== b.length) return false;
  const sa = a.map(endpointSignature).sort();
  const sb = b.map(endpointSignature).sort();
  return sa.every((s, i) => s === sb[i]);
}
