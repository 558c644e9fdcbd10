import * as grpc from '@grpc/grpc-js';
import {
  endpointKey,
  getBalancer,
  ignoreOutcome,
  telemetry,
  monotonicNow,
  validateOptions,
  type Balancer,
  type BalancerContext,
  type Endpoint,
  type Pick,
  type PickInfo,
  type Picker,
} from '../core';
import { wayfinderEndpointOf } from './endpoints';
import { settings, stats } from './shared';

import {
  ConnectivityState,
  LeafLoadBalancer,
  PickResultType,
  QueuePicker,
  UnavailablePicker,
  createChildChannelControlHelper,
  type ChannelControlHelper,
  type GrpcPicker,
  type LeafLB,
  type PickArgs,
  type PickResult,
} from './grpcjs';

/** LB policy names are `wayfinder_<balancer name>`. */
export const POLICY_PREFIX = 'wayfinder_';

/** Metadata key whose first value is passed to the balancer as PickInfo.key (sticky balancers). */
export const PICK_KEY_METADATA = 'wayfinder-pick-key';

/**
 * Status codes that count as a backend failure in done({ ok }). Application outcomes (NOT_FOUND,
 * INVALID_ARGUMENT, PERMISSION_DENIED, CANCELLED by the caller, ...) are ok: the backend answered.
 */
const FAILURE_CODES = new Set<number>([
  grpc.status.UNKNOWN,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.INTERNAL,
  grpc.status.UNAVAILABLE,
  grpc.status.DATA_LOSS,
]);

/** The typed LB config of one wayfinder_* policy: the balancer's options, validated by its schema. */
interface WayfinderLbConfig extends grpc.experimental.TypedLoadBalancingConfig {
  readonly balancer: string;
  readonly options: Record<string, unknown>;
}

const configClasses = new Map<string, { createFromJson(obj: unknown): unknown }>();

function makeConfigClass(policy: string, balancer: string) {
  return class implements WayfinderLbConfig {
    readonly balancer = balancer;
    constructor(readonly options: Record<string, unknown> = {}) {}
    getLoadBalancerName(): string {
      return policy;
    }
    toJsonObject(): object {
      return { [policy]: this.options };
    }
    /** Throws ConfigError naming the option (grpc-js prefixes the policy name). */
    static createFromJson(obj: unknown) {
      if (obj !== undefined && obj !== null && (typeof obj !== 'object' || Array.isArray(obj)))
        throw new TypeError(`${policy}: config must be an object`);
      const def = getBalancer(balancer);
      return new this(validateOptions(def.name, def.options, (obj ?? {}) as Record<string, unknown>));
    }
  };
}

/**
 * Validates the first LB config grpc-js would choose from a service config's list when it is one
 * of ours. Returns the problem, or undefined. (grpc-js itself skips a config it cannot parse and
 * falls back to pick_first silently; we prefer a clear error.)
 */
export function validateLbConfigList(list: unknown[]): string | undefined {
  for (const entry of list) {
    if (!entry || typeof entry !== 'object') return undefined;
    const [name] = Object.keys(entry);
    if (!name || !grpc.experimental.isLoadBalancerNameRegistered(name)) continue;
    const cls = configClasses.get(name);
    if (!cls) return undefined;
    try {
      cls.createFromJson((entry as Record<string, unknown>)[name]);
      return undefined;
    } catch (e) {
      return (e as Error).message;
    }
  }
  return undefined;
}

interface Child {
  key: string;
  leaf: LeafLB;
  endpoint: Endpoint;
  /** Identity plus attributes: a change rebuilds the balancer's picker, never the connection. */
  sig: string;
}

function signature(e: Endpoint): string {
  return JSON.stringify([
    endpointKey(e),
    e.id,
    e.weight ?? 1,
    e.zone ?? '',
    e.health ?? '',
    Object.entries(e.metadata).sort(),
  ]);
}

