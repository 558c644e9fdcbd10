/*
 * VENDOR INTERNALS FENCE (node-zookeeper-client, pinned ~1.1.x in package.json). Every place this
 * file reaches past its public API, all through connectionManager() and VendorConnectionManager;
 * check each when upgrading:
 *  1. hardClose(): `client.connectionManager` (private): sets `state`, replaces `connect`,
 *     `onSocketClosed`, `onSocketData`, `onSocketConnected`, `onPacketQueueReadable`, clears
 *     `connectTimeoutHandler`, destroys `socket`, drains `pendingQueue` / `packetQueue` and fails
 *     their callbacks with `Exception.create(CONNECTION_LOSS)` (not in the typings).
 *  2. installWatchdog(): wraps `onSocketData` / `onSocketConnected` before connect(), reads
 *     `state` (CM_CONNECTING / CM_CONNECTED) and `socket` to destroy a silent connection.
 *  3. The ConnectionManager state numbers CM_CLOSED / CM_CONNECTING / CM_CONNECTED.
 *  4. The watchdog's stall timer destroys `socket` to move a silent session to another server.
 *  5. addWatch() (ZooKeeper >= 3.6 persistent recursive watches; the vendor has no call for it):
 *     builds `jute.Request` from `node-zookeeper-client/lib/jute` (a deep require): a
 *     `protocol.RequestHeader` whose own serialize() writes opcode 106 (addWatch) while its `type`
 *     reads SET_WATCHES (101), so the vendor's reply switch in ConnectionManager.onSocketData takes
 *     the body-less answer instead of dropping the socket; the payload is a
 *     `protocol.CheckVersionRequest` (ustring path + int: the wire layout of ZooKeeper's
 *     AddWatchRequest {path, mode}); sent with `connectionManager.queue(request, callback)`.
 *  6. installEventTap(): wraps `connectionManager.watcherManager.emit(watcherEvent)` to see every
 *     notification ({type, path}; a persistent watch's events match no one-shot watcher there)
 *     and drops event types the vendor would throw on (PersistentWatchRemoved, 7).
 * Three `as unknown as` remain, each commented: connectionManager(), Exception.create, and the jute module.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as zookeeper from 'node-zookeeper-client';
import {
  AuthFailedError,
  ClosedError,
  RegistryUnavailableError,
  WayfinderError,
  silentLogger,
  type Logger,
} from '../../core';

/**
 * A thin wrapper over node-zookeeper-client: one logical session that survives expiry (a new
 * client is created and re-authenticated), promise-returning operations bounded by a timeout (the
 * vendor client queues requests forever while disconnected), and errors mapped to Wayfinder's.
 *
 * Events (all emitted asynchronously from the vendor client's socket callbacks):
 * - 'connected' (info: { newSession: boolean }): connected; newSession is true for the first
 *   connection and after an expiry, when every watch and ephemeral node of the old session is gone.
 * - 'disconnected': the connection dropped; the session may still be alive on the server.
 * - 'suspect': still disconnected after a whole session timeout; the server has expired the
 *   session by now unless it was down itself (this is what Curator calls LOST).
 * - 'expired' (deadSessionId: string): the server said the session expired. A new client is being
 *   created; 'connected' with newSession follows when it is up.
 */

const ZK = zookeeper.Exception;

export interface ZkAuth {
  username: string;
  password: string;
}

export interface ZkSessionOptions {
  /** host:port list. */
  hosts: string[];
  sessionTimeoutMs: number;
  /** Bound for one operation, waiting for a connection included. */
  opTimeoutMs: number;
  auth?: ZkAuth;
  logger?: Logger;
  /** A name for log lines and errors. */
  name?: string;
}

/** A ZooKeeper error code (node-zookeeper-client's Exception), or undefined for anything else. */
export function zkCode(err: unknown): number | undefined {
  return err &&
    typeof err === 'object' &&
    typeof (err as { code?: unknown }).code === 'number' &&
    typeof (err as { getName?: unknown }).getName === 'function'
    ? (err as { code: number }).code
    : undefined;
}

