import assert from 'node:assert/strict';
import { EchoClient } from '../testkit/echo';
import { waitFor } from '../testkit/process';

/** Shared gRPC traffic loop of the reliability and cluster suites. */

export interface CallRecord {
  t: number;
  ok: boolean;
  id?: string;
  err?: string;
}

export interface TrafficOptions {
  /** Pause between one call's outcome and the next call (default 25 ms). */
  gapMs?: number;
  /** Deadline of each call (default 3 s). */
  deadlineMs?: number;
}

/** A client making one unary echo call at a time, `gapMs` apart, recording every outcome. */
export class Traffic {
  readonly records: CallRecord[] = [];
  private running = true;
  private readonly loop: Promise<void>;
  private readonly client: EchoClient;
  private readonly gapMs: number;
  private readonly deadlineMs: number;
  constructor(target: string, opts: TrafficOptions = {}) {
    this.gapMs = opts.gapMs ?? 25;
    this.deadlineMs = opts.deadlineMs ?? 3000;
    this.client = new EchoClient(target);
    this.loop = this.run();
  }
  private async run(): Promise<void> {
    while (this.running) {
      try {
        const r = await this.client.echo({}, { deadlineMs: this.deadlineMs });
        this.records.push({ t: Date.now(), ok: true, id: r.serverId });
      } catch (e) {
        this.records.push({ t: Date.now(), ok: false, err: (e as Error).message });
      }
      await new Promise((r) => setTimeout(r, this.gapMs));
    }
  }
  /** Calls recorded at or after time `t` (ms since the epoch). */
  since(t: number): CallRecord[] {
    return this.records.filter((r) => r.t >= t);
  }
  /** A position in the records, for check(). */
  mark(): number {
    return this.records.length;
  }
  /** Calls and failures since `mark`; asserts some were made and none failed. */
  check(mark: number, what: string): { calls: number; failed: number } {
    const recs = this.records.slice(mark);
    const failed = recs.filter((r) => !r.ok);
    assert.ok(recs.length > 0, `${what}: no calls were made`);
    assert.equal(
      failed.length,
      0,
      `${what}: ${failed.length} of ${recs.length} calls failed: ${[...new Set(failed.slice(0, 5).map((r) => r.err))].join(' | ')}`,
    );
    return { calls: recs.length, failed: failed.length };
  }
  /** Waits until the last `n` successful calls hit exactly `want` (every id, nothing else). */
  async reaches(want: string[], timeoutMs: number, n = 16): Promise<void> {
    const w = [...want].sort().join(',');
    await waitFor(
      `calls to reach exactly [${w}]`,
      () => {
        const ok = this.records.filter((r) => r.ok).slice(-n);
        return ok.length === n && [...new Set(ok.map((r) => r.id))].sort().join(',') === w;
      },
      { timeoutMs, intervalMs: 50 },
    );
  }
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    this.client.close();
  }
}