/**
 * Runs a core Balancer as a grpc-js LB policy.
 *
 * One LeafLoadBalancer (grpc-js's per-endpoint pick_first) per endpoint, keyed by host:port: a new
 * address list keeps the children whose host:port is still there (only their Endpoint attributes
 * are refreshed, the connection stays), destroys the removed ones and starts the new ones. Like
 * round_robin every child is kept connected. The balancer's Picker is built over the READY
 * children and rebuilt only when that set or an attribute changes (so stateful pickers keep their
 * state across unrelated connectivity churn). With no READY child the policy reports CONNECTING
 * (calls queue) while any child connects, else TRANSIENT_FAILURE (calls fail fast with UNAVAILABLE
 * unless waitForReady), as round_robin does. An empty endpoint list is TRANSIENT_FAILURE.
 */
class WayfinderLoadBalancer implements grpc.experimental.LoadBalancer {
  private readonly children = new Map<string, Child>();
  private readonly childHelper: ChannelControlHelper;
  private config?: WayfinderLbConfig;
  private configJson = '';
  private balancer?: Balancer;
  /**
   * explicitStart: this caller reports each call's real start through the Pick's optional
   * `started()` (grpc-js may pick several times for one call), so balancers count in-flight calls
   * from there rather than from pick() (the convention of balancers/p2c and slow-start).
   */
  private readonly ctx: BalancerContext & { explicitStart: true } = {
    now: monotonicNow,
    random: Math.random,
    logger: settings.logger,
    explicitStart: true,
  };
  private balancerPicker?: Picker;
  private readySig = '';
  private state: grpc.connectivityState = ConnectivityState.IDLE;
  private paused = false;
  private lastError: string | null = null;
  private resolutionNote = '';

  constructor(
    private readonly helper: ChannelControlHelper,
    private readonly policy: string,
  ) {
    this.childHelper = createChildChannelControlHelper(helper, {
      updateState: (state, _picker, errorMessage) => {
        if (errorMessage) this.lastError = errorMessage;
        // A child leaving READY means a backend went away: ask the resolver (rate-limited there).
        if (this.state === ConnectivityState.READY && state !== ConnectivityState.READY)
          this.helper.requestReresolution();
        this.recalculate();
      },
    });
  }

  updateAddressList(
    list: grpc.experimental.StatusOr<grpc.experimental.Endpoint[]>,
    lbConfig: grpc.experimental.TypedLoadBalancingConfig,
    options: grpc.ChannelOptions,
    resolutionNote: string,
  ): boolean {
    const cfg = lbConfig as WayfinderLbConfig;
    if (lbConfig.getLoadBalancerName() !== this.policy || !cfg.options) return false;
    this.resolutionNote = resolutionNote;
    const json = JSON.stringify(cfg.options);
    if (!this.balancer || json !== this.configJson) {
      try {
        this.balancer = getBalancer(cfg.balancer).create(cfg.options);
      } catch (e) {
        // A config the schema accepted but the balancer refused: fail calls with the reason
        // rather than leaving them queued until their deadline.
        const details = `${this.policy}: ${(e as Error).message}`;
        this.balancer = undefined;
        this.updateState(
          ConnectivityState.TRANSIENT_FAILURE,
          new UnavailablePicker({ code: grpc.status.UNAVAILABLE, details, metadata: new grpc.Metadata() }),
          details,
        );
        return true;
      }
      this.config = cfg;
      this.configJson = json;
      this.balancerPicker = undefined;
    }
    if (!list.ok) {
      // Keep serving what we have; only with nothing at all does the error become the state.
      if (this.children.size === 0)
        this.updateState(ConnectivityState.TRANSIENT_FAILURE, new UnavailablePicker(list.error), list.error.details);
      return true;
    }
    this.paused = true;
    const seen = new Set<string>();
    for (const ge of list.value) {
      const endpoint = wayfinderEndpointOf(ge);
      const key = endpointKey(endpoint);
      if (seen.has(key)) continue;
      seen.add(key);
      const existing = this.children.get(key);
      const sig = signature(endpoint);
      if (existing) {
        existing.endpoint = endpoint;
        existing.sig = sig;
        continue;
      }
      const leaf = new LeafLoadBalancer(ge, this.childHelper, options, resolutionNote);
      stats.childrenCreated++;
      this.children.set(key, { key, leaf, endpoint, sig });
      leaf.startConnecting();
    }
    for (const [key, child] of this.children) {
      if (seen.has(key)) continue;
      this.children.delete(key);
      child.leaf.destroy();
      stats.childrenDestroyed++;
    }
    this.paused = false;
    this.recalculate();
    return true;
  }

