import type { IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from 'etcd3';
import { RegistrationLostError, type Logger } from '../../core';
import type { EtcdClient } from './client';

/**
 * Keeps one etcd lease alive over its own keep-alive stream: a keep-alive every TTL/3 (what the Go
 * client does), the stream re-opened after errors. `onLost` is called once, when etcd says the
 * lease is gone (TTL 0 in a keep-alive answer: revoked, expired, or etcd restarted without its data)
 * or when no keep-alive has been acknowledged for a whole TTL (etcd has expired it by then).
 */
export class LeaseKeeper {
  private stream?: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;
  private ticker?: NodeJS.Timeout;
  private watchdog?: NodeJS.Timeout;
  private reopen?: NodeJS.Timeout;
  private stopped = false;
  /**
   * When etcd will expire the lease unless another keep-alive is acknowledged (ms epoch). Date.now()
   * on purpose: it only arms a real setTimeout watchdog, which an injected clock would not move.
   */
  private expiresAt: number;

  constructor(
    private readonly client: EtcdClient,
    readonly leaseId: string,
    private readonly ttlMs: number,
    private readonly onLost: (err: Error) => void,
    private readonly logger: Logger,
  ) {
    this.expiresAt = Date.now() + ttlMs;
    this.armWatchdog();
    this.ticker = setInterval(() => this.send(), Math.max(300, Math.floor(ttlMs / 3)));
    this.ticker.unref();
    void this.open();
  }

  /** Stops keeping the lease alive (it expires after its TTL unless revoked). Idempotent. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.ticker);
    clearTimeout(this.watchdog);
    clearTimeout(this.reopen);
    const s = this.stream;
    this.stream = undefined;
    try {
      s?.end();
      s?.cancel();
    } catch {
      /* closed */
    }
  }

  private lost(reason: string): void {
    if (this.stopped) return;
    this.stop();
    this.onLost(new RegistrationLostError(`etcd: lease ${this.leaseId} lost: ${reason}`));
  }

  private armWatchdog(): void {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(
      () => this.lost(`no keep-alive acknowledged for its TTL of ${this.ttlMs} ms`),
      Math.max(0, this.expiresAt - Date.now()),
    );
    this.watchdog.unref();
  }

  private async open(): Promise<void> {
    if (this.stopped) return;
    let s: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;
    try {
      s = await this.client.keepAliveStream();
    } catch (e) {
      return this.retry(e);
    }
    if (this.stopped) {
      try {
        s.end();
        s.cancel();
      } catch {
        /* ignore */
      }
      return;
    }
    this.stream = s;
    s.on('data', (res: ILeaseKeepAliveResponse) => {
      if (this.stopped || this.stream !== s) return;
      if (res.TTL === '0' || Number(res.TTL) <= 0)
        return this.lost('etcd no longer knows it (revoked, expired, or etcd lost its data)');
      this.expiresAt = Date.now() + Number(res.TTL) * 1000;
      this.armWatchdog();
    });
    s.on('error', (e: Error) => {
      if (this.stream === s) this.retry(e);
    });
    s.on('end', () => {
      if (this.stream === s) this.retry(new Error('keep-alive stream ended'));
    });
    this.send();
  }

  private retry(e: unknown): void {
    if (this.stopped) return;
    const s = this.stream;
    this.stream = undefined;
    try {
      s?.cancel();
    } catch {
      /* ignore */
    }
    this.logger.debug({ lease: this.leaseId, err: (e as Error)?.message }, 'etcd: keep-alive stream failed; reopening');
    clearTimeout(this.reopen);
    this.reopen = setTimeout(() => void this.open(), 250);
    this.reopen.unref();
  }

  private send(): void {
    if (this.stopped || !this.stream) return;
    try {
      this.stream.write({ ID: this.leaseId });
    } catch (e) {
      this.retry(e);
    }
  }
}
