/**
 * Zone-aware routing in virtual time. 3 zones with 6, 5 and 4 endpoints (FIFO servers, exponential
 * service with mean 5 ms: 200 req/s each); 30 clients sending Poisson traffic at 70% of the full
 * capacity; a call's latency is its round trip (0.2 ms in-zone, 1.5 ms cross-zone) plus queueing
 * and service. At 20 s zone a loses half its endpoints (6 -> 3, 20% of the capacity), and every
 * client rebuilds its picker on the new set; the run ends at 60 s.
 *
 * Routing compared, each client with its own picker:
 *  - round_robin: the real picker over every endpoint (no zones);
 *  - local only: the real round_robin picker over the client's zone only (what zone pinning does);
 *  - wayfinder zone-aware: the real decorated balancer (`localZone`, round_robin inside), which
 *    estimates where clients are from each zone's peak endpoint count; and the same given the true
 *    client spread with `zoneShares` (what Envoy knows from its local cluster);
 *  - Envoy zone-aware: Envoy's published algorithm (load_balancer_impl.cc: min_cluster_size 6,
 *    healthy panic threshold 50%, LocalityDirect / LocalityResidual in basis points of 10000),
 *    written here independently and given what an Envoy sidecar knows: the true number of clients
 *    (the local cluster's hosts) per zone; round-robin within the zone, as Envoy's default.
 * Client spread: like the endpoints (12/10/8: the estimate's assumption holds) or even (10/10/10).
 *
 *   node --import tsx bench/sim-zones.ts       (SEED=n to change the seed)
 */
import type { Balancer, Endpoint, Pick, Picker } from '../core';
import { resolveBalancer } from '../core';
import { RoundRobinPicker } from '../balancers/round-robin';
import '../balancers/round-robin';
import { makeEndpoints } from '../testkit/conformance';
import { pct, Rng, Sim } from './sim-lib';
import { table } from './stats';

const ZONES = ['a', 'b', 'c'] as const;
const PER_ZONE = { a: 6, b: 5, c: 4 };
const SERVICE_MS = 5;
const LOAD = 0.7;
const RTT_LOCAL = 0.2;
const RTT_CROSS = 1.5;
const LOSS_AT = 20_000;
const END = 60_000;
const MEASURE_FROM = 25_000;

export type Routing =
  'round_robin' | 'local only' | 'wayfinder zone-aware' | 'wayfinder zone-aware, zoneShares' | 'Envoy zone-aware';
export const ROUTINGS: Routing[] = [
  'round_robin',
  'local only',
  'wayfinder zone-aware',
  'wayfinder zone-aware, zoneShares',
  'Envoy zone-aware',
];

/**
 * Envoy's zone routing (ZoneAwareLoadBalancerBase::regenerateLocalityRoutingStructures and
 * tryChooseLocalLocalityHosts), for one client in zone `local`: `upstream` and `downstream` are
 * healthy host counts per zone; integer percentages in basis points as in Envoy.
 */
export function envoyZonePicker(
  local: string,
  upstream: Map<string, Endpoint[]>,
  downstream: Map<string, number>,
  random: () => number,
): Picker {
  let total = 0;
  for (const l of upstream.values()) total += l.length;
  const all = [...upstream.values()].flat();
  const rr = (eps: Endpoint[]) => new RoundRobinPicker(eps, random);
  const localEps = upstream.get(local) ?? [];
  // earlyExitNonLocalityRouting: no local hosts, < 2 localities, min_cluster_size, panic.
  let peak = 0;
  for (const z of ZONES) peak += PER_ZONE[z];
  if (localEps.length === 0 || upstream.size < 2 || total < 6 || (total * 100) / peak < 50) return rr(all);
  let downTotal = 0;
  for (const n of downstream.values()) downTotal += n;
  const zones = [...new Set([...upstream.keys(), ...downstream.keys()])];
  const upPct = new Map(zones.map((z) => [z, Math.floor(((upstream.get(z)?.length ?? 0) * 10000) / total)]));
  const downPct = new Map(zones.map((z) => [z, Math.floor(((downstream.get(z) ?? 0) * 10000) / downTotal)]));
  const localPicker = rr(localEps);
  if (upPct.get(local)! >= downPct.get(local)!) return localPicker; // LocalityDirect
  // LocalityResidual.
  const localPercentToRoute = Math.floor((upPct.get(local)! * 10000) / downPct.get(local)!);
  const residual: { cum: number; picker: Picker }[] = [];
  let cum = 0;
  for (const z of zones) {
    if (z === local || !upstream.get(z)?.length) continue;
    const r = upPct.get(z)! - downPct.get(z)!;
    if (r > 0) residual.push({ cum: (cum += r), picker: rr(upstream.get(z)!) });
  }
  return {
    pick(): Pick {
      if (Math.floor(random() * 10000) < localPercentToRoute || cum === 0) return localPicker.pick();
      const t = Math.floor(random() * cum);
      for (const r of residual) if (t < r.cum) return r.picker.pick();
      return residual[residual.length - 1].picker.pick();
    },
  };
}

export interface ZoneResult {
  routing: Routing;
  spread: string;
  phase: string;
  cross: number;
  p50: number;
  p99: number;
  /** Highest server utilization (busy time / measured time) in the measured phase. */
  maxUtil: number;
}

