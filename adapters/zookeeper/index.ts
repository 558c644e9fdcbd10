import * as zookeeper from 'node-zookeeper-client';
import {
  ClosedError,
  ConfigError,
  RegistrarBase,
  RegistrationBase,
  RegistrationLostError,
  RegistryUnavailableError,
  WatchResolver,
  collectEndpoints,
  defineAdapter,
  registerAdapter,
  silentLogger,
  validateOptions,
  type AdapterContext,
  type AdapterInstance,
  type BadEntry,
  type Capabilities,
  type CheckedSpec,
  type Endpoint,
  type Logger,
  type SourceSink,
  type WayfinderError,
} from '../../core';
import { formatHost, parseHostList, readSecretFile, retry, type HostAddress } from '../../core/kit';
import { ZkSession, digestId, sessionHex, toZkError, zkCode, type ZkAuth } from './client';
import { decode, encode, type CuratorPayload, type Decoded, type ZkFormat } from './format';
import { ZkPassLoop } from './pass-loop';
// watch-all.ts uses this module's helpers only inside its methods, so this cycle is safe.
import { ZkRegistryWatch } from './watch-all';

export { ZkSession } from './client';
export type { CuratorPayload, ZkFormat } from './format';

const ZK = zookeeper.Exception;

export type ZkAclMode = 'open' | 'world-read' | 'creator-only';

export interface ZooKeeperOptions {
  /** host[:port] list (port default 2181). */
  hosts: string[];
  /** Base path; services live at `<path>/<service>/<instance id>`. Default "/services". */
  path: string;
  /** Node layout: "wayfinder" (default) or "curator" (Apache Curator x-discovery). */
  format: ZkFormat;
  /** Payload of Curator registrations (format=curator): "map" (default), "none" or "spring-cloud". */
  'curator-payload'?: CuratorPayload;
  /** Session timeout requested from the server (ms; the server may clamp it). Default 15 s. */
  sessionTimeout: number;
  /** Bound for one ZooKeeper operation, connection wait included (ms). Default 10 s. */
  timeout: number;
  /** Digest identity. */
  username?: string;
  password?: string;
  'password-file'?: string;
  /** ACL of registered nodes; default "world-read" with credentials, "open" without. */
  acl?: ZkAclMode;
}

/** ZooKeeper servers, port 2181 when omitted. */
function zkHosts(hosts: readonly string[]): HostAddress[] {
  return parseHostList('zk', hosts, { defaultPort: 2181 });
}

const options = {
  hosts: {
    type: 'list',
    required: true,
    doc: 'ZooKeeper servers, host[:port] (port default 2181); in a URL, the authority: zk://h1:2181,h2:2181/services.',
    check: (v: string[]) => {
      try {
        zkHosts(v);
        return undefined;
      } catch (e) {
        return (e as Error).message.replace(/^zk: "hosts" /, '');
      }
    },
  },
  path: {
    type: 'string',
    default: '/services',
    doc: 'Base path: services live at <path>/<service>/<instance id>. In a URL, the path: zk://host:2181/services.',
    check: (v: string) => {
      if (!v.startsWith('/')) return 'must start with "/"';
      if (v.length > 1 && v.endsWith('/')) return 'must not end with "/"';
      if (
        v
          .split('/')
          .slice(1)
          .some((s) => s === '' || s === '.' || s === '..')
      )
        return 'must not hold empty, "." or ".." segments';
      if (v === '/zookeeper' || v.startsWith('/zookeeper/'))
        return 'must not be under /zookeeper (reserved by ZooKeeper)';
      // Control characters are exactly what this rejects (ZooKeeper paths must not hold them).
      // eslint-disable-next-line no-control-regex
      if (/[\u0000-\u001f\u007f]/.test(v)) return 'must not hold control characters';
      return undefined;
    },
  },
  format: {
    type: 'enum',
    values: ['wayfinder', 'curator'],
    default: 'wayfinder',
    doc: 'Node layout: "wayfinder" (our JSON) or "curator" (Apache Curator x-discovery ServiceInstance JSON, interoperable with Java services).',
  },
  'curator-payload': {
    type: 'enum',
    values: ['map', 'none', 'spring-cloud'],
    doc: 'With format=curator, the payload registrations carry, to match the Java readers\' payload type: "map" (default; ServiceInstance<Map>), "none" (null; any type, Void included; weight, zone and metadata not written), "spring-cloud" (Spring Cloud Zookeeper\'s ZookeeperInstance).',
  },
  sessionTimeout: {
    type: 'duration',
    default: 15_000,
    min: 500,
    max: 600_000,
    doc: 'Session timeout asked of the server (it clamps it to its min/maxSessionTimeout): how long a dead registrant stays listed.',
  },
  timeout: {
    type: 'duration',
    default: 10_000,
    min: 100,
    max: 300_000,
    doc: 'Bound for one ZooKeeper operation, waiting for a connection included.',
  },
  username: {
    type: 'string',
    doc: 'Digest identity for reads and writes (with "password" or "password-file").',
    check: (v: string) => (v && !v.includes(':') ? undefined : 'must be non-empty and hold no ":"'),
  },
  password: { type: 'string', secret: true, doc: 'Password of the digest identity. Never logged.' },
  'password-file': {
    type: 'string',
    doc: 'File holding the password (trailing newline ignored); read when the registry is created.',
  },
  acl: {
    type: 'enum',
    values: ['open', 'world-read', 'creator-only'],
    doc: 'ACL of registered nodes: "open" (anyone may change them), "world-read" (anyone reads, only this identity writes; default with credentials), "creator-only" (only this identity reads or writes).',
  },
} as const;