/** The digest ACL id of a user: `user:base64(sha1(user:password))`, as ZooKeeper computes it. */
export function digestId(username: string, password: string): string {
  return `${username}:${createHash('sha1').update(`${username}:${password}`).digest('base64')}`;
}

/** A session id (8 bytes) as 16 hex digits: the form ephemeralOwner is compared in. */
export function sessionHex(b: Buffer | undefined): string {
  return b ? Buffer.from(b).toString('hex').padStart(16, '0') : '0000000000000000';
}

/** The parts of node-zookeeper-client 1.x's (private) ConnectionManager this file uses; see the fence above. */
interface VendorPacket {
  callback?: (e: unknown) => void;
}
interface VendorWatcherEvent {
  type: number;
  path: string;
}
interface VendorRecord {
  [field: string]: unknown;
  serialize(buffer: Buffer, offset: number): number;
}
interface VendorJute {
  protocol: { RequestHeader: new () => VendorRecord; CheckVersionRequest: new () => VendorRecord };
  Request: new (header: VendorRecord, payload: VendorRecord) => unknown;
}
interface VendorConnectionManager {
  queue(request: unknown, callback: (err: unknown) => void): void;
  watcherManager?: { emit(e: VendorWatcherEvent): void };
  state: number;
  connect(): void;
  onSocketClosed(...args: unknown[]): void;
  onSocketData(b: Buffer): unknown;
  onSocketConnected(): unknown;
  onPacketQueueReadable(): void;
  connectTimeoutHandler?: NodeJS.Timeout;
  socket?: { setTimeout?(ms: number): void; destroy(): void; connecting?: boolean; destroyed?: boolean };
  pendingQueue?: VendorPacket[];
  packetQueue?: VendorPacket[];
}
function connectionManager(client: zookeeper.Client): Partial<VendorConnectionManager> | undefined {
  // Fence: connectionManager is private in the typings; this is the one cast for it.
  return (client as unknown as { connectionManager?: Partial<VendorConnectionManager> }).connectionManager;
}

/** ZooKeeper's addWatch opcode (3.6+), and the body-less opcode the vendor is told it is (fence item 5). */
const OP_ADD_WATCH = 106;
const OP_SET_WATCHES = 101;
/** AddWatchMode.PERSISTENT_RECURSIVE. */
export const PERSISTENT_RECURSIVE = 1;
let juteModule: VendorJute | undefined;
function jute(): VendorJute {
  // Fence item 5: the vendor's jute module is internal (no typings); the one cast for it.
  juteModule ??= require('node-zookeeper-client/lib/jute') as unknown as VendorJute;
  return juteModule;
}

const CM_CLOSED = -2;
const CM_CONNECTING = 1;
const CM_CONNECTED = 2;

/**
 * Stops a vendor client dead, as if its process had died: no closeSession is sent (so the session
 * and its ephemeral nodes live on until the server expires them) and it never reconnects.
 * Callbacks still pending fail with CONNECTION_LOSS. Relies on node-zookeeper-client 1.x internals
 * (ConnectionManager); the test that kills a registrant exercises it. Used by ZkSession (expiry,
 * close, kill); tests import it from testkit/zookeeper-faults.ts, not from here.
 * @internal
 */
export function hardClose(client: zookeeper.Client): void {
  const cm = connectionManager(client);
  if (!cm) return;
  cm.state = CM_CLOSED;
  const noop = () => {};
  // A reconnect may already be scheduled (spin delay); make whatever socket it opens die at once.
  cm.connect = noop;
  cm.onSocketClosed = noop;
  cm.onSocketData = noop;
  cm.onSocketConnected = function (this: { socket?: { destroy(): void } }) {
    this.socket?.destroy();
  };
  cm.onPacketQueueReadable = noop;
  if (cm.connectTimeoutHandler) clearTimeout(cm.connectTimeoutHandler);
  try {
    cm.socket?.setTimeout?.(0);
    cm.socket?.destroy();
  } catch {
    /* already gone */
  }
  const fail = (p: VendorPacket | undefined) => {
    try {
      // Fence item 1: Exception.create is not in the typings.
      p?.callback?.((ZK as unknown as { create(code: number): Error }).create(ZK.CONNECTION_LOSS));
    } catch {
      /* a caller's callback threw; nothing to do here */
    }
  };
  for (let p = cm.pendingQueue?.shift(); p; p = cm.pendingQueue?.shift()) fail(p);
  for (let p = cm.packetQueue?.shift(); p; p = cm.packetQueue?.shift()) fail(p);
}

