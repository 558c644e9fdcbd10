import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import { RegistryUnavailableError, delay, silentLogger, type Logger } from '../../core';

/**
 * A cross-process lock file next to the registry file: created with O_EXCL ('wx'), holding
 * `{pid, hostname, time, nonce}`. Held only for one read-modify-write of the registry (a few ms).
 *
 * A lock is stale, and is broken, when its pid is dead on this host, or when it is older than
 * LOCK_STALE_MS (a hung holder, a holder on another host, or an unreadable lock file by its mtime).
 * Breakers serialise on a second `.break` lock and re-check that the lock file is still the very
 * one they judged stale (same inode and content) before unlinking it, so two breakers never remove
 * a fresh lock taken in between.
 */

/** A lock older than this is broken even if its holder's pid is alive. */
export const LOCK_STALE_MS = 5_000;
/** acquireLock() gives up after this long (longer than LOCK_STALE_MS, so a stale lock is broken first). */
export const LOCK_TIMEOUT_MS = 10_000;

export interface LockInfo {
  pid: number;
  hostname: string;
  /** Epoch ms when taken. */
  time: number;
  nonce: string;
}

export interface LockOptions {
  timeoutMs?: number;
  staleMs?: number;
  logger?: Logger;
  /**
   * Wall-clock epoch ms (default Date.now): lock times are read by other processes and compared
   * with file mtimes, so this is wall time, injectable for tests.
   */
  wallNow?: () => number;
  /** [0, 1) for the jitter of the wait between attempts (default Math.random). */
  random?: () => number;
}

/** True unless the pid certainly does not exist (ESRCH). EPERM means it exists under another user. */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Nonces of the locks this process holds now (to recognise a lock left by an earlier process with our pid). */
const held = new Set<string>();

interface Observed {
  ino: number;
  content: string;
}

async function observe(file: string): Promise<Observed | undefined> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(file, 'r');
    const st = await fh.stat();
    const content = await fh.readFile('utf8');
    return { ino: st.ino, content };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  } finally {
    await fh?.close().catch(() => {});
  }
}

function parseInfo(content: string): LockInfo | undefined {
  try {
    const o = JSON.parse(content);
    if (
      o &&
      typeof o === 'object' &&
      Number.isInteger(o.pid) &&
      typeof o.time === 'number' &&
      typeof o.nonce === 'string'
    )
      return o as LockInfo;
  } catch {
    /* unreadable: judged by mtime */
  }
  return undefined;
}

/** Why a lock is stale, or undefined when it must be respected. */
async function staleReason(
  file: string,
  obs: Observed,
  staleMs: number,
  wallNow: () => number,
): Promise<string | undefined> {
  const info = parseInfo(obs.content);
  if (info) {
    if (info.hostname === os.hostname()) {
      if (info.pid === process.pid && !held.has(info.nonce))
        return `it was left by an earlier process with our pid ${info.pid}`;
      if (!pidAlive(info.pid)) return `its holder pid ${info.pid} is dead`;
    }
    const age = wallNow() - info.time;
    if (age > staleMs) return `it is ${age} ms old (held by pid ${info.pid} on ${info.hostname})`;
    return undefined;
  }
  // Unparsable (a holder died between creating and writing it, or someone else's file): by mtime.
  try {
    const st = await fsp.stat(file);
    const age = wallNow() - st.mtimeMs;
    return age > staleMs ? `it is unreadable and ${Math.round(age)} ms old` : undefined;
  } catch {
    return undefined;
  }
}

/** Removes `file` only if it is still exactly what was observed, serialised with other breakers. */
async function breakLock(
  file: string,
  obs: Observed,
  reason: string,
  staleMs: number,
  clock: Required<Pick<LockOptions, 'wallNow' | 'logger'>>,
): Promise<void> {
  const { wallNow, logger } = clock;
  const breaker = `${file}.break`;
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(breaker, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // Another process is breaking it. A breaker lock left by a process that died mid-break
    // (a window of microseconds) is removed once clearly older than any break takes.
    const st = await fsp.stat(breaker).catch(() => undefined);
    if (st && wallNow() - st.mtimeMs > Math.min(staleMs, 2000)) await fsp.unlink(breaker).catch(() => {});
    return;
  }
  try {
    await fh.writeFile(JSON.stringify({ pid: process.pid, hostname: os.hostname(), time: wallNow() }));
    await fh.close();
    const now = await observe(file);
    if (now && now.ino === obs.ino && now.content === obs.content) {
      await fsp.unlink(file).catch((e) => {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      });
      logger.warn({ lock: file, reason }, `file registry: broke a stale lock because ${reason}`);
    }
  } finally {
    await fsp.unlink(breaker).catch(() => {});
  }
}

