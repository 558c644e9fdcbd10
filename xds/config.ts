import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ConfigError, parseDuration } from '../core';

/**
 * Per-service policy of the xDS server, from a JSON/YAML file (`wayfinder xds --config`) or an
 * object: `{ defaults?: Policy, services?: { [name]: Policy } }`. A service's policy is its entry
 * merged over the defaults. Validated here, once; errors name the field ("xds config: ...").
 */

export type LbPolicyName = 'round_robin' | 'ring_hash' | 'least_request';

export interface OutlierDetectionPolicy {
  /** How often ejection is evaluated. Default 10s. */
  interval?: string | number;
  /** Base ejection time (multiplied by the times a host was ejected). Default 30s. */
  baseEjectionTime?: string | number;
  /** Default 300s (or baseEjectionTime when larger). */
  maxEjectionTime?: string | number;
  /** At most this percentage of endpoints ejected. Default 10. */
  maxEjectionPercent?: number;
  /** Success-rate ejection (off unless given). */
  successRate?: { stdevFactor?: number; enforcementPercentage?: number; minimumHosts?: number; requestVolume?: number };
  /** Failure-percentage ejection (off unless given). */
  failurePercentage?: {
    threshold?: number;
    enforcementPercentage?: number;
    minimumHosts?: number;
    requestVolume?: number;
  };
}

export interface ServicePolicy {
  /**
   * round_robin (default) or ring_hash. least_request is passed through for clients that support
   * it (grpc-java, grpc-go); @grpc/grpc-js-xds 1.14 and C-core 1.51 reject (NACK) it.
   */
  lbPolicy?: LbPolicyName;
  /** ring_hash: the request header whose value is hashed. Default "wayfinder-pick-key". */
  hashHeader?: string;
  /** ring_hash ring sizes. Defaults 1024 and 8388608 (the clients' upper bound). */
  minRingSize?: number;
  maxRingSize?: number;
  outlierDetection?: OutlierDetectionPolicy;
  /** Circuit breaker: concurrent requests per client to the service. Default 1024 (the clients' default). */
  maxRequests?: number;
}

export interface XdsConfig {
  defaults?: ServicePolicy;
  services?: Record<string, ServicePolicy>;
}

/** A validated policy, durations in ms. */
export interface ResolvedPolicy {
  lbPolicy: LbPolicyName;
  hashHeader: string;
  minRingSize: number;
  maxRingSize: number;
  outlierDetection?: {
    intervalMs?: number;
    baseEjectionTimeMs?: number;
    maxEjectionTimeMs?: number;
    maxEjectionPercent?: number;
    successRate?: {
      stdevFactor?: number;
      enforcementPercentage: number;
      minimumHosts?: number;
      requestVolume?: number;
    };
    failurePercentage?: {
      threshold?: number;
      enforcementPercentage: number;
      minimumHosts?: number;
      requestVolume?: number;
    };
  };
  maxRequests?: number;
}

export const DEFAULT_HASH_HEADER = 'wayfinder-pick-key';
const MAX_RING = 8_388_608;
const LB_POLICIES: readonly LbPolicyName[] = ['round_robin', 'ring_hash', 'least_request'];
const POLICY_KEYS = ['lbPolicy', 'hashHeader', 'minRingSize', 'maxRingSize', 'outlierDetection', 'maxRequests'];
const OD_KEYS = [
  'interval',
  'baseEjectionTime',
  'maxEjectionTime',
  'maxEjectionPercent',
  'successRate',
  'failurePercentage',
];

function fail(field: string, msg: string): never {
  throw new ConfigError(`xds config: "${field}" ${msg}`, { field });
}

function objectAt(v: unknown, field: string): Record<string, unknown> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) fail(field, 'must be an object');
  return v as Record<string, unknown>;
}

function onlyKeys(o: Record<string, unknown>, keys: readonly string[], field: string): void {
  for (const k of Object.keys(o))
    if (!keys.includes(k)) fail(`${field}.${k}`, `is not a known key; known keys: ${keys.join(', ')}`);
}

function int(v: unknown, field: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    fail(field, `must be an integer within ${min}..${max} (got ${JSON.stringify(v)})`);
  return v;
}

function duration(v: unknown, field: string): number | undefined {
  if (v === undefined) return undefined;
  const ms = parseDuration(v);
  if (ms === undefined) fail(field, `must be a duration such as "500ms" or "10s" (got ${JSON.stringify(v)})`);
  return ms;
}

