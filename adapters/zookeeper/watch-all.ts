import * as zookeeper from 'node-zookeeper-client';
import {
  ClosedError,
  RegistryUnavailableError,
  type BadEntry,
  type Endpoint,
  type Logger,
  type RegistrySink,
} from '../../core';
import { retryLoop, Waker } from '../../core/kit';
import { toZkError, zkCode, type ZkSession } from './client';
import type { ZkFormat } from './format';
import { assembleNodes, joinPath, READ_CONCURRENCY, readNode, zxid, type NodeState } from './index';

const ZK = zookeeper.Exception;
/** Services read at once during a full read (each reads its nodes READ_CONCURRENCY at a time at most). */
const SERVICE_CONCURRENCY = 16;

interface ServiceState {
  nodes: Map<string, NodeState>;
  pzxid: bigint;
}

/**
 * The ZooKeeper registry-wide watch: ONE persistent recursive watch (ZooKeeper >= 3.6 addWatch) on
 * the base path instead of a child watch per service and a data watch per instance. Its events
 * name the node: `<base>/<service>` created or deleted re-reads that service; an instance node
 * created, changed or deleted re-reads that one node. The watch lives as long as the connection,
 * so after every 'connected' (a reconnect, a new session after expiry) it is added again and
 * everything is re-read (what changed while disconnected is never missed) and reset.
 * The watch is added before the reads it covers, so no change falls between read and watch.
 */
export class ZkRegistryWatch {
  private readonly services = new Map<string, ServiceState>();
  private readonly dirtyServices = new Set<string>();
  private readonly dirtyNodes = new Map<string, Set<string>>();
  private rereadAll = true;
  private idle = false;
  private stopped = false;
  private readonly stopCtl = new AbortController();
  private readonly waker = new Waker();
  private readonly prefix: string;

  constructor(
    private readonly session: ZkSession,
    private readonly base: string,
    private readonly format: ZkFormat,
    private readonly out: RegistrySink,
    private readonly logger: Logger,
    private readonly random: () => number,
  ) {
    this.prefix = joinPath(base) + '/';
  }

  private readonly onEvent = (type: number, path: string) => {
    if (this.stopped) return;
    if (path === joinPath(this.base) || path === this.base) {
      this.rereadAll = true;
      return this.kick();
    }
    if (!path.startsWith(this.prefix)) return;
    const parts = path.slice(this.prefix.length).split('/');
    if (parts.length === 1) this.dirtyServices.add(parts[0]);
    else if (parts.length === 2) {
      let set = this.dirtyNodes.get(parts[0]);
      if (!set) this.dirtyNodes.set(parts[0], (set = new Set()));
      set.add(parts[1]);
      // A node created or deleted also moves the service's pzxid (its revision): re-list it.
      if (type !== zookeeper.Event.NODE_DATA_CHANGED) this.dirtyServices.add(parts[0]);
    } else return; // deeper nodes are no instances
    this.kick();
  };
  private readonly onConnected = () => {
    this.rereadAll = true;
    this.kick();
  };
  private readonly onDisconnected = () =>
    this.out.error(new RegistryUnavailableError('zk: lost the connection to ZooKeeper; keeping the last known sets'));
  private readonly onExpired = () =>
    this.out.error(new RegistryUnavailableError('zk: the ZooKeeper session expired; re-watching on a new session'));

  start(): void {
    this.session.on('node-event', this.onEvent);
    this.session.on('connected', this.onConnected);
    this.session.on('disconnected', this.onDisconnected);
    this.session.on('expired', this.onExpired);
    this.session.start();
    void retryLoop({
      signal: this.stopCtl.signal,
      backoff: { baseMs: 100, maxMs: 5000, random: this.random },
      run: async () => {
        this.idle = false;
        while (!this.stopped && this.dirty) await this.pass();
        this.idle = true;
        return Infinity;
      },
      onError: (err, next) => {
        if (this.stopped || err instanceof ClosedError || this.session.isClosed) return Infinity;
        this.rereadAll = true;
        const e =
          zkCode(err) === ZK.UNIMPLEMENTED
            ? new RegistryUnavailableError(
                `zk: the server refused addWatch (ZooKeeper older than 3.6); use watch=service for this registry`,
              )
            : toZkError(err, `watching ${this.base}`);
        this.out.error(e);
        return this.session.isConnected ? next() : Infinity;
      },
      sleep: (ms, signal) => (this.idle && this.dirty ? Promise.resolve() : this.waker.sleep(ms, signal)),
    }).catch((err) => this.logger.error({ err: (err as Error).message }, 'zk: registry-wide watch loop crashed'));
  }

