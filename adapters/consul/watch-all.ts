import {
  AuthFailedError,
  RegistryUnavailableError,
  TokenBucket,
  type AdapterContext,
  type BadEntry,
  type Endpoint,
  type Logger,
  type RegistrySink,
  type WayfinderError,
} from '../../core';
import { delay, retryLoop, Waker } from '../../core/kit';
import type { CheckEntry, ConsulCallError, ConsulClient } from './client';
import type { HealthRead } from './index';

/** What the registry-wide watch needs from the adapter (index.ts builds it). */
export interface RegistryWatchDeps {
  client: ConsulClient;
  o: { dc?: string; wait: number; timeout: number; rate: number; burst: number };
  /** The per-service path's health read (same filters, same mapping), never blocking here. */
  read(service: string, signal: AbortSignal): Promise<HealthRead>;
  blockingTimeout(waitMs: number): number;
  logger: Logger;
  ctx: AdapterContext;
}

/**
 * Floor of the two list queries' token bucket (requests/s, burst). They carry every service's
 * changes, so the per-service `rate` (default 1/s) would hold each change up to a second under
 * churn; at rest a blocking query is renewed once per `wait` whatever this is.
 */
const LIST_RATE = 20;
const LIST_BURST = 20;
/** Health reads in flight at once while a first view or a resync reads every service. */
const READ_CONCURRENCY = 8;
/** How long a services-table move waits for the checks loop to name its service. */
const ATTRIBUTE_WAIT_MS = 1000;
/** Check-change indexes remembered for attributing services-table moves. */
const MOVES_KEPT = 4096;

/**
 * The Consul registry-wide watch. Consul has no change feed naming the services that changed, so
 * two blocking queries stand in for one, whatever the number of services:
 *
 *  - GET /v1/catalog/services (index of the services table: a service registered, changed or
 *    deregistered): a name added or removed, or its tags changed, marks that service;
 *  - GET /v1/health/state/any (index of the checks table): a check created, removed or changed
 *    (status, owner, tags) marks its service; a node check marks the services on that node.
 *
 * Each marked service is read once with the per-service path's health query (same filters and
 * mapping, so the same snapshot). At rest that is 2 requests per `wait` (5 min by default); a
 * change costs the two blocking answers plus one read per service it touched. The one change
 * neither list attributes is an instance re-registered in place (same checks, new address, port,
 * meta or weights): a services-table move at an index no check change explains re-reads every
 * service (O(services) reads, rate-limited), as only that can be exact.
 *
 * An error keeps the last good set (reported through sink.error); a recovery or an index going
 * backwards (agent restart, snapshot restore) re-reads everything and resets the view.
 */
export class ConsulRegistryWatch {
  private readonly ac = new AbortController();
  private readonly waker = new Waker();
  /** Catalog: service -> its tags (as one string), at catalogIndex. */
  private catalog?: Map<string, string>;
  private catalogIndex = 0n;
  /** Checks: service -> signature of its checks; node -> signature of its node checks. */
  private checkSig?: Map<string, string>;
  private nodeSig = new Map<string, string>();
  private checksIndex = 0n;
  /** Raft indexes at which a check changed (attributing services-table moves). */
  private readonly checkMoves = new Set<bigint>();
  /** Services-table moves no catalog diff explained: index -> when it was seen. */
  private readonly unexplained = new Map<bigint, number>();
  private readonly dirty = new Set<string>();
  /** service -> nodes of its instances (from the last read). */
  private readonly nodesOf = new Map<string, Set<string>>();
  private needReset = true;
  /** Lists whose last call failed: a resync waits for both to answer again. */
  private readonly stale = new Set<'catalog' | 'checks'>();
  private pumping = false;
  /** Requests made by this watch (for the benchmark and tests). */
  requests = 0;

  constructor(
    private readonly d: RegistryWatchDeps,
    private readonly out: RegistrySink,
  ) {}

  start(): void {
    this.loop('catalog', (index, signal) =>
      this.d.client.catalogServices(
        { dc: this.d.o.dc, index, waitMs: this.d.o.wait, timeoutMs: this.timeout(index) },
        signal,
      ),
    );
    this.loop('checks', (index, signal) =>
      this.d.client.healthStateAny(
        { dc: this.d.o.dc, index, waitMs: this.d.o.wait, timeoutMs: this.timeout(index) },
        signal,
      ),
    );
  }

  stop(): void {
    this.ac.abort();
  }

  private timeout(index: bigint): number {
    return index > 0n ? this.d.blockingTimeout(this.d.o.wait) : this.d.o.timeout;
  }

