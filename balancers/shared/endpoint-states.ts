import { endpointKey, type Endpoint } from '../../core';

/** Per-endpoint state kept by a Balancer across rebuilds. `gen` and `obj` are owned by EndpointStates. */
export interface TrackedState {
  readonly key: string;
  /** The last sync that saw this state; -1 once it has been dropped. */
  gen: number;
  /** The Endpoint object last synced for this state (for stateOf). */
  obj?: Endpoint;
}

/**
 * host:port keys of one endpoint array, filled lazily and shared by every layer of a decorated
 * balancer that is handed the same array (the decorators pass the set on unchanged when they do
 * not filter it): a key is built once per endpoint and build, and being the same string object in
 * every layer's Map, hashed once. Each key is stored with the object it was built from, so an
 * array the caller rewrites in place never yields a stale key.
 */
interface KeyCache {
  objs: (Endpoint | undefined)[];
  keys: (string | undefined)[];
}
const keyCaches = new WeakMap<readonly Endpoint[], KeyCache>();
function keyCacheOf(endpoints: readonly Endpoint[]): KeyCache {
  let c = keyCaches.get(endpoints);
  if (!c) {
    c = { objs: [], keys: [] };
    keyCaches.set(endpoints, c);
  }
  return c;
}

/**
 * The state table behind every stateful balancer layer (p2c loads, outlier ejection, slow start):
 * states keyed by host:port, kept across builds, dropped for endpoints that leave.
 *
 * Rebuild cost: an Endpoint object at the same position as in the previous sync keeps its state
 * with no hashing at all (the common rebuild: one endpoint changed or went unready); others are
 * looked up by host:port. WeakMaps keyed by Endpoint were measured and rejected: WeakMap.set costs
 * about 1 µs per new object, more than the string lookup it would save.
 * Contract: endpoints are not mutated after they are handed to a balancer (host/port are identity).
 */
export class EndpointStates<S extends TrackedState> {
  private readonly byKey = new Map<string, S>();
  /** Only with `trackObjects`: the latest Endpoint object of each live state -> that state. */
  private readonly byObject: Map<Endpoint, S> | undefined;
  private prevEndpoints: Endpoint[] = [];
  private prevStates: S[] = [];
  private gen = 0;

  constructor(
    private readonly create: (key: string, e: Endpoint) => S,
    opts: { trackObjects?: boolean } = {},
  ) {
    this.byObject = opts.trackObjects ? new Map() : undefined;
  }

  /** The states for a new endpoint set, in its order (a key given twice shares one state). */
  sync(endpoints: readonly Endpoint[]): S[] {
    const gen = ++this.gen;
    const prevE = this.prevEndpoints;
    const prevS = this.prevStates;
    const byKey = this.byKey;
    const byObject = this.byObject;
    const n = endpoints.length;
    const out = new Array<S>(n);
    let cache: KeyCache | undefined;
    let misses: number[] | undefined;
    let live = 0;
    for (let i = 0; i < n; i++) {
      const e = endpoints[i];
      let s: S | undefined;
      if (i < prevE.length && prevE[i] === e) s = prevS[i];
      else {
        cache ??= keyCacheOf(endpoints);
        let key = cache.objs[i] === e ? cache.keys[i]! : undefined;
        if (key === undefined) {
          key = endpointKey(e);
          cache.objs[i] = e;
          cache.keys[i] = key;
        }
        s = byKey.get(key);
        if (s === undefined) {
          s = this.create(key, e);
          byKey.set(key, s);
        }
        if (byObject && s.obj !== e) (misses ??= []).push(i);
      }
      if (s.gen !== gen) {
        s.gen = gen;
        live++;
      }
      out[i] = s;
    }
    if (byKey.size > live) {
      for (const [k, s] of byKey) {
        if (s.gen !== gen) {
          byKey.delete(k);
          if (byObject && s.obj) byObject.delete(s.obj);
          s.gen = -1;
        }
      }
    }
    if (byObject && misses) {
      for (const i of misses) {
        const s = out[i];
        if (s.obj) byObject.delete(s.obj);
        s.obj = endpoints[i];
        byObject.set(endpoints[i], s);
      }
    }
    // A copy: the caller may reuse its array; the fast path must compare against what was synced.
    this.prevEndpoints = endpoints.slice();
    this.prevStates = out;
    return out;
  }

  /**
   * The live state for a picked endpoint (needs `trackObjects`): by object, else by host:port
   * (an object from an older set); undefined when its host:port has left the set.
   */
  stateOf(e: Endpoint): S | undefined {
    return this.byObject?.get(e) ?? this.byKey.get(endpointKey(e));
  }

  get(key: string): S | undefined {
    return this.byKey.get(key);
  }

  values(): IterableIterator<S> {
    return this.byKey.values();
  }

  get size(): number {
    return this.byKey.size;
  }
}
