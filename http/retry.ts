import { monotonicNow } from '../core';

export interface RetryOptions {
  /** Attempts per request, the first included (so 3 = up to 2 retries). Default 3. */
  maxAttempts?: number;
  /** Retries allowed as a fraction of requests (Finagle's RetryBudget). Default 0.2. */
  budgetRatio?: number;
  /** Retries allowed per second whatever the request rate, so a quiet client can still retry. Default 10. */
  minPerSec?: number;
}

/**
 * A retry budget: every request deposits `ratio` tokens, every retry withdraws one, and
 * `minPerSec` tokens accrue per second; the balance is capped at one second's worth of
 * `minPerSec` plus `ratio` × 100 requests. So retries stay below ratio × requests + minPerSec/s
 * however many endpoints fail: a dead endpoint costs a few retries, never a retry storm.
 */
export class RetryBudget {
  private tokens: number;
  private last: number;
  private readonly cap: number;
  constructor(
    private readonly ratio: number,
    private readonly minPerSec: number,
    private readonly now: () => number = monotonicNow,
  ) {
    this.cap = minPerSec + ratio * 100;
    this.tokens = this.cap;
    this.last = now();
  }

  deposit(): void {
    this.tokens = Math.min(this.cap, this.tokens + this.ratio);
  }

  /** True (and one token spent) when a retry is allowed now. */
  tryWithdraw(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.cap, this.tokens + ((t - this.last) / 1000) * this.minPerSec);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** Connection errors that say the endpoint cannot be reached now (it is held off for a backoff). */
const UNREACHABLE_ERRORS = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** Errors raised while connecting: nothing of the request reached a server. */
const CONNECT_ERRORS = new Set([...UNREACHABLE_ERRORS, 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

/** A socket that was closed or reset under a written request, before any response byte. */
const RESET_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

/** RFC 9110 §9.2.2 idempotent methods. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

function codeOf(err: Error): string {
  return String((err as NodeJS.ErrnoException).code ?? '');
}

export function isConnectError(err: Error): boolean {
  return CONNECT_ERRORS.has(codeOf(err));
}

export function isUnreachableError(err: Error): boolean {
  return UNREACHABLE_ERRORS.has(codeOf(err));
}

export function isResetError(err: Error): boolean {
  return RESET_ERRORS.has(codeOf(err));
}

export function isIdempotent(method: string, explicit?: boolean): boolean {
  return explicit ?? IDEMPOTENT.has(method.toUpperCase());
}

/** A body that can be sent again: none, or bytes held in memory (not a stream or iterator). */
export function isReplayable(body: unknown): boolean {
  return body == null || typeof body === 'string' || body instanceof Uint8Array || body instanceof ArrayBuffer;
}

/** The caller's own abort: not the endpoint's fault. */
export function isAbort(err: Error): boolean {
  return err.name === 'AbortError' || codeOf(err) === 'UND_ERR_ABORTED' || codeOf(err) === 'ABORT_ERR';
}
