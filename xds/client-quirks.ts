import type { NodeMsg } from './protocol';

/**
 * Known defects of xDS client builds that the server works around, told from the Node the client
 * sends in its first ADS request (docs/xds.md, "ring_hash and C-core 1.51").
 *
 * C-core fills the Node as `user_agent_name: "gRPC C-core <platform>[ <wrapper>]"` and
 * `user_agent_version: "C-core <core version>[ <wrapper version>]"`, e.g. Debian bookworm's
 * python3-grpcio sends "gRPC C-core linux Python" / "C-core 29.0.0 Python 1.51.1" (captured from a
 * run); C++ (libgrpc++) adds no wrapper. The core version (also the libgrpc soname: Debian's
 * libgrpc29 is gRPC 1.51.1) gets a new major with every gRPC minor release (28 = 1.50, 29 = 1.51),
 * so it identifies the C-core release whatever the wrapping language, and the wrapper's own
 * version (which need not follow gRPC's) is not relied on.
 */

export interface CCoreVersion {
  /** The core version, e.g. [29, 0, 0]. */
  core: [number, number, number];
  /** The wrapped language's package and version, when the build says ("Python 1.51.1"). */
  wrapper?: string;
}

const CCORE_VERSION = /^C-core (\d+)\.(\d+)\.(\d+)\S*(?:\s+(.+))?$/;

/** The C-core version a Node announces, or undefined for any other client (grpc-js, Go, Java, Envoy). */
export function cCoreVersion(
  node: Pick<NodeMsg, 'user_agent_name' | 'user_agent_version'> | undefined,
): CCoreVersion | undefined {
  if (!node?.user_agent_name?.startsWith('gRPC C-core')) return undefined;
  const m = CCORE_VERSION.exec(node.user_agent_version?.trim() ?? '');
  if (!m) return undefined;
  const core: [number, number, number] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return m[4] ? { core, wrapper: m[4] } : { core };
}

/**
 * C-core majors whose ring_hash picker crashes the process (SIGSEGV) on its first pick. The bug
 * (the deferred connection attempt casts its argument to the wrong type) came with grpc/grpc#30714
 * (opened 2022-08-23, after the 1.49 branch: 1.48/1.49 got it only in June 2023, as cherry-picks
 * #33370/#33369 that carry the fix too) and is fixed by grpc/grpc#32012 (2023-01-05; 1.52.0 came
 * out in February 2023). 1.51 is verified (Debian's 1.51.1 crashes); 1.50 (released October 2022)
 * is included because #30714 most likely landed before its branch: guarding a client that would
 * have worked costs it stickiness, missing one costs the process.
 */
const RING_HASH_CRASH: ReadonlyMap<number, string> = new Map([
  [28, '1.50'],
  [29, '1.51'],
]);

export interface ClientQuirks {
  /**
   * Set when ring_hash crashes this client: why, for the warning. The server then sends it a
   * ring_hash service as round_robin.
   */
  ringHashCrash?: string;
}

export const NO_QUIRKS: ClientQuirks = Object.freeze({});

/** What the server must work around for the client that sent `node`. */
export function clientQuirks(node: Pick<NodeMsg, 'user_agent_name' | 'user_agent_version'> | undefined): ClientQuirks {
  const v = cCoreVersion(node);
  const release = v && RING_HASH_CRASH.get(v.core[0]);
  if (!v || !release) return NO_QUIRKS;
  return {
    ringHashCrash:
      `C-core ${v.core.join('.')} (gRPC ${release}.x${v.wrapper ? `, ${v.wrapper}` : ''}) crashes (SIGSEGV) on its first ` +
      'ring_hash pick (grpc/grpc#31766, fixed by grpc/grpc#32012)',
  };
}