  /** One blocking loop (token bucket and backoff as the per-service loop). */
  private loop<T>(
    which: 'catalog' | 'checks',
    call: (index: bigint, signal: AbortSignal) => Promise<{ body: T; index?: bigint }>,
  ): void {
    const { signal } = this.ac;
    const bucket = new TokenBucket(
      Math.max(this.d.o.rate, LIST_RATE),
      Math.max(this.d.o.burst, LIST_BURST),
      this.d.ctx.now,
    );
    let index = 0n;
    void retryLoop({
      signal,
      run: async () => {
        for (let w = bucket.take(); w > 0 && !signal.aborted; w = bucket.take())
          await delay(w, signal).catch(() => undefined);
        if (signal.aborted) return;
        this.requests++;
        const r = await call(index, signal);
        if (signal.aborted) return;
        const got = r.index ?? 0n;
        if (index > 0n && got < index) {
          this.d.logger.info(
            { from: index.toString(), to: got.toString(), list: which },
            'consul: X-Consul-Index went backwards; re-reading every service',
          );
          this.needReset = true;
        }
        index = got < 1n ? 1n : got;
        this.stale.delete(which);
        if (which === 'catalog') this.onCatalog(r.body as Record<string, string[]>, got);
        else this.onChecks(r.body as CheckEntry[], got);
        this.pump();
      },
      onError: (e) => {
        this.fail(e, `watching the ${which === 'catalog' ? 'service list' : 'checks'}`);
        // Re-read without blocking next time, then resync: the agent may have restarted.
        index = 0n;
        this.needReset = true;
        this.stale.add(which);
        return undefined;
      },
      backoff: { baseMs: 250, maxMs: 15_000, random: this.d.ctx.random },
    }).catch((e) => this.d.logger.error({ err: (e as Error).message }, 'consul: registry-wide watch loop crashed'));
  }

  private fail(e: unknown, what: string): void {
    if (e instanceof AuthFailedError) return this.out.error(e);
    const err = e as ConsulCallError;
    const wf: WayfinderError =
      err?.status === 403
        ? new AuthFailedError(`consul: ${what} was refused by ${this.d.client.address}: ${err.message}`)
        : new RegistryUnavailableError(
            `consul: ${what} at ${this.d.client.address} failed: ${err?.message ?? String(e)}`,
          );
    this.out.error(wf);
  }

  private onCatalog(body: Record<string, string[]>, index: bigint): void {
    const next = new Map<string, string>();
    for (const [name, tags] of Object.entries(body))
      next.set(name, JSON.stringify(Array.isArray(tags) ? [...tags].sort() : []));
    const prev = this.catalog;
    this.catalog = next;
    const moved = index !== this.catalogIndex;
    this.catalogIndex = index;
    if (!prev || this.needReset) return;
    for (const [name, tags] of next) if (prev.get(name) !== tags) this.dirty.add(name);
    for (const name of prev.keys()) if (!next.has(name)) this.dirty.add(name);
    // Whatever the names say, the move must also be a check change, else a service changed in place.
    if (moved) this.unexplained.set(index, this.d.ctx.now());
  }

  private onChecks(body: CheckEntry[], index: bigint): void {
    const sig = new Map<string, string[]>();
    const nodeSig = new Map<string, string[]>();
    let newest = 0n;
    const before = this.checksIndex;
    const attribute = !!this.checkSig && !this.needReset;
    for (const c of body) {
      const mod = BigInt(Number.isSafeInteger(c?.ModifyIndex) ? c.ModifyIndex! : 0);
      const created = BigInt(Number.isSafeInteger(c?.CreateIndex) ? c.CreateIndex! : 0);
      const line = `${c?.Node}\u0000${c?.CheckID}\u0000${c?.ServiceID}\u0000${c?.Status}\u0000${mod}`;
      const into = c?.ServiceName ? sig : nodeSig;
      const key = c?.ServiceName ? c.ServiceName : String(c?.Node);
      let list = into.get(key);
      if (!list) into.set(key, (list = []));
      list.push(line);
      if (attribute && mod > before) this.checkMoves.add(mod);
      if (attribute && created > before) this.checkMoves.add(created);
      if (mod > newest) newest = mod;
    }
    const flat = (m: Map<string, string[]>) => new Map([...m].map(([k, v]) => [k, v.sort().join('\n')]));
    const next = flat(sig);
    const nextNodes = flat(nodeSig);
    const prev = this.checkSig;
    const prevNodes = this.nodeSig;
    this.checkSig = next;
    this.nodeSig = nextNodes;
    this.checksIndex = index;
    if (!prev || this.needReset) return;
    let removed = false;
    for (const [service, s] of next) if (prev.get(service) !== s) this.dirty.add(service);
    for (const service of prev.keys())
      if (!next.has(service)) {
        this.dirty.add(service);
        removed = true;
      }
    for (const [node, s] of nextNodes)
      if (prevNodes.get(node) !== s) for (const [svc, nodes] of this.nodesOf) if (nodes.has(node)) this.dirty.add(svc);
    // A removed check leaves no index behind: the answer's index is the best it names.
    if (removed || newest < index) this.checkMoves.add(index);
    while (this.checkMoves.size > MOVES_KEPT) this.checkMoves.delete(this.checkMoves.values().next().value!);
  }

