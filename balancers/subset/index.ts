import {
  ConfigError,
  endpointKey,
  type Balancer,
  type BalancerContext,
  type Endpoint,
  type OptionsSchema,
  type Picker,
} from '../../core';
import { murmur3 } from '../shared/hash';

/**
 * Deterministic subsetting (Google SRE book, "Load Balancing in the Datacenter"), a decorator for
 * any Balancer: the client uses only `subsetSize` of the N listed endpoints, so N backends × M
 * clients do not mean N × M connections.
 *
 * The subset of client `clientId`: the endpoints are split into
 * floor(N / subsetSize) subsets; clients are grouped in rounds of that many; round
 * r = floor(clientId / count) shuffles the list with r as the seed (see subsetOf), and the
 * client takes subset clientId mod count of that shuffle. Each round thus
 * uses every backend once (when subsetSize divides N), so clients 0..M-1 spread connections
 * within ±1 of the mean. N < subsetSize: every endpoint. When N is not a multiple of subsetSize,
 * the N mod subsetSize endpoints left over in each round get no client of that round, and the
 * spread is wider (see docs/balancers.md).
 *
 * Known cost: when N crosses a multiple of subsetSize, the number of subsets per round changes and
 * most clients change subset at once (measured in bench/sim-subsetting.ts).
 */
export const subsetOptions: OptionsSchema = {
  subsetSize: {
    type: 'integer',
    default: 0,
    min: 0,
    doc: 'Endpoints this client uses, chosen by deterministic subsetting; 0 uses all of them.',
  },
  clientId: {
    type: 'integer',
    default: -1,
    min: -1,
    doc: "This client's stable index 0, 1, 2, … among the clients (required with subsetSize; e.g. a StatefulSet ordinal).",
  },
};

export interface SubsetConfig {
  subsetSize?: number;
  clientId?: number;
}

/** Wraps `inner` with deterministic subsetting when `subsetSize` > 0; returns `inner` otherwise. */
export function withSubset(inner: Balancer, config: SubsetConfig): Balancer {
  const size = config.subsetSize ?? 0;
  if (size <= 0) return inner;
  const id = config.clientId ?? -1;
  if (id < 0)
    throw new ConfigError(`${inner.name}: "clientId" is required with "subsetSize" (a stable index of this client)`, {
      field: 'clientId',
    });
  return new SubsetBalancer(inner, size, id);
}

/**
 * The subset of `clientId` among `endpoints` (pure; in the round's order). The round's shuffle
 * ranks every endpoint by murmur3 of its host:port seeded with the round: a permutation seeded by
 * the round number, like the book's seeded shuffle, but one endpoint coming or going only shifts
 * the others by one place instead of reshuffling the whole list (far less churn, see
 * bench/sim-subsetting.ts).
 */
export function subsetOf<E extends Endpoint>(endpoints: readonly E[], subsetSize: number, clientId: number): E[] {
  const n = endpoints.length;
  if (n <= subsetSize) return endpoints.slice();
  const count = Math.floor(n / subsetSize);
  const round = Math.floor(clientId / count);
  const ranked = endpoints.map((e) => {
    const key = endpointKey(e);
    return { e, key, rank: murmur3(key, round) };
  });
  ranked.sort((a, b) => a.rank - b.rank || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const start = (clientId % count) * subsetSize;
  return ranked.slice(start, start + subsetSize).map((r) => r.e);
}

export class SubsetBalancer implements Balancer {
  readonly name: string;
  get usesPickInfo(): boolean | undefined {
    return this.inner.usesPickInfo;
  }
  constructor(
    private readonly inner: Balancer,
    readonly subsetSize: number,
    readonly clientId: number,
  ) {
    this.name = inner.name;
  }

  build(endpoints: Endpoint[], ctx: BalancerContext): Picker {
    return this.inner.build(
      endpoints.length <= this.subsetSize ? endpoints : subsetOf(endpoints, this.subsetSize, this.clientId),
      ctx,
    );
  }
}
