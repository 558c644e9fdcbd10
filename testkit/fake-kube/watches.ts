import type { ServerResponse } from 'node:http';
import { GROUP, type HistoryEvent, type Slice } from './model';
import type { FieldSelector, Selector } from './selectors';
import type { SliceStore } from './store';

export interface WatchStream {
  id: number;
  namespace?: string;
  selector: Selector;
  fields: FieldSelector;
  res: ServerResponse;
  bookmarks: boolean;
  stalled: boolean;
  closed: boolean;
  timers: NodeJS.Timeout[];
}

/** The open watch streams and the fan-out of the store's events to them. */
export class WatchHub {
  private readonly streams = new Set<WatchStream>();
  private serial = 0;

  constructor(private readonly store: SliceStore) {
    store.onCommit((ev) => {
      for (const w of this.streams) this.deliver(w, ev);
    });
  }

  create(spec: Pick<WatchStream, 'namespace' | 'selector' | 'fields' | 'res' | 'bookmarks'>): WatchStream {
    return { id: ++this.serial, ...spec, stalled: false, closed: false, timers: [] };
  }

  /** From now on `w` gets every committed event it matches. */
  add(w: WatchStream): void {
    this.streams.add(w);
  }

  send(w: WatchStream, type: string, object: unknown): void {
    if (w.closed || w.stalled) return;
    w.res.write(JSON.stringify({ type, object }) + '\n');
  }

  matches(w: WatchStream, s: Slice | undefined): boolean {
    return (
      !!s &&
      (w.namespace === undefined || s.metadata.namespace === w.namespace) &&
      w.selector(s.metadata.labels ?? {}) &&
      w.fields(s)
    );
  }

  /** Like the apiserver's watch cache: an object leaving (entering) the selection is DELETED (ADDED). */
  deliver(w: WatchStream, ev: HistoryEvent): void {
    const now = this.matches(w, ev.object);
    const before = ev.type === 'ADDED' ? false : ev.prev ? this.matches(w, ev.prev) : now;
    if (ev.type === 'DELETED') {
      if (before || now) this.send(w, 'DELETED', ev.object);
    } else if (now && !before) this.send(w, 'ADDED', ev.object);
    else if (now && before) this.send(w, 'MODIFIED', ev.object);
    else if (!now && before) this.send(w, 'DELETED', ev.object);
  }

  bookmark(w: WatchStream, annotations?: Record<string, string>): void {
    this.send(w, 'BOOKMARK', {
      kind: 'EndpointSlice',
      apiVersion: `${GROUP}/v1`,
      metadata: { resourceVersion: String(this.store.rv), ...(annotations ? { annotations } : {}) },
    });
  }

  end(w: WatchStream): void {
    if (w.closed) return;
    w.closed = true;
    for (const t of w.timers) clearTimeout(t);
    this.streams.delete(w);
    w.res.end();
  }

  /** Open watches go silent with their connection left open; returns how many newly stalled. */
  stall(): number {
    let n = 0;
    for (const w of this.streams) {
      if (!w.stalled) {
        w.stalled = true;
        n++;
      }
    }
    return n;
  }

  /** Ends every open watch with a clean end of stream; returns how many. */
  closeAll(): number {
    let n = 0;
    for (const w of [...this.streams]) {
      this.end(w);
      n++;
    }
    return n;
  }

  /** Open (not stalled, not closed) streams. */
  openCount(): number {
    return [...this.streams].filter((w) => !w.stalled && !w.closed).length;
  }

  /** At shutdown: timers cleared, streams forgotten (their sockets are destroyed by the server). */
  drop(): void {
    for (const w of this.streams) {
      w.closed = true;
      for (const t of w.timers) clearTimeout(t);
    }
    this.streams.clear();
  }
}