  stop(): void {
    this.stopped = true;
    this.stopCtl.abort();
    this.session.off('node-event', this.onEvent);
    this.session.off('connected', this.onConnected);
    this.session.off('disconnected', this.onDisconnected);
    this.session.off('expired', this.onExpired);
  }

  private kick(): void {
    if (!this.stopped) this.waker.wake();
  }

  private get dirty(): boolean {
    return this.rereadAll || this.dirtyServices.size > 0 || this.dirtyNodes.size > 0;
  }

  private async pass(): Promise<void> {
    if (this.rereadAll) {
      this.dirtyServices.clear();
      this.dirtyNodes.clear();
      await this.session.addWatch(joinPath(this.base) || '/');
      // Cleared once the watch is on the current connection: the first 'connected' (which comes
      // while this waits for it) must not cause a second full read; a later one must.
      this.rereadAll = false;
      let names: string[] = [];
      try {
        names = (await this.session.getChildren(joinPath(this.base) || '/')).children;
      } catch (e) {
        if (zkCode(e) !== ZK.NO_NODE) throw e;
      }
      const all = new Map<string, ServiceState>();
      const queue = [...names];
      const worker = async () => {
        for (let s = queue.pop(); s !== undefined && !this.stopped; s = queue.pop()) {
          const st = await this.readService(s);
          if (st) all.set(s, st);
        }
      };
      await Promise.all(Array.from({ length: Math.min(SERVICE_CONCURRENCY, queue.length) }, worker));
      if (this.stopped) return;
      this.services.clear();
      const view = new Map<string, Endpoint[]>();
      const bad = new Map<string, BadEntry[]>();
      let rev = 0n;
      for (const [s, st] of all) {
        this.services.set(s, st);
        const v = assembleNodes(joinPath(this.base, s), st.nodes, st.pzxid);
        view.set(s, v.endpoints);
        if (v.bad.length) bad.set(s, v.bad);
        if (BigInt(v.revision) > rev) rev = BigInt(v.revision);
      }
      this.out.reset(view, { revision: rev.toString(), bad });
      return;
    }
    const touched = new Set<string>();
    for (const s of [...this.dirtyServices]) {
      this.dirtyServices.delete(s);
      this.dirtyNodes.delete(s); // the full read covers its nodes
      const st = await this.readService(s);
      if (st) this.services.set(s, st);
      else this.services.delete(s);
      touched.add(s);
    }
    for (const [s, names] of [...this.dirtyNodes]) {
      this.dirtyNodes.delete(s);
      const st = this.services.get(s);
      if (!st) {
        this.dirtyServices.add(s); // not known yet: read it whole
        continue;
      }
      for (const name of names) {
        const n = await readNode(this.session, this.format, joinPath(this.base, s), name);
        if (n) st.nodes.set(name, n);
        else st.nodes.delete(name);
      }
      touched.add(s);
    }
    for (const s of touched) {
      const st = this.services.get(s);
      if (!st) {
        this.out.update(s, []);
        continue;
      }
      const v = assembleNodes(joinPath(this.base, s), st.nodes, st.pzxid);
      this.out.update(s, v.endpoints, { revision: v.revision, bad: v.bad });
    }
  }

  /** Lists a service and reads its nodes (READ_CONCURRENCY at a time); undefined when it is gone. */
  private async readService(service: string): Promise<ServiceState | undefined> {
    const path = joinPath(this.base, service);
    let children: string[];
    let pzxid: bigint;
    try {
      const r = await this.session.getChildren(path);
      children = r.children;
      pzxid = zxid(r.stat?.pzxid);
    } catch (e) {
      if (zkCode(e) === ZK.NO_NODE) return undefined;
      throw e;
    }
    const nodes = new Map<string, NodeState>();
    const queue = [...children];
    const worker = async () => {
      for (let name = queue.pop(); name !== undefined && !this.stopped; name = queue.pop()) {
        const n = await readNode(this.session, this.format, path, name);
        if (n) nodes.set(name, n);
      }
    };
    await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, queue.length) }, worker));
    return { nodes, pzxid };
  }
}