export function simulate(routing: Routing, clientsPerZone: Record<string, number>, seed: number): ZoneResult[] {
  const sim = new Sim();
  const all: Endpoint[] = [];
  for (const z of ZONES)
    for (const e of makeEndpoints(PER_ZONE[z]))
      all.push({ ...e, id: `${z}-${e.id}`, port: 9000 + all.length, zone: z });
  const index = new Map(all.map((e, i) => [e, i]));
  const lost = new Set(all.filter((e) => e.zone === 'a').slice(PER_ZONE.a / 2));
  const clients: { zone: string; balancer?: Balancer; picker?: Picker; seed: number }[] = [];
  for (const z of ZONES)
    for (let i = 0; i < clientsPerZone[z]; i++) clients.push({ zone: z, seed: seed * 1000 + clients.length });
  const downstream = new Map(Object.entries(clientsPerZone));
  const build = (eps: Endpoint[]) => {
    const byZone = new Map<string, Endpoint[]>();
    for (const e of eps) byZone.set(e.zone!, [...(byZone.get(e.zone!) ?? []), e]);
    for (const c of clients) {
      const ctx = sim.ctx(c.seed);
      if (routing === 'round_robin') c.picker = new RoundRobinPicker(eps, ctx.random);
      else if (routing === 'local only') c.picker = new RoundRobinPicker(byZone.get(c.zone) ?? eps, ctx.random);
      else if (routing === 'Envoy zone-aware') c.picker = envoyZonePicker(c.zone, byZone, downstream, ctx.random);
      else {
        const zoneShares = routing.endsWith('zoneShares') ? ZONES.map((z) => `${z}=${clientsPerZone[z]}`) : [];
        c.balancer ??= resolveBalancer({ name: 'round_robin', localZone: c.zone, zoneShares });
        c.picker = c.balancer.build(eps, ctx);
      }
    }
  };
  build(all);
  sim.at(LOSS_AT, () => build(all.filter((e) => !lost.has(e))));

  const service = new Rng(seed * 7 + 1);
  const arrivals = new Rng(seed * 11 + 3);
  const who = new Rng(seed * 13 + 5);
  const queues: { at: number; rtt: number; p: Extract<Pick, { endpoint: Endpoint }>; phase: number }[][] = all.map(
    () => [],
  );
  const busy = new Float64Array(all.length);
  const phases = [
    { name: 'all up (5-20 s)', from: 5_000, to: LOSS_AT, lat: [] as number[], cross: 0, n: 0 },
    { name: 'a lost half (25-60 s)', from: MEASURE_FROM, to: END, lat: [] as number[], cross: 0, n: 0 },
  ];
  const busyIn = [new Float64Array(all.length), new Float64Array(all.length)];
  const phaseOf = (t: number) => phases.findIndex((p) => t >= p.from && t < p.to);
  const serve = (s: number) => {
    const d = service.exp(SERVICE_MS);
    const start = sim.now;
    sim.at(start + d, () => {
      busy[s] += d;
      const ph = phaseOf(start);
      if (ph >= 0) busyIn[ph][s] += d;
      const job = queues[s].shift()!;
      const latency = sim.now - job.at + job.rtt;
      job.p.done({ ok: true, latencyMs: latency });
      if (job.phase >= 0) phases[job.phase].lat.push(latency);
      if (queues[s].length) serve(s);
    });
  };
  const rate = (LOAD * all.length * 1000) / SERVICE_MS; // req/s
  const arrive = () => {
    const c = clients[Math.floor(who.uniform() * clients.length)];
    const p = c.picker!.pick() as Extract<Pick, { endpoint: Endpoint }>;
    const s = index.get(p.endpoint)!;
    const cross = p.endpoint.zone !== c.zone;
    const phase = phaseOf(sim.now);
    if (phase >= 0) {
      phases[phase].n++;
      if (cross) phases[phase].cross++;
    }
    queues[s].push({ at: sim.now, rtt: cross ? RTT_CROSS : RTT_LOCAL, p, phase });
    if (queues[s].length === 1) serve(s);
    const next = sim.now + arrivals.exp(1000 / rate);
    if (next < END) sim.at(next, arrive);
  };
  sim.at(0, arrive);
  sim.run(END);
  const spread = ZONES.map((z) => clientsPerZone[z]).join('/');
  return phases.map((ph, i) => {
    const lat = Float64Array.from(ph.lat).sort();
    const util = Math.max(...busyIn[i]) / (ph.to - ph.from);
    return {
      routing,
      spread,
      phase: ph.name,
      cross: ph.cross / ph.n,
      p50: pct(lat, 50),
      p99: pct(lat, 99),
      maxUtil: util,
    };
  });
}

export const SPREADS: Record<string, number>[] = [
  { a: 12, b: 10, c: 8 },
  { a: 10, b: 10, c: 10 },
];

function main(): void {
  const seed = Number(process.env.SEED ?? 1);
  const t0 = Date.now();
  const rows: (string | number)[][] = [];
  for (const spread of SPREADS)
    for (const routing of ROUTINGS)
      for (const r of simulate(routing, spread, seed))
        rows.push([
          r.spread,
          r.phase,
          r.routing,
          `${(r.cross * 100).toFixed(1)}%`,
          r.p50.toFixed(2),
          r.p99 > 1000 ? `${(r.p99 / 1000).toFixed(1)} s` : r.p99.toFixed(2),
          `${Math.min(100, r.maxUtil * 100).toFixed(0)}%`,
        ]);
  console.log(
    `zones a/b/c with 6/5/4 endpoints (a: 3 from 20 s), exp service 5 ms, load ${LOAD * 100}% of full capacity, RTT ${RTT_LOCAL} ms in-zone / ${RTT_CROSS} ms cross-zone, seed ${seed}`,
  );
  console.log(table(['clients a/b/c', 'phase', 'routing', 'cross-zone', 'p50 ms', 'p99 ms', 'busiest server'], rows));
  console.log(`${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

if (require.main === module) main();
