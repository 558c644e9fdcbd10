import type { Balancer, BalancerContext, Endpoint, OptionsSchema, Pick, Picker, PickInfo } from '../../core';
import { murmur3 } from '../shared/hash';

/**
 * Zone-aware routing, a decorator for any Balancer (Envoy's zone-aware routing is the anchor).
 * With a local zone known, each pick first chooses a zone, then the inner balancer picks among that
 * zone's endpoints (one inner Balancer per zone, so stateful balancers keep per-zone state).
 *
 * Per build, with u[z] = zone z's share of the listed endpoints and d[z] = zone z's share of the
 * clients (see below):
 *  - plain (no zone routing; the inner balancer over every endpoint) when the local zone has no
 *    endpoint, fewer than `zoneMinClusterSize` endpoints are listed, only one zone is listed, or
 *    fewer than `zonePanicThreshold` % of the zones' peak endpoint count is listed (panic);
 *  - local only when u[local] >= d[local]: the local endpoints carry the local share of load;
 *  - residual otherwise: a pick stays local with probability u[local] / d[local], and the rest
 *    spills to the other zones in proportion to their residual capacity max(0, u[z] - d[z]).
 *
 * Where Envoy knows d (the downstream cluster's hosts per zone), a client library does not know
 * where the other clients are. The estimate here: clients are spread over the zones like the
 * endpoints were at their fullest, d[z] = peak[z] / Σ peak, where peak[z] is the most endpoints
 * zone z has listed in this balancer's life (held when a zone shrinks or vanishes, so a zone that
 * lost endpoints is seen as short of capacity for its own clients). A zone scaled down on purpose
 * therefore keeps spilling until the channel is recreated; `zoneShares` (Envoy-like, when the
 * deployment knows its client spread) replaces the estimate.
 */
export const zoneAwareOptions: OptionsSchema = {
  localZone: {
    type: 'string',
    default: '',
    doc: "This client's zone; turns zone-aware routing on. Empty: env WAYFINDER_ZONE, else off.",
  },
  zoneMinClusterSize: {
    type: 'integer',
    default: 6,
    min: 1,
    doc: 'Fewest listed endpoints for zone-aware routing (Envoy min_cluster_size); fewer: no zone routing.',
  },
  zonePanicThreshold: {
    type: 'number',
    default: 50,
    min: 0,
    max: 100,
    doc: 'Zone routing stops while fewer than this % of the peak endpoint count is listed (panic).',
  },
  zoneShares: {
    type: 'list',
    default: [],
    doc: 'Known client spread, as zone=share items (e.g. "a=2,b=1"); replaces the peak-endpoint estimate.',
    check: (v: string[]) => (parseShares(v) ? undefined : 'must be zone=share items with shares > 0'),
  },
};

export interface ZoneAwareConfig {
  localZone?: string;
  zoneMinClusterSize?: number;
  zonePanicThreshold?: number;
  zoneShares?: string[];
}

/** Where the local zone comes from when neither the option nor WAYFINDER_ZONE gives it. */
let zoneSource: () => string | undefined = () => undefined;

/**
 * Hook for a platform that knows the local zone (e.g. a Kubernetes node's
 * `topology.kubernetes.io/zone` label): consulted when a balancer is created without `localZone`
 * and without env WAYFINDER_ZONE. The k8s adapter does not read Node objects today, so nothing
 * sets it by default.
 */
export function setLocalZoneSource(source: () => string | undefined): void {
  zoneSource = source;
}

/** The configured local zone: the option, else env WAYFINDER_ZONE, else the zone source hook. */
export function localZoneOf(config: ZoneAwareConfig, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return config.localZone || env.WAYFINDER_ZONE || zoneSource() || undefined;
}

/** Wraps balancers made by `make` with zone-aware routing when a local zone is known; `make()` otherwise. */
export function withZoneAware(make: () => Balancer, config: ZoneAwareConfig): Balancer {
  const zone = localZoneOf(config);
  return zone ? new ZoneAwareBalancer(make, { ...config, localZone: zone }) : make();
}

export type ZoneMode = 'plain' | 'local' | 'residual';

/** One build's routing decision: local fraction and the spill distribution over other zones. */
export interface ZonePlan {
  mode: ZoneMode;
  /** Probability a pick stays in the local zone ('residual'); 1 for 'local'. */
  localFraction: number;
  /** Other zones with residual capacity and their cumulative spill weights (sum 1). */
  spill: { zone: string; cum: number }[];
}

/**
 * The routing plan (pure): `counts` = listed endpoints per zone, `shares` = client share per zone
 * (any positive scale), `peakTotal` = Σ of the zones' peak counts (for the panic rule).
 */
