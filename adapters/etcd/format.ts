import { hostPort, instanceToJson, type CheckedSpec } from '../../core';

/**
 * The two key layouts the etcd adapter reads and writes. Both put one key per instance under
 * `<prefix>/<service>/` (see prefixDir for prefixes that are empty or end with "/"):
 *
 * - `wayfinder`: key `<prefix>/<service>/<id>`, value the registry-neutral JSON of an instance
 *   (`{"id","service","host","port","weight","zone","metadata"}`).
 * - `grpc-go`: the layout of go.etcd.io/etcd/client/v3/naming/endpoints with target
 *   `<prefix>/<service>`: key `<target>/<id>` (the Go manager conventionally uses the address as id),
 *   value `{"Op":0,"Addr":"host:port","Metadata":<any JSON>}`. `Op` is ignored on read, as the Go
 *   resolver does. An object Metadata becomes endpoint metadata (non-string values JSON-encoded);
 *   its `weight` (positive integer) and `zone` (string) also fill the endpoint's weight and zone.
 */
export type KeyFormat = 'wayfinder' | 'grpc-go';

/**
 * The key range of one service: `<dir><service>/`, where `<dir>` is the prefix as a directory
 * (see prefixDir). Any prefix etcd can hold works: `""` (none), `"foo/bar"`, `"/services"`, `"/"`.
 */
export function servicePrefix(prefix: string, service: string): string {
  return `${prefixDir(prefix)}${service}/`;
}

/**
 * The prefix as the directory services live in: empty stays empty (keys start with the service
 * name, as Go targets without a prefix do), otherwise a "/" is appended unless the prefix already
 * ends with one. So "foo/bar" and "foo/bar/" both hold `foo/bar/<service>/`, "/" holds
 * `/<service>/`, and "foo//" holds `foo//<service>/` (every key stays expressible).
 */
export function prefixDir(prefix: string): string {
  return prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
}

export function instanceKey(prefix: string, spec: Pick<CheckedSpec, 'service' | 'id'>): string {
  return servicePrefix(prefix, spec.service) + spec.id;
}

export function encodeInstance(format: KeyFormat, spec: CheckedSpec): string {
  if (format === 'wayfinder') return JSON.stringify(instanceToJson(spec));
  const md: Record<string, unknown> = { ...spec.metadata };
  if (spec.weight !== undefined && spec.weight !== 1) md.weight = spec.weight;
  if (spec.zone) md.zone = spec.zone;
  return JSON.stringify({ Op: 0, Addr: hostPort(spec.host, spec.port), Metadata: Object.keys(md).length ? md : null });
}

/** Thrown by decodeValue for a malformed entry; the message is the BAD_ENTRY reason. */
export class BadValue extends Error {}

/**
 * Decodes one stored value to a raw endpoint object for core's checkEndpoint (which does the field
 * validation). `id` is the key's suffix after `<prefix>/<service>/`, used when the value has none.
 */
export function decodeValue(format: KeyFormat, id: string, value: Buffer): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(value.toString('utf8'));
  } catch {
    throw new BadValue('value is not JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new BadValue('value is not a JSON object');
  const o = v as Record<string, unknown>;
  if (format === 'wayfinder') {
    if (o.id === undefined && id) return { ...o, id };
    return o;
  }
  if (typeof o.Addr !== 'string' || o.Addr === '') throw new BadValue('"Addr" must be a non-empty "host:port" string');
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(o.Addr);
  if (!m) throw new BadValue(`"Addr" ${JSON.stringify(o.Addr.slice(0, 100))} is not "host:port"`);
  const raw: Record<string, unknown> = { id: id || o.Addr, host: m[1] ?? m[2], port: Number(m[3]) };
  const md = o.Metadata;
  if (md !== undefined && md !== null) {
    if (typeof md === 'object' && !Array.isArray(md)) {
      const out: Record<string, string> = {};
      for (const [k, val] of Object.entries(md as Record<string, unknown>))
        out[k] = typeof val === 'string' ? val : JSON.stringify(val);
      raw.metadata = out;
      const w = (md as Record<string, unknown>).weight;
      const wn = typeof w === 'string' && /^\d+$/.test(w) ? Number(w) : w;
      if (typeof wn === 'number' && Number.isInteger(wn) && wn >= 1) raw.weight = wn;
      const z = (md as Record<string, unknown>).zone;
      if (typeof z === 'string' && z !== '') raw.zone = z;
    } else {
      // Go allows any JSON as Metadata; a scalar or list is kept whole under "metadata".
      raw.metadata = { metadata: typeof md === 'string' ? md : JSON.stringify(md) };
    }
  }
  return raw;
}
