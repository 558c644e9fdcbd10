import {
  defineBalancer,
  ignoreOutcome,
  registerBalancer,
  type Balancer,
  type BalancerContext,
  type Endpoint,
  type Logger,
  type OptionsSchema,
  type Pick,
  type PickInfo,
  type Picker,
} from '../../core';
import { decorate, decoratorOptions, type DecoratorConfig } from '../shared/decorators';
import { murmur3 } from '../shared/hash';

export { murmur3 };
import { EndpointStates, type TrackedState } from '../shared/endpoint-states';

/**
 * Consistent hashing on a ring (Karger et al.; the ring_hash of Envoy and gRPC) for sticky routing
 * on `PickInfo.key` (in gRPC the `wayfinder-pick-key` call metadata).
 *
 * Every endpoint puts points on a 32-bit ring, as many as its weight times the points per weight
 * unit `k`; a key goes to the owner of the first point at or after the key's hash (wrapping
 * around). Point i of an endpoint sits at murmur3("host:port_i"), so the layout depends only on
 * the set, never on its order, on the process or on history: every client maps a key the same way.
 *
 * Ring size, as Envoy computes it: with normalised weights w_i / W and m the smallest of them,
 * scale = min(ceil(m × minRingSize) / m, maxRingSize), and endpoint i gets round(scale × w_i / W)
 * points, at least one (rounded per endpoint, not by Envoy's running total, so that the counts do
 * not depend on the order of the set). The ring thus has about minRingSize points, more when the
 * weights are uneven, never much more than maxRingSize (one point per endpoint at least).
 * Consequence (Envoy and gRPC's ring_hash share it): a change of the set usually changes every
 * endpoint's point count a little; a key then moves when its endpoint leaves or when a point added
 * by the new scale lands in front of it. Both are measured in the tests and docs/balancers.md; when
 * the counts stay the same (e.g. a set of at least minRingSize equal endpoints: one point each)
 * exactly the keys that must move move.
 *
 * Keyless picks choose an endpoint at random in proportion to its weight (ctx.random).
 * Pick cost: one murmur3 of the key and a binary search over the ring, O(log ring size), no allocation.
 */

/** Ring entries are pointHash × OWNER_SPAN + endpoint index, exact in a double (32 + 21 bits). */
const OWNER_SPAN = 2_097_152;
/** The most endpoints a ring holds; beyond it endpoints are left out (with a warning). */
export const MAX_RING_ENDPOINTS = OWNER_SPAN;
export const DEFAULT_MIN_RING_SIZE = 1024;
export const DEFAULT_MAX_RING_SIZE = 8 * 1024 * 1024;

/** Weight as used here: positive finite numbers as given, anything else 1 (never throws on registry data). */
function weightOf(w: unknown): number {
  return typeof w === 'number' && Number.isFinite(w) && w > 0 ? w : 1;
}

/**
 * Envoy's ring scale: the number of points a normalised weight of 1 would get. Pure: the same set
 * always gives the same ring.
 */
export function ringScale(
  minNormalizedWeight: number,
  minRingSize = DEFAULT_MIN_RING_SIZE,
  maxRingSize = DEFAULT_MAX_RING_SIZE,
): number {
  if (!(minNormalizedWeight > 0)) return 1;
  return Math.min(Math.ceil(minNormalizedWeight * minRingSize) / minNormalizedWeight, maxRingSize);
}

/** Points of an endpoint of normalised weight `nw`: round(scale × nw), at least 1. */
export function pointCount(nw: number, scale: number): number {
  return Math.max(1, Math.round(scale * nw));
}

interface PointState extends TrackedState {
  /** murmur3(`${key}_${i}`) for i < computed: computed once per endpoint key, grown on demand. */
  hashes: Uint32Array;
  computed: number;
  /** Points on the ring of build `ring`. */
  count: number;
  /** Index in the endpoint array of build `ring`. */
  idx: number;
  /** The last build whose ring holds this endpoint's points (0: none). */
  ring: number;
  /** The Pick handed out for this endpoint, reused while the Endpoint object is the same. */
  pick?: Pick & { endpoint: Endpoint };
}

function pointHashes(s: PointState, count: number): Uint32Array {
  if (s.computed < count) {
    const grown = new Uint32Array(Math.max(count, s.computed * 2));
    grown.set(s.hashes.subarray(0, s.computed));
    const prefix = `${s.key}_`;
    for (let i = s.computed; i < count; i++) grown[i] = murmur3(prefix + i);
    s.hashes = grown;
    s.computed = count;
  }
  return s.hashes;
}

export class RingHashPicker implements Picker {
  constructor(
    /** One Pick per endpoint, in the order of the endpoint array (ring entries index it). */
    private readonly picks: readonly Pick[],
    /** Sorted by point hash; entry = hash × OWNER_SPAN + index into `endpoints`. */
    readonly ring: Float64Array,
    /** Cumulative weights, for keyless picks. */
    private readonly cumulative: Float64Array,
    private readonly random: () => number,
  ) {}

