import { clone, HttpError, type HistoryEvent, type Slice } from './model';

/**
 * The fake's etcd: current objects keyed `namespace/name`, one global resourceVersion bumped per
 * write, the state at the compaction point and the events since then (so a list or watch from an
 * older resourceVersion can be answered, and one from before the compaction gets 410 Expired).
 */
export class SliceStore {
  rv = 1000;
  compactedRv = this.rv;
  readonly objects = new Map<string, Slice>();
  readonly history: HistoryEvent[] = [];
  private base = new Map<string, Slice>();
  private readonly listeners: ((ev: HistoryEvent) => void)[] = [];

  /** `fn` sees every committed event, in order (the watch fan-out). */
  onCommit(fn: (ev: HistoryEvent) => void): void {
    this.listeners.push(fn);
  }

  commit(type: HistoryEvent['type'], key: string, next: Slice, prev?: Slice): void {
    this.rv++;
    next.metadata.resourceVersion = String(this.rv);
    if (type === 'DELETED') this.objects.delete(key);
    else this.objects.set(key, next);
    const ev: HistoryEvent = { rv: this.rv, type, key, object: clone(next), prev: prev ? clone(prev) : undefined };
    this.history.push(ev);
    for (const fn of this.listeners) fn(ev);
  }

  /** Deletes the stored object under `key` (as an event), if there is one; returns it. */
  remove(key: string): Slice | undefined {
    const prev = this.objects.get(key);
    if (prev) this.commit('DELETED', key, clone(prev), prev);
    return prev;
  }

  /** The objects as they were at resourceVersion `at`. */
  stateAt(at: number): Map<string, Slice> {
    if (at < this.compactedRv)
      throw new HttpError(410, 'Expired', `too old resource version: ${at} (${this.compactedRv})`);
    const m = new Map(this.base);
    for (const ev of this.history) {
      if (ev.rv > at) break;
      if (ev.type === 'DELETED') m.delete(ev.key);
      else m.set(ev.key, ev.object);
    }
    return m;
  }

  /** Forgets history up to now. */
  compact(): void {
    this.base = new Map(this.objects);
    this.history.length = 0;
    this.compactedRv = this.rv;
  }
}