function checkPolicy(raw: unknown, field: string): ServicePolicy {
  const o = objectAt(raw, field);
  onlyKeys(o, POLICY_KEYS, field);
  if (o.lbPolicy !== undefined && !LB_POLICIES.includes(o.lbPolicy as LbPolicyName))
    fail(`${field}.lbPolicy`, `must be one of ${LB_POLICIES.map((p) => `"${p}"`).join(', ')}`);
  if (o.hashHeader !== undefined && (typeof o.hashHeader !== 'string' || !/^[a-z0-9_.-]+$/.test(o.hashHeader)))
    fail(`${field}.hashHeader`, 'must be a lowercase header name');
  int(o.minRingSize, `${field}.minRingSize`, 1, MAX_RING);
  int(o.maxRingSize, `${field}.maxRingSize`, 1, MAX_RING);
  int(o.maxRequests, `${field}.maxRequests`, 1, 0xffffffff);
  if (o.outlierDetection !== undefined) {
    const od = objectAt(o.outlierDetection, `${field}.outlierDetection`);
    onlyKeys(od, OD_KEYS, `${field}.outlierDetection`);
    for (const k of ['interval', 'baseEjectionTime', 'maxEjectionTime'])
      duration(od[k], `${field}.outlierDetection.${k}`);
    int(od.maxEjectionPercent, `${field}.outlierDetection.maxEjectionPercent`, 0, 100);
    const sub = (name: string, keys: string[]) => {
      if (od[name] === undefined) return;
      const s = objectAt(od[name], `${field}.outlierDetection.${name}`);
      onlyKeys(s, keys, `${field}.outlierDetection.${name}`);
      for (const k of keys)
        int(
          s[k],
          `${field}.outlierDetection.${name}.${k}`,
          0,
          k.endsWith('Percentage') || k === 'threshold' ? 100 : 1e9,
        );
    };
    sub('successRate', ['stdevFactor', 'enforcementPercentage', 'minimumHosts', 'requestVolume']);
    sub('failurePercentage', ['threshold', 'enforcementPercentage', 'minimumHosts', 'requestVolume']);
  }
  return o as ServicePolicy;
}

/** Validates a config object; throws ConfigError naming the field. */
export function checkXdsConfig(raw: unknown): XdsConfig {
  if (raw === undefined || raw === null) return {};
  const o = objectAt(raw, '(root)');
  onlyKeys(o, ['defaults', 'services'], 'xds config');
  const out: XdsConfig = {};
  if (o.defaults !== undefined) out.defaults = checkPolicy(o.defaults, 'defaults');
  if (o.services !== undefined) {
    out.services = {};
    for (const [name, p] of Object.entries(objectAt(o.services, 'services')))
      out.services[name] = checkPolicy(p, `services.${name}`);
  }
  for (const [field, p] of Object.entries({ defaults: out.defaults, ...prefixed(out.services) })) {
    if (!p) continue;
    const r = resolvePolicy(out, field === 'defaults' ? undefined : field.slice('services.'.length));
    if (r.minRingSize > r.maxRingSize) fail(`${field}.minRingSize`, 'must not exceed maxRingSize');
  }
  return out;
}

function prefixed(services: Record<string, ServicePolicy> | undefined): Record<string, ServicePolicy> {
  const out: Record<string, ServicePolicy> = {};
  for (const [k, v] of Object.entries(services ?? {})) out[`services.${k}`] = v;
  return out;
}

/** Reads a .json, .yaml or .yml policy file. */
export function loadXdsConfig(file: string): XdsConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`xds config: cannot read ${file}: ${(e as Error).message}`, { field: 'config', cause: e });
  }
  let data: unknown;
  const yaml = /\.ya?ml$/i.test(file);
  try {
    data = yaml ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`xds config: ${file} is not valid ${yaml ? 'YAML' : 'JSON'}: ${(e as Error).message}`, {
      field: 'config',
      cause: e,
    });
  }
  return checkXdsConfig(data);
}

/** The effective policy of one service (its entry over the defaults over the built-in defaults). */
export function resolvePolicy(config: XdsConfig, service: string | undefined): ResolvedPolicy {
  const p: ServicePolicy = { ...config.defaults, ...(service !== undefined ? config.services?.[service] : undefined) };
  const od = p.outlierDetection;
  return {
    lbPolicy: p.lbPolicy ?? 'round_robin',
    hashHeader: p.hashHeader ?? DEFAULT_HASH_HEADER,
    minRingSize: p.minRingSize ?? 1024,
    maxRingSize: p.maxRingSize ?? MAX_RING,
    maxRequests: p.maxRequests,
    outlierDetection: od && {
      intervalMs: duration(od.interval, 'interval'),
      baseEjectionTimeMs: duration(od.baseEjectionTime, 'baseEjectionTime'),
      maxEjectionTimeMs: duration(od.maxEjectionTime, 'maxEjectionTime'),
      maxEjectionPercent: od.maxEjectionPercent,
      successRate: od.successRate && {
        ...od.successRate,
        enforcementPercentage: od.successRate.enforcementPercentage ?? 100,
      },
      failurePercentage: od.failurePercentage && {
        ...od.failurePercentage,
        enforcementPercentage: od.failurePercentage.enforcementPercentage ?? 100,
      },
    },
  };
}
