import {
  ConfigError,
  RegistrarBase,
  RegistrationBase,
  WatchResolver,
  defineAdapter,
  registerAdapter,
  silentLogger,
  validateOptions,
  type AdapterContext,
  type AdapterInstance,
  type Capabilities,
  type CheckedSpec,
  type Logger,
  type OptionsSchema,
} from '../../core';
import { formatHost, parseHostList, readFileOption, readSecretFile, retry, type HostAddress } from '../../core/kit';
import { EtcdClient } from './client';
import { encodeInstance, instanceKey, prefixDir, servicePrefix, type KeyFormat } from './format';
import { LeaseKeeper } from './lease';
import { RegistryWatch } from './watch-all';
import { ServiceWatch } from './watch';

export { EtcdClient } from './client';
export { decodeValue, encodeInstance, instanceKey, prefixDir, servicePrefix, type KeyFormat } from './format';

/** Validated options of `etcd://h1:2379,h2:2379?prefix=/services&format=wayfinder`. */
export interface EtcdOptions {
  hosts: string[];
  prefix: string;
  format: KeyFormat;
  /** Lease TTL of registrations, ms. */
  ttl: number;
  username?: string;
  password?: string;
  'password-file'?: string;
  tls: boolean;
  ca?: string;
  cert?: string;
  key?: string;
  'dial-timeout': number;
  'request-timeout': number;
  'progress-interval': number;
}

export const etcdOptionsSchema: OptionsSchema = {
  hosts: {
    type: 'list',
    default: ['127.0.0.1:2379'],
    doc: 'etcd client endpoints host[:port] (port 2379 when omitted); from the URL authority.',
  },
  prefix: {
    type: 'string',
    default: '/services',
    doc: 'Key prefix; a service lives under <prefix>/<service>/ (no "/" doubled). Any etcd key prefix: "" means none (keys <service>/<id>), "foo/bar" has no leading "/", "/" is the root "/".',
  },
  format: {
    type: 'enum',
    values: ['wayfinder', 'grpc-go'],
    default: 'wayfinder',
    doc: 'Key/value layout: "wayfinder" (JSON instance) or "grpc-go" (go.etcd.io/etcd/client/v3/naming/endpoints).',
  },
  ttl: {
    type: 'duration',
    default: 10_000,
    min: 2000,
    max: 3_600_000,
    doc: 'Lease TTL of registered instances (whole seconds; etcd allows 2 s at least). A dead instance disappears within it.',
  },
  username: { type: 'string', doc: 'etcd user (auth); from the URL (etcd://user:pass@host) or this option.' },
  password: { type: 'string', secret: true, doc: 'Password of `username`. Prefer password-file; never logged.' },
  'password-file': {
    type: 'string',
    doc: 'File holding the password (trailing newline ignored), read when the registry is created.',
  },
  tls: { type: 'boolean', default: false, doc: 'Use TLS with the system CAs; implied by ca/cert/key.' },
  ca: { type: 'string', doc: 'PEM file of the CA that signed the etcd server certificate.' },
  cert: { type: 'string', doc: 'PEM file of the client certificate (with `key`), for etcd --client-cert-auth.' },
  key: { type: 'string', doc: 'PEM file of the client private key (with `cert`).' },
  'dial-timeout': {
    type: 'duration',
    default: 5000,
    min: 100,
    doc: 'Bound for a new watch stream to be confirmed by etcd.',
  },
  'request-timeout': {
    type: 'duration',
    default: 5000,
    min: 100,
    doc: 'Deadline of each etcd request (read, write, lease, authenticate) and of an answer to a watch progress request.',
  },
  'progress-interval': {
    type: 'duration',
    default: 10_000,
    min: 100,
    doc: 'A watch quiet for this long is probed with a progress request; no answer within request-timeout means the stream is dead and is re-established.',
  },
};

export const etcdCapabilities: Capabilities = {
  watch: 'push',
  register: true,
  ttl: true,
  weights: true,
  zones: true,
  metadata: true,
  listServices: true,
  registryWatch: true,
};

/** etcd client URLs: host:port, IPv6 bracketed; an http(s):// prefix is accepted and dropped. */
function etcdHosts(hosts: string[]): HostAddress[] {
  return parseHostList('etcd', hosts, { defaultPort: 2379, stripScheme: true });
}

