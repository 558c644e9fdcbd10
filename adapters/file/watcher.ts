import { promises as fsp, statSync, watch as fsWatch, type FSWatcher, type Stats } from 'node:fs';
import * as path from 'node:path';
import { RegistryUnavailableError, silentLogger, type Logger } from '../../core';
import { emptyDoc, parseDoc, type RegistryDoc } from './store';

export type ReadState =
  { ok: true; doc: RegistryDoc; sig: string } | { ok: false; error: RegistryUnavailableError; sig: string };

export interface FileWatcherOptions {
  /** Poll interval (ms): the bound on noticing a change that fs.watch missed. */
  pollMs: number;
  /** Use fs.watch on the directory for immediate notification (the poll runs regardless). */
  fsWatch: boolean;
  logger?: Logger;
  /** Monotonic ms for the re-arm check's rate limit (default performance.now). */
  now?: () => number;
}

/** What identifies one version of the file: rename changes the inode, in-place edits size/mtime/ctime. */
function sigOf(st: Stats): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

function quickSig(file: string): string {
  try {
    const st = statSync(file, { throwIfNoEntry: false });
    return st ? sigOf(st) : 'absent';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOTDIR' ? 'absent' : `error:${code}`;
  }
}

/** Inode numbers are reused at once on ext4, so a recreated directory is told apart by its birth time too. */
function dirIdentity(dir: string): string | undefined {
  try {
    const st = statSync(dir, { throwIfNoEntry: false });
    return st ? `${st.dev}:${st.ino}:${st.birthtimeMs}` : undefined;
  } catch {
    return undefined;
  }
}

/** How often the poll loop checks that the directory watch still watches the current directory. */
const REARM_EVERY_MS = 1000;

/**
 * Reads one registry file whenever it may have changed and tells listeners. Change detection:
 * fs.watch on the directory (the file is replaced by rename, so watching the file itself would
 * lose track of it) for immediacy, plus a poll of fstat (inode, size, mtime, ctime) every pollMs
 * as the fallback, so a change is seen within pollMs + one read even if fs.watch misses it.
 *
 * Listeners are called (synchronously, from the read's completion) after every read whose
 * result differs from the previous one, and once after the first read. A missing file or
 * directory is an empty registry; an unreadable or unparsable file gives a state with an error,
 * and `lastGood` keeps the last document that parsed. Timers and the fs watcher never keep the
 * process alive.
 */
export class FileWatcher {
  private readonly listeners = new Set<() => void>();
  state?: ReadState;
  lastGood?: RegistryDoc;
  private fsw?: FSWatcher;
  private watchedDir?: string;
  /** The watch is on an ancestor (the registry directory does not exist yet): re-arm when it appears. */
  private onAncestor = false;
  private loop?: Promise<void>;
  private pollTimer?: NodeJS.Timeout;
  private lastRearmCheck = -Infinity;
  private checking = false;
  private again = false;
  private forceAgain = false;
  private readonly dir: string;
  private readonly base: string;
  private readonly logger: Logger;
  /** Number of file reads (for measurements). */
  reads = 0;
  /** Number of poll ticks (for measurements). */
  polls = 0;
  /** Number of fs.watch notifications received, on the directory or an ancestor (for measurements). */
  events = 0;

  constructor(
    readonly file: string,
    private readonly opts: FileWatcherOptions,
  ) {
    this.dir = path.dirname(file);
    this.base = path.basename(file);
    this.logger = opts.logger ?? silentLogger;
  }

