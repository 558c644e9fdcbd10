import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * Shared plumbing for the real-server launchers (etcd, ZooKeeper, dnsmasq) and fakes: free ports,
 * temp dirs, bounded waits, binaries that must exist under CI, and child processes that are killed
 * when the test process exits.
 */

/** A free TCP port on 127.0.0.1 (bound then released; the launcher binds it right after). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export function tempDir(prefix = 'wayfinder-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export class TimeoutError extends Error {
  constructor(what: string, ms: number, last?: unknown) {
    super(
      `timed out after ${ms} ms waiting for ${what}${last !== undefined ? ` (last: ${last instanceof Error ? last.message : String(last)})` : ''}`,
    );
    this.name = 'TimeoutError';
  }
}

/**
 * Polls `probe` until it returns a truthy value (or resolves to one), bounded by `timeoutMs`.
 * For conditions with no event to wait on (a port accepting, a server answering). Errors thrown by
 * the probe count as "not yet" and the last one is reported on timeout.
 */
export async function waitFor<T>(
  what: string,
  probe: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const interval = opts.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= deadline) throw new TimeoutError(what, timeoutMs, last);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Races a promise against a deadline. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new TimeoutError(what, ms)), ms);
    }),
  ]);
}

/** Raised when a server binary is missing; under CI=true tests must fail on it, never skip. */
export class MissingBinaryError extends Error {
  constructor(
    readonly binary: string,
    readonly pkg: string,
  ) {
    super(`${binary} not found: install Debian's "${pkg}" (npm test does this when run as root)`);
    this.name = 'MissingBinaryError';
  }
}

/** Finds a binary on PATH or at one of `candidates`; throws MissingBinaryError naming the package. */
export function findBinary(name: string, pkg: string, candidates: string[] = []): string {
  for (const c of candidates) if (existsSync(c)) return c;
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  throw new MissingBinaryError(name, pkg);
}

/**
 * For mocha `before` hooks: returns true when the binary exists. When it does not, under CI it
 * throws (a failure), otherwise it skips the suite with the reason.
 */
export function requireBinaryOrSkip(ctx: { skip(): void }, find: () => unknown): boolean {
  try {
    find();
    return true;
  } catch (e) {
    if (e instanceof MissingBinaryError && !process.env.CI) {
      console.warn(`    skipped: ${e.message}`);
      ctx.skip();
    }
    throw e;
  }
}

const children = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = () => {
    for (const c of children) {
      try {
        if (c.pid) process.kill(-c.pid, 'SIGKILL');
      } catch {
        try {
          c.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
  };
  process.on('exit', killAll);
}

export interface ManagedProcess {
  readonly child: ChildProcess;
  /** Combined stdout+stderr, last 64 KiB, for error messages. */
  output(): string;
  /** Resolves with the exit code/signal when the process ends. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs`. Resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Spawns a server in its own process group, captured output, killed at test-process exit. */
export function spawnManaged(cmd: string, args: string[], opts: SpawnOptions = {}): ManagedProcess {
  installExitHook();
  const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  children.add(child);
  let out = '';
  const onData = (d: Buffer) => {
    out += d.toString();
    if (out.length > 65536) out = out.slice(-65536);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
    child.once('error', (err) => {
      out += `\nspawn error: ${err.message}`;
      children.delete(child);
      resolve({ code: -1, signal: null });
    });
  });
  const signalGroup = (sig: NodeJS.Signals) => {
    try {
      if (child.pid) process.kill(-child.pid, sig);
    } catch {
      try {
        child.kill(sig);
      } catch {
        /* gone */
      }
    }
  };
  const isRunning = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    output: () => out,
    exited,
    async stop(graceMs = 5000) {
      if (!isRunning()) return void (await exited);
      signalGroup('SIGTERM');
      const t = setTimeout(() => signalGroup('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (!isRunning()) return void (await exited);
      signalGroup(signal);
      if (signal === 'SIGKILL' || signal === 'SIGTERM') await exited;
    },
  };
}

/** Resolves once host:port accepts a TCP connection. */
export async function tcpReady(host: string, port: number, timeoutMs = 10_000): Promise<void> {
  await waitFor(
    `${host}:${port} to accept connections`,
    () =>
      new Promise<boolean>((resolve) => {
        const s = net.connect({ host, port });
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      }),
    { timeoutMs },
  );
}