type Cb<T> = (err: unknown, value?: T) => void;

export class ZkSession extends EventEmitter {
  private client?: zookeeper.Client;
  private connected = false;
  private closed = false;
  private generation = 0;
  private lastSessionId?: string;
  private suspectTimer?: NodeJS.Timeout;
  /** Sessions of ours that the server expired: a node they own is safe to replace. */
  readonly deadSessions = new Set<string>();
  private readonly logger: Logger;
  readonly name: string;

  constructor(readonly options: ZkSessionOptions) {
    super();
    this.setMaxListeners(0);
    this.logger = options.logger ?? silentLogger;
    this.name = options.name ?? 'zk';
    // Listeners are added by resolver and registrar; an 'error' event is never emitted.
  }

  get isConnected(): boolean {
    return this.connected;
  }
  get isClosed(): boolean {
    return this.closed;
  }
  /** The current session id (16 hex digits), once connected. */
  get sessionId(): string | undefined {
    return this.connected && this.client ? sessionHex(this.client.getSessionId()) : this.lastSessionId;
  }
  /** The session's id and password: what the testkit needs to expire it from outside. */
  credentials(): { sessionId: Buffer; password: Buffer } {
    if (!this.client) throw new ClosedError(`${this.name} session`);
    return { sessionId: this.client.getSessionId(), password: this.client.getSessionPassword() };
  }
  /** The timeout the server granted (ms); the requested one before the first connection. */
  get sessionTimeoutMs(): number {
    return this.client?.getSessionTimeout() ?? this.options.sessionTimeoutMs;
  }

  /** Starts connecting (idempotent). Operations wait for the connection within their timeout. */
  start(): void {
    if (this.client || this.closed) return;
    this.newClient();
  }

  private newClient(): void {
    const gen = ++this.generation;
    const c = zookeeper.createClient(this.options.hosts.join(','), {
      sessionTimeout: this.options.sessionTimeoutMs,
      spinDelay: 250,
      retries: 0,
    });
    if (this.options.auth)
      c.addAuthInfo('digest', Buffer.from(`${this.options.auth.username}:${this.options.auth.password}`));
    this.client = c;
    this.installWatchdog(c);
    this.installEventTap(c);
    const current = () => gen === this.generation && !this.closed;
    c.on('connected', () => {
      if (!current()) return;
      this.connected = true;
      clearTimeout(this.suspectTimer);
      this.suspectTimer = undefined;
      const id = sessionHex(c.getSessionId());
      const newSession = id !== this.lastSessionId;
      this.lastSessionId = id;
      this.logger.debug({ session: id, newSession }, `${this.name}: connected`);
      this.emit('connected', { newSession });
    });
    c.on('disconnected', () => {
      if (!current() || !this.connected) return;
      this.connected = false;
      this.logger.warn({ session: this.lastSessionId }, `${this.name}: disconnected from ZooKeeper`);
      this.emit('disconnected');
      clearTimeout(this.suspectTimer);
      this.suspectTimer = setTimeout(() => {
        if (current() && !this.connected) this.emit('suspect');
      }, this.sessionTimeoutMs);
      this.suspectTimer.unref();
    });
    c.on('expired', () => {
      if (!current()) return;
      const dead = this.lastSessionId ?? sessionHex(c.getSessionId());
      this.deadSessions.add(dead);
      this.connected = false;
      clearTimeout(this.suspectTimer);
      this.logger.warn({ session: dead }, `${this.name}: session expired; opening a new one`);
      hardClose(c);
      this.newClient();
      this.emit('expired', dead);
    });
    c.connect();
  }