  /** Adds a listener; the first one starts watching. Returns the remover (the last one stops it). */
  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    if (this.listeners.size === 1) this.start();
    return () => {
      if (!this.listeners.delete(fn)) return;
      if (this.listeners.size === 0) this.stop();
    };
  }

  /** Re-reads now even if nothing seems to have changed. */
  refresh(): Promise<void> {
    return this.check(true);
  }

  private start(): void {
    this.state = undefined;
    this.armFsWatch();
    this.schedulePoll();
    void this.check(true);
  }

  private stop(): void {
    clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    this.fsw?.close();
    this.fsw = undefined;
    this.onAncestor = false;
  }

  private get active(): boolean {
    return this.listeners.size > 0;
  }

  private armFsWatch(): void {
    if (!this.opts.fsWatch || this.fsw) return;
    if (dirIdentity(this.dir) === undefined) return this.armOnAncestor();
    try {
      const w = fsWatch(this.dir, { persistent: false }, (_event, name) => {
        this.events++;
        if (name === path.basename(this.dir) && !this.dirIsWatched()) {
          // The directory itself went away: this watch is dead; the poll re-arms on its successor.
          if (this.fsw === w) this.fsw = undefined;
          w.close();
          this.lastRearmCheck = -Infinity;
          if (this.active) this.armFsWatch();
        }
        if (!name || name === this.base || !this.fsw) void this.check(false);
      });
      w.on('error', (err) => {
        this.logger.debug(
          { dir: this.dir, err: err.message },
          'file registry: directory watch failed; polling until it can be re-armed',
        );
        if (this.fsw === w) this.fsw = undefined;
        w.close();
      });
      this.fsw = w;
      this.onAncestor = false;
      this.watchedDir = dirIdentity(this.dir);
    } catch {
      // The directory does not exist yet (or cannot be watched): the poll re-arms later.
      this.fsw = undefined;
    }
  }

  /**
   * The registry directory does not exist yet (a fresh machine: it is created by the first
   * registration): watch the nearest existing ancestor, and move the watch down as soon as
   * something is created there, so the first registration is seen at once, not at the next re-arm.
   */
  private armOnAncestor(): void {
    let anc = path.dirname(this.dir);
    while (dirIdentity(anc) === undefined && path.dirname(anc) !== anc) anc = path.dirname(anc);
    try {
      const w = fsWatch(anc, { persistent: false }, () => {
        this.events++;
        if (this.fsw !== w) return;
        this.fsw = undefined;
        w.close();
        if (!this.active) return;
        this.armFsWatch();
        void this.check(false);
      });
      w.on('error', () => {
        if (this.fsw === w) this.fsw = undefined;
        w.close();
      });
      this.fsw = w;
      this.onAncestor = true;
      this.watchedDir = undefined;
      // Created between the lookup and the watch: move down now.
      if (dirIdentity(this.dir) !== undefined) {
        this.fsw = undefined;
        w.close();
        this.armFsWatch();
      }
    } catch {
      this.fsw = undefined; // the poll re-arms later
    }
  }

  private dirIsWatched(): boolean {
    const id = dirIdentity(this.dir);
    return id !== undefined && id === this.watchedDir;
  }

  /** The directory may have been removed and recreated: a watch on the old inode sees nothing. */
  private rearmIfNeeded(): void {
    if (!this.opts.fsWatch) return;
    const now = this.opts.now ? this.opts.now() : performance.now();
    if (now - this.lastRearmCheck < REARM_EVERY_MS) return;
    this.lastRearmCheck = now;
    if (this.fsw) {
      if (this.onAncestor ? dirIdentity(this.dir) === undefined : this.dirIsWatched()) return;
      this.fsw.close();
      this.fsw = undefined;
    }
    if (this.active) this.armFsWatch();
  }

  private schedulePoll(): void {
    if (!this.active) return;
    this.pollTimer = setTimeout(async () => {
      this.polls++;
      try {
        this.rearmIfNeeded();
      } catch {
        /* retried next tick */
      }
      await this.check(false);
      this.schedulePoll();
    }, this.opts.pollMs);
    this.pollTimer.unref();
  }

  /**
   * Coalesces concurrent triggers: at most one read runs, and one more follows if asked meanwhile.
   * The promise settles once a read that started after the call has completed.
   */
  private check(force: boolean): Promise<void> {
    if (this.checking) {
      this.again = true;
      this.forceAgain ||= force;
      return this.loop ?? Promise.resolve();
    }
    this.loop = this.runChecks(force);
    return this.loop;
  }

  private async runChecks(force: boolean): Promise<void> {
    this.checking = true;
    try {
      let f = force;
      do {
        this.again = false;
        this.forceAgain = false;
        await this.checkOnce(f);
        f = this.forceAgain;
      } while (this.again && this.active);
    } finally {
      this.checking = false;
    }
  }

  private async checkOnce(force: boolean): Promise<void> {
    if (!this.active) return;
    // The path every poll tick takes: one synchronous stat(2) of a local file (microseconds;
    // measured cheaper in CPU than a round trip through libuv's thread pool at 20 ticks/s).
    if (!force && this.state && quickSig(this.file) === this.state.sig) return;
    let sig: string;
    let next: ReadState;
    let fh: fsp.FileHandle | undefined;
    try {
      fh = await fsp.open(this.file, 'r');
      const st = await fh.stat();
      sig = sigOf(st);
      if (!force && this.state && sig === this.state.sig) return;
      this.reads++;
      const text = await fh.readFile('utf8');
      // Our writers replace the file atomically, so a zero-length file after a good read is a
      // non-atomic writer caught mid-write (truncate, then write): not "no services". Wait for the
      // next change; an empty file seen first is an empty registry (e.g. created with touch).
      if (text.trim() === '' && this.lastGood && Object.keys(this.lastGood.services).length > 0) return;
      try {
        next = { ok: true, doc: parseDoc(text), sig };
      } catch (e) {
        next = {
          ok: false,
          error: new RegistryUnavailableError(
            `file: ${this.file} is unreadable: ${(e as Error).message}; keeping the last good set`,
            { cause: e },
          ),
          sig,
        };
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        sig = 'absent';
        if (!force && this.state && sig === this.state.sig) return;
        next = { ok: true, doc: emptyDoc(), sig };
      } else {
        sig = `error:${code}`;
        if (!force && this.state && sig === this.state.sig) return;
        next = {
          ok: false,
          error: new RegistryUnavailableError(`file: cannot read ${this.file}: ${(e as Error).message}`, { cause: e }),
          sig,
        };
      }
    } finally {
      await fh?.close().catch(() => {});
    }
    if (!this.active) return;
    this.state = next;
    if (next.ok) this.lastGood = next.doc;
    for (const fn of [...this.listeners]) {
      try {
        fn();
      } catch (err) {
        this.logger.error({ err }, 'file registry: a watcher listener threw; ignored');
      }
    }
  }
}