export const zookeeperCapabilities: Capabilities = {
  watch: 'push',
  register: true,
  ttl: true,
  weights: true,
  zones: true,
  metadata: true,
  listServices: true,
  registryWatch: true,
};

function validate(o: ZooKeeperOptions): void {
  if (o['curator-payload'] !== undefined && o.format !== 'curator')
    throw new ConfigError('zk: "curator-payload" applies to format=curator only', { field: 'curator-payload' });
  if (o.password !== undefined && o['password-file'] !== undefined)
    throw new ConfigError('zk: give "password" or "password-file", not both', { field: 'password-file' });
  const hasSecret = o.password !== undefined || o['password-file'] !== undefined;
  if (hasSecret && !o.username)
    throw new ConfigError('zk: "username" is required with a password (digest authentication is user:password)', {
      field: 'username',
    });
  if (o.username && !hasSecret)
    throw new ConfigError('zk: "username" needs "password" or "password-file"', { field: 'password' });
  if (o.acl && o.acl !== 'open' && !o.username)
    throw new ConfigError(
      `zk: "acl" "${o.acl}" needs a digest identity: set "username" and "password" (or "password-file")`,
      { field: 'acl' },
    );
}

function readAuth(o: ZooKeeperOptions): ZkAuth | undefined {
  if (!o.username) return undefined;
  let password = o.password;
  if (password === undefined && o['password-file'] !== undefined)
    password = readSecretFile('zk', 'password-file', o['password-file']);
  return { username: o.username, password: password ?? '' };
}

const WORLD = new zookeeper.Id('world', 'anyone');
const P = zookeeper.Permission;

/** ACLs for instance nodes, service nodes and the base path's ancestors, per mode. */
function aclsFor(
  mode: ZkAclMode,
  auth?: ZkAuth,
): { node: zookeeper.ACL[]; service: zookeeper.ACL[]; ancestors: zookeeper.ACL[] } {
  if (mode === 'open' || !auth) {
    const open = [new zookeeper.ACL(P.ALL, WORLD)];
    return { node: open, service: open, ancestors: open };
  }
  const me = new zookeeper.Id('digest', digestId(auth.username, auth.password));
  const mine = new zookeeper.ACL(P.ALL, me);
  // Anyone may add a service under the base path; a service's node belongs to the identity that
  // created it, so only that identity registers (or removes) its instances.
  const ancestors = [mine, new zookeeper.ACL(P.READ | P.CREATE, WORLD)];
  if (mode === 'creator-only') return { node: [mine], service: [mine], ancestors };
  return {
    node: [mine, new zookeeper.ACL(P.READ, WORLD)],
    service: [mine, new zookeeper.ACL(P.READ, WORLD)],
    ancestors,
  };
}

export const joinPath = (base: string, ...parts: string[]) =>
  (base === '/' ? '' : base) + parts.map((p) => `/${p}`).join('');

/** At most this many node reads in flight per service (keeps one reread of a huge parent bounded). */
export const READ_CONCURRENCY = 256;

export interface NodeState {
  decoded: Decoded;
  mzxid: bigint;
}

