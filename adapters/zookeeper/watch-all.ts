import * as zookeeper from 'node-zookeeper-client';
import {
  RegistryUnavailableError,
  type BadEntry,
  type Endpoint,
  type Logger,
  type RegistrySink,
  type WayfinderError,
} from '../../core';
import { toZkError, zkCode, type ZkSession } from './client';
import type { ZkFormat } from './format';
import { assembleNodes, joinPath, READ_CONCURRENCY, readNode, zxid, type NodeState } from './index';
import { ZkPassLoop } from './pass-loop';

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
 * name the node: `<base>/<service>` created or deleted re-reads that service (as does any event
 * under a service not known yet); for a known service an instance node created or changed costs
 * one read of that node, one deleted costs none (it is dropped), and a pass over created/deleted
 * nodes reads the service node's stat once for its pzxid (the revision): O(1) reads per change,
 * whatever the service's size. The watch lives as long as the connection,
 * so after every 'connected' (a reconnect, a new session after expiry) it is added again and
 * everything is re-read (what changed while disconnected is never missed) and reset.
 * The watch is added before the reads it covers, so no change falls between read and watch.
 */
export class ZkRegistryWatch extends ZkPassLoop {
  private readonly services = new Map<string, ServiceState>();
  private readonly dirtyServices = new Set<string>();
  /**
   * Per service: its instance nodes with events since they were last read, each with the last
   * event's type (NODE_CREATED standing for "created, then changed").
   */
  private readonly dirtyNodes = new Map<string, Map<string, number>>();
  private rereadAll = true;
  private readonly prefix: string;

  constructor(
    session: ZkSession,
    private readonly base: string,
    private readonly format: ZkFormat,
    private readonly out: RegistrySink,
    private readonly logger: Logger,
    random: () => number,
  ) {
    super(session, {
      random,
      report: (e) => out.error(e),
      disconnected: 'zk: lost the connection to ZooKeeper; keeping the last known sets',
      expired: 'zk: the ZooKeeper session expired; re-watching on a new session',
    });
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
      let nodes = this.dirtyNodes.get(parts[0]);
      if (!nodes) this.dirtyNodes.set(parts[0], (nodes = new Map()));
      // Events come in zxid order: the last one says whether the node is gone. A data change after
      // a creation keeps the mark of a child change (it moved the service's pzxid).
      const prev = nodes.get(parts[1]);
      const childChange = prev !== undefined && prev !== zookeeper.Event.NODE_DATA_CHANGED;
      nodes.set(
        parts[1],
        type === zookeeper.Event.NODE_DATA_CHANGED && childChange ? zookeeper.Event.NODE_CREATED : type,
      );
    } else return; // deeper nodes are no instances
    this.kick();
  };

  override start(): void {
    this.session.on('node-event', this.onEvent);
    super.start();
  }

  override stop(): void {
    super.stop();
    this.session.off('node-event', this.onEvent);
  }

  protected invalidate(): void {
    this.rereadAll = true;
  }

  protected failure(err: unknown): WayfinderError {
    return zkCode(err) === ZK.UNIMPLEMENTED
      ? new RegistryUnavailableError(
          `zk: the server refused addWatch (ZooKeeper older than 3.6); use watch=service for this registry`,
        )
      : toZkError(err, `watching ${this.base}`);
  }

  protected override crashed(err: unknown): void {
    this.logger.error({ err: (err as Error).message }, 'zk: registry-wide watch loop crashed');
  }

  protected get dirty(): boolean {
    return this.rereadAll || this.dirtyServices.size > 0 || this.dirtyNodes.size > 0;
  }

  protected async pass(): Promise<void> {
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
    for (const s of [...this.dirtyNodes.keys()]) {
      if (this.dirtyServices.has(s)) continue; // marked for a whole read meanwhile: that covers it
      const st = this.services.get(s);
      if (!st) {
        this.dirtyNodes.delete(s);
        this.dirtyServices.add(s); // not known yet: read it whole
        continue;
      }
      if (await this.readNodes(s, st)) touched.add(s);
      else this.dirtyServices.add(s); // its node is gone (or going): read it whole
    }
    for (const s of touched) {
      if (this.dirtyServices.has(s)) continue; // published by the whole read that follows
      const st = this.services.get(s);
      if (!st) {
        this.out.update(s, []);
        continue;
      }
      const v = assembleNodes(joinPath(this.base, s), st.nodes, st.pzxid);
      this.out.update(s, v.endpoints, { revision: v.revision, bad: v.bad });
    }
  }

  /**
   * Applies a known service's node events: O(1) reads per event. Its names are taken (and their
   * marks cleared) BEFORE the service's stat is read, so each child change taken is at or below the
   * pzxid read; a later one stays marked and the next pass applies it (with a newer pzxid). Nodes
   * whose last event is a deletion are dropped unread; the others are read (created, changed, or
   * created again after a deletion). False when the service's node is gone.
   */
  private async readNodes(service: string, st: ServiceState): Promise<boolean> {
    const marked = this.dirtyNodes.get(service)!;
    this.dirtyNodes.delete(service);
    const path = joinPath(this.base, service);
    const toRead: string[] = [];
    let childChanged = false;
    for (const [name, type] of marked) {
      if (type !== zookeeper.Event.NODE_DATA_CHANGED) childChanged = true;
      if (type !== zookeeper.Event.NODE_DELETED) toRead.push(name);
    }
    if (childChanged) {
      // A node created or deleted moved the service's pzxid (part of its revision): one stat read.
      const stat = await this.session.exists(path);
      if (!stat) return false;
      st.pzxid = zxid(stat.pzxid);
    }
    for (const [name, type] of marked) if (type === zookeeper.Event.NODE_DELETED) st.nodes.delete(name);
    const worker = async () => {
      for (let name = toRead.pop(); name !== undefined && !this.stopped; name = toRead.pop()) {
        const n = await readNode(this.session, this.format, path, name);
        if (n) st.nodes.set(name, n);
        else st.nodes.delete(name);
      }
    };
    await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, toRead.length) }, worker));
    return true;
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