export interface EtcdRegistryOptions extends Partial<EtcdOptions> {
  logger?: Logger;
  random?: () => number;
  /** Test hook, see ServiceWatchOptions.beforeWatch. */
  beforeWatch?: (startRevision: number) => Promise<void>;
}

class EtcdRegistration extends RegistrationBase {
  private keeper?: LeaseKeeper;
  private restoring?: Promise<void>;
  private latest: CheckedSpec;
  private gone = false;

  constructor(
    spec: CheckedSpec,
    private readonly reg: EtcdRegistrar,
  ) {
    super(spec, reg.logger);
    this.latest = spec;
  }

  /** The lease the instance's key is attached to now (decimal string), for operators and tests. */
  get leaseId(): string | undefined {
    return this.keeper?.leaseId;
  }

  get key(): string {
    return instanceKey(this.reg.prefix, this.latest);
  }

  /** Grants a lease, writes the key under it and starts keeping it alive. */
  async establish(): Promise<void> {
    const { client, ttlSec } = this.reg;
    const lease = await client.grant(ttlSec);
    try {
      await client.put(this.key, encodeInstance(this.reg.format, this.latest), lease.id);
    } catch (e) {
      void client.revoke(lease.id).catch(() => undefined);
      throw e;
    }
    if (this.gone) {
      await client.revoke(lease.id).catch(() => undefined);
      return;
    }
    this.keeper = new LeaseKeeper(client, lease.id, lease.ttlSec * 1000, (err) => this.onLeaseLost(err), this.logger);
  }

  /** Test hook: stops the keep-alive without deleting anything, as if the process had died. */
  abandon(): void {
    this.gone = true;
    this.keeper?.stop();
  }

  private onLeaseLost(err: Error): void {
    if (this.gone) return;
    const old = this.keeper?.leaseId;
    this.keeper = undefined;
    this.emitLost(err);
    // The old lease may still exist (e.g. etcd was unreachable, not wiped): revoke it, best effort,
    // once a new one holds the key, so it cannot delete the re-written key when it expires.
    this.restoring = this.restore(old);
  }

  private async restore(oldLease?: string): Promise<void> {
    await retry(
      async () => {
        if (this.gone) return;
        await this.establish();
        if (this.gone) return;
        if (oldLease && oldLease !== this.keeper?.leaseId) void this.reg.client.revoke(oldLease).catch(() => undefined);
        this.emitRestored();
      },
      {
        baseMs: 200,
        maxMs: 5000,
        random: this.reg.random,
        onRetry: (e) =>
          this.logger.warn(
            { service: this.service, id: this.id, err: (e as Error).message },
            'etcd: restoring a lost registration failed; retrying',
          ),
      },
    );
  }

  protected async write(spec: CheckedSpec): Promise<void> {
    this.latest = spec;
    const lease = this.keeper?.leaseId;
    // While lost, the restore loop writes `latest` under its new lease.
    if (!lease) return;
    await this.reg.client.put(this.key, encodeInstance(this.reg.format, spec), lease);
  }

  protected async remove(): Promise<void> {
    this.gone = true;
    const lease = this.keeper?.leaseId;
    this.keeper?.stop();
    this.keeper = undefined;
    await this.reg.client.delete(this.key);
    if (lease) await this.reg.client.revoke(lease);
  }
}

class EtcdRegistrar extends RegistrarBase<EtcdRegistration> {
  constructor(
    readonly client: EtcdClient,
    readonly prefix: string,
    readonly format: KeyFormat,
    readonly ttlSec: number,
    readonly logger: Logger,
    readonly random: () => number,
  ) {
    super('etcd');
  }
  protected async create(spec: CheckedSpec): Promise<EtcdRegistration> {
    const r = new EtcdRegistration(spec, this);
    await r.establish();
    return r;
  }
}

export type { EtcdRegistration, EtcdRegistrar };

/**
 * Resolver and registrar over one etcd client. The resolver holds one watch per service
 * (`<prefix>/<service>/`) shared by all its watchers; the registrar gives each instance its own
 * lease. close() releases the client after both are closed.
 */
