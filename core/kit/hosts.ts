import { ConfigError } from '../errors';
import { hostPort } from '../util';

/** One registry server, parsed once: IPv6 hosts without brackets, the port always set. */
export interface HostAddress {
  host: string;
  port: number;
}

// `[v6]` or a name/IPv4 without ':', '[', ']', ',', '/' or whitespace; then an optional :port.
const HOST_PORT = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\],/\s]+))(?::(\d{1,5}))?$/;

export interface HostListOptions {
  /** Port used when an entry has none. */
  defaultPort: number;
  /** Field named in errors (default "hosts"). */
  field?: string;
  /** At least one entry required (default true). */
  required?: boolean;
  /** Accepts and drops an `http://` / `https://` prefix on each entry (etcd's client URLs). */
  stripScheme?: boolean;
}

/**
 * Parses `host[:port]` entries (`10.0.0.1:2379`, `[::1]:2181`, `zk1`) into structured values.
 * Errors are ConfigErrors naming the field and the entry: `zk: "hosts" entry "a:b" is not host[:port]`.
 */
export function parseHostList(owner: string, entries: readonly string[], o: HostListOptions): HostAddress[] {
  const field = o.field ?? 'hosts';
  if (entries.length === 0 && o.required !== false)
    throw new ConfigError(`${owner}: "${field}" must list at least one host[:port]`, { field });
  return entries.map((raw) => {
    const entry = o.stripScheme ? raw.replace(/^https?:\/\//, '') : raw;
    const m = HOST_PORT.exec(entry.trim());
    if (!m) throw new ConfigError(`${owner}: "${field}" entry ${JSON.stringify(raw)} is not host[:port]`, { field });
    const port = m[3] === undefined ? o.defaultPort : Number(m[3]);
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      throw new ConfigError(`${owner}: "${field}" entry ${JSON.stringify(raw)} has a port outside 1..65535`, { field });
    return { host: m[1] ?? m[2], port };
  });
}

/** `host:port` with IPv6 bracketed, the form client libraries take. */
export function formatHost(h: HostAddress): string {
  return hostPort(h.host, h.port);
}
