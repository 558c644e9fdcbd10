import { Backoff, delay } from '../util';

export interface RetryOptions {
  /** Stops waiting and retrying; retry() then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Maximum number of calls (default: unbounded, until the signal aborts or the deadline passes). */
  attempts?: number;
  /** Backoff base and cap in ms (full jitter, see Backoff): defaults 100 and 10 000. */
  baseMs?: number;
  maxMs?: number;
  /** Injected random source for the jitter (AdapterContext.random). */
  random?: () => number;
  /** Injected clock (AdapterContext.now), used with deadlineMs. */
  now?: () => number;
  /** Give up once this many ms have passed since the first call (measured with `now`). */
  deadlineMs?: number;
  /** Whether an error is worth retrying (default: every error). */
  retryable?(err: unknown): boolean;
  /** Called before each wait, e.g. to log. */
  onRetry?(err: unknown, attempt: number, waitMs: number): void;
  /** Injectable wait (default: an unref'd timer that rejects when the signal aborts). */
  sleep?(ms: number, signal?: AbortSignal): Promise<void>;
}

/**
 * Calls `fn` until it resolves, waiting a jittered exponential backoff between failures. Rejects
 * with the last error when attempts run out, the error is not retryable or the deadline would pass;
 * rejects with the abort reason as soon as the signal aborts (a call in flight gets the signal too).
 */
export async function retry<T>(
  fn: (attempt: number, signal?: AbortSignal) => Promise<T>,
  o: RetryOptions = {},
): Promise<T> {
  const { signal } = o;
  const backoff = new Backoff(o.baseMs ?? 100, o.maxMs ?? 10_000, o.random ?? Math.random);
  const now = o.now ?? (() => performance.now());
  const sleep = o.sleep ?? delay;
  const start = now();
  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted) throw signal.reason;
    try {
      return await fn(attempt, signal);
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      if (o.attempts !== undefined && attempt >= o.attempts) throw e;
      if (o.retryable && !o.retryable(e)) throw e;
      const wait = backoff.next();
      if (o.deadlineMs !== undefined && now() - start + wait > o.deadlineMs) throw e;
      o.onRetry?.(e, attempt, wait);
      await sleep(wait, signal);
    }
  }
}

export { Backoff };

export interface RetryLoopOptions {
  /** Ends the loop: a round in flight gets it, a wait in progress ends, the loop resolves. */
  signal: AbortSignal;
  /**
   * One round (a poll, a blocking query, a watch until it ends). Resolves with the ms to wait before
   * the next round (default 0); a round that resolves resets the backoff, and so does `healthy()`
   * called during a long round (a watch that got going), so its eventual failure starts afresh.
   */
  run(signal: AbortSignal, healthy: () => void): Promise<number | void>;
  /**
   * Called after a round failed (never after an abort); report the error here. Returns the wait
   * before the next round, or nothing for the backoff's next delay; `next()` draws that delay, for a
   * floor (`Math.max(1000, next())`); returning 0 without calling it retries at once, backoff unmoved.
   */
  onError?(err: unknown, next: () => number): number | void;
  /** Backoff base and cap in ms (full jitter, see Backoff) and the injected random source. */
  backoff: { baseMs: number; maxMs: number; random?: () => number };
  /** Injectable wait, e.g. one a refresh() can cut short (default: an unref'd timer ending on abort). */
  sleep?(ms: number, signal: AbortSignal): Promise<void>;
}

/**
 * The long-lived twin of retry(): runs `run` round after round until the signal aborts, waiting what
 * a successful round asks for, or a jittered exponential backoff after a failure (reset by the next
 * success). Never rejects: it resolves once aborted; errors go to onError.
 */
export async function retryLoop(o: RetryLoopOptions): Promise<void> {
  const { signal } = o;
  const backoff = new Backoff(o.backoff.baseMs, o.backoff.maxMs, o.backoff.random ?? Math.random);
  const sleep = o.sleep ?? ((ms: number, s: AbortSignal) => delay(ms, s).catch(() => undefined));
  const healthy = () => backoff.reset();
  const next = () => backoff.next();
  while (!signal.aborted) {
    let wait: number;
    try {
      wait = (await o.run(signal, healthy)) ?? 0;
      backoff.reset();
    } catch (e) {
      if (signal.aborted) return;
      wait = o.onError?.(e, next) ?? next();
    }
    if (signal.aborted) return;
    if (wait > 0) await sleep(wait, signal);
  }
}

/**
 * A sleep that wake() cuts short (a refresh(), a reconnect). Only the sleep in progress is woken: a
 * wake() while nobody sleeps is dropped (a loop checks its own state before sleeping). `ms` may be
 * Infinity: until woken or aborted.
 */
export class Waker {
  private wakeUp?: () => void;

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        if (this.wakeUp === done) this.wakeUp = undefined;
        resolve();
      };
      const timer = Number.isFinite(ms) ? setTimeout(done, ms) : undefined;
      timer?.unref?.();
      signal?.addEventListener('abort', done, { once: true });
      this.wakeUp = done;
    });
  }

  /** Ends the sleep in progress; returns whether one was. */
  wake(): boolean {
    const w = this.wakeUp;
    w?.();
    return w !== undefined;
  }
}
