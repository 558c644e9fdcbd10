import * as grpc from '@grpc/grpc-js';
import {
  endpointKey,
  ignoreOutcome,
  monotonicNow,
  telemetry,
  type Endpoint,
  type Pick,
  type PickInfo,
  type Picker,
} from '../core';
import { PickResultType, type GrpcPicker, type PickArgs, type PickResult } from './grpcjs';
import { settings } from './shared';

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