/**
 * Takes the lock at `file`, waiting (bounded by timeoutMs) while another live holder has it.
 * Resolves with the release function, which removes the lock only if it is still ours.
 * Rejects with RegistryUnavailableError on timeout or when the directory cannot be written.
 */
export async function acquireLock(file: string, opts: LockOptions = {}): Promise<() => Promise<void>> {
  const timeoutMs = opts.timeoutMs ?? LOCK_TIMEOUT_MS;
  const staleMs = opts.staleMs ?? LOCK_STALE_MS;
  const logger = opts.logger ?? silentLogger;
  const wallNow = opts.wallNow ?? Date.now;
  const random = opts.random ?? Math.random;
  const start = wallNow();
  let wait = 1;
  let holder: string;
  for (;;) {
    const info: LockInfo = {
      pid: process.pid,
      hostname: os.hostname(),
      time: wallNow(),
      nonce: randomBytes(8).toString('hex'),
    };
    let fh: fsp.FileHandle | undefined;
    try {
      fh = await fsp.open(file, 'wx');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST')
        throw new RegistryUnavailableError(`file: cannot create lock ${file}: ${(e as Error).message}`, { cause: e });
    }
    if (fh) {
      try {
        await fh.writeFile(JSON.stringify(info));
        await fh.close();
      } catch (e) {
        await fh.close().catch(() => {});
        await fsp.unlink(file).catch(() => {});
        throw new RegistryUnavailableError(`file: cannot write lock ${file}: ${(e as Error).message}`, { cause: e });
      }
      held.add(info.nonce);
      return () => releaseLock(file, info, logger, wallNow);
    }
    let obs: Observed | undefined;
    let unreadable: unknown;
    try {
      obs = await observe(file);
      if (!obs) continue; // released between our open and our look: try again at once
    } catch (e) {
      unreadable = e; // e.g. EACCES: wait it out like any held lock, bounded by the timeout
    }
    if (obs) {
      const reason = await staleReason(file, obs, staleMs, wallNow);
      if (reason) {
        await breakLock(file, obs, reason, staleMs, { wallNow, logger });
        // Removed (retry at once), or another process is breaking it (give it a moment).
        if (!(await exists(file))) continue;
      }
      const other = parseInfo(obs.content);
      holder = other
        ? `pid ${other.pid} on ${other.hostname} since ${new Date(other.time).toISOString()}`
        : 'an unknown holder';
    } else {
      holder = `an unreadable lock (${(unreadable as Error).message})`;
    }
    if (wallNow() - start >= timeoutMs)
      throw new RegistryUnavailableError(
        `file: timed out after ${timeoutMs} ms waiting for lock ${file} held by ${holder}`,
      );
    // Jittered, growing wait: holders keep it for milliseconds.
    await delay(wait + random() * wait);
    wait = Math.min(wait * 2, 20);
  }
}

async function exists(file: string): Promise<boolean> {
  return fsp.stat(file).then(
    () => true,
    () => false,
  );
}

async function releaseLock(file: string, info: LockInfo, logger: Logger, wallNow: () => number): Promise<void> {
  try {
    const obs = await observe(file).catch(() => undefined);
    const cur = obs && parseInfo(obs.content);
    if (cur && cur.nonce === info.nonce) {
      await fsp.unlink(file).catch(() => {});
      return;
    }
    logger.warn(
      { lock: file, heldMs: wallNow() - info.time },
      'file registry: our lock was broken while held (held longer than the stale bound)',
    );
  } finally {
    held.delete(info.nonce);
  }
}
