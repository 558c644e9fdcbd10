import { promises as dns } from 'node:dns';

/**
 * A thin wrapper over node's c-ares resolver (`dns.promises.Resolver`) that sorts every answer into
 * "records", "the name has none" (NXDOMAIN / NODATA: the registry's real answer) or a thrown
 * DnsQueryError (timeouts, SERVFAIL, REFUSED, refused connections...: the registry failed, and the
 * caller must keep what it had).
 */

/** c-ares codes that mean the server answered and the name has no such records. */
const NO_RECORDS = new Set(['ENOTFOUND', 'ENODATA']);

export class DnsQueryError extends Error {
  override readonly name = 'DnsQueryError';
  constructor(
    /** The queried DNS name. */
    readonly query: string,
    readonly type: string,
    readonly code: string,
    cause: unknown,
  ) {
    super(`${type} ${query}: ${code}`, { cause });
  }
}

export interface AddressRecord {
  address: string;
  /** Seconds, as served. */
  ttl: number;
  family: 4 | 6;
}

export interface SrvAnswer {
  name: string;
  port: number;
  priority: number;
  weight: number;
}

export interface DnsClientOptions {
  /** `ip`, `ip:port` or `[ipv6]:port`; empty = the system's nameservers (/etc/resolv.conf). */
  servers: string[];
  /** Per-try timeout in ms (c-ares doubles it on each retry round). */
  timeoutMs: number;
  tries: number;
}

export class DnsClient {
  private readonly resolver: dns.Resolver;
  /** The servers in use, for messages. */
  readonly servers: string[];

  constructor(opts: DnsClientOptions) {
    this.resolver = new dns.Resolver({ timeout: opts.timeoutMs, tries: opts.tries });
    if (opts.servers.length) this.resolver.setServers(opts.servers);
    this.servers = this.resolver.getServers();
  }

  /** A (family 4) or AAAA (family 6) records; [] when the name has none. */
  async addresses(name: string, family: 4 | 6): Promise<{ records: AddressRecord[]; nxdomain: boolean }> {
    try {
      const rs =
        family === 4
          ? await this.resolver.resolve4(name, { ttl: true })
          : await this.resolver.resolve6(name, { ttl: true });
      return { records: rs.map((r) => ({ address: r.address, ttl: r.ttl, family })), nxdomain: false };
    } catch (e) {
      return { records: [], nxdomain: this.noRecords(e, name, family === 4 ? 'A' : 'AAAA') === 'ENOTFOUND' };
    }
  }

  /** SRV records; [] when the name has none. node's API does not expose SRV TTLs. */
  async srv(name: string): Promise<{ records: SrvAnswer[]; nxdomain: boolean }> {
    try {
      return { records: await this.resolver.resolveSrv(name), nxdomain: false };
    } catch (e) {
      return { records: [], nxdomain: this.noRecords(e, name, 'SRV') === 'ENOTFOUND' };
    }
  }

  /** TXT records, each a list of its character-strings; [] when the name has none. */
  async txt(name: string): Promise<{ records: string[][] }> {
    try {
      return { records: await this.resolver.resolveTxt(name) };
    } catch (e) {
      this.noRecords(e, name, 'TXT');
      return { records: [] };
    }
  }

  /** Aborts every outstanding query (they reject with ECANCELLED). */
  cancel(): void {
    this.resolver.cancel();
  }

  /** Returns the code when `e` means "no such records"; throws DnsQueryError otherwise. */
  private noRecords(e: unknown, name: string, type: string): string {
    const code = (e as NodeJS.ErrnoException)?.code ?? 'EUNKNOWN';
    if (NO_RECORDS.has(code)) return code;
    throw new DnsQueryError(name, type, code, e);
  }
}
