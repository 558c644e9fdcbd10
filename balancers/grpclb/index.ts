import { createHash } from 'node:crypto';
import { endpointKey, type Endpoint } from '../../core';

/**
 * The balancing logic of Wayfinder's grpclb (lookaside) balancer, free of gRPC: how an endpoint
 * set becomes the ordered server list a balancer sends (expansion by weight or observed load,
 * drop entries for load shedding, load-balance tokens), and how the clients' load reports are
 * aggregated. The grpc side (grpc/grpclb) encodes and streams these lists.
 *
 * Deterministic: equal inputs give equal lists, so several balancer replicas behind one name
 * send the same list (they are stateless apart from the load reports they receive). Clients
 * start their round-robin at a random offset, which is what spreads them.
 *
 * Not registered as a core balancer: `wayfinder_grpclb` is its own gRPC LB policy, not an
 * instance of the generic `wayfinder_<balancer>` policy.
 */

export type ServerListEntry = { drop: false; endpoint: Endpoint; token: string } | { drop: true; token: string };

export interface ServerListOptions {
  /** Repeat each endpoint in proportion to its weight. Default false (each once). */
  expandByWeight?: boolean;
  /**
   * The observed load of an endpoint (any positive cost: utilisation, in-flight calls, latency
   * in ms), or undefined when unknown. With it, an endpoint's share is divided by its load
   * relative to the least loaded one, so a slower backend appears less often. Unknown load
   * counts as the least load. Default: no load expansion.
   */
  loadOf?: (e: Endpoint) => number | undefined;
  /** Upper bound of entries per endpoint when expanding (default 10; at least 1 each). */
  maxEntriesPerEndpoint?: number;
  /** Fraction of calls (0..1) the clients should drop, as drop entries spread through the list. Default 0. */
  dropRate?: number;
  /** Token of the drop entries (clients report drops per token). Default "drop". */
  dropToken?: string;
  /** Token of an endpoint. Default `lbTokenFor`. */
  tokenOf?: (e: Endpoint) => string;
}

/** Short lists are repeated to at least this length (and up to MAX_LIST_LENGTH) to express a drop rate. */
const MIN_DROP_GRANULARITY = 20;
const MAX_LIST_LENGTH = 1000;

/**
 * The load-balance token of an endpoint: its id when that is printable ASCII under 50 bytes (the
 * protocol's limit), else a hash of host:port. Clients send it back as `lb-token` metadata.
 */