export const zxid = (b: Buffer | undefined): bigint => (b && b.length === 8 ? Buffer.from(b).readBigUInt64BE(0) : 0n);

/** A service's set from its read nodes (per-service and registry-wide watches alike). */
export function assembleNodes(
  path: string,
  nodes: ReadonlyMap<string, NodeState>,
  pzxid: bigint,
): { endpoints: Endpoint[]; bad: BadEntry[]; revision: string } {
  const entries: { key: string; value: unknown }[] = [];
  const bad: BadEntry[] = [];
  let rev = pzxid;
  for (const [name, st] of nodes) {
    const key = joinPath(path, name);
    if (st.mzxid > rev) rev = st.mzxid;
    if (st.decoded.ok) entries.push({ key, value: st.decoded.value });
    else bad.push({ key, reason: st.decoded.reason });
  }
  const c = collectEndpoints(entries);
  return { endpoints: c.endpoints, bad: [...bad, ...c.bad], revision: rev.toString() };
}

/** One node read: decoded, or the reason it is bad; undefined when it is gone. */
export async function readNode(
  session: ZkSession,
  format: ZkFormat,
  path: string,
  name: string,
): Promise<NodeState | undefined> {
  try {
    const { data, stat } = await session.getData(joinPath(path, name));
    return { decoded: decode(format, name, data), mzxid: zxid(stat?.mzxid) };
  } catch (e) {
    const code = zkCode(e);
    if (code === ZK.NO_NODE) return undefined;
    if (code === ZK.NO_AUTH)
      return { decoded: { ok: false, reason: 'not readable with this identity (NO_AUTH)' }, mzxid: 0n };
    throw e;
  }
}

/**
 * One service's watch loop. ZooKeeper watches are one-shot: every read re-arms its watch, the list
 * is re-read after each child event and everything is re-read after every reconnect (so a change
 * made while disconnected is never missed), and a new session (after expiry) re-arms from scratch.
 * Reads are serialised by the ZkPassLoop base: events only mark work as dirty and kick it. What is kept
 * per child (its state, its watcher) goes with the child, so churn does not grow it.
 * @internal exported for the bookkeeping test only
 */
export class ServiceWatch extends ZkPassLoop {
  private readonly nodes = new Map<string, NodeState>();
  private readonly dataWatchers = new Map<string, (e: zookeeper.Event) => void>();
  private dirtyList = true;
  private rereadAll = true;
  private readonly dirtyData = new Set<string>();
  private pzxid = 0n;
  private readonly path: string;

  constructor(
    session: ZkSession,
    base: string,
    service: string,
    private readonly format: ZkFormat,
    private readonly sink: SourceSink,
    random: () => number,
  ) {
    super(session, {
      random,
      report: (e) => sink.error(e),
      disconnected: `zk: lost the connection to ZooKeeper; keeping the last known endpoints of "${service}"`,
      expired: `zk: the ZooKeeper session expired; re-watching "${service}" on a new session`,
    });
    this.path = joinPath(base, service);
  }

  private readonly listWatcher = () => {
    if (this.stopped) return;
    this.dirtyList = true;
    this.kick();
  };
  private dataWatcher(name: string): (e: zookeeper.Event) => void {
    let w = this.dataWatchers.get(name);
    if (!w) {
      w = (e: zookeeper.Event) => {
        if (this.stopped) return;
        if (e.getType() === zookeeper.Event.NODE_DATA_CHANGED) this.dirtyData.add(name);
        else this.dirtyList = true;
        this.kick();
      };
      this.dataWatchers.set(name, w);
    }
    return w;
  }

  protected invalidate(): void {
    this.dirtyList = true;
    this.rereadAll = true;
  }

  protected failure(err: unknown): WayfinderError {
    return toZkError(err, `watching ${this.path}`);
  }

  /** @internal What is kept per child node (for the bookkeeping test). */
  tracked(): { nodes: number; dataWatchers: number } {
    return { nodes: this.nodes.size, dataWatchers: this.dataWatchers.size };
  }

  /** A child is gone: drop its state and its watcher (a late event from it only marks work dirty). */
  private forget(name: string): void {
    this.nodes.delete(name);
    this.dataWatchers.delete(name);
  }

  protected get dirty(): boolean {
    return this.dirtyList || this.dirtyData.size > 0;
  }

