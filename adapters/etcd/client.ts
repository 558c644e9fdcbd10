/*
 * VENDOR INTERNALS FENCE (etcd3, pinned ~1.1.x in package.json). Every place this file reaches past
 * etcd3's public API; check each when upgrading:
 *  1. hostPolicy()/globalPolicy(): hand-built cockatiel IPolicy objects (execute/onSuccess/onFailure)
 *     passed as faultHandling policies; asPolicy() holds the one `as unknown as` because etcd3 types
 *     them as cockatiel's class.
 *  2. invalidateToken(): `raw.pool.authenticator.invalidateMetadata()`, private fields of etcd3's
 *     ConnectionPool / Authenticator, to drop a cached auth token.
 *  3. useCredentials(): `raw.pool.hosts[].channelCredentials` and `raw.pool.authenticator.credentials`.
 *     Items 2 and 3 go through internals(), the one `as unknown as` for etcd3's private fields.
 *  4. ipSafeCredentials(): grpc-js's secure connector `connectionOptions` (grpc-js pinned ~1.14),
 *     a commented `as unknown as` as it is private there.
 * Nothing else here uses undocumented etcd3 behaviour.
 */
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  EtcdUserNotFoundError,
  GRPCDeadlineExceededError,
  GRPCUnauthenticatedError,
  GRPCUnavailableError,
  Range,
  isRecoverableError,
  type IDuplexStream,
  type ILeaseKeepAliveRequest,
  type ILeaseKeepAliveResponse,
  type IOptions,
  type IWatchRequest,
  type IWatchResponse,
} from 'etcd3';
import { credentials as grpcCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import { AsyncLocalStorage } from 'node:async_hooks';
import { isIP } from 'node:net';
import { AuthFailedError, RegistryUnavailableError, delay, type WayfinderError } from '../../core';

/**
 * A thin wrapper over the `etcd3` client: the calls the adapter makes (paged prefix reads, raw
 * watch and lease keep-alive streams, leases and puts), each failure mapped to a typed
 * WayfinderError. etcd3's own retry policy and circuit breaker are replaced by MemberFailover: a
 * call moves on to another member within its deadline; a member is only skipped while another one
 * is believed up, so a single etcd that comes back is used at once (no breaker hiding it).
 */

export interface EtcdClientOptions {
  hosts: string[];
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  auth?: { username: string; password: string };
  /** Deadline of each unary call (get, put, grant, revoke, authenticate), ms. */
  requestTimeoutMs: number;
}

export interface KV {
  key: string;
  value: Buffer;
}

/** A member was skipped because it failed recently and another member is believed up. */
class MemberSkippedError extends Error {}

/** A failure that says the member did not answer (down, unreachable, no leader): try another one. */
function isMemberFailure(e: unknown): boolean {
  // A TLS trust failure is the same on every member: not a reason to try another.
  if (e instanceof Error && /certificate|self[- ]signed|CERT_|altnames|unable to verify/i.test(e.message)) return false;
  return (
    e instanceof MemberSkippedError ||
    e instanceof GRPCUnavailableError ||
    e instanceof GRPCDeadlineExceededError ||
    (e instanceof Error && isRecoverableError(e))
  );
}

type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;
const noDispose = () => ({ dispose() {} });

/** The part of cockatiel's IPolicy that etcd3 calls (fence item 1). */
interface PolicyLike {
  execute<T>(fn: (ctx: { signal: AbortSignal }) => T | Promise<T>): Promise<T>;
  onSuccess: typeof noDispose;
  onFailure: typeof noDispose;
}

/** Fence item 1: etcd3 types faultHandling policies as cockatiel's class; ours implement what it calls. */
function asPolicy(p: PolicyLike): Policy {
  return p as unknown as Policy;
}

/** etcd3's private ConnectionPool fields this file reaches (fence items 2 and 3). */
interface EtcdInternals {
  pool?: {
    hosts: { channelCredentials: ChannelCredentials }[];
    authenticator: { credentials: ChannelCredentials; invalidateMetadata(): void };
  };
}

/** Fence items 2 and 3: private fields have no typing, hence the one cast. */
function internals(raw: Etcd3): EtcdInternals {
  return raw as unknown as EtcdInternals;
}

/**
 * Failover across members, plugged into etcd3's connection pool (its per-host and global policies):
 *
 * - per member: a member whose call or stream failed with a member failure is marked down for a
 *   while (1 s, doubling while it keeps failing, up to 30 s) and skipped by new calls and streams
 *   as long as another member is not marked down; it is tried again when the mark lapses.
 * - per call (global): a unary call that fails with a member failure is retried at once on the
 *   next member (etcd3's shuffled rotation continues across attempts), and after every member has
 *   been tried, again after a short pause, until the call's budget (request-timeout) is spent. Only
 *   then does the caller see an error: the last member's. With more than one member an attempt gets
 *   at most half the budget, so a member that swallows requests (partitioned) cannot eat it all.
 *
 * Every call the adapter makes is safe to repeat: reads, puts of the same value, deletes, revokes
 * (an unknown lease counts as revoked) and lease grants (a lease granted by an attempt whose answer
 * was lost is never used and expires after its TTL).
 */
class MemberFailover {
  private readonly down = new Map<string, { until: number; failures: number }>();
  private readonly budget = new AsyncLocalStorage<number>();
  /** Members as etcd3's pool names them (scheme://host:port), one per host policy. */
  private readonly known: string[] = [];

  constructor(
    private readonly hosts: string[],
    private readonly requestTimeoutMs: number,
  ) {}

  /**
   * The deadline of the current unary attempt (read by etcd3's defaultCallOptions). Date.now() here
   * and in the member policies below on purpose: these deadlines go to grpc-js as epoch-ms call
   * deadlines, and the down-marks and budgets are compared with them.
   */
  attemptDeadline(): number {
    const now = Date.now();
    const end = this.budget.getStore() ?? now + this.requestTimeoutMs;
    const cap = this.hosts.length > 1 ? Math.max(1000, this.requestTimeoutMs / 2) : Infinity;
    return Math.min(end, now + cap);
  }

  private isDown(host: string, now = Date.now()): boolean {
    return (this.down.get(host)?.until ?? 0) > now;
  }

  markDown(host: string): void {
    const failures = (this.down.get(host)?.failures ?? 0) + 1;
    this.down.set(host, { until: Date.now() + Math.min(30_000, 1000 * 2 ** (failures - 1)), failures });
  }

  hostPolicy(host: string): Policy {
    this.known.push(host);
    const self = { isDown: (h: string, now?: number) => this.isDown(h, now), hosts: this.known, down: this.down };
    const markDown = (h: string) => this.markDown(h);
    return asPolicy({
      async execute<T>(fn: (ctx: { signal: AbortSignal }) => T | Promise<T>): Promise<T> {
        const now = Date.now();
        if (self.isDown(host, now) && self.hosts.some((h) => h !== host && !self.isDown(h, now)))
          throw new MemberSkippedError(`etcd member ${host} failed recently; trying another`);
        try {
          const r = await fn({ signal: new AbortController().signal });
          // A stream is "opened" even towards a dead member: only an answered call proves it up.
          if (!(r && typeof (r as { on?: unknown }).on === 'function')) self.down.delete(host);
          return r;
        } catch (e) {
          if (isMemberFailure(e)) markDown(host);
          throw e;
        }
      },
      onSuccess: noDispose,
      onFailure: noDispose,
    });
  }

  globalPolicy(): Policy {
    const { budget, requestTimeoutMs, hosts } = this;
    return asPolicy({
      execute<T>(fn: (ctx: { signal: AbortSignal }) => T | Promise<T>): Promise<T> {
        const end = budget.getStore() ?? Date.now() + requestTimeoutMs;
        return budget.run(end, async () => {
          for (let attempt = 1; ; attempt++) {
            try {
              return await fn({ signal: new AbortController().signal });
            } catch (e) {
              if (!isMemberFailure(e) || Date.now() >= end) throw e;
              if (attempt % hosts.length === 0) await delay(Math.min(200, Math.max(0, end - Date.now())));
              if (Date.now() >= end) throw e;
            }
          }
        });
      },
      onSuccess: noDispose,
      onFailure: noDispose,
    });
  }
}

/**
 * TLS credentials that work with members addressed by IP on every Node line. grpc-js 1.14 sets the
 * TLS servername (SNI) to the target host even when it is an IP literal; Node 26 refuses that
 * (ERR_INVALID_ARG_VALUE, formerly the DEP0123 warning). For an IP host the servername is dropped:
 * no SNI is sent (RFC 6066 allows none for IPs) and Node checks the certificate against `host`,
 * the IP, so the server certificate must carry it as an IP subjectAltName, as etcd's docs require.
 * Reaches into grpc-js's secure connector (its `connectionOptions`): grpc-js is pinned to ~1.14.
 */
export function ipSafeCredentials(tls: { ca?: Buffer; cert?: Buffer; key?: Buffer }): ChannelCredentials {
  const base = grpcCredentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
  const wrapped = Object.create(base) as ChannelCredentials;
  wrapped._createSecureConnector = function (this: ChannelCredentials, ...args) {
    const connector = base._createSecureConnector.apply(this, args);
    // Fence item 4: private in grpc-js, hence the cast.
    const co = (connector as unknown as { connectionOptions?: { servername?: string } }).connectionOptions;
    if (co?.servername && isIP(co.servername)) delete co.servername;
    return connector;
  };
  return wrapped;
}

/** Makes every channel of an etcd3 client (per-member clients and the authenticator's) use `creds`. */
function useCredentials(raw: Etcd3, creds: ChannelCredentials): void {
  const pool = internals(raw).pool!;
  for (const host of pool.hosts) host.channelCredentials = creds;
  pool.authenticator.credentials = creds;
}

export class EtcdClient {
  readonly raw: Etcd3;
  private readonly secrets: string[];
  readonly tls: boolean;
  /** Number of members given (watches resume on another member only when there is one). */
  readonly members: number;

  constructor(private readonly opts: EtcdClientOptions) {
    this.tls = !!opts.tls;
    this.members = opts.hosts.length;
    this.secrets = opts.auth?.password ? [opts.auth.password] : [];
    const scheme = opts.tls ? 'https' : 'http';
    const failover = new MemberFailover(opts.hosts, opts.requestTimeoutMs);
    this.raw = new Etcd3({
      hosts: opts.hosts.map((h) => `${scheme}://${h}`),
      credentials:
        opts.tls?.ca || opts.tls?.cert
          ? { rootCertificate: opts.tls.ca as Buffer, privateKey: opts.tls.key, certChain: opts.tls.cert }
          : undefined,
      auth: opts.auth ? { username: opts.auth.username, password: opts.auth.password } : undefined,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: failover.attemptDeadline() }),
      faultHandling: { host: (h) => failover.hostPolicy(h), global: failover.globalPolicy() },
      grpcOptions: {
        // Detects a dead TCP connection under a long-lived stream. etcd refuses pings more often
        // than its --grpc-keepalive-min-time (5 s by default), hence 10 s.
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': Math.max(2000, opts.requestTimeoutMs),
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
        // Never route etcd traffic through an HTTP proxy from the environment.
        'grpc.enable_http_proxy': 0,
      },
    });
    if (opts.tls) useCredentials(this.raw, ipSafeCredentials(opts.tls));
  }

  /** Reads every key under `prefix` at one revision, in pages. Returns that revision. */
  async list(prefix: string, pageSize = 5000): Promise<{ revision: number; kvs: KV[] }> {
    const range = Range.prefix(prefix);
    const kvs: KV[] = [];
    let start = range.start;
    let revision: number | undefined;
    for (;;) {
      const res = await this.call('reading ' + prefix, () =>
        this.raw.kv.range({
          key: start,
          range_end: range.end,
          limit: pageSize,
          ...(revision !== undefined ? { revision: String(revision) } : {}),
        }),
      );
      if (revision === undefined) revision = Number(res.header.revision);
      for (const kv of res.kvs) kvs.push({ key: kv.key.toString('utf8'), value: kv.value });
      if (!res.more || res.kvs.length === 0) break;
      start = Buffer.concat([res.kvs[res.kvs.length - 1].key, Buffer.from([0])]);
    }
    return { revision: revision!, kvs };
  }

  /** Lists the distinct first path segments under `prefix` (keys only). */
  async listChildren(prefix: string): Promise<string[]> {
    const range = Range.prefix(prefix);
    const res = await this.call('listing ' + prefix, () =>
      this.raw.kv.range({ key: range.start, range_end: range.end, keys_only: true }),
    );
    const names = new Set<string>();
    for (const kv of res.kvs) {
      const rest = kv.key.toString('utf8').slice(prefix.length);
      const i = rest.indexOf('/');
      if (i > 0) names.add(rest.slice(0, i));
    }
    return [...names].sort();
  }

  async put(key: string, value: string, lease?: string): Promise<void> {
    await this.call('writing ' + key, () =>
      this.raw.kv.put({ key: Buffer.from(key), value: Buffer.from(value), ...(lease ? { lease } : {}) }),
    );
  }

  async delete(key: string): Promise<void> {
    await this.call('deleting ' + key, () => this.raw.kv.deleteRange({ key: Buffer.from(key) }));
  }

  /** Grants a lease; returns its id (decimal string) and the TTL etcd granted, in seconds. */
  async grant(ttlSec: number): Promise<{ id: string; ttlSec: number }> {
    const res = await this.call('granting a lease', () => this.raw.leaseClient.leaseGrant({ TTL: ttlSec, ID: 0 }));
    if (res.error) throw new RegistryUnavailableError(`etcd: granting a lease failed: ${res.error}`);
    return { id: String(res.ID), ttlSec: Number(res.TTL) };
  }

  /** Revokes a lease (its keys go with it). A lease that is already gone counts as revoked. */
  async revoke(id: string): Promise<void> {
    try {
      await this.call('revoking a lease', () => this.raw.leaseClient.leaseRevoke({ ID: id }));
    } catch (e) {
      if ((e as WayfinderError).cause instanceof EtcdLeaseInvalidError) return;
      throw e;
    }
  }

  watchStream(): Promise<IDuplexStream<IWatchRequest, IWatchResponse>> {
    return this.call('opening a watch stream', () => this.raw.watchClient.watch());
  }

  keepAliveStream(): Promise<IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>> {
    return this.call('opening a lease keep-alive stream', () => this.raw.leaseClient.leaseKeepAlive());
  }

  /**
   * Drops the cached auth token so the next call authenticates again. Streams carry the token they
   * were opened with; the adapter calls this when a stream fails with an invalid-token error.
   */
  invalidateToken(): void {
    internals(this.raw).pool?.authenticator?.invalidateMetadata();
  }

  close(): void {
    this.raw.close();
  }

  /** Runs one call; on an expired auth token re-authenticates once and retries. */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof EtcdInvalidAuthTokenError) {
        try {
          return await fn();
        } catch (e2) {
          throw this.toError(e2, what);
        }
      }
      throw this.toError(e, what);
    }
  }

  /**
   * Maps an etcd3/grpc failure to AUTH_FAILED (bad credentials, no permission, TLS trust failure:
   * fail closed) or REGISTRY_UNAVAILABLE (everything else). Never includes the password.
   */
  toError(e: unknown, what: string): WayfinderError {
    if (e instanceof AuthFailedError || e instanceof RegistryUnavailableError) return e;
    const msg = this.redact(e instanceof Error ? e.message : String(e));
    if (
      e instanceof EtcdAuthenticationFailedError ||
      e instanceof EtcdPermissionDeniedError ||
      e instanceof GRPCUnauthenticatedError ||
      e instanceof EtcdUserNotFoundError ||
      e instanceof EtcdInvalidAuthTokenError ||
      /permission denied|authentication failed|user name is empty|invalid auth token|auth: revision in header is old/i.test(
        msg,
      )
    ) {
      return new AuthFailedError(`etcd: ${what}: ${msg}`, { cause: e });
    }
    if (
      this.tls &&
      /certificate|self[- ]signed|ssl|tls|handshake|unable to verify|wrong version number|CERT_|alert/i.test(msg)
    ) {
      return new AuthFailedError(
        `etcd: ${what}: TLS handshake failed (server not trusted by the configured CA, or client certificate refused): ${msg}`,
        { cause: e },
      );
    }
    return new RegistryUnavailableError(`etcd: ${what}: ${msg}`, { cause: e });
  }

  private redact(s: string): string {
    let out = s;
    for (const secret of this.secrets) if (secret.length >= 1) out = out.split(secret).join('***');
    return out;
  }
}