export function zonePlan(
  local: string,
  counts: ReadonlyMap<string, number>,
  shares: ReadonlyMap<string, number>,
  peakTotal: number,
  opts: { minClusterSize: number; panicThreshold: number },
): ZonePlan {
  const plain: ZonePlan = { mode: 'plain', localFraction: 0, spill: [] };
  let total = 0;
  for (const c of counts.values()) total += c;
  const localCount = counts.get(local) ?? 0;
  if (localCount === 0 || counts.size < 2 || total < opts.minClusterSize) return plain;
  if (peakTotal > 0 && (total * 100) / peakTotal < opts.panicThreshold) return plain;
  let shareTotal = 0;
  // Zones that listed endpoints once but none now still have clients: their share counts.
  for (const s of shares.values()) if (s > 0) shareTotal += s;
  const d = (z: string) => (shareTotal > 0 ? (shares.get(z) ?? 0) / shareTotal : 0);
  const u = (z: string) => (counts.get(z) ?? 0) / total;
  const dLocal = d(local);
  if (u(local) >= dLocal) return { mode: 'local', localFraction: 1, spill: [] };
  const spill: { zone: string; cum: number }[] = [];
  let sum = 0;
  for (const z of counts.keys()) {
    if (z === local) continue;
    const r = u(z) - d(z);
    if (r > 0) {
      sum += r;
      spill.push({ zone: z, cum: sum });
    }
  }
  if (sum === 0) {
    // No other zone has headroom either (every zone short): spread like the endpoints.
    for (const z of counts.keys()) if (z !== local) spill.push({ zone: z, cum: (sum += u(z)) });
  }
  for (const s of spill) s.cum /= sum;
  return { mode: 'residual', localFraction: u(local) / dLocal, spill };
}

export class ZoneAwareBalancer implements Balancer {
  readonly name: string;
  readonly localZone: string;
  private readonly usesInfo: boolean | undefined;
  /** One inner balancer per zone (state per zone), plus one over all endpoints for 'plain'. */
  private readonly perZone = new Map<string, Balancer>();
  private readonly all: Balancer;
  /** Most endpoints each zone has listed (the client spread estimate). */
  readonly peak = new Map<string, number>();
  private readonly fixedShares: Map<string, number> | undefined;
  private readonly minClusterSize: number;
  private readonly panicThreshold: number;
  /** The plan of the latest build (for tests and status). */
  plan: ZonePlan | undefined;

  constructor(
    private readonly make: () => Balancer,
    config: ZoneAwareConfig & { localZone: string },
  ) {
    this.all = make();
    this.name = this.all.name;
    this.usesInfo = this.all.usesPickInfo;
    this.localZone = config.localZone;
    this.minClusterSize = config.zoneMinClusterSize ?? 6;
    this.panicThreshold = config.zonePanicThreshold ?? 50;
    const shares = parseShares(config.zoneShares ?? []);
    this.fixedShares = shares && shares.size > 0 ? shares : undefined;
  }

  get usesPickInfo(): boolean | undefined {
    return this.usesInfo;
  }

  build(endpoints: Endpoint[], ctx: BalancerContext): Picker {
    const byZone = new Map<string, Endpoint[]>();
    for (const e of endpoints) {
      const z = e.zone ?? '';
      let list = byZone.get(z);
      if (!list) byZone.set(z, (list = []));
      list.push(e);
    }
    const counts = new Map<string, number>();
    for (const [z, list] of byZone) {
      counts.set(z, list.length);
      if (list.length > (this.peak.get(z) ?? 0)) this.peak.set(z, list.length);
    }
    let peakTotal = 0;
    for (const p of this.peak.values()) peakTotal += p;
    const plan = zonePlan(this.localZone, counts, this.fixedShares ?? this.peak, peakTotal, {
      minClusterSize: this.minClusterSize,
      panicThreshold: this.panicThreshold,
    });
    this.plan = plan;
    for (const z of this.perZone.keys()) if (!byZone.has(z)) this.perZone.delete(z);
    if (plan.mode === 'plain') return this.all.build(endpoints, ctx);
    const zonePicker = (z: string): Picker => {
      let b = this.perZone.get(z);
      if (!b) this.perZone.set(z, (b = this.make()));
      return b.build(byZone.get(z)!, ctx);
    };
    const local = zonePicker(this.localZone);
    if (plan.mode === 'local') return local;
    return new ZoneResidualPicker(
      local,
      plan.localFraction,
      plan.spill.map((s) => ({ cum: s.cum, picker: zonePicker(s.zone) })),
      ctx.random,
      this.usesInfo === true,
    );
  }
}

/**
 * Residual mode: one draw u in [0, 1) per pick; u < localFraction stays local, otherwise the
 * rescaled draw picks a spill zone. For a sticky inner balancer (ring_hash) the draw comes from the
 * pick key's hash, so a key keeps reaching the same zone (and endpoint) while the plan stands.
 */
export class ZoneResidualPicker implements Picker {
  constructor(
    private readonly local: Picker,
    private readonly localFraction: number,
    private readonly spill: readonly { cum: number; picker: Picker }[],
    private readonly random: () => number,
    private readonly sticky: boolean,
  ) {}

  pick(info?: PickInfo): Pick {
    const u = this.sticky && info?.key ? murmur3(info.key, ZONE_SEED) / 4294967296 : this.random();
    if (u < this.localFraction) return this.local.pick(info);
    const r = (u - this.localFraction) / (1 - this.localFraction);
    for (const s of this.spill) if (r < s.cum) return s.picker.pick(info);
    return this.spill[this.spill.length - 1].picker.pick(info);
  }
}

/** Seed of the key hash that chooses a zone (distinct from the ring's, seed 0, so they are independent). */
const ZONE_SEED = 0x5a0e;

/** `["a=2", "b=1"]` -> Map; undefined when an item is malformed. */
export function parseShares(items: readonly string[]): Map<string, number> | undefined {
  const m = new Map<string, number>();
  for (const item of items) {
    const i = item.lastIndexOf('=');
    const share = Number(item.slice(i + 1));
    if (i <= 0 || !Number.isFinite(share) || share <= 0) return undefined;
    m.set(item.slice(0, i).trim(), share);
  }
  return m;
}