  protected async pass(): Promise<void> {
    if (this.dirtyList) {
      this.dirtyList = false;
      let children: string[];
      try {
        const r = await this.session.getChildren(this.path, this.listWatcher);
        children = r.children;
        this.pzxid = zxid(r.stat?.pzxid);
      } catch (e) {
        if (zkCode(e) !== ZK.NO_NODE) throw e;
        // No service node: the registry really says "no instances". Watch for its creation.
        const st = await this.session.exists(this.path, this.listWatcher);
        if (st) this.dirtyList = true;
        else {
          this.nodes.clear();
          this.dataWatchers.clear();
          this.dirtyData.clear();
          this.rereadAll = false;
          this.publish();
        }
        return;
      }
      const present = new Set(children);
      for (const name of new Set([...this.nodes.keys(), ...this.dataWatchers.keys()]))
        if (!present.has(name)) this.forget(name);
      for (const name of [...this.dirtyData]) if (!present.has(name)) this.dirtyData.delete(name);
      for (const name of children) if (this.rereadAll || !this.nodes.has(name)) this.dirtyData.add(name);
      this.rereadAll = false;
    }
    if (this.dirtyData.size > 0) {
      const queue = [...this.dirtyData];
      this.dirtyData.clear();
      let failure: unknown;
      const worker = async () => {
        for (let name = queue.pop(); name !== undefined && failure === undefined && !this.stopped; name = queue.pop()) {
          try {
            const { data, stat } = await this.session.getData(joinPath(this.path, name), this.dataWatcher(name));
            this.nodes.set(name, { decoded: decode(this.format, name, data), mzxid: zxid(stat?.mzxid) });
          } catch (e) {
            const code = zkCode(e);
            if (code === ZK.NO_NODE) this.forget(name);
            else if (code === ZK.NO_AUTH)
              this.nodes.set(name, {
                decoded: { ok: false, reason: 'not readable with this identity (NO_AUTH)' },
                mzxid: 0n,
              });
            else failure ??= e;
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, queue.length) }, worker));
      if (failure !== undefined) throw failure;
    }
    // A set is published only once its list and every new node in it have been read.
    if (!this.dirtyList) this.publish();
  }

  private publish(): void {
    if (this.stopped) return;
    const v = assembleNodes(this.path, this.nodes, this.pzxid);
    this.sink.update(v.endpoints, { revision: v.revision, bad: v.bad });
  }
}

type NodeCheck = 'created' | 'adopted' | 'blocked';

class ZkRegistration extends RegistrationBase {
  readonly path: string;
  private readonly registeredAt = Date.now();
  private recovering = false;
  private stopped = false;
  /** Resolves the wait for a foreign node at our path to go away. */
  private wakeBlocked?: () => void;

  constructor(
    spec: CheckedSpec,
    private readonly registrar: ZkRegistrar,
    logger: Logger,
  ) {
    super(spec, logger);
    this.path = joinPath(registrar.base, spec.service, spec.id);
  }

  private get session(): ZkSession {
    return this.registrar.session;
  }