  exitIdle(): void {
    for (const c of this.children.values())
      if (c.leaf.getConnectivityState() === ConnectivityState.IDLE) c.leaf.exitIdle();
  }

  resetBackoff(): void {
    /* children (pick_first) have no backoff of their own */
  }

  destroy(): void {
    for (const c of this.children.values()) {
      c.leaf.destroy();
      stats.childrenDestroyed++;
    }
    this.children.clear();
    this.balancerPicker = undefined;
  }

  getTypeName(): string {
    return this.policy;
  }

  private recalculate(): void {
    if (this.paused || !this.balancer) return;
    const all = [...this.children.values()];
    const ready = all
      .filter((c) => c.leaf.getConnectivityState() === ConnectivityState.READY)
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    if (ready.length > 0) {
      const sig = ready.map((c) => c.sig).join('\n');
      if (!this.balancerPicker || sig !== this.readySig) {
        this.balancerPicker = this.balancer.build(
          ready.map((c) => c.endpoint),
          this.ctx,
        );
        this.readySig = sig;
      }
      const leaves = new Map<Endpoint | string, GrpcPicker>();
      for (const c of ready) {
        const p = c.leaf.getPicker();
        leaves.set(c.endpoint, p);
        leaves.set(c.key, p);
      }
      this.updateState(
        ConnectivityState.READY,
        new BridgePicker(this.balancerPicker, leaves, this.policy, this.balancer.usesPickInfo === true),
        null,
      );
    } else if (all.some((c) => c.leaf.getConnectivityState() === ConnectivityState.CONNECTING)) {
      this.updateState(ConnectivityState.CONNECTING, new QueuePicker(this), null);
    } else if (all.length === 0) {
      const msg = `${this.policy}: no endpoints registered (${this.resolutionNote})`;
      this.updateState(ConnectivityState.TRANSIENT_FAILURE, new UnavailablePicker({ details: msg }), msg);
    } else if (all.some((c) => c.leaf.getConnectivityState() === ConnectivityState.TRANSIENT_FAILURE)) {
      const msg = `${this.policy}: no connection established to any of ${all.length} endpoint(s). Last error: ${this.lastError}`;
      this.updateState(ConnectivityState.TRANSIENT_FAILURE, new UnavailablePicker({ details: msg }), msg);
    } else {
      this.updateState(ConnectivityState.IDLE, new QueuePicker(this), null);
    }
    // Keep every endpoint connected, as round_robin does.
    for (const c of all) if (c.leaf.getConnectivityState() === ConnectivityState.IDLE) c.leaf.exitIdle();
  }

  private updateState(state: grpc.connectivityState, picker: GrpcPicker, errorMessage: string | null): void {
    if (state !== ConnectivityState.READY) this.balancerPicker = undefined;
    this.state = state;
    this.helper.updateState(state, picker, errorMessage);
  }
}

const noopStart = () => {};

/**
 * Maps a core Pick to a grpc-js PickResult. For a call that actually starts on the wire
 * (grpc-js's onCallStarted) the Pick's optional `started()` is called then, and its done() exactly
 * once at the end (onCallEnded) with ok and the latency from start to end. A pick grpc-js abandons
 * and re-picks (subchannel no longer READY after async credentials) gets neither, which is why
 * balancers count in-flight calls from started() when the context says `explicitStart`.
 * Exported for bench/pick.ts (not part of the package's API).
 */
export class BridgePicker implements GrpcPicker {
  constructor(
    private readonly picker: Picker,
    private readonly leaves: Map<Endpoint | string, GrpcPicker>,
    private readonly policy: string,
    /** Whether the balancer reads PickInfo (Balancer.usesPickInfo): only then is the pick key extracted. */
    private readonly usesPickInfo = true,
  ) {}
  /** Checked once per picker (pickers are rebuilt on every change): an SDK registered later applies from the next rebuild. */
  private readonly metered = telemetry.active();