  /**
   * node-zookeeper-client has no handshake or read timeout: a server that accepts the TCP
   * connection but never answers the ConnectRequest (seen while a restarted server is starting)
   * or stops answering once connected leaves it waiting forever. Give up on the socket when the
   * handshake takes longer than a third of the session timeout (1 to 3 s), and after 2/3 of the
   * session timeout without a byte once connected (it pings every 1/3), as the Java client does;
   * the vendor client then reconnects as after any socket close.
   */
  private installWatchdog(c: zookeeper.Client): void {
    const cm = connectionManager(c);
    if (!cm || typeof cm.onSocketData !== 'function' || typeof cm.onSocketConnected !== 'function') return;
    let lastRecv = Date.now();
    let tcpUpAt = 0;
    const origData = cm.onSocketData;
    const origConnected = cm.onSocketConnected;
    // These are bound when each socket is created (connect()), so patching the instance here,
    // before connect(), covers every socket of this client.
    cm.onSocketData = function (this: unknown, b: Buffer) {
      lastRecv = Date.now();
      return origData.call(this, b);
    };
    cm.onSocketConnected = function (this: unknown) {
      tcpUpAt = Date.now();
      lastRecv = tcpUpAt;
      return origConnected.call(this);
    };
    const timeout = this.options.sessionTimeoutMs;
    // A handshake answers in milliseconds; a restarting server may accept the TCP connection and
    // never answer it, so do not wait the Java client's whole connect timeout (session / hosts).
    const connectTimeout = Math.min(
      Math.max(1000, Math.floor(timeout / 3)),
      3000,
      Math.max(1000, Math.floor(timeout / Math.max(1, this.options.hosts.length))),
    );
    const timer = setInterval(
      () => {
        if (this.client !== c || this.closed) return clearInterval(timer);
        const sock = cm.socket;
        if (!sock || sock.destroyed || sock.connecting) return;
        const now = Date.now();
        const negotiated = c.getSessionTimeout() || timeout;
        if (cm.state === CM_CONNECTING && tcpUpAt && now - tcpUpAt > connectTimeout) {
          this.logger.warn({ ms: now - tcpUpAt }, `${this.name}: no answer to the session handshake; reconnecting`);
          tcpUpAt = 0;
          sock.destroy();
        } else if (cm.state === CM_CONNECTED && now - lastRecv > (negotiated * 2) / 3) {
          this.logger.warn(
            { ms: now - lastRecv },
            `${this.name}: nothing heard from ZooKeeper for 2/3 of the session timeout; reconnecting`,
          );
          lastRecv = now;
          sock.destroy();
        }
      },
      Math.max(100, Math.min(1000, Math.floor(timeout / 6))),
    );
    timer.unref();
  }

  /** Resolves when connected; rejects with REGISTRY_UNAVAILABLE after `timeoutMs`. */
  /**
   * Emits 'node-event' (type, path) for every watch notification of the current client: what a
   * persistent watch delivers (fence item 6).
   */
  private installEventTap(c: zookeeper.Client): void {
    const wm = connectionManager(c)?.watcherManager;
    if (!wm || typeof wm.emit !== 'function') return;
    const orig = wm.emit;
    wm.emit = (e: VendorWatcherEvent) => {
      if (this.client === c && !this.closed) this.emit('node-event', e.type, e.path);
      // 1-4: created, deleted, data changed, children changed; the vendor throws on any other.
      if (e.type >= 1 && e.type <= 4) orig.call(wm, e);
    };
  }

  /**
   * addWatch (ZooKeeper >= 3.6): a persistent watch on `path` (mode PERSISTENT_RECURSIVE: every
   * node below it too) whose events arrive as 'node-event'. It lives as long as the connection:
   * re-add it after each 'connected'. A server older than 3.6 answers UNIMPLEMENTED.
   */
  addWatch(path: string, mode = PERSISTENT_RECURSIVE): Promise<void> {
    return this.run(`watching ${path} (addWatch)`, (c, cb) => {
      const cm = connectionManager(c);
      if (typeof cm?.queue !== 'function') throw new Error('node-zookeeper-client internals changed: no queue()');
      const j = jute();
      const header = new j.protocol.RequestHeader();
      header.type = OP_SET_WATCHES;
      header.serialize = function (this: VendorRecord, buf: Buffer, off: number) {
        buf.writeInt32BE(this.xid as number, off);
        buf.writeInt32BE(OP_ADD_WATCH, off + 4);
        return 8;
      };
      const payload = new j.protocol.CheckVersionRequest();
      payload.path = path;
      payload.version = mode;
      cm.queue(new j.Request(header, payload), (err) => cb(err));
    });
  }

