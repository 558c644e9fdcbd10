import type { Endpoint } from '../../core';
import { EndpointStates } from '../shared/endpoint-states';

/**
 * Per-endpoint load, kept by the Balancer instance (one per channel) across picker rebuilds and
 * keyed by host:port; an endpoint's state is dropped when a build no longer includes it. Calls
 * still running against a dropped state finish against that orphaned object, harmlessly.
 *
 * Time is the BalancerContext clock (ms).
 *  - the peak-EWMA latency estimate, read between samples, decays toward 0 with time constant
 *    `tau` (`ewma × decay(t)`), so an endpoint that was slow is eventually probed again (Finagle's
 *    and tower's PeakEwma do the same, but store the decayed value on every read, so there a read
 *    restarts the blending interval; here reads change nothing and a sample is blended over the
 *    whole time since the last sample, as theirs is when no read fell in between);
 *  - successes and failures are exponentially decayed counts with time constant `errTau` (short, so
 *    a long good history does not hide an endpoint that has just started failing), giving a recent
 *    success probability p = (successes + 1) / (successes + failures + 1) (one prior success: an
 *    endpoint without failures has p = 1).
 */
export class EndpointLoad {
  /** Calls counted as outstanding (from pick() or from Pick.started(), see P2cPicker). */
  inflight = 0;
  /** Latency estimate (ms) as of `at`; NaN until the first sample. */
  ewma = Number.NaN;
  successes = 0;
  failures = 0;
  /** When ewma/successes/failures were last updated. */
  at = 0;
  /** Owned by EndpointStates: the last sync that saw this endpoint (-1 once dropped). */
  gen = 0;
  constructor(readonly key: string) {}

  /** e^(-(t - at)/tau): how much of the state at `at` survives until t. */
  decay(t: number, tau: number): number {
    const dt = t - this.at;
    return dt > 0 ? Math.exp(-dt / tau) : 1;
  }

  /** Recent success probability in (0, 1]. */
  successProbability(k: number): number {
    if (this.failures === 0) return 1;
    const s = this.successes * k;
    return (s + 1) / (s + this.failures * k + 1);
  }

  /**
   * Records a finished call. A failure's latency sample is raised to at least `floorMs` (the
   * balancer-wide typical latency) so that a fast error never makes an endpoint look fast.
   */
  observe(ok: boolean, latencyMs: number, t: number, tau: number, floorMs: number, errTau: number): void {
    const k = this.decay(t, tau);
    const ke = this.decay(t, errTau);
    this.successes *= ke;
    this.failures *= ke;
    if (ok) this.successes += 1;
    else this.failures += 1;
    let sample = Number.isFinite(latencyMs) && latencyMs >= 0 ? latencyMs : Number.NaN;
    if (!ok) sample = Number.isNaN(sample) ? floorMs : Math.max(sample, floorMs);
    if (!Number.isNaN(sample) && sample > 0) {
      // Peak-sensitive, as Finagle's PeakEwma.observe and tower's RttEstimate::update: a sample at
      // or above the estimate (as of its last update) replaces it at once; a lower one is blended
      // in, the estimate weighted k = e^(-dt/tau) and the sample 1 - k, dt being the time since the
      // last update. The elapsed time counts once: the decay toward 0 that cost() applies between
      // samples is a read-only view (ewma × k) and is not applied here a second time (blending
      // into ewma × k would weigh the old estimate k² instead of k).
      this.ewma = Number.isNaN(this.ewma) || sample >= this.ewma ? sample : this.ewma * k + sample * (1 - k);
    }
    this.at = t > this.at ? t : this.at;
  }
}

/** The Balancer-owned table of EndpointLoad, plus the balancer-wide typical latency. */
export class LoadTable {
  private readonly states = new EndpointStates<EndpointLoad>((key) => new EndpointLoad(key));
  /** Balancer-wide EWMA (per sample, weight 1/20) of successful latencies; 0 until one is seen. */
  typicalMs = 0;

  /** The states for a new endpoint set, in its order; states of endpoints not in it are dropped. */
  sync(endpoints: readonly Endpoint[]): EndpointLoad[] {
    this.current = this.states.sync(endpoints);
    return this.current;
  }
  /** The states of the last synced set (for metrics). */
  current: EndpointLoad[] = [];

  get(key: string): EndpointLoad | undefined {
    return this.states.get(key);
  }

  get size(): number {
    return this.states.size;
  }

  noteSuccess(latencyMs: number): void {
    if (!(Number.isFinite(latencyMs) && latencyMs > 0)) return;
    this.typicalMs = this.typicalMs === 0 ? latencyMs : this.typicalMs + (latencyMs - this.typicalMs) / 20;
  }
}