  /** Creates the node, settling NodeExists by the node's ephemeralOwner (docs/adapters/zookeeper.md, Registrar). */
  async createNode(initial: boolean): Promise<NodeCheck> {
    const data = encode(this.registrar.format, this.spec, this.registeredAt, this.registrar.curatorPayload);
    const acl = this.registrar.acls;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await this.session.create(this.path, data, acl.node, zookeeper.CreateMode.EPHEMERAL);
        return 'created';
      } catch (e) {
        const code = zkCode(e);
        if (code === ZK.NO_NODE) {
          await this.registrar.ensureServiceNode(this.spec.service);
          continue;
        }
        if (code !== ZK.NODE_EXISTS) throw e;
      }
      const stat = await this.session.exists(this.path);
      if (!stat) continue;
      const owner = sessionHex(stat.ephemeralOwner);
      const me = this.session.sessionId;
      if (owner === me) {
        // Ours: an earlier create reached the server but its answer was lost. Make it current.
        await this.session.setData(this.path, data, stat.version);
        return 'adopted';
      }
      const dead = this.session.deadSessions.has(owner);
      if (!dead && !initial) return 'blocked';
      if (!dead)
        this.logger.warn(
          { path: this.path, owner },
          'zk: replacing a node with the same instance id left by another session (a restarted instance?)',
        );
      try {
        await this.session.remove(this.path, stat.version);
      } catch (e) {
        const code = zkCode(e);
        if (code !== ZK.NO_NODE && code !== ZK.BAD_VERSION) throw e;
      }
    }
    throw new RegistryUnavailableError(`zk: could not create ${this.path}: it kept changing under us`);
  }

  /** Called once the initial create succeeded: from now on the session's fate is ours. */
  attach(): void {
    this.session.on('expired', this.onExpired);
    this.session.on('suspect', this.onSuspect);
    this.session.on('connected', this.onConnected);
  }
  private detach(): void {
    this.session.off('expired', this.onExpired);
    this.session.off('suspect', this.onSuspect);
    this.session.off('connected', this.onConnected);
  }

  private readonly onExpired = () => {
    this.emitLost(
      new RegistrationLostError(
        `zk: the session expired; ZooKeeper removed ${this.path}; re-creating it on a new session`,
      ),
    );
  };
  private readonly onSuspect = () => {
    this.emitLost(
      new RegistrationLostError(
        `zk: disconnected from ZooKeeper for longer than the session timeout; ${this.path} is presumed gone`,
      ),
    );
  };
  private readonly onConnected = ({ newSession }: { newSession: boolean }) => {
    if (newSession || this.isLost) void this.recover();
  };

  /** Re-creates the node on the current session until it is ours again (or we are stopped). */
  private async recover(): Promise<void> {
    if (this.recovering || this.stopped) return;
    this.recovering = true;
    const gone = () => this.stopped || this.session.isClosed;
    try {
      while (!gone()) {
        let r: NodeCheck;
        try {
          r = await retry(
            async () => {
              if (gone()) throw new ClosedError('zk: registration closed');
              return await this.createNode(false);
            },
            {
              baseMs: 100,
              maxMs: 5000,
              random: this.registrar.random,
              retryable: () => !gone(),
              onRetry: (e) => {
                const err = toZkError(e, `re-creating ${this.path}`);
                this.logger.warn({ path: this.path, code: err.code }, err.message);
              },
            },
          );
        } catch {
          return; // stopped or the session closed
        }
        if (r === 'blocked') {
          this.emitLost(
            new RegistrationLostError(`zk: ${this.path} is held by another live session; waiting for it to go`),
          );
          this.logger.warn(
            { path: this.path },
            'zk: our instance id is held by another live session; waiting for that node to go',
          );
          await this.waitGone();
          continue;
        }
        this.emitRestored();
        return;
      }
    } finally {
      this.recovering = false;
    }
  }

  /** Waits until the node at our path is deleted (an exists-watch) or the session changes. */
  private async waitGone(): Promise<void> {
    await new Promise<void>((resolve) => {
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        this.session.off('connected', finish);
        this.session.off('closed', finish);
        this.wakeBlocked = undefined;
        resolve();
      };
      this.wakeBlocked = finish;
      this.session.on('connected', finish);
      this.session.on('closed', finish);
      this.session
        .exists(this.path, () => finish())
        .then((st) => {
          if (!st) finish();
        }, finish);
    });
  }

  protected async write(spec: CheckedSpec): Promise<void> {
    if (this.isLost) return; // recovery writes the current spec (update() stores it after we return)
    const data = encode(this.registrar.format, spec, this.registeredAt, this.registrar.curatorPayload);
    try {
      await this.session.setData(this.path, data);
    } catch (e) {
      throw toZkError(e, `updating ${this.path}`);
    }
  }

  protected async remove(): Promise<void> {
    this.stopped = true;
    this.detach();
    this.wakeBlocked?.();
    if (this.session.isClosed) return; // the session is gone, and its ephemeral node with it
    try {
      const stat = await this.session.exists(this.path);
      // Only our own node: after a loss the path may hold another session's registration.
      if (stat && sessionHex(stat.ephemeralOwner) === this.session.sessionId)
        await this.session.remove(this.path, stat.version);
    } catch (e) {
      if (zkCode(e) === ZK.NO_NODE || e instanceof ClosedError) return;
      throw toZkError(e, `deleting ${this.path}`);
    }
  }
}

class ZkRegistrar extends RegistrarBase<ZkRegistration> {
  readonly acls: ReturnType<typeof aclsFor>;

  constructor(
    readonly session: ZkSession,
    readonly base: string,
    readonly format: ZkFormat,
    readonly curatorPayload: CuratorPayload,
    aclMode: ZkAclMode,
    auth: ZkAuth | undefined,
    private readonly logger: Logger,
    readonly random: () => number,
    private readonly release: () => Promise<void>,
  ) {
    super('zk');
    this.acls = aclsFor(aclMode, auth);
  }