  /**
   * Decides pending services-table moves: each is explained by a check change at its index, or
   * (once the checks list has caught up, or after ATTRIBUTE_WAIT_MS) every service is re-read.
   * Returns how long to wait for the checks list (0: decided).
   */
  private settleUnexplained(): number {
    let wait = 0;
    for (const [index, since] of this.unexplained) {
      if (this.checkMoves.has(index)) {
        this.unexplained.delete(index);
        continue;
      }
      const waited = this.d.ctx.now() - since;
      if (this.checksIndex < index && waited < ATTRIBUTE_WAIT_MS) {
        wait = Math.max(wait, ATTRIBUTE_WAIT_MS - waited);
        continue;
      }
      this.unexplained.clear();
      this.d.logger.debug(
        { index: index.toString() },
        'consul: a service changed in place (no check moved); re-reading every service',
      );
      for (const name of this.catalog?.keys() ?? []) this.dirty.add(name);
      return 0;
    }
    return wait;
  }

  /** Runs the reads the lists asked for, one pump at a time. */
  private pump(): void {
    if (this.pumping) {
      this.waker.wake();
      return;
    }
    this.pumping = true;
    void this.drain()
      .catch((e) => this.d.logger.error({ err: (e as Error).message }, 'consul: registry-wide reads crashed'))
      .finally(() => {
        this.pumping = false;
        // Work that arrived while drain() was returning (its wake() found no sleeper).
        const ready = !this.ac.signal.aborted && this.catalog && this.checkSig;
        if (ready && (this.dirty.size || this.unexplained.size || (this.needReset && !this.stale.size))) this.pump();
      });
  }

  private async drain(): Promise<void> {
    const { signal } = this.ac;
    let failures = 0;
    while (!signal.aborted) {
      if (!this.catalog || !this.checkSig) return;
      try {
        if (this.needReset) {
          if (this.stale.size) return; // the next answer pumps again
          await this.reset();
          failures = 0;
          continue;
        }
        const wait = this.settleUnexplained();
        if (this.dirty.size === 0) {
          if (!wait) return;
          await this.waker.sleep(wait, signal);
          continue;
        }
        const batch = [...this.dirty];
        this.dirty.clear();
        await this.readEach(batch, (service, r) => {
          if (r.denied) return this.out.error(r.denied);
          this.out.update(service, r.endpoints, { revision: r.index.toString(), bad: r.bad });
        });
        failures = 0;
      } catch (e) {
        if (signal.aborted) return;
        this.fail(e, 'reading a service');
        failures++;
        await this.waker.sleep(Math.min(15_000, 250 * 2 ** Math.min(failures, 6)), signal);
      }
    }
  }

  /** Reads every listed service and reports the complete view. */
  private async reset(): Promise<void> {
    this.needReset = false;
    this.dirty.clear();
    this.unexplained.clear();
    const names = [...this.catalog!.keys()].sort();
    const all = new Map<string, Endpoint[]>();
    const bad = new Map<string, BadEntry[]>();
    let denied: AuthFailedError | undefined;
    try {
      await this.readEach(names, (service, r) => {
        if (r.denied) {
          denied = r.denied;
          return;
        }
        all.set(service, r.endpoints);
        if (r.bad.length) bad.set(service, r.bad);
      });
    } catch (e) {
      this.needReset = true;
      throw e;
    }
    if (this.needReset) return; // a loop failed or went backwards meanwhile: read again
    if (denied) {
      this.needReset = true;
      throw denied;
    }
    this.out.reset(all, { revision: this.catalogIndex.toString(), bad });
  }

  /** Reads services, READ_CONCURRENCY at a time; a failed read puts the rest back and throws. */
  private async readEach(names: string[], got: (service: string, r: HealthRead) => void): Promise<void> {
    const { signal } = this.ac;
    let next = 0;
    let failed: unknown;
    const worker = async () => {
      while (next < names.length && failed === undefined && !signal.aborted) {
        const service = names[next++];
        try {
          this.requests++;
          const r = await this.d.read(service, signal);
          if (signal.aborted) return;
          this.nodesOf.set(service, r.nodes);
          if (r.nodes.size === 0) this.nodesOf.delete(service);
          got(service, r);
        } catch (e) {
          failed ??= e;
          this.dirty.add(service);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, names.length) }, worker));
    if (failed !== undefined) {
      for (const s of names.slice(next)) this.dirty.add(s);
      throw failed;
    }
  }
}