export function createEtcdRegistry(opts: EtcdRegistryOptions = {}): EtcdRegistry {
  const { logger, random, beforeWatch, ...raw } = opts;
  const o = validateOptions<EtcdOptions>('etcd', etcdOptionsSchema, raw);
  checkEtcdOptions(o);
  return openEtcd(o, { logger: logger ?? silentLogger, random: random ?? Math.random }, beforeWatch);
}

type EtcdRegistry = AdapterInstance & { client: EtcdClient; resolver: WatchResolver; registrar: EtcdRegistrar };

/** Cross-field checks on validated options (the adapter's validate()). */
function checkEtcdOptions(o: EtcdOptions): void {
  if (o.ttl % 1000 !== 0)
    throw new ConfigError(
      `etcd: "ttl" must be a whole number of seconds (etcd leases have 1 s granularity), got ${o.ttl} ms`,
      { field: 'ttl' },
    );
  if (o.password !== undefined && o['password-file'] !== undefined)
    throw new ConfigError('etcd: give "password" or "password-file", not both', { field: 'password-file' });
  if ((o.password !== undefined || o['password-file'] !== undefined) && !o.username)
    throw new ConfigError('etcd: a password needs a "username"', { field: 'username' });
  if (!!o.cert !== !!o.key)
    throw new ConfigError(
      `etcd: "${o.cert ? 'key' : 'cert'}" is required with "${o.cert ? 'cert' : 'key'}" (client certificate and key go together)`,
      { field: o.cert ? 'key' : 'cert' },
    );
  etcdHosts(o.hosts);
}

/** The registry over validated, defaulted options. */
function openEtcd(
  o: EtcdOptions,
  ctx: Pick<AdapterContext, 'logger' | 'random'>,
  beforeWatch?: EtcdRegistryOptions['beforeWatch'],
): EtcdRegistry {
  const { logger, random } = ctx;
  const hosts = etcdHosts(o.hosts).map(formatHost);
  const password =
    o['password-file'] !== undefined ? readSecretFile('etcd', 'password-file', o['password-file']) : o.password;
  const useTls = o.tls || !!o.ca || !!o.cert;
  const tls = useTls
    ? {
        ca: o.ca ? readFileOption('etcd', 'ca', o.ca) : undefined,
        cert: o.cert ? readFileOption('etcd', 'cert', o.cert) : undefined,
        key: o.key ? readFileOption('etcd', 'key', o.key) : undefined,
      }
    : undefined;
  const client = new EtcdClient({
    hosts,
    tls,
    auth: o.username ? { username: o.username, password: password ?? '' } : undefined,
    requestTimeoutMs: o['request-timeout'],
  });
  const prefix = o.prefix;
  const watchOptions = {
    format: o.format,
    progressIntervalMs: o['progress-interval'],
    requestTimeoutMs: o['request-timeout'],
    // Confirming a new watch includes connecting, hence the larger of the two bounds.
    createTimeoutMs: Math.max(o['request-timeout'], o['dial-timeout']),
    logger,
    random,
    beforeWatch,
  };
  const resolver = new WatchResolver(
    'etcd',
    (service, sink) => {
      const w = new ServiceWatch(client, servicePrefix(prefix, service), sink, watchOptions);
      return () => w.stop();
    },
    { logger },
  );
  const registrar = new EtcdRegistrar(client, prefix, o.format, Math.ceil(o.ttl / 1000), logger, random);
  return {
    client,
    resolver,
    registrar,
    listServices: () => client.listChildren(prefixDir(prefix)),
    watchAll: (sink) => {
      const w = new RegistryWatch(client, prefixDir(prefix), sink, watchOptions);
      return () => w.stop();
    },
    async close() {
      await Promise.allSettled([registrar.close(), resolver.close()]);
      client.close();
    },
  };
}

export const etcdAdapter = defineAdapter<EtcdOptions>({
  scheme: 'etcd',
  description:
    'etcd v3: watch-based resolver, lease-based registrar; wayfinder or grpc-go key layout. etcd://h1:2379,h2:2379?prefix=/services',
  capabilities: etcdCapabilities,
  options: etcdOptionsSchema,
  validate: checkEtcdOptions,
  create(options, ctx) {
    return openEtcd(options, ctx);
  },
});

/** Registers the etcd:// scheme. Idempotent. */
export function setup(): void {
  registerAdapter(etcdAdapter);
}
setup();