  pick(info?: PickInfo): Pick {
    const ring = this.ring;
    const n = ring.length;
    if (n === 0) return { endpoint: null, reason: 'no-endpoints' };
    const key = info?.key;
    if (key === undefined || key === null) return this.picks[this.randomIndex()];
    const target = murmur3(String(key)) * OWNER_SPAN;
    // Lower bound: the first entry whose point hash is >= the key's hash.
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ring[mid] < target) lo = mid + 1;
      else hi = mid;
    }
    const v = ring[lo === n ? 0 : lo];
    return this.picks[v % OWNER_SPAN];
  }

  /** The endpoint index a key maps to, for tests and tooling (-1 on an empty ring). */
  indexOf(key: string): number {
    const p = this.pick({ key });
    return p.endpoint ? this.picks.findIndex((x) => x.endpoint === p.endpoint) : -1;
  }

  private randomIndex(): number {
    const c = this.cumulative;
    const x = this.random() * c[c.length - 1];
    let lo = 0;
    let hi = c.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (c[mid] <= x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

export interface RingHashConfig extends DecoratorConfig {
  minRingSize?: number;
  maxRingSize?: number;
}

export const ringHashOptions: OptionsSchema = {
  minRingSize: {
    type: 'integer',
    default: DEFAULT_MIN_RING_SIZE,
    min: 1,
    max: DEFAULT_MAX_RING_SIZE,
    doc: 'The ring has at least this many points (fewer only if maxRingSize is lower); more points spread keys more evenly.',
  },
  maxRingSize: {
    type: 'integer',
    default: DEFAULT_MAX_RING_SIZE,
    min: 1,
    max: DEFAULT_MAX_RING_SIZE,
    doc: 'The ring has at most this many points (but every endpoint at least one); wins over minRingSize when lower (with a warning).',
  },
  ...decoratorOptions,
};

/**
 * The ring-hash balancer of one channel. It keeps every endpoint's point hashes (by host:port)
 * and the last ring across builds: a rebuild after a small change only hashes the new endpoints'
 * points and merges them into the previous ring (O(ring size), no sort). Builds are called one at
 * a time by the owner of the balancer (the contract of Balancer.build).
 */
export class RingHashBalancer implements Balancer {
  readonly name = 'ring_hash';
  readonly usesPickInfo = true;
  readonly minRingSize: number;
  readonly maxRingSize: number;
  private readonly states = new EndpointStates<PointState>((key) => ({
    key,
    gen: 0,
    hashes: new Uint32Array(0),
    computed: 0,
    count: 0,
    idx: -1,
    ring: 0,
  }));
  private builds = 0;
  private prevRing: Float64Array = new Float64Array(0);
  private prevStates: PointState[] = [];

  constructor(config: RingHashConfig = {}) {
    this.minRingSize = config.minRingSize ?? DEFAULT_MIN_RING_SIZE;
    this.maxRingSize = config.maxRingSize ?? DEFAULT_MAX_RING_SIZE;
  }

  build(input: Endpoint[], ctx: BalancerContext): Picker {
    const id = ++this.builds;
    if (id === 1 && this.minRingSize > this.maxRingSize) {
      // Not thrown: through gRPC the balancer is created inside grpc-js, where a throw leaves calls
      // waiting silently. The options schema cannot compare two fields (see the report to core).
      warn(
        ctx.logger,
        { minRingSize: this.minRingSize, maxRingSize: this.maxRingSize },
        'ring_hash: "minRingSize" exceeds "maxRingSize"; maxRingSize wins',
      );
    }
    let endpoints: readonly Endpoint[] = input;
    if (endpoints.length > MAX_RING_ENDPOINTS) {
      warn(
        ctx.logger,
        { count: endpoints.length, max: MAX_RING_ENDPOINTS },
        'ring_hash: too many endpoints; the rest are left out of the ring',
      );
      endpoints = endpoints.slice(0, MAX_RING_ENDPOINTS);
    }
    const n = endpoints.length;
    const states = this.states.sync(endpoints);
    const weights = new Float64Array(n);
    const cumulative = new Float64Array(n);
    let total = 0;
    let minWeight = Infinity;
    for (let i = 0; i < n; i++) {
      const w = weightOf(endpoints[i].weight);
      weights[i] = w;
      total += w;
      cumulative[i] = total;
      if (w < minWeight) minWeight = w;
    }
    const scale = ringScale(minWeight / total, this.minRingSize, this.maxRingSize);

    // Which endpoints keep their points from the previous ring, which need theirs (re)inserted.
    const fresh: number[] = [];
    let size = 0;
    let freshSize = 0;
    for (let i = 0; i < n; i++) {
      const s = states[i];
      if (s.ring === id) continue; // the same host:port twice: its first occurrence owns the points
      const c = pointCount(weights[i] / total, scale);
      const keep = s.ring === id - 1 && s.count === c && this.prevRing.length > 0;
      s.ring = id;
      s.count = c;
      s.idx = i;
      size += c;
      if (!keep) {
        fresh.push(i);
        freshSize += c;
      }
    }

    let ring: Float64Array;
    if (freshSize * 4 > size || this.prevRing.length === 0) {
      ring = new Float64Array(size);
      let at = 0;
      for (let i = 0; i < n; i++) {
        const s = states[i];
        if (s.idx !== i || s.ring !== id) continue;
        const h = pointHashes(s, s.count);
        for (let j = 0; j < s.count; j++) ring[at++] = h[j] * OWNER_SPAN + i;
      }
      ring.sort();
    } else {
      ring = this.merge(id, states, fresh, size, freshSize);
    }
    canonicalTies(ring, states);
    this.prevRing = ring;
    this.prevStates = states;
    const picks = new Array<Pick>(n);
    for (let i = 0; i < n; i++) {
      const s = states[i];
      const e = endpoints[i];
      if (s.idx !== i)
        picks[i] = { endpoint: e, done: ignoreOutcome }; // a duplicate host:port (no points)
      else {
        if (s.pick?.endpoint !== e) s.pick = { endpoint: e, done: ignoreOutcome };
        picks[i] = s.pick;
      }
    }
    return new RingHashPicker(picks, ring, cumulative, ctx.random);
  }

  /** The previous ring minus departed or changed endpoints, re-indexed, merged with the new points. */
  private merge(id: number, states: PointState[], fresh: number[], size: number, freshSize: number): Float64Array {
    const add = new Float64Array(freshSize);
    let a = 0;
    for (const i of fresh) {
      const s = states[i];
      const h = pointHashes(s, s.count);
      for (let j = 0; j < s.count; j++) add[a++] = h[j] * OWNER_SPAN + i;
    }
    add.sort();
    const prev = this.prevRing;
    const prevStates = this.prevStates;
    const isFresh = new Uint8Array(states.length);
    for (const i of fresh) isFresh[i] = 1;
    const out = new Float64Array(size);
    let o = 0;
    let x = 0;
    for (let p = 0; p < prev.length; p++) {
      const v = prev[p];
      const owner = v % OWNER_SPAN;
      const s = prevStates[owner];
      if (s.ring !== id || s.gen < 0 || isFresh[s.idx] === 1) continue;
      const nv = v - owner + s.idx;
      while (x < add.length && add[x] < nv) out[o++] = add[x++];
      out[o++] = nv;
    }
    while (x < add.length) out[o++] = add[x++];
    return o === size ? out : out.slice(0, o);
  }
}

/**
 * Points of different endpoints at the same 32-bit position (rare: about ring² / 2^33 of them)
 * are ordered by endpoint index; a lookup takes the first. Make the first the endpoint with the
 * smallest host:port so the result does not depend on the order of the endpoint array.
 */
function canonicalTies(ring: Float64Array, states: PointState[]): void {
  const n = ring.length;
  let i = 1;
  while (i < n) {
    // Entries of different positions differ by at least OWNER_SPAN minus an index.
    if (ring[i] - ring[i - 1] >= OWNER_SPAN) {
      i++;
      continue;
    }
    const pos = Math.floor(ring[i] / OWNER_SPAN);
    if (pos !== Math.floor(ring[i - 1] / OWNER_SPAN)) {
      i++;
      continue;
    }
    const start = i - 1;
    let end = i + 1;
    while (end < n && Math.floor(ring[end] / OWNER_SPAN) === pos) end++;
    let best = start;
    for (let j = start + 1; j < end; j++)
      if (states[ring[j] % OWNER_SPAN].key < states[ring[best] % OWNER_SPAN].key) best = j;
    const t = ring[start];
    ring[start] = ring[best];
    ring[best] = t;
    i = end;
  }
}

function warn(logger: Logger | undefined, obj: object, msg: string): void {
  logger?.warn(obj, msg);
}

/** Plain ring hash with default ring sizes, no decorators. */
export const ringHash: Balancer = {
  name: 'ring_hash',
  usesPickInfo: true,
  build(endpoints, ctx) {
    return new RingHashBalancer().build(endpoints, ctx);
  },
};

/** ring_hash with its configured decorators (which forward `usesPickInfo`). */
export function createRingHash(config: RingHashConfig = {}): Balancer {
  return decorate(() => new RingHashBalancer(config), config);
}

export const ringHashBalancer = defineBalancer<RingHashConfig>({
  name: 'ring_hash',
  description:
    'Consistent hashing on a ring over the pick key (gRPC metadata `wayfinder-pick-key`); points per endpoint proportional to weight; keyless picks random by weight; O(log n) pick.',
  options: ringHashOptions,
  create: (config) => createRingHash(config),
});

export function setup(): void {
  registerBalancer(ringHashBalancer);
}
setup();
