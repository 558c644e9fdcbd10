import {
  withDefaults,
  endpointKey,
  type Balancer,
  type BalancerContext,
  type Endpoint,
  type OptionsSchema,
  type Pick,
  type Picker,
  type PickInfo,
} from '../../core';
import { EndpointStates, type TrackedState } from '../shared/endpoint-states';

/**
 * Outlier ejection, a decorator for any Balancer. An endpoint is ejected (taken out of the set the
 * inner balancer sees) when either
 *  - `outlierConsecutiveFailures` calls in a row fail, or
 *  - within a tumbling window of `outlierInterval`, at least `outlierMinRequests` calls finished
 *    and the fraction that failed is at least `outlierFailureRate`.
 * The n-th ejection lasts min(n × `outlierBaseEjection`, `outlierMaxEjection`); n goes back to 0
 * once an endpoint has stayed in for `outlierMaxEjection` since its last return. At no time are
 * more than floor(size × `outlierMaxEjectedPercent` / 100) endpoints ejected, and never the last
 * one; an endpoint that trips while the cap is reached stays in (it trips again on its next failure
 * and is ejected once room frees).
 *
 * Contract: state lives in the Balancer instance (one per channel), keyed by host:port, and
 * survives rebuilds; endpoints that leave the set lose it. The picker returned by build() serves
 * that endpoint set until the next build; when the ejected subset changes it rebuilds its inner
 * picker itself (on done() for ejections, on the first pick() after an ejection expires), so
 * returns need no timer. Only the newest picker of a Balancer rebuilds: an older one still in use
 * keeps its last inner picker, so it cannot disturb the inner balancer's state.
 */
export const outlierOptions: OptionsSchema = {
  outlier: { type: 'boolean', default: false, doc: 'Eject failing endpoints for a while (outlier ejection).' },
  outlierConsecutiveFailures: {
    type: 'integer',
    default: 5,
    min: 0,
    doc: 'Consecutive failed calls that eject an endpoint; 0 turns this check off.',
  },
  outlierFailureRate: {
    type: 'number',
    default: 0.5,
    min: 0,
    max: 1,
    doc: 'Failed fraction of the calls in one window that ejects an endpoint; 0 turns this check off.',
  },
  outlierMinRequests: {
    type: 'integer',
    default: 20,
    min: 1,
    doc: 'Calls an endpoint must finish in a window before its failure rate is judged.',
  },
  outlierInterval: { type: 'duration', default: 10_000, min: 1, doc: 'Length of the failure-rate window.' },
  outlierBaseEjection: {
    type: 'duration',
    default: 30_000,
    min: 1,
    doc: 'First ejection time; the n-th ejection lasts n times as long.',
  },
  outlierMaxEjection: {
    type: 'duration',
    default: 300_000,
    min: 1,
    doc: 'Longest ejection; also how long an endpoint must stay in before its ejection count resets.',
  },
  outlierMaxEjectedPercent: {
    type: 'integer',
    default: 50,
    min: 0,
    max: 100,
    doc: 'Most endpoints ejected at once, as a percentage of the set (rounded down; never all of them).',
  },
};

export interface OutlierConfig {
  outlier?: boolean;
  outlierConsecutiveFailures?: number;
  outlierFailureRate?: number;
  outlierMinRequests?: number;
  outlierInterval?: number;
  outlierBaseEjection?: number;
  outlierMaxEjection?: number;
  outlierMaxEjectedPercent?: number;
}

const DEFAULTS: Required<OutlierConfig> = {
  outlier: true,
  outlierConsecutiveFailures: 5,
  outlierFailureRate: 0.5,
  outlierMinRequests: 20,
  outlierInterval: 10_000,
  outlierBaseEjection: 30_000,
  outlierMaxEjection: 300_000,
  outlierMaxEjectedPercent: 50,
};

/** Wraps `inner` with outlier ejection when `config.outlier` is true; returns `inner` otherwise. */
export function withOutlierEjection(inner: Balancer, config: OutlierConfig): Balancer {
  return config.outlier ? new OutlierBalancer(inner, config) : inner;
}

class OutlierState implements TrackedState {
  consecutive = 0;
  windowStart = Number.NEGATIVE_INFINITY;
  calls = 0;
  failed = 0;
  /** 0 when in; otherwise when the ejection ends. */
  ejectedUntil = 0;
  ejections = 0;
  returnedAt = Number.NEGATIVE_INFINITY;
  gen = 0;
  constructor(readonly key: string) {}
}

export class OutlierBalancer implements Balancer {
  readonly name: string;
  /** Forwarded: a sticky inner balancer still needs PickInfo through the decorator. */
  get usesPickInfo(): boolean | undefined {
    return this.inner.usesPickInfo;
  }
  readonly config: Required<OutlierConfig>;
  private readonly states = new EndpointStates<OutlierState>((key) => new OutlierState(key), { trackObjects: true });
  private current: OutlierPicker | undefined;
  constructor(
    private readonly inner: Balancer,
    config: OutlierConfig,
  ) {
    this.name = inner.name;
    this.config = withDefaults(DEFAULTS, config);
  }