  pick(args: PickArgs): PickResult {
    let info: PickInfo | undefined;
    if (this.usesPickInfo) {
      const key = args.metadata.get(PICK_KEY_METADATA)[0];
      if (key !== undefined) info = { key: String(key) };
    }
    let p: Pick;
    try {
      p = this.picker.pick(info);
    } catch (e) {
      return failure(`${this.policy}: the balancer threw: ${(e as Error).message}`);
    }
    if (p.endpoint === null) {
      if (p.reason === 'drop') {
        return {
          pickResultType: PickResultType.DROP,
          subchannel: null,
          status: {
            code: grpc.status.UNAVAILABLE,
            details: `${this.policy}: call dropped by the balancer`,
            metadata: new grpc.Metadata(),
          },
          onCallStarted: null,
          onCallEnded: null,
        };
      }
      return failure(`${this.policy}: the balancer chose no endpoint (${p.reason})`);
    }
    const leaf = this.leaves.get(p.endpoint) ?? this.leaves.get(endpointKey(p.endpoint));
    if (!leaf)
      return failure(`${this.policy}: the balancer picked ${endpointKey(p.endpoint)}, which is not a ready endpoint`);
    const r = leaf.pick(args);
    if (r.pickResultType !== PickResultType.COMPLETE) return r;
    const done = p.done;
    const metered = this.metered;
    // Balancers that ignore outcomes (round-robin): grpc-js's own result, no per-call closures.
    if (done === ignoreOutcome && !p.started && !metered) return r;
    const start = p.started ?? noopStart;
    const innerStarted = r.onCallStarted;
    const innerEnded = r.onCallEnded;
    const ep = metered ? endpointKey(p.endpoint) : '';
    let t0 = 0;
    return {
      pickResultType: PickResultType.COMPLETE,
      subchannel: r.subchannel,
      status: null,
      onCallStarted: () => {
        t0 = monotonicNow();
        if (metered) {
          telemetry.pick(ep, this.policy);
          telemetry.callStarted(ep);
        }
        start();
        innerStarted?.();
      },
      onCallEnded: (code, details, metadata) => {
        innerEnded?.(code, details, metadata);
        const ok = !FAILURE_CODES.has(code);
        const latencyMs = monotonicNow() - t0;
        if (metered) telemetry.callEnded(ep, ok, latencyMs);
        try {
          done({ ok, latencyMs });
        } catch (e) {
          settings.logger.error({ err: e }, `${this.policy}: a pick's done() threw; ignored`);
        }
      },
    };
  }
}

function failure(details: string): PickResult {
  return {
    pickResultType: PickResultType.TRANSIENT_FAILURE,
    subchannel: null,
    status: { code: grpc.status.UNAVAILABLE, details, metadata: new grpc.Metadata() },
    onCallStarted: null,
    onCallEnded: null,
  };
}

/**
 * Registers `wayfinder_<name>` for a balancer name (idempotent). grpc-js instantiates the policy
 * per channel; the balancer is created from the validated config on the first address list.
 */
export function registerPolicy(balancerName: string): string {
  const policy = POLICY_PREFIX + balancerName;
  if (configClasses.has(policy)) return policy;
  const cfg = makeConfigClass(policy, balancerName);
  configClasses.set(policy, cfg);
  const ctor = class extends WayfinderLoadBalancer {
    constructor(helper: ChannelControlHelper) {
      super(helper, policy);
    }
  };
  grpc.experimental.registerLoadBalancerType(policy, ctor, cfg);
  return policy;
}

/**
 * Registers the config parser of a policy that is not a generic `wayfinder_<balancer>` one (e.g.
 * wayfinder_grpclb), so its service-config errors are reported like ours instead of grpc-js's
 * silent fallback to pick_first, and it is listed by registeredPolicies().
 */
export function registerPolicyConfig(policy: string, cls: { createFromJson(obj: unknown): unknown }): void {
  configClasses.set(policy, cls);
}

export function registeredPolicies(): string[] {
  return [...configClasses.keys()].sort();
}
