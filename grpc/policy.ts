import * as grpc from '@grpc/grpc-js';
import {
  endpointKey,
  endpointSignature,
  getBalancer,
  monotonicNow,
  type Balancer,
  type BalancerContext,
  type Endpoint,
  type Picker,
} from '../core';
import { ChildSet, type Child } from './child-set';
import { wayfinderEndpointOf } from './endpoints';
import {
  ConnectivityState,
  QueuePicker,
  UnavailablePicker,
  type ChannelControlHelper,
  type GrpcPicker,
} from './grpcjs';
import { BridgePicker } from './picker';
import { hasPolicyConfig, makeConfigClass, registerPolicyConfig, type WayfinderLbConfig } from './policy-config';
import { settings } from './shared';

/** LB policy names are `wayfinder_<balancer name>`. */
export const POLICY_PREFIX = 'wayfinder_';

/** What the policy keeps per child: its Endpoint and signature (a change rebuilds the picker, never the connection). */
interface ChildData {
  endpoint: Endpoint;
  sig: string;
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
  private readonly children: ChildSet<ChildData>;
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
  private resolutionNote = '';

  constructor(
    private readonly helper: ChannelControlHelper,
    private readonly policy: string,
  ) {
    this.children = new ChildSet(helper, {
      onChange: (state) => {
        // A child leaving READY means a backend went away: ask the resolver (rate-limited there).
        if (this.state === ConnectivityState.READY && state !== ConnectivityState.READY)
          this.helper.requestReresolution();
        this.recalculate();
      },
      countInStats: true,
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
    if (!this.applyConfig(cfg)) return true;
    if (!list.ok) {
      // Keep serving what we have; only with nothing at all does the error become the state.
      if (this.children.size === 0)
        this.updateState(ConnectivityState.TRANSIENT_FAILURE, new UnavailablePicker(list.error), list.error.details);
      return true;
    }
    this.children.sync(
      list.value.map((ge) => {
        const endpoint = wayfinderEndpointOf(ge);
        return { key: endpointKey(endpoint), endpoint: ge, data: { endpoint, sig: endpointSignature(endpoint) } };
      }),
      options,
      resolutionNote,
    );
    this.recalculate();
    return true;
  }

  /**
   * (Re)creates the balancer when the config changed. False when the balancer refused a config its
   * schema accepted: calls then fail with the reason rather than queue until their deadline.
   */
  private applyConfig(cfg: WayfinderLbConfig): boolean {
    const json = JSON.stringify(cfg.options);
    if (this.balancer && json === this.configJson) return true;
    try {
      this.balancer = getBalancer(cfg.balancer).create(cfg.options);
    } catch (e) {
      const details = `${this.policy}: ${(e as Error).message}`;
      this.balancer = undefined;
      this.updateState(
        ConnectivityState.TRANSIENT_FAILURE,
        new UnavailablePicker({ code: grpc.status.UNAVAILABLE, details, metadata: new grpc.Metadata() }),
        details,
      );
      return false;
    }
    this.config = cfg;
    this.configJson = json;
    this.balancerPicker = undefined;
    return true;
  }

  exitIdle(): void {
    this.children.exitIdle();
  }

  resetBackoff(): void {
    /* children (pick_first) have no backoff of their own */
  }

  destroy(): void {
    this.children.destroy();
    this.balancerPicker = undefined;
  }

  getTypeName(): string {
    return this.policy;
  }

  private recalculate(): void {
    if (this.children.syncing || !this.balancer) return;
    const { ready, connecting, transientFailure } = this.children.states();
    if (ready.length > 0) {
      this.updateState(ConnectivityState.READY, this.readyPicker(this.balancer, ready), null);
    } else if (connecting) {
      this.updateState(ConnectivityState.CONNECTING, new QueuePicker(this), null);
    } else if (this.children.size === 0) {
      const msg = `${this.policy}: no endpoints registered (${this.resolutionNote})`;
      this.updateState(ConnectivityState.TRANSIENT_FAILURE, new UnavailablePicker({ details: msg }), msg);
    } else if (transientFailure) {
      const msg = `${this.policy}: no connection established to any of ${this.children.size} endpoint(s). Last error: ${this.children.lastError}`;
      this.updateState(ConnectivityState.TRANSIENT_FAILURE, new UnavailablePicker({ details: msg }), msg);
    } else {
      this.updateState(ConnectivityState.IDLE, new QueuePicker(this), null);
    }
    // Keep every endpoint connected, as round_robin does.
    this.children.exitIdle();
  }

  /** The picker over the READY children; the balancer's picker is rebuilt only when that set or an attribute changed. */
  private readyPicker(balancer: Balancer, ready: Child<ChildData>[]): BridgePicker {
    const sig = ready.map((c) => c.data.sig).join('\n');
    if (!this.balancerPicker || sig !== this.readySig) {
      this.balancerPicker = balancer.build(
        ready.map((c) => c.data.endpoint),
        this.ctx,
      );
      this.readySig = sig;
    }
    const leaves = new Map<Endpoint | string, GrpcPicker>();
    for (const c of ready) {
      const p = c.leaf.getPicker();
      leaves.set(c.data.endpoint, p);
      leaves.set(c.key, p);
    }
    return new BridgePicker(this.balancerPicker, leaves, this.policy, balancer.usesPickInfo === true);
  }

  private updateState(state: grpc.connectivityState, picker: GrpcPicker, errorMessage: string | null): void {
    if (state !== ConnectivityState.READY) this.balancerPicker = undefined;
    this.state = state;
    this.helper.updateState(state, picker, errorMessage);
  }
}

/**
 * Registers `wayfinder_<name>` for a balancer name (idempotent). grpc-js instantiates the policy
 * per channel; the balancer is created from the validated config on the first address list.
 */
export function registerPolicy(balancerName: string): string {
  const policy = POLICY_PREFIX + balancerName;
  if (hasPolicyConfig(policy)) return policy;
  const cfg = makeConfigClass(policy, balancerName);
  registerPolicyConfig(policy, cfg);
  const ctor = class extends WayfinderLoadBalancer {
    constructor(helper: ChannelControlHelper) {
      super(helper, policy);
    }
  };
  grpc.experimental.registerLoadBalancerType(policy, ctor, cfg);
  return policy;
}
