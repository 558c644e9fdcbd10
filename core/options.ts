import { ConfigError } from './errors';

/** One option of an adapter or balancer. The schema is the single place options are validated and documented. */
export interface OptionSpec {
  type: 'string' | 'integer' | 'number' | 'boolean' | 'duration' | 'enum' | 'list';
  doc: string;
  default?: unknown;
  /** For 'enum'. */
  values?: readonly string[];
  /** For numbers and durations (ms). */
  min?: number;
  max?: number;
  required?: boolean;
  /** Never printed: redacted in URLs, errors, logs and status. */
  secret?: boolean;
  /** Extra check on the typed value; returns a message (without the field name) when invalid. */
  check?(value: unknown): string | undefined;
}
export type OptionsSchema = Record<string, OptionSpec>;

export interface HostPortSpec {
  host: string;
  port?: number;
}

/** A registry URL split into its parts. Multi-host authorities (`h1:2379,h2:2379`) are allowed. */
export interface ParsedUrl {
  scheme: string;
  hosts: HostPortSpec[];
  /** Decoded path, '' when absent. */
  path: string;
  params: Record<string, string>;
  username?: string;
  password?: string;
  /** The URL with credentials and secret parameters replaced by '***'. */
  redacted: string;
}

const SECRET_PARAMS = /^(token|password|secret|key|auth|credentials?)$/i;

export function parseRegistryUrl(input: string): ParsedUrl {
  if (typeof input !== 'string') throw new TypeError('registry URL must be a string');
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):(?:\/\/([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#.*)?$/.exec(input.trim());
  if (!m)
    throw new ConfigError(
      `registry URL ${JSON.stringify(redactFreeText(input))} is not a URL of the form scheme://host:port/path?option=value`,
      { field: 'registry' },
    );
  const scheme = m[1].toLowerCase();
  let authority = m[2] ?? '';
  let username: string | undefined;
  let password: string | undefined;
  const at = authority.lastIndexOf('@');
  if (at >= 0) {
    const cred = authority.slice(0, at);
    authority = authority.slice(at + 1);
    const colon = cred.indexOf(':');
    try {
      username = decodeURIComponent(colon >= 0 ? cred.slice(0, colon) : cred);
      if (colon >= 0) password = decodeURIComponent(cred.slice(colon + 1));
    } catch {
      throw new ConfigError(`${scheme}: the user info (user:password@) is not validly percent-encoded`, {
        field: 'username',
      });
    }
  }
  const hosts: HostPortSpec[] = [];
  for (const part of authority.split(',').filter((p) => p !== '')) hosts.push(parseHostPort(part, scheme));
  const params: Record<string, string> = {};
  if (m[4]) {
    for (const [k, v] of new URLSearchParams(m[4])) {
      if (k in params) throw new ConfigError(`${scheme}: parameter "${k}" is given more than once`, { field: k });
      params[k] = v;
    }
  }
  let path: string;
  try {
    path = decodeURIComponent(m[3] ?? '');
  } catch {
    throw new ConfigError(`${scheme}: the URL path is not validly percent-encoded`, { field: 'path' });
  }
  const redacted = redactUrlParts(scheme, m[2] !== undefined, hosts, m[3] ?? '', params, username, password);
  return { scheme, hosts, path, params, username, password, redacted };
}

function parseHostPort(part: string, scheme: string): HostPortSpec {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d*))?$/.exec(part);
  if (!m) throw new ConfigError(`${scheme}: "${part}" is not a valid host[:port]`, { field: 'hosts' });
  const host = m[1].startsWith('[') ? m[1].slice(1, -1) : m[1];
  if (m[2] === undefined || m[2] === '') return { host };
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new ConfigError(`${scheme}: port in "${part}" must be in 1..65535`, { field: 'hosts' });
  return { host, port };
}

function redactUrlParts(
  scheme: string,
  hasAuthority: boolean,
  hosts: HostPortSpec[],
  rawPath: string,
  params: Record<string, string>,
  username?: string,
  password?: string,
): string {
  const cred = username !== undefined ? `${encodeURIComponent(username)}${password !== undefined ? ':***' : ''}@` : '';
  const auth = hosts
    .map((h) => (h.host.includes(':') ? `[${h.host}]` : h.host) + (h.port ? `:${h.port}` : ''))
    .join(',');
  const q = Object.entries(params)
    .map(([k, v]) => `${k}=${SECRET_PARAMS.test(k) ? '***' : encodeURIComponent(v).replace(/%2F/g, '/')}`)
    .join('&');
  return `${scheme}:${hasAuthority ? `//${cred}${auth}` : ''}${rawPath}${q ? `?${q}` : ''}`;
}

