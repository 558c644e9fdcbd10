import { randomUUID } from 'node:crypto';
import type { Call } from './http';
import { clone, HttpError, status } from './model';
import { parseFieldSelector, parseLabelSelector } from './selectors';
import type { SliceStore } from './store';
import type { WatchHub, WatchStream } from './watches';

export interface WatchTiming {
  /** Bookmark period for watches that asked for bookmarks. */
  bookmarkMs: number;
  /** Server-side timeout when the client gives no timeoutSeconds. */
  defaultTimeoutMs: number;
}

/** The query of a watch, checked before the response starts (a bad one is an ordinary error answer). */
function watchRequest(call: Call, ns: string | undefined, hub: WatchHub) {
  const q = call.query;
  const w = hub.create({
    namespace: ns,
    selector: parseLabelSelector(q.labelSelector),
    fields: parseFieldSelector(q.fieldSelector),
    res: call.res,
    bookmarks: q.allowWatchBookmarks === 'true' || q.allowWatchBookmarks === '1',
  });
  const fromRaw = q.resourceVersion ?? '';
  const sendInitial = q.sendInitialEvents === 'true';
  if (sendInitial && (q.resourceVersionMatch !== 'NotOlderThan' || !w.bookmarks)) {
    throw new HttpError(
      422,
      'Invalid',
      'sendInitialEvents requires resourceVersionMatch=NotOlderThan and allowWatchBookmarks=true',
    );
  }
  let from: number | undefined;
  if (fromRaw !== '' && fromRaw !== '0') {
    from = Number(fromRaw);
    if (!Number.isInteger(from) || from < 0)
      throw new HttpError(400, 'BadRequest', `resourceVersion: Invalid value: "${fromRaw}"`);
  }
  const timeoutSeconds = q.timeoutSeconds !== undefined ? Number(q.timeoutSeconds) : undefined;
  return { w, from, sendInitial, timeoutSeconds };
}

/**
 * WATCH with resourceVersion semantics: none or "0" starts with synthetic ADDED events for what
 * exists, a resourceVersion replays history after it, a compacted one gets the 410 ERROR event;
 * bookmarks, sendInitialEvents and timeoutSeconds as the apiserver does them.
 */
export function watchSlices(
  call: Call,
  store: SliceStore,
  hub: WatchHub,
  timing: WatchTiming,
  ns: string | undefined,
): void {
  const { w, from, sendInitial, timeoutSeconds } = watchRequest(call, ns, hub);
  const res = call.res;
  res.writeHead(200, {
    'Content-Type': 'application/json',
    'Cache-Control': 'no-cache, private',
    'Transfer-Encoding': 'chunked',
    'Audit-Id': randomUUID(),
  });
  res.flushHeaders();
  res.on('close', () => hub.end(w));
  // Watching from a compacted resourceVersion: 200, one ERROR event with a 410 Status, then the end.
  if (from !== undefined && from < store.compactedRv) {
    call.log.expired = true;
    hub.send(w, 'ERROR', status(410, 'Expired', `too old resource version: ${from} (${store.compactedRv})`));
    w.closed = true;
    res.end();
    return;
  }
  hub.add(w);
  if (from === undefined || sendInitial) {
    // "Get State and Start at Most Recent" (or the streaming list): synthetic ADDED for what exists.
    const byRv = [...store.objects.values()].sort(
      (a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion),
    );
    for (const s of byRv) if (hub.matches(w, s)) hub.send(w, 'ADDED', clone(s));
    if (sendInitial) hub.bookmark(w, { 'k8s.io/initial-events-end': 'true' });
  } else {
    for (const ev of store.history) if (ev.rv > from) hub.deliver(w, ev);
  }
  const timeoutMs = timeoutSeconds !== undefined ? timeoutSeconds * 1000 : timing.defaultTimeoutMs;
  startTimers(w, hub, timing.bookmarkMs, timeoutMs);
}

/** Periodic bookmarks (when asked for) and the server-side timeout, which a stalled watch ignores. */
function startTimers(w: WatchStream, hub: WatchHub, bookmarkMs: number, timeoutMs: number): void {
  if (w.bookmarks) {
    const tick = () => {
      if (w.closed) return;
      hub.bookmark(w);
      w.timers.push(setTimeout(tick, bookmarkMs));
    };
    w.timers.push(setTimeout(tick, bookmarkMs));
  }
  if (Number.isFinite(timeoutMs) && timeoutMs > 0) {
    w.timers.push(
      setTimeout(() => {
        if (w.stalled) return; // a silent stall does not end by itself
        if (w.bookmarks) hub.bookmark(w);
        hub.end(w);
      }, timeoutMs),
    );
  }
}