export function lbTokenFor(e: Endpoint): string {
  if (/^[\x21-\x7e]{1,49}$/.test(e.id)) return e.id;
  return `h-${createHash('sha256').update(endpointKey(e)).digest('hex').slice(0, 32)}`;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** How many entries each endpoint gets (each >= 1). */
export function multiplicities(endpoints: readonly Endpoint[], opts: ServerListOptions = {}): number[] {
  const cap = Math.max(1, Math.floor(opts.maxEntriesPerEndpoint ?? 10));
  const share = endpoints.map((e) => {
    const w =
      opts.expandByWeight && typeof e.weight === 'number' && Number.isFinite(e.weight) && e.weight > 0 ? e.weight : 1;
    return w;
  });
  if (opts.loadOf) {
    const loads = endpoints.map((e) => {
      let l: number | undefined;
      try {
        l = opts.loadOf!(e);
      } catch {
        l = undefined;
      }
      return typeof l === 'number' && Number.isFinite(l) && l > 0 ? l : undefined;
    });
    const known = loads.filter((l): l is number => l !== undefined);
    const least = known.length ? Math.min(...known) : 1;
    for (let i = 0; i < share.length; i++) share[i] *= least / (loads[i] ?? least);
  }
  if (share.length === 0) return [];
  const max = Math.max(...share);
  if (share.every(Number.isInteger)) {
    const g = share.reduce((a, b) => gcd(a, b));
    if (max / g <= cap) return share.map((s) => s / g);
  }
  return share.map((s) => Math.max(1, Math.round((s * cap) / max)));
}

/**
 * Interleaves endpoints by their multiplicities so that repeats are spread out (earliest deadline
 * first, ties by position): 2:1 gives a,b,a rather than a,a,b.
 */
function interleave<T>(items: readonly T[], counts: readonly number[]): T[] {
  const next = counts.map((c) => 1 / (2 * c));
  const left = [...counts];
  const out: T[] = [];
  const total = counts.reduce((a, b) => a + b, 0);
  for (let n = 0; n < total; n++) {
    let best = -1;
    for (let i = 0; i < items.length; i++) if (left[i] > 0 && (best < 0 || next[i] < next[best])) best = i;
    out.push(items[best]);
    left[best]--;
    next[best] += 1 / counts[best];
  }
  return out;
}

/**
 * The ordered server list for an endpoint set. Endpoints are sorted by host:port first so the
 * list does not depend on the registry's ordering. With `dropRate` r the list holds drop entries
 * at a fraction r of its positions, spread evenly (a list too short to express r is repeated, up
 * to 1000 entries); r >= 1 gives a single drop entry (drop everything).
 */
export function buildServerList(endpoints: readonly Endpoint[], opts: ServerListOptions = {}): ServerListEntry[] {
  const dropToken = opts.dropToken ?? 'drop';
  const rate = opts.dropRate ?? 0;
  if (!(rate >= 0 && rate <= 1)) throw new RangeError(`grpclb: dropRate must be within 0..1 (got ${rate})`);
  if (rate >= 1) return [{ drop: true, token: dropToken }];
  const tokenOf = opts.tokenOf ?? lbTokenFor;
  const sorted = [...endpoints].sort((a, b) =>
    endpointKey(a) < endpointKey(b) ? -1 : endpointKey(a) > endpointKey(b) ? 1 : 0,
  );
  const base: ServerListEntry[] = interleave(sorted, multiplicities(sorted, opts)).map((endpoint) => ({
    drop: false,
    endpoint,
    token: tokenOf(endpoint),
  }));
  if (rate === 0 || base.length === 0) return base;
  // Repeat the list k times, the smallest k (with at least MIN_DROP_GRANULARITY entries) whose
  // drop count expresses the rate within half a percent, else the closest k within the bound.
  // k = 1 is always taken, whatever its length: a list that passes the bound once with its drops
  // is sent once with all of them (not with a single drop, which would shed nearly nothing).
  let best = { k: 1, drops: 1, err: Infinity };
  for (let k = 1; ; k++) {
    const b = base.length * k;
    const drops = Math.max(1, Math.round((rate * b) / (1 - rate)));
    if (k > 1 && b + drops > MAX_LIST_LENGTH) break;
    const err = Math.abs(drops / (b + drops) - rate);
    if (err < best.err) best = { k, drops, err };
    if (b >= MIN_DROP_GRANULARITY && best.err < 0.005) break;
  }
  let backends: ServerListEntry[] = [];
  for (let i = 0; i < best.k; i++) backends = backends.concat(base);
  const drops = best.drops;
  const total = backends.length + drops;
  const out: ServerListEntry[] = [];
  let b = 0;
  for (let i = 0; i < total; i++) {
    // Bresenham: a drop at every position where the running share of drops steps up.
    if (Math.floor(((i + 1) * drops) / total) > Math.floor((i * drops) / total))
      out.push({ drop: true, token: dropToken });
    else out.push(backends[b++]);
  }
  return out;
}

// ---- load reports ----

/** One ClientStats report, counts since the client's previous report. */
export interface LoadReport {
  callsStarted: number;
  callsFinished: number;
  callsFailedToSend: number;
  callsKnownReceived: number;
  /** Dropped calls by drop-entry token. */
  drops: Record<string, number>;
}

export interface LoadTotals extends LoadReport {
  /** Reports received. */
  reports: number;
  /** Client streams open now. */
  clients: number;
  /** Calls started but not yet finished, as reported (started - finished, not below 0). */
  inFlight: number;
}

function emptyTotals(): LoadTotals {
  return {
    callsStarted: 0,
    callsFinished: 0,
    callsFailedToSend: 0,
    callsKnownReceived: 0,
    drops: {},
    reports: 0,
    clients: 0,
    inFlight: 0,
  };
}

/**
 * Sums the clients' load reports per service. Reports carry counts since the previous report,
 * so totals are plain sums; negative or non-finite counts (a broken client) are ignored.
 */
export class LoadReportAggregator {
  private readonly services = new Map<string, LoadTotals>();

  private totals(service: string): LoadTotals {
    let t = this.services.get(service);
    if (!t) this.services.set(service, (t = emptyTotals()));
    return t;
  }

  clientOpened(service: string): void {
    this.totals(service).clients++;
  }

  clientClosed(service: string): void {
    const t = this.totals(service);
    t.clients = Math.max(0, t.clients - 1);
  }

  add(service: string, r: LoadReport): void {
    const t = this.totals(service);
    const n = (v: number) => (Number.isFinite(v) && v > 0 ? v : 0);
    t.reports++;
    t.callsStarted += n(r.callsStarted);
    t.callsFinished += n(r.callsFinished);
    t.callsFailedToSend += n(r.callsFailedToSend);
    t.callsKnownReceived += n(r.callsKnownReceived);
    for (const [token, count] of Object.entries(r.drops)) t.drops[token] = (t.drops[token] ?? 0) + n(count);
    t.inFlight = Math.max(0, t.callsStarted - t.callsFinished);
  }

  /** A copy of the totals of one service (zeros when nothing was reported). */
  get(service: string): LoadTotals {
    const t = this.services.get(service) ?? emptyTotals();
    return { ...t, drops: { ...t.drops } };
  }

  /** A copy of every service's totals. */
  all(): Record<string, LoadTotals> {
    const out: Record<string, LoadTotals> = {};
    for (const s of this.services.keys()) out[s] = this.get(s);
    return out;
  }
}