  whenConnected(timeoutMs: number): Promise<void> {
    if (this.closed) return Promise.reject(new ClosedError(`${this.name} session`));
    this.start();
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(t);
        this.off('connected', onConnected);
        this.off('closed', onClosed);
        if (err) reject(err);
        else resolve();
      };
      const onConnected = () => done();
      const onClosed = () => done(new ClosedError(`${this.name} session`));
      const t = setTimeout(
        () =>
          done(
            new RegistryUnavailableError(
              `${this.name}: cannot reach ZooKeeper at ${this.options.hosts.join(',')} within ${timeoutMs} ms`,
            ),
          ),
        timeoutMs,
      );
      this.on('connected', onConnected);
      this.on('closed', onClosed);
    });
  }

  /**
   * Runs one vendor call on the current client, after waiting for a connection, bounded by the
   * op timeout. Vendor errors are passed through unchanged (callers test their code with zkCode());
   * a timeout rejects with REGISTRY_UNAVAILABLE. A timed-out request may still reach the server.
   *
   * Failover within the timeout: a call that fails with CONNECTION_LOSS (its server died or was cut
   * off; the vendor client moves the session to another server) is sent again once the session is
   * back, unless `retryOnLoss` is false. With several servers, a call unanswered for half its
   * timeout drops the connection (a live ZooKeeper answers in milliseconds: this one is partitioned
   * or stopped), so the session moves and the call is retried there instead of timing out.
   */
  async run<T>(
    what: string,
    fn: (c: zookeeper.Client, cb: Cb<T>) => void,
    timeoutMs = this.options.opTimeoutMs,
    retryOnLoss = true,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.whenConnected(Math.max(1, deadline - Date.now()));
      try {
        return await this.runOnce(what, fn, deadline, timeoutMs);
      } catch (e) {
        if (!retryOnLoss || zkCode(e) !== ZK.CONNECTION_LOSS || this.closed || Date.now() >= deadline) throw e;
        this.logger.debug({ what }, `${this.name}: connection lost during a call; retrying once the session is back`);
      }
    }
  }

  private runOnce<T>(what: string, fn: (c: zookeeper.Client, cb: Cb<T>) => void, deadline: number, timeoutMs: number) {
    const c = this.client!;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const t = setTimeout(
        () => {
          settled = true;
          clearTimeout(stall);
          reject(new RegistryUnavailableError(`${this.name}: ${what} got no answer within ${timeoutMs} ms`));
        },
        Math.max(1, deadline - Date.now()),
      );
      const stall =
        this.options.hosts.length > 1
          ? setTimeout(
              () => {
                if (settled || this.client !== c) return;
                this.logger.warn({ what }, `${this.name}: no answer from this ZooKeeper server; moving the session`);
                connectionManager(c)?.socket?.destroy();
              },
              Math.max(1, (deadline - Date.now()) / 2),
            )
          : undefined;
      try {
        fn(c, (err, value) => {
          if (settled) return;
          settled = true;
          clearTimeout(t);
          clearTimeout(stall);
          if (err) reject(err);
          else resolve(value as T);
        });
      } catch (e) {
        clearTimeout(t);
        clearTimeout(stall);
        settled = true;
        reject(e);
      }
    });
  }

  getChildren(
    path: string,
    watcher?: (e: zookeeper.Event) => void,
  ): Promise<{ children: string[]; stat: zookeeper.Stat }> {
    return this.run(`listing ${path}`, (c, cb) => {
      const done = (err: unknown, children?: string[], stat?: zookeeper.Stat) =>
        cb(err, { children: children ?? [], stat: stat! });
      if (watcher) c.getChildren(path, watcher, done);
      else c.getChildren(path, done);
    });
  }

  getData(
    path: string,
    watcher?: (e: zookeeper.Event) => void,
    timeoutMs?: number,
  ): Promise<{ data: Buffer | undefined; stat: zookeeper.Stat }> {
    return this.run(
      `reading ${path}`,
      (c, cb) => {
        const done = (err: unknown, data?: Buffer, stat?: zookeeper.Stat) =>
          cb(err, { data: data ?? undefined, stat: stat! });
        if (watcher) c.getData(path, watcher, done);
        else c.getData(path, done);
      },
      timeoutMs,
    );
  }

  /** The node's stat, or undefined when it does not exist (an exists-watch is left either way). */
  exists(path: string, watcher?: (e: zookeeper.Event) => void): Promise<zookeeper.Stat | undefined> {
    return this.run(`checking ${path}`, (c, cb) => {
      const done = (err: unknown, stat?: zookeeper.Stat) => cb(err, stat ?? undefined);
      if (watcher) c.exists(path, watcher, done);
      else c.exists(path, done);
    });
  }

  create(path: string, data: Buffer | null, acls: zookeeper.ACL[], mode: number): Promise<string> {
    return this.run(`creating ${path}`, (c, cb) => c.create(path, data as Buffer, acls, mode, (err, p) => cb(err, p)));
  }

  setData(path: string, data: Buffer, version = -1): Promise<zookeeper.Stat> {
    // A versioned write is not repeated after a lost connection: if the first one was applied, a
    // second would fail with BAD_VERSION.
    return this.run(
      `writing ${path}`,
      (c, cb) => c.setData(path, data, version, (err, stat) => cb(err, stat)),
      undefined,
      version === -1,
    );
  }

  remove(path: string, version = -1): Promise<void> {
    return this.run(`deleting ${path}`, (c, cb) => c.remove(path, version, (err) => cb(err)));
  }

  /** Creates each missing ancestor of `path` (and `path` itself) as a persistent node with `acls`. */
  async ensurePath(path: string, acls: zookeeper.ACL[]): Promise<void> {
    const parts = path.split('/').filter(Boolean);
    let p = '';
    for (const part of parts) {
      p += `/${part}`;
      try {
        await this.create(p, null, acls, zookeeper.CreateMode.PERSISTENT);
      } catch (e) {
        if (zkCode(e) !== ZK.NODE_EXISTS) throw e;
      }
    }
  }

  /**
   * As if the process died: the connection is cut without closing the session, so the server
   * keeps the session's ephemeral nodes until the session times out. The session is unusable after.
   */
  kill(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.suspectTimer);
    if (this.client) hardClose(this.client);
    this.connected = false;
    this.emit('closed');
  }

  /** Closes the session on the server (its ephemeral nodes go at once), bounded; idempotent. */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.suspectTimer);
    const c = this.client;
    const wasConnected = this.connected;
    this.connected = false;
    this.emit('closed');
    if (!c) return;
    if (wasConnected) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        c.once('disconnected', () => {
          clearTimeout(t);
          resolve();
        });
        try {
          c.close();
        } catch {
          clearTimeout(t);
          resolve();
        }
      });
    }
    hardClose(c);
  }
}

/**
 * Maps a vendor or timeout error to a WayfinderError: NO_AUTH / AUTH_FAILED become AUTH_FAILED
 * (with a hint, never a secret), everything else REGISTRY_UNAVAILABLE. WayfinderErrors pass through.
 */
export function toZkError(err: unknown, what: string, name = 'zk'): WayfinderError {
  if (err instanceof WayfinderError) return err;
  const code = zkCode(err);
  if (code === ZK.NO_AUTH || code === ZK.AUTH_FAILED || code === ZK.INVALID_ACL) {
    return new AuthFailedError(
      `${name}: ${what}: not authorised (${(err as { getName(): string }).getName()}); the node's ACL allows this only to its owner's digest identity; configure "username" and "password" (or "password-file") for that identity`,
      { cause: err },
    );
  }
  const msg =
    code !== undefined ? (err as { getName(): string }).getName() : err instanceof Error ? err.message : String(err);
  return new RegistryUnavailableError(`${name}: ${what}: ${msg}`, { cause: err });
}
