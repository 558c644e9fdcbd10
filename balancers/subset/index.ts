import {
  ConfigError,
  endpointKey,
  seededRandom,
  type Balancer,
  type BalancerContext,
  type Endpoint,
  type OptionsSchema,
  type Picker,
} from '../../core';

/**
 * Deterministic subsetting (Google SRE book, "Load Balancing in the Datacenter"), a decorator for
 * any Balancer: the client uses only `subsetSize` of the N listed endpoints, so N backends × M
 * clients do not mean N × M connections.
 *
 * The subset of client `clientId`: the endpoints sorted by host:port are split into
 * floor(N / subsetSize) subsets; clients are grouped in rounds of that many; round
 * r = floor(clientId / count) shuffles the sorted list with a generator seeded by r
 * (Fisher-Yates), and the client takes subset clientId mod count of that shuffle. Each round thus
 * uses every backend once (when subsetSize divides N), so clients 0..M-1 spread connections
 * within ±1 of the mean. N < subsetSize: every endpoint. When N is not a multiple of subsetSize,
 * the N mod subsetSize endpoints left over in each round get no client of that round, and the
 * spread is wider (see docs/balancers.md).
 *
 * Known cost, as in the book: adding or removing one endpoint reshuffles every round, so many
 * clients change subset at once (measured in bench/sim-subsetting.ts).
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

/** The subset of `clientId` among `endpoints` (pure; order: the round's shuffle). */
export function subsetOf<E extends Endpoint>(endpoints: readonly E[], subsetSize: number, clientId: number): E[] {
  const n = endpoints.length;
  if (n <= subsetSize) return endpoints.slice();
  const keyed = endpoints.map((e) => [endpointKey(e), e] as const);
  keyed.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const list = keyed.map((k) => k[1]);
  const count = Math.floor(n / subsetSize);
  const round = Math.floor(clientId / count);
  const random = seededRandom(round);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = list[i];
    list[i] = list[j];
    list[j] = t;
  }
  const start = (clientId % count) * subsetSize;
  return list.slice(start, start + subsetSize);
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