  build(endpoints: Endpoint[], ctx: BalancerContext): Picker {
    const picker = new OutlierPicker(this, this.inner, endpoints, this.states.sync(endpoints), ctx);
    this.current = picker;
    return picker;
  }

  /** The ejection state of a picked endpoint (a detached one for an object never synced). */
  stateOf(e: Endpoint): OutlierState {
    return this.states.stateOf(e) ?? new OutlierState(endpointKey(e));
  }

  /** Keys of ejected endpoints (for tests and status); given a time, those still ejected then. */
  ejected(t = Number.NEGATIVE_INFINITY): string[] {
    return [...this.states.values()].filter((s) => s.ejectedUntil !== 0 && s.ejectedUntil > t).map((s) => s.key);
  }

  /** Called once per finished call. */
  record(s: OutlierState, ok: boolean, t: number): void {
    const c = this.config;
    if (t - s.windowStart >= c.outlierInterval) {
      s.windowStart = t;
      s.calls = 0;
      s.failed = 0;
    }
    s.calls++;
    if (ok) {
      s.consecutive = 0;
      return;
    }
    s.failed++;
    s.consecutive++;
    if (s.ejectedUntil !== 0 || s.gen < 0 || this.states.get(s.key) !== s) return;
    const tripped =
      (c.outlierConsecutiveFailures > 0 && s.consecutive >= c.outlierConsecutiveFailures) ||
      (c.outlierFailureRate > 0 && s.calls >= c.outlierMinRequests && s.failed / s.calls >= c.outlierFailureRate);
    if (tripped && this.eject(s, t)) this.current?.refresh(t);
  }

  private eject(s: OutlierState, t: number): boolean {
    const c = this.config;
    const n = this.states.size;
    const cap = Math.min(Math.floor((n * c.outlierMaxEjectedPercent) / 100), n - 1);
    let ejected = 0;
    for (const x of this.states.values()) if (x.ejectedUntil !== 0) ejected++;
    if (ejected >= cap) return false;
    if (t - s.returnedAt >= c.outlierMaxEjection) s.ejections = 0;
    s.ejections++;
    s.ejectedUntil = t + Math.min(c.outlierBaseEjection * s.ejections, c.outlierMaxEjection);
    s.consecutive = 0;
    s.windowStart = Number.NEGATIVE_INFINITY;
    return true;
  }

  isCurrent(p: OutlierPicker): boolean {
    return this.current === p;
  }
}

export class OutlierPicker implements Picker {
  private inner!: Picker;
  /** Earliest end of an ejection among this set (Infinity when none is ejected). */
  private nextReturn = Infinity;
  constructor(
    private readonly owner: OutlierBalancer,
    private readonly balancer: Balancer,
    private readonly endpoints: readonly Endpoint[],
    private readonly states: readonly OutlierState[],
    private readonly ctx: BalancerContext,
  ) {
    this.refresh(ctx.now());
  }

  /** Returns expired ejections and rebuilds the inner picker over the endpoints that are in. */
  refresh(t: number): void {
    let active: Endpoint[] | undefined;
    let next = Infinity;
    const eps = this.endpoints;
    for (let i = 0; i < eps.length; i++) {
      const s = this.states[i];
      if (s.ejectedUntil !== 0 && s.ejectedUntil <= t) {
        s.ejectedUntil = 0;
        s.returnedAt = t;
      }
      if (s.ejectedUntil === 0) active?.push(eps[i]);
      else {
        // Copy lazily: with nothing ejected the inner balancer gets the set itself (no 10k copy).
        active ??= eps.slice(0, i);
        if (s.ejectedUntil < next) next = s.ejectedUntil;
      }
    }
    this.nextReturn = next;
    this.inner = this.balancer.build(active ?? (eps as Endpoint[]), this.ctx);
  }

  pick(info?: PickInfo): Pick {
    if (this.nextReturn !== Infinity && this.owner.isCurrent(this)) {
      const t = this.ctx.now();
      if (t >= this.nextReturn) this.refresh(t);
    }
    const p = this.inner.pick(info);
    if (p.endpoint === null) return p;
    return outlierCall(p, this.owner.stateOf(p.endpoint), this.owner, this.ctx);
  }
}

/** Wraps an inner pick so its outcome also reaches the ejection state, once. */
function outlierCall(
  p: Extract<Pick, { endpoint: Endpoint }> & { started?(): void },
  s: OutlierState,
  owner: OutlierBalancer,
  ctx: BalancerContext,
): Pick {
  let finished = false;
  return {
    endpoint: p.endpoint,
    started(): void {
      p.started?.();
    },
    done(result: { ok: boolean; latencyMs: number }): void {
      p.done(result);
      if (finished) return;
      finished = true;
      owner.record(s, result?.ok === true, ctx.now());
    },
  } as Pick;
}