  /**
   * Creates the base path's missing ancestors and the service node (persistent; left in place).
   * Called when a create meets NO_NODE, so also after someone removed an empty service node.
   */
  async ensureServiceNode(service: string): Promise<void> {
    if (this.base !== '/') await this.session.ensurePath(this.base, this.acls.ancestors);
    try {
      await this.session.create(joinPath(this.base, service), null, this.acls.service, zookeeper.CreateMode.PERSISTENT);
    } catch (e) {
      if (zkCode(e) !== ZK.NODE_EXISTS) throw e;
    }
  }

  protected async create(spec: CheckedSpec): Promise<ZkRegistration> {
    const reg = new ZkRegistration(spec, this, this.logger);
    try {
      await reg.createNode(true);
    } catch (e) {
      throw toZkError(e, `registering ${reg.path}`);
    }
    reg.attach();
    return reg;
  }

  protected override async onClose(): Promise<void> {
    await this.release();
  }
}

export interface ZooKeeperRegistry extends AdapterInstance {
  resolver: WatchResolver;
  registrar: RegistrarBase;
  session: ZkSession;
  close(): Promise<void>;
}

/**
 * Resolver and registrar over one ZooKeeper session (connected lazily, on first use). The session
 * is closed when both are closed, or by close().
 */
export function createZooKeeperRegistry(
  opts: Partial<ZooKeeperOptions> & { hosts: string[] },
  logger: Logger = silentLogger,
  random: () => number = Math.random,
): ZooKeeperRegistry {
  const o = validateOptions<ZooKeeperOptions>('zk', options, opts);
  validate(o);
  return openZooKeeper(o, { logger, random });
}

/** The registry over validated, defaulted options. */
function openZooKeeper(o: ZooKeeperOptions, ctx: Pick<AdapterContext, 'logger' | 'random'>): ZooKeeperRegistry {
  const { logger, random } = ctx;
  const auth = readAuth(o);
  const hosts = zkHosts(o.hosts).map(formatHost);
  const session = new ZkSession({
    hosts,
    sessionTimeoutMs: o.sessionTimeout,
    opTimeoutMs: o.timeout,
    auth,
    logger,
    name: 'zk',
  });
  let users = 2;
  const release = async () => {
    if (--users === 0) await session.close();
  };
  const base = o.path;
  const resolver = new WatchResolver(
    'zk',
    (service, sink) => {
      const w = new ServiceWatch(session, base, service, o.format, sink, random);
      w.start();
      return () => w.stop();
    },
    { logger, onClose: release },
  );
  const registrar = new ZkRegistrar(
    session,
    base,
    o.format,
    o['curator-payload'] ?? 'map',
    o.acl ?? (auth ? 'world-read' : 'open'),
    auth,
    logger,
    random,
    release,
  );
  return {
    resolver,
    registrar,
    session,
    watchAll: (sink) => {
      const w = new ZkRegistryWatch(session, base, o.format, sink, logger, random);
      w.start();
      return () => w.stop();
    },
    async listServices() {
      try {
        const { children } = await session.getChildren(base);
        return children.sort();
      } catch (e) {
        if (zkCode(e) === ZK.NO_NODE) return [];
        throw toZkError(e, `listing ${base}`);
      }
    },
    async close() {
      await Promise.allSettled([registrar.close(), resolver.close()]);
      await session.close();
    },
  };
}

export const zookeeperAdapter = defineAdapter<ZooKeeperOptions>({
  scheme: 'zk',
  aliases: ['zookeeper'],
  description:
    'Apache ZooKeeper: ephemeral nodes per instance, watches, digest ACLs; Curator x-discovery compatible. zk://h1:2181,h2:2181/services?format=curator',
  examples: [
    'zk://127.0.0.1:2181/services',
    'zk://zk1:2181,zk2:2181,zk3:2181/services?format=curator',
    'zookeeper://alice@zk1:2181/services?password-file=/run/secrets/zk',
  ],
  capabilities: zookeeperCapabilities,
  options,
  validate,
  create(opts, ctx) {
    return openZooKeeper(opts, ctx);
  },
});

/** Registers the zk:// and zookeeper:// schemes. Idempotent. */
export function setup(): void {
  registerAdapter(zookeeperAdapter);
}
setup();
