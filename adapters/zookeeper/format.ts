import { instanceToJson, type CheckedSpec } from '../../core';

/**
 * The two node layouts, both `/<base>/<service>/<instance id>` with one JSON document per node:
 * - `wayfinder`: core's instanceToJson() (id, service, host, port, weight, zone, metadata).
 * - `curator`: Apache Curator x-discovery's ServiceInstance, as its JsonInstanceSerializer (Jackson)
 *   writes it, so Java services registered with Curator are discovered and vice versa.
 */
export type ZkFormat = 'wayfinder' | 'curator';

/** A node's data turned into a raw endpoint for core's checkEndpoint(), or the reason it is malformed. */
export type Decoded = { ok: true; value: Record<string, unknown> } | { ok: false; reason: string };

function parseJson(data: Buffer | undefined): { ok: true; value: unknown } | { ok: false; reason: string } {
  if (!data || data.length === 0) return { ok: false, reason: 'the node has no data' };
  try {
    return { ok: true, value: JSON.parse(data.toString('utf8')) };
  } catch (e) {
    return { ok: false, reason: `not valid JSON (${(e as Error).message})` };
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

export function decodeWayfinder(nodeName: string, data: Buffer | undefined): Decoded {
  const j = parseJson(data);
  if (!j.ok) return j;
  if (!isObject(j.value)) return { ok: false, reason: 'not a JSON object' };
  // The node name is the instance id; a document without one takes it from there.
  return { ok: true, value: { ...j.value, id: typeof j.value.id === 'string' && j.value.id ? j.value.id : nodeName } };
}

export function encodeWayfinder(spec: CheckedSpec): Buffer {
  return Buffer.from(JSON.stringify(instanceToJson(spec)));
}

/** Scalars become strings; nested values are not metadata and are left out. */
function scalarStrings(o: Record<string, unknown>, skip: ReadonlySet<string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(o)) {
    if (skip.has(k)) continue;
    if (typeof v === 'string') out[k] = v;
    else if (typeof v === 'number' || typeof v === 'boolean') out[k] = String(v);
  }
  return out;
}

const PAYLOAD_RESERVED = new Set(['@class', 'metadata', 'weight', 'zone']);

/**
 * Curator's ServiceInstance: `address` and `port` (or `sslPort` when `port` is null) are the
 * endpoint; `enabled: false` marks it critical (dropped, as Curator's providers drop it). The
 * payload is user-defined; we read, in order: a `metadata` object (Spring Cloud and Dubbo payloads,
 * and ours), else the payload's own scalar fields (a Map payload), else a string payload as
 * `metadata.payload`. `weight` and `zone` are read from the payload when present.
 */
export function decodeCurator(nodeName: string, data: Buffer | undefined): Decoded {
  const j = parseJson(data);
  if (!j.ok) return j;
  const o = j.value;
  if (!isObject(o)) return { ok: false, reason: 'not a JSON object (Curator ServiceInstance)' };
  if (typeof o.address !== 'string' || o.address === '')
    return { ok: false, reason: 'Curator ServiceInstance: "address" must be a non-empty string' };
  const port = o.port ?? o.sslPort;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535)
    return { ok: false, reason: 'Curator ServiceInstance: "port" (or "sslPort") must be an integer in 1..65535' };
  const value: Record<string, unknown> = {
    id: typeof o.id === 'string' && o.id ? o.id : nodeName,
    host: o.address,
    port,
    metadata: {},
  };
  const p = o.payload;
  if (isObject(p)) {
    value.metadata = isObject(p.metadata) ? scalarStrings(p.metadata, new Set()) : scalarStrings(p, PAYLOAD_RESERVED);
    if (p.weight !== undefined && p.weight !== null) {
      const w = typeof p.weight === 'string' && /^\d+$/.test(p.weight) ? Number(p.weight) : p.weight;
      if (typeof w !== 'number' || !Number.isInteger(w) || w < 1)
        return { ok: false, reason: 'Curator ServiceInstance: payload "weight" must be a positive integer' };
      value.weight = w;
    }
    if (typeof p.zone === 'string' && p.zone) value.zone = p.zone;
  } else if (typeof p === 'string') {
    value.metadata = { payload: p };
  }
  if (o.enabled === false) value.health = 'critical';
  return { ok: true, value };
}

/**
 * The payload written in `format=curator` (option `curator-payload`). Curator checks the payload
 * against the reader's payload type (JsonInstanceSerializer casts it), so it must match the Java
 * side's `ServiceDiscoveryBuilder.builder(<type>)`:
 * - `map`: a `java.util.LinkedHashMap` (Map or Object readers), holding weight, zone, metadata;
 * - `none`: `null`, readable by any payload type, Void included (weight, zone and metadata are not written);
 * - `spring-cloud`: Spring Cloud Zookeeper's `ZookeeperInstance` `{id, name, metadata}` (metadata
 *   strings; weight and zone go into it as strings).
 */
export type CuratorPayload = 'map' | 'none' | 'spring-cloud';

export const SPRING_CLOUD_INSTANCE = 'org.springframework.cloud.zookeeper.discovery.ZookeeperInstance';

function curatorPayload(spec: CheckedSpec, kind: CuratorPayload): Record<string, unknown> | null {
  switch (kind) {
    case 'none':
      return null;
    case 'spring-cloud': {
      const metadata: Record<string, string> = { ...spec.metadata };
      if (spec.weight !== undefined && spec.weight !== 1) metadata.weight = String(spec.weight);
      if (spec.zone) metadata.zone = spec.zone;
      return { '@class': SPRING_CLOUD_INSTANCE, id: spec.id, name: spec.service, metadata };
    }
    case 'map': {
      const payload: Record<string, unknown> = { '@class': 'java.util.LinkedHashMap', weight: spec.weight ?? 1 };
      if (spec.zone) payload.zone = spec.zone;
      payload.metadata = { ...spec.metadata };
      return payload;
    }
  }
}

/**
 * Writes what Curator's JsonInstanceSerializer writes for a ServiceInstance: the payload carries
 * Jackson's `@class` (ServiceInstance.getPayload() is annotated @JsonTypeInfo(use=CLASS)); see
 * CuratorPayload for which class. `serviceType` is DYNAMIC (an ephemeral registration) and
 * `uriSpec` null.
 */
export function encodeCurator(spec: CheckedSpec, registrationTimeUTC: number, payload: CuratorPayload = 'map'): Buffer {
  const instance = {
    name: spec.service,
    id: spec.id,
    address: spec.host,
    port: spec.port,
    sslPort: null,
    payload: curatorPayload(spec, payload),
    registrationTimeUTC,
    serviceType: 'DYNAMIC',
    uriSpec: null,
    enabled: true,
  };
  return Buffer.from(JSON.stringify(instance));
}

export function decode(format: ZkFormat, nodeName: string, data: Buffer | undefined): Decoded {
  return format === 'curator' ? decodeCurator(nodeName, data) : decodeWayfinder(nodeName, data);
}

export function encode(
  format: ZkFormat,
  spec: CheckedSpec,
  registrationTimeUTC: number,
  payload: CuratorPayload = 'map',
): Buffer {
  return format === 'curator' ? encodeCurator(spec, registrationTimeUTC, payload) : encodeWayfinder(spec);
}