/** Best-effort redaction of a string that failed to parse as a URL. */
export function redactFreeText(s: string): string {
  return s.replace(/\/\/[^@/]*@/, '//***@').replace(/((?:token|password|secret|key)=)[^&]*/gi, '$1***');
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const UNIT: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses "250ms", "10s", "1.5m", "2h" or a bare number of milliseconds. */
export function parseDuration(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = DURATION.exec(v.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * UNIT[m[2] ?? 'ms']);
}

function describe(spec: OptionSpec): string {
  switch (spec.type) {
    case 'enum':
      return `one of ${spec.values!.map((v) => `"${v}"`).join(', ')}`;
    case 'integer':
    case 'number':
    case 'duration': {
      const kind =
        spec.type === 'duration'
          ? 'a duration (e.g. "500ms", "10s")'
          : spec.type === 'integer'
            ? 'an integer'
            : 'a number';
      const unit = spec.type === 'duration' ? 'ms' : '';
      const range =
        spec.min !== undefined && spec.max !== undefined
          ? ` between ${spec.min}${unit} and ${spec.max}${unit}`
          : spec.min !== undefined
            ? ` of at least ${spec.min}${unit}`
            : spec.max !== undefined
              ? ` of at most ${spec.max}${unit}`
              : '';
      return kind + range;
    }
    case 'boolean':
      return 'true or false';
    case 'list':
      return 'a comma-separated list';
    default:
      return 'a string';
  }
}

function coerce(name: string, spec: OptionSpec, raw: unknown, prefix: string): unknown {
  const fail = (): never => {
    const shown = spec.secret ? '' : ` (got ${JSON.stringify(raw)})`;
    throw new ConfigError(`${prefix}"${name}" must be ${describe(spec)}${shown}`, { field: name });
  };
  let v: unknown;
  switch (spec.type) {
    case 'string':
      if (typeof raw !== 'string') fail();
      v = raw;
      break;
    case 'enum':
      if (typeof raw !== 'string' || !spec.values!.includes(raw)) fail();
      v = raw;
      break;
    case 'boolean':
      if (typeof raw === 'boolean') v = raw;
      else if (raw === 'true' || raw === '1' || raw === '') v = true;
      else if (raw === 'false' || raw === '0') v = false;
      else fail();
      break;
    case 'integer':
    case 'number': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
      if (!Number.isFinite(n) || (spec.type === 'integer' && !Number.isInteger(n))) fail();
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) fail();
      v = n;
      break;
    }
    case 'duration': {
      const n = parseDuration(raw);
      if (n === undefined) fail();
      if ((spec.min !== undefined && n! < spec.min) || (spec.max !== undefined && n! > spec.max)) fail();
      v = n;
      break;
    }
    case 'list':
      if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) v = raw;
      else if (typeof raw === 'string')
        v = raw
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
      else fail();
      break;
  }
  if (spec.check) {
    const msg = spec.check(v);
    if (msg) throw new ConfigError(`${prefix}"${name}" ${msg}`, { field: name });
  }
  return v;
}

/**
 * Validates raw options (from URL parameters or a config object) against a schema, applying
 * defaults. Unknown options fail with the list of known ones, so typos are caught.
 * Errors are prefixed with the owner's name: `etcd: "prefix" must start with "/"`.
 */
export function validateOptions<T = Record<string, unknown>>(
  owner: string,
  schema: OptionsSchema,
  input: Record<string, unknown>,
): T {
  const prefix = `${owner}: `;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(input)) {
    if (!(key in schema)) {
      const known = Object.keys(schema);
      throw new ConfigError(
        `${prefix}unknown option "${key}"; known options: ${known.length ? known.join(', ') : '(none)'}`,
        { field: key },
      );
    }
  }
  for (const [name, spec] of Object.entries(schema)) {
    const raw = input[name];
    if (raw === undefined || raw === null) {
      if (spec.required) throw new ConfigError(`${prefix}"${name}" is required: ${spec.doc}`, { field: name });
      if (spec.default !== undefined) out[name] = Array.isArray(spec.default) ? [...spec.default] : spec.default;
      continue;
    }
    out[name] = coerce(name, spec, raw, prefix);
  }
  return out as T;
}

/** Replaces the values of secret options with '***', for logs and status output. */
export function redactOptions(schema: OptionsSchema, options: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) out[k] = schema[k]?.secret && v !== undefined ? '***' : v;
  return out;
}

/**
 * `defaults` overlaid with the options that are set: an option given as `undefined` keeps its
 * default (a plain spread would overwrite it). For programmatic configs that skip the schema.
 */
export function withDefaults<T extends object>(defaults: Required<T>, options: T): Required<T> {
  const out = { ...defaults };
  for (const [k, v] of Object.entries(options)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
