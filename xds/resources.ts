import type { Endpoint } from '../core';
import type { ResolvedPolicy } from './config';
import { durationOf, HCM_TYPE, pack, ROUTER_TYPE, TYPE, type Any, type Locality } from './protocol';

/**
 * The mapping from a service to xDS resources (docs/xds.md, "Mapping"). Every resource of service S
 * is named S (RouteConfiguration, Cluster, ClusterLoadAssignment); Listeners are named as the
 * client asked (`S` for `xds:///S`, `S:50051` for `xds:///S:50051`), all routing to cluster S.
 */

/** `billing:50051` -> `billing`: a Listener name with a port serves the same service. */
export function serviceOfListener(name: string): string {
  return name.replace(/:\d+$/, '');
}

export interface RouteOptions {
  /** true: the route is inline in the Listener (no RDS round trip); false: RDS. */
  inline: boolean;
}

function routeConfiguration(service: string, policy: ResolvedPolicy): object {
  const route: Record<string, unknown> = { cluster: service };
  if (policy.lbPolicy === 'ring_hash') route.hash_policy = [{ header: { header_name: policy.hashHeader } }];
  return {
    name: service,
    virtual_hosts: [{ name: service, domains: ['*'], routes: [{ match: { prefix: '' }, route }] }],
  };
}

export function buildRoute(service: string, policy: ResolvedPolicy): Any {
  return pack(TYPE.route, routeConfiguration(service, policy));
}

export function buildListener(name: string, policy: ResolvedPolicy, opts: RouteOptions): Any {
  const service = serviceOfListener(name);
  const hcm: Record<string, unknown> = {
    // The router filter is required by C-core and grpc-go (an empty filter list is NACKed) and must be last.
    http_filters: [{ name: 'router', typed_config: pack(ROUTER_TYPE, {}) }],
  };
  if (opts.inline) hcm.route_config = routeConfiguration(service, policy);
  else hcm.rds = { route_config_name: service, config_source: { ads: {}, resource_api_version: 'V3' } };
  return pack(TYPE.listener, { name, api_listener: { api_listener: pack(HCM_TYPE, hcm) } });
}

const LB_POLICY = { round_robin: 'ROUND_ROBIN', ring_hash: 'RING_HASH', least_request: 'LEAST_REQUEST' } as const;

export function buildCluster(service: string, policy: ResolvedPolicy, opts: { loadReporting: boolean }): Any {
  const c: Record<string, unknown> = {
    name: service,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: service },
    lb_policy: LB_POLICY[policy.lbPolicy],
  };
  if (policy.lbPolicy === 'ring_hash')
    c.ring_hash_lb_config = {
      hash_function: 'XX_HASH',
      minimum_ring_size: { value: policy.minRingSize },
      maximum_ring_size: { value: policy.maxRingSize },
    };
  if (policy.maxRequests !== undefined)
    c.circuit_breakers = { thresholds: [{ priority: 'DEFAULT', max_requests: { value: policy.maxRequests } }] };
  const od = policy.outlierDetection;
  if (od) {
    const o: Record<string, unknown> = {};
    const u32 = (v: number | undefined) => (v === undefined ? undefined : { value: v });
    if (od.intervalMs !== undefined) o.interval = durationOf(od.intervalMs);
    if (od.baseEjectionTimeMs !== undefined) o.base_ejection_time = durationOf(od.baseEjectionTimeMs);
    if (od.maxEjectionTimeMs !== undefined) o.max_ejection_time = durationOf(od.maxEjectionTimeMs);
    o.max_ejection_percent = u32(od.maxEjectionPercent);
    // Unset enforcing_success_rate means "on" to the clients: off unless configured.
    o.enforcing_success_rate = { value: od.successRate?.enforcementPercentage ?? 0 };
    if (od.successRate) {
      o.success_rate_stdev_factor = u32(od.successRate.stdevFactor);
      o.success_rate_minimum_hosts = u32(od.successRate.minimumHosts);
      o.success_rate_request_volume = u32(od.successRate.requestVolume);
    }
    o.enforcing_failure_percentage = { value: od.failurePercentage?.enforcementPercentage ?? 0 };
    if (od.failurePercentage) {
      o.failure_percentage_threshold = u32(od.failurePercentage.threshold);
      o.failure_percentage_minimum_hosts = u32(od.failurePercentage.minimumHosts);
      o.failure_percentage_request_volume = u32(od.failurePercentage.requestVolume);
    }
    c.outlier_detection = o;
  }
  if (opts.loadReporting) c.lrs_server = { self: {} };
  return pack(TYPE.cluster, c);
}

/** An endpoint whose host is already an IP literal (EDS carries only those). */
export type AddressedEndpoint = Endpoint & { ip: string };

const HEALTH = { passing: 'HEALTHY', warning: 'HEALTHY', critical: 'UNHEALTHY' } as const;

/**
 * The assignment of one service. Weights: round_robin clients (xds_wrr_locality) honour only
 * locality weights, ring_hash multiplies locality and endpoint weights. So for round_robin the
 * endpoints of a zone are grouped by weight, one locality per (zone, weight) with sub_zone
 * "w<weight>" and locality weight = weight x endpoints; for ring_hash (and least_request) one
 * locality per zone with weight 1 and the registry weight on each endpoint. Either way an endpoint's
 * share of calls is its weight over the sum of weights. An empty set is an empty assignment.
 */
export function buildAssignment(service: string, endpoints: readonly AddressedEndpoint[], policy: ResolvedPolicy): Any {
  const groups = new Map<string, { locality: Locality; eps: AddressedEndpoint[]; weight: number }>();
  const byWeight = policy.lbPolicy === 'round_robin';
  for (const e of endpoints) {
    const w = e.weight ?? 1;
    const zone = e.zone ?? '';
    const subZone = byWeight && w !== 1 ? `w${w}` : '';
    const key = `${zone}\u0000${subZone}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { locality: { zone, sub_zone: subZone }, eps: [], weight: 0 }));
    g.eps.push(e);
    // Critical endpoints are sent UNHEALTHY (clients skip them) and add nothing to their locality.
    if (e.health !== 'critical') g.weight += w;
  }
  const localities = [...groups.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, g]) => ({
      locality: g.locality,
      load_balancing_weight: { value: byWeight ? Math.max(1, g.weight) : 1 },
      priority: 0,
      lb_endpoints: g.eps.map((e) => ({
        endpoint: { address: { socket_address: { address: e.ip, port_value: e.port } } },
        health_status: e.health ? HEALTH[e.health] : 'UNKNOWN',
        load_balancing_weight: { value: e.weight ?? 1 },
      })),
    }));
  return pack(TYPE.endpoint, { cluster_name: service, endpoints: localities });
}
