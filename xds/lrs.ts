import type { ClusterStats } from './protocol';

/** Load reported by xDS clients over LRS for one cluster (= service), summed over clients and reports. */
export interface XdsLoadTotals {
  /** Reports received (one per cluster per client per interval). */
  reports: number;
  /** Calls issued, succeeded, failed, since the server started. */
  issued: number;
  succeeded: number;
  failed: number;
  /** Calls the clients dropped (drop_overloads / circuit breaker), total and by category. */
  dropped: number;
  drops: Record<string, number>;
  /** Calls in progress: the sum of each client's latest report. */
  inProgress: number;
  /** LRS streams whose latest report named this cluster. */
  clients: number;
}

function empty(): XdsLoadTotals {
  return { reports: 0, issued: 0, succeeded: 0, failed: 0, dropped: 0, drops: {}, inProgress: 0, clients: 0 };
}

/** Counts arrive as int64 strings; negative or non-numeric counts (a broken client) count as 0. */
function n(v: string | number | undefined): number {
  const x = Number(v ?? 0);
  return Number.isFinite(x) && x > 0 ? x : 0;
}

/**
 * Sums LRS reports per cluster, as the grpclb server sums ClientStats: reports carry counts since
 * the client's previous report, so totals are plain sums; requests in progress are a gauge, kept
 * per stream and summed, and forgotten when the stream closes.
 */
export class LoadStatsAggregator {
  private readonly totals = new Map<string, XdsLoadTotals>();
  /** Per stream: cluster -> its latest in-progress gauge. */
  private readonly gauges = new Set<Map<string, number>>();

  private of(cluster: string): XdsLoadTotals {
    let t = this.totals.get(cluster);
    if (!t) this.totals.set(cluster, (t = empty()));
    return t;
  }

  open(): { add(cs: ClusterStats): void; close(): void } {
    const gauge = new Map<string, number>();
    this.gauges.add(gauge);
    return {
      add: (cs) => {
        const cluster = cs.cluster_service_name || cs.cluster_name || '';
        const t = this.of(cluster);
        t.reports++;
        let inProgress = 0;
        for (const l of cs.upstream_locality_stats ?? []) {
          t.issued += n(l.total_issued_requests);
          t.succeeded += n(l.total_successful_requests);
          t.failed += n(l.total_error_requests);
          inProgress += n(l.total_requests_in_progress);
        }
        t.dropped += n(cs.total_dropped_requests);
        for (const d of cs.dropped_requests ?? []) {
          const c = d.category ?? '';
          t.drops[c] = (t.drops[c] ?? 0) + n(d.dropped_count);
        }
        gauge.set(cluster, inProgress);
      },
      close: () => {
        this.gauges.delete(gauge);
      },
    };
  }

  get(cluster: string): XdsLoadTotals {
    const t = { ...(this.totals.get(cluster) ?? empty()) };
    t.drops = { ...t.drops };
    t.inProgress = 0;
    t.clients = 0;
    for (const g of this.gauges) {
      const v = g.get(cluster);
      if (v === undefined) continue;
      t.inProgress += v;
      t.clients++;
    }
    return t;
  }

  all(): Record<string, XdsLoadTotals> {
    const out: Record<string, XdsLoadTotals> = {};
    for (const c of this.totals.keys()) out[c] = this.get(c);
    return out;
  }
}
