import type * as grpc from '@grpc/grpc-js';
import {
  ConnectivityState,
  LeafLoadBalancer,
  createChildChannelControlHelper,
  type ChannelControlHelper,
  type GrpcEndpoint,
  type LeafLB,
} from './grpcjs';
import { HealthCheckedSubchannel, healthCheckServiceName } from './health';
import { settings, stats } from './shared';

/** One per-endpoint child: grpc-js's leaf (pick_first) balancer and what its policy keeps beside it. */
export interface Child<T> {
  readonly key: string;
  readonly leaf: LeafLB;
  /** The owning policy's data for this endpoint, replaced on every sync(). */
  data: T;
  /** The health-checked subchannels of this child's leaf, when health checking is on. */
  readonly probes?: Set<HealthCheckedSubchannel>;
}

/** The children by connectivity, as LB policies aggregate them. */
export interface ChildStates<T> {
  /** READY children, in key order. */
  ready: Child<T>[];
  connecting: boolean;
  transientFailure: boolean;
  idle: boolean;
}

export interface ChildSetOptions {
  /**
   * Called when a child's connectivity changes, also while sync() runs (check `syncing`: the policy
   * recalculates once after sync() instead).
   */
  onChange(state: grpc.connectivityState, errorMessage: string | null): void;
  /** Replaces the parent helper's requestReresolution for the children (default: pass through). */
  requestReresolution?: () => void;
  /** Count created/destroyed children in grpcBridgeStats() (the wayfinder_* policies do). */
  countInStats?: boolean;
}

/**
 * The per-endpoint children of a bridge LB policy, keyed by host:port: one grpc-js
 * LeafLoadBalancer each, kept across address-list updates while the key stays, so a connection
 * survives a new list (or a mode switch) that still holds its address. Used by the generic
 * `wayfinder_*` policy and by `wayfinder_grpclb`; the policy owns the picker, the set owns the
 * children and their aggregate state (the shape of grpc-go's endpointsharding).
 */
export class ChildSet<T> {
  private readonly children = new Map<string, Child<T>>();
  private readonly helper: ChannelControlHelper;
  private updating = false;
  /** The health-check service name the children were created with (undefined: health checking off). */
  private healthService: string | undefined;
  /** The last error message a child reported, for the policy's TRANSIENT_FAILURE message. */
  lastError: string | null = null;

  constructor(
    parent: ChannelControlHelper,
    private readonly opts: ChildSetOptions,
  ) {
    this.helper = createChildChannelControlHelper(parent, {
      updateState: (state, _picker, errorMessage) => {
        if (errorMessage) this.lastError = errorMessage;
        opts.onChange(state, errorMessage);
      },
      ...(opts.requestReresolution ? { requestReresolution: opts.requestReresolution } : {}),
    });
  }

  /** True while sync() creates and destroys children. */
  get syncing(): boolean {
    return this.updating;
  }

  get size(): number {
    return this.children.size;
  }

  keys(): IterableIterator<string> {
    return this.children.keys();
  }

  values(): IterableIterator<Child<T>> {
    return this.children.values();
  }

  /**
   * Makes the set hold exactly the wanted keys: a kept child gets its new data (its connection
   * stays), a new one is created and starts connecting, a child no longer wanted is destroyed.
   * Duplicate keys: the first wins.
   */
  sync(
    wanted: Iterable<{ key: string; endpoint: GrpcEndpoint; data: T }>,
    options: grpc.ChannelOptions,
    resolutionNote: string,
  ): void {
    this.updating = true;
    try {
      const healthService = healthCheckServiceName(options);
      if (healthService !== this.healthService) {
        // Health checking turned on, off or to another name: the children are recreated with it.
        this.healthService = healthService;
        this.destroy();
      }
      const seen = new Set<string>();
      for (const w of wanted) {
        if (seen.has(w.key)) continue;
        seen.add(w.key);
        const existing = this.children.get(w.key);
        if (existing) {
          existing.data = w.data;
          continue;
        }
        const probes = healthService === undefined ? undefined : new Set<HealthCheckedSubchannel>();
        const helper = probes ? this.healthCheckingHelper(healthService!, probes) : this.helper;
        const leaf = new LeafLoadBalancer(w.endpoint, helper, options, resolutionNote);
        if (this.opts.countInStats) stats.childrenCreated++;
        this.children.set(w.key, { key: w.key, leaf, data: w.data, ...(probes ? { probes } : {}) });
        leaf.startConnecting();
      }
      for (const [key, child] of this.children) {
        if (seen.has(key)) continue;
        this.children.delete(key);
        this.destroyChild(child);
      }
    } finally {
      this.updating = false;
    }
  }

  /** The children by state (no side effect: the policy calls exitIdle() after reporting its state). */
  states(): ChildStates<T> {
    const out: ChildStates<T> = { ready: [], connecting: false, transientFailure: false, idle: false };
    for (const c of this.children.values()) {
      switch (c.leaf.getConnectivityState()) {
        case ConnectivityState.READY:
          out.ready.push(c);
          break;
        case ConnectivityState.CONNECTING:
          out.connecting = true;
          break;
        case ConnectivityState.TRANSIENT_FAILURE:
          // Connected but waiting for its first health answer (or a retried watch): connecting (A17).
          if (
            c.probes &&
            [...c.probes].some((p) => p.phase === 'pending' && p.getConnectivityState() === ConnectivityState.READY)
          )
            out.connecting = true;
          else out.transientFailure = true;
          break;
        case ConnectivityState.IDLE:
          out.idle = true;
          break;
      }
    }
    out.ready.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return out;
  }

  /** Asks every IDLE child to connect. */
  exitIdle(): void {
    for (const c of this.children.values())
      if (c.leaf.getConnectivityState() === ConnectivityState.IDLE) c.leaf.exitIdle();
  }

  /** A helper for one leaf whose subchannels watch grpc.health.v1 (gRFC A17). */
  private healthCheckingHelper(serviceName: string, probes: Set<HealthCheckedSubchannel>): ChannelControlHelper {
    return createChildChannelControlHelper(this.helper, {
      createSubchannel: (address, args) => {
        const probe: HealthCheckedSubchannel = new HealthCheckedSubchannel(
          this.helper.createSubchannel(address, args),
          {
            serviceName,
            logger: settings.logger,
            // pending <-> not-serving changes no health bit, so grpc-js reports nothing: recalculate here.
            onPhase: (phase) => {
              if (phase !== 'serving' && !this.updating) this.opts.onChange(ConnectivityState.TRANSIENT_FAILURE, null);
            },
            onDestroy: () => probes.delete(probe),
          },
        );
        probes.add(probe);
        return probe;
      },
    });
  }

  destroy(): void {
    for (const c of this.children.values()) this.destroyChild(c);
    this.children.clear();
  }

  private destroyChild(c: Child<T>): void {
    c.leaf.destroy();
    if (this.opts.countInStats) stats.childrenDestroyed++;
  }
}
