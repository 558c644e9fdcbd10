import type { BadEntry, Endpoint, WatchAllFn } from '../../core';
import { serviceView, type RegistryDoc } from './store';
import type { FileWatcher } from './watcher';

/**
 * The file registry's registry-wide watch: the watcher parses the file once per change, and each
 * service's view is recomputed only when its bucket's text changed or one of its entries expired.
 */
export function fileWatchAll(watcher: FileWatcher, ttl: number): WatchAllFn {
  return (sink) => {
    /** service -> its bucket as JSON (what changed is found by comparing these) and next expiry. */
    const known = new Map<string, { text: string; nextExpiry?: number }>();
    let first = true;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let doc: RegistryDoc | undefined;

    const arm = () => {
      clearTimeout(timer);
      let next = Infinity;
      for (const k of known.values()) if (k.nextExpiry !== undefined && k.nextExpiry < next) next = k.nextExpiry;
      if (next === Infinity) return;
      timer = setTimeout(expire, Math.max(0, next - Date.now()) + 1);
      timer.unref();
    };
    const view = (service: string, now: number, text: string) => {
      const v = serviceView(doc!, service, now, ttl);
      known.set(service, { text, nextExpiry: v.nextExpiry });
      return v;
    };
    const expire = () => {
      if (stopped || !doc) return;
      const now = Date.now();
      for (const [service, k] of known) {
        if (k.nextExpiry === undefined || k.nextExpiry > now) continue;
        const v = view(service, now, k.text);
        sink.update(service, v.endpoints, { revision: String(doc.revision), bad: v.bad });
      }
      arm();
    };
    const evaluate = () => {
      if (stopped) return;
      const st = watcher.state;
      if (!st) return;
      if (!st.ok) return sink.error(st.error);
      doc = st.doc;
      const now = Date.now();
      const revision = String(doc.revision);
      if (first) {
        first = false;
        const all = new Map<string, Endpoint[]>();
        const bad = new Map<string, BadEntry[]>();
        for (const [service, bucket] of Object.entries(doc.services)) {
          const v = view(service, now, JSON.stringify(bucket));
          all.set(service, v.endpoints);
          if (v.bad.length) bad.set(service, v.bad);
        }
        sink.reset(all, { revision, bad });
      } else {
        for (const [service, bucket] of Object.entries(doc.services)) {
          const text = JSON.stringify(bucket);
          if (known.get(service)?.text === text) continue;
          const v = view(service, now, text);
          sink.update(service, v.endpoints, { revision, bad: v.bad });
        }
        for (const service of [...known.keys()]) {
          if (service in doc.services) continue;
          known.delete(service);
          sink.update(service, [], { revision });
        }
      }
      arm();
    };
    const off = watcher.subscribe(evaluate);
    if (watcher.state) queueMicrotask(evaluate);
    return () => {
      stopped = true;
      clearTimeout(timer);
      off();
    };
  };
}
