import { ClosedError, RegistryUnavailableError, type WayfinderError } from '../../core';
import { retryLoop, Waker } from '../../core/kit';
import type { ZkSession } from './client';

export interface ZkPassLoopOptions {
  /** Jitter source of the backoff after a failed pass. */
  random: () => number;
  /** Where errors go (the consumer's sink). */
  report(err: WayfinderError): void;
  /** Reported (as RegistryUnavailableError) when the connection is lost. */
  disconnected: string;
  /** Reported (as RegistryUnavailableError) when the session expires. */
  expired: string;
}

/**
 * What a ZooKeeper watch (one service's, or the registry-wide one) does around its reads: events only
 * mark work as dirty and kick(); one loop runs passes while anything is dirty, then waits for a kick.
 * 'connected' (a reconnect, a new session after expiry) marks everything for re-reading; 'disconnected'
 * and 'expired' are reported, the last known sets kept. After a failed pass everything is re-read:
 * while connected after a backoff (an op timed out, an ACL refused), while disconnected once
 * 'connected' kicks the loop; a closed session (or a stop) waits for stop.
 * A subclass says what is dirty, what a pass does and which error a failure reports.
 */
export abstract class ZkPassLoop {
  /** The last round ended with nothing dirty (waiting for work, not in backoff). */
  private idle = false;
  private readonly stopCtl = new AbortController();
  private readonly waker = new Waker();

  protected constructor(
    protected readonly session: ZkSession,
    private readonly opts: ZkPassLoopOptions,
  ) {}

  /** Whether a pass has work to do. */
  protected abstract get dirty(): boolean;
  /** Reads what is dirty and publishes; a failure throws (and is reported by failure()). */
  protected abstract pass(): Promise<void>;
  /** Marks everything for re-reading: after every 'connected' and after a failed pass. */
  protected abstract invalidate(): void;
  /** The error to report for a failed pass. */
  protected abstract failure(err: unknown): WayfinderError;

  /** The loop itself failed (never expected: retryLoop does not reject). */
  protected crashed(err: unknown): void {
    this.opts.report(this.failure(err));
  }

  protected get stopped(): boolean {
    return this.stopCtl.signal.aborted;
  }

  private readonly onConnected = () => {
    this.invalidate();
    this.kick();
  };
  private readonly onDisconnected = () => this.opts.report(new RegistryUnavailableError(this.opts.disconnected));
  private readonly onExpired = () => this.opts.report(new RegistryUnavailableError(this.opts.expired));

  start(): void {
    this.session.on('connected', this.onConnected);
    this.session.on('disconnected', this.onDisconnected);
    this.session.on('expired', this.onExpired);
    this.session.start();
    void this.loop();
  }

  stop(): void {
    this.stopCtl.abort();
    this.session.off('connected', this.onConnected);
    this.session.off('disconnected', this.onDisconnected);
    this.session.off('expired', this.onExpired);
  }

  /** Something changed (a watch fired, a reconnect): a loop waiting for work or in backoff runs now. */
  protected kick(): void {
    if (!this.stopped) this.waker.wake();
  }

  private loop(): Promise<void> {
    return retryLoop({
      signal: this.stopCtl.signal,
      backoff: { baseMs: 100, maxMs: 5000, random: this.opts.random },
      run: async () => {
        this.idle = false;
        while (!this.stopped && this.dirty) await this.pass();
        this.idle = true;
        return Infinity;
      },
      onError: (err, next) => {
        if (this.stopped || err instanceof ClosedError || this.session.isClosed) return Infinity;
        this.invalidate();
        this.opts.report(this.failure(err));
        // Disconnected: 'connected' kicks us. Connected (an op timed out, or an ACL refused): retry.
        return this.session.isConnected ? next() : Infinity;
      },
      // Waiting for work: a kick that landed after the last dirty check is not lost.
      sleep: (ms, signal) => (this.idle && this.dirty ? Promise.resolve() : this.waker.sleep(ms, signal)),
    }).catch((err) => this.crashed(err));
  }
}
