import { BadEntryError, type BadEntry } from './errors';
import type { Endpoint, Health, InstanceSpec } from './model';
import { endpointKey } from './util';

const HEALTH: readonly Health[] = ['passing', 'warning', 'critical'];

/**
 * Validates one raw endpoint as read from a registry. Returns the normalised endpoint or a reason.
 * Shared by every adapter so "malformed" means the same thing everywhere.
 */
export function checkEndpoint(raw: unknown): { ok: true; endpoint: Endpoint } | { ok: false; reason: string } {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return { ok: false, reason: 'not an object' };
  const r = raw as Record<string, unknown>;
  if (typeof r.host !== 'string' || r.host.length === 0)
    return { ok: false, reason: '"host" must be a non-empty string' };
  const port = typeof r.port === 'string' && /^\d+$/.test(r.port) ? Number(r.port) : r.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535)
    return { ok: false, reason: '"port" must be an integer in 1..65535' };
  let weight: number | undefined;
  if (r.weight !== undefined && r.weight !== null) {
    if (typeof r.weight !== 'number' || !Number.isInteger(r.weight) || r.weight < 1)
      return { ok: false, reason: '"weight" must be a positive integer' };
    weight = r.weight;
  }
  if (r.zone !== undefined && r.zone !== null && typeof r.zone !== 'string')
    return { ok: false, reason: '"zone" must be a string' };
  const metadata: Record<string, string> = {};
  if (r.metadata !== undefined && r.metadata !== null) {
    if (typeof r.metadata !== 'object' || Array.isArray(r.metadata))
      return { ok: false, reason: '"metadata" must be an object of strings' };
    for (const [k, v] of Object.entries(r.metadata as Record<string, unknown>)) {
      if (typeof v !== 'string') return { ok: false, reason: `"metadata.${k}" must be a string` };
      metadata[k] = v;
    }
  }
  if (r.health !== undefined && r.health !== null && !HEALTH.includes(r.health as Health))
    return { ok: false, reason: `"health" must be one of ${HEALTH.join(', ')}` };
  const host = r.host.startsWith('[') && r.host.endsWith(']') ? r.host.slice(1, -1) : r.host;
  const endpoint: Endpoint = {
    id: typeof r.id === 'string' && r.id.length > 0 ? r.id : endpointKey({ host, port }),
    host,
    port,
    metadata,
  };
  if (weight !== undefined) endpoint.weight = weight;
  if (typeof r.zone === 'string' && r.zone !== '') endpoint.zone = r.zone;
  if (r.health) endpoint.health = r.health as Health;
  return { ok: true, endpoint };
}

/**
 * Builds a complete set from raw entries: validates each, drops critical ones, de-duplicates by
 * host:port (last wins) and sorts by identity. Bad entries are collected, never thrown.
 */
export function collectEndpoints(
  entries: Iterable<{ key: string; value: unknown }>,
  opts: { includeCritical?: boolean } = {},
): { endpoints: Endpoint[]; bad: BadEntry[] } {
  const byKey = new Map<string, Endpoint>();
  const bad: BadEntry[] = [];
  for (const { key, value } of entries) {
    const c = checkEndpoint(value);
    if (!c.ok) {
      bad.push({ key, reason: c.reason });
      continue;
    }
    if (c.endpoint.health === 'critical' && !opts.includeCritical) continue;
    byKey.set(endpointKey(c.endpoint), c.endpoint);
  }
  const endpoints = [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, e]) => e);
  return { endpoints, bad };
}

export function badEntryError(bad: BadEntry[]): BadEntryError | undefined {
  return bad.length ? new BadEntryError(bad) : undefined;
}

/** Validates an InstanceSpec given to a registrar; throws TypeError for programmer mistakes. */
export function checkInstanceSpec(
  spec: InstanceSpec,
): Required<Pick<InstanceSpec, 'service' | 'host' | 'port' | 'id' | 'weight'>> &
  InstanceSpec & { metadata: Record<string, string> } {
  if (!spec || typeof spec !== 'object') throw new TypeError('register(): instance must be an object');
  if (typeof spec.service !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(spec.service))
    throw new TypeError(
      `register(): "service" must match [A-Za-z0-9][A-Za-z0-9._-]*, got ${JSON.stringify(spec.service)}`,
    );
  if (typeof spec.host !== 'string' || spec.host === '')
    throw new TypeError('register(): "host" must be a non-empty string');
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535)
    throw new TypeError(`register(): "port" must be an integer in 1..65535, got ${spec.port}`);
  if (spec.weight !== undefined && (!Number.isInteger(spec.weight) || spec.weight < 1))
    throw new TypeError(`register(): "weight" must be a positive integer, got ${spec.weight}`);
  if (spec.metadata !== undefined) {
    for (const [k, v] of Object.entries(spec.metadata))
      if (typeof v !== 'string') throw new TypeError(`register(): metadata "${k}" must be a string`);
  }
  const id = spec.id ?? endpointKey(spec);
  if (typeof id !== 'string' || id === '' || /[/\s]/.test(id))
    throw new TypeError(`register(): "id" must be a non-empty string without "/" or spaces, got ${JSON.stringify(id)}`);
  return { ...spec, id, weight: spec.weight ?? 1, metadata: { ...(spec.metadata ?? {}) } };
}

/** The registry-neutral JSON form of an instance (the `wayfinder` format). */
export function instanceToJson(spec: InstanceSpec & { id: string }): Record<string, unknown> {
  const o: Record<string, unknown> = {
    id: spec.id,
    service: spec.service,
    host: spec.host,
    port: spec.port,
    weight: spec.weight ?? 1,
    metadata: spec.metadata ?? {},
  };
  if (spec.zone) o.zone = spec.zone;
  return o;
}
