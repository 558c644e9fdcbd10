import * as os from 'node:os';
import type { InstanceSpec, Logger, Registrar, Registration } from './model';
import { delay, silentLogger } from './util';

/**
 * What every server integration (grpc/serve.ts, http/serve.ts) shares: the default registered
 * address, registration with its 'lost' logging, and the graceful stop sequence driven by
 * SIGTERM/SIGINT or stop(). Protocol-specific steps are passed in.
 */

/** The first non-internal IPv4 address of this machine, else 127.0.0.1. */
export function defaultServeHost(): string {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

/** `p`, or 'timeout' after `ms` or when `signal` aborts. */
export function bounded<T>(p: Promise<T>, ms: number, signal?: AbortSignal): Promise<T | 'timeout'> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => resolve('timeout'), ms);
    const onAbort = () => {
      clearTimeout(t);
      resolve('timeout');
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        clearTimeout(t);
        signal?.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        signal?.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** The options every server integration takes (grpc serve(), http serveHttp()). */
export interface ServeCommonOptions {
  /** Where to register: a Discovery, or anything with a registrar. */
  discovery: { registrar: Registrar };
  service: string;
  /** Port to bind; 0 (default) picks a free one, and the port actually bound is registered. */
  port?: number;
  /**
   * The address registered for clients. Default: the first non-internal IPv4 address of this
   * machine, else 127.0.0.1.
   */
  host?: string;
  /** The address bound. Default: `host` when given, else 0.0.0.0. */
  bindHost?: string;
  id?: string;
  weight?: number;
  zone?: string;
  metadata?: Record<string, string>;
  /**
   * How long to keep serving after deregistering, so that every client learns of the removal and
   * stops picking this server before it shuts down. Default 2000 ms: above the propagation time of
   * the watch-based registries; raise it for polling ones (DNS TTL, file poll).
   */
  drainMs?: number;
  /** Bound on in-flight work finishing after the drain; then it is cancelled. Default 10000 ms. */
  shutdownTimeoutMs?: number;
  /** Signals that trigger stop(); false to install no handlers. Default SIGTERM and SIGINT. */
  signals?: NodeJS.Signals[] | false;
  logger?: Logger;
}

export type ServeRegistrationOptions = Pick<ServeCommonOptions, 'service' | 'id' | 'weight' | 'zone' | 'metadata'>;

/** ServeCommonOptions checked and defaulted; throws TypeError (prefixed with `label`) for misuse. */
export function serveSettings(
  opts: ServeCommonOptions,
  label: string,
): { logger: Logger; drainMs: number; shutdownTimeoutMs: number; host: string; bindHost: string } {
  if (!opts || typeof opts !== 'object' || !opts.discovery?.registrar)
    throw new TypeError(`${label}: opts.discovery (with a registrar) is required`);
  const drainMs = opts.drainMs ?? 2000;
  const shutdownTimeoutMs = opts.shutdownTimeoutMs ?? 10_000;
  if (!(drainMs >= 0) || !(shutdownTimeoutMs >= 0))
    throw new TypeError(`${label}: drainMs and shutdownTimeoutMs must be non-negative`);
  const host = opts.host ?? defaultServeHost();
  return {
    logger: opts.logger ?? silentLogger,
    drainMs,
    shutdownTimeoutMs,
    host,
    bindHost: opts.bindHost ?? (opts.host !== undefined ? opts.host : '0.0.0.0'),
  };
}

/** Registers `host:port` with the optional attributes given; logs (does not throw on) 'lost'. */
export async function registerServing(
  registrar: Registrar,
  opts: ServeRegistrationOptions,
  host: string,
  port: number,
  logger: Logger,
  label: string,
): Promise<Registration> {
  const spec: InstanceSpec = { service: opts.service, host, port };
  if (opts.id !== undefined) spec.id = opts.id;
  if (opts.weight !== undefined) spec.weight = opts.weight;
  if (opts.zone !== undefined) spec.zone = opts.zone;
  if (opts.metadata !== undefined) spec.metadata = opts.metadata;
  const registration = await registrar.register(spec);
  registration.on('lost', (err) =>
    logger.warn(
      { service: opts.service, port, err: err?.message },
      `${label}: registration lost; the registrar is restoring it`,
    ),
  );
  return registration;
}

export interface GracefulStopOptions {
  registration: Registration;
  service: string;
  port: number;
  /** How long to keep serving after deregistering. */
  drainMs: number;
  /** Bound on `close()` waiting for in-flight work; then `forceClose()`. */
  shutdownTimeoutMs: number;
  /** Signals that trigger stop(); false for none. Default SIGTERM and SIGINT. */
  signals?: NodeJS.Signals[] | false;
  logger: Logger;
  /** e.g. "serve()" or "serveHttp()", prefixed to log lines. */
  label: string;
  /** Called first, before deregistering (serve(): health reports NOT_SERVING). */
  onStopStart?(): void;
  /** Called right after deregistering, when the drain starts. */
  onDrainStart?(): void;
  /** Stop accepting, let in-flight work finish; resolves when closed. */
  close(): Promise<void>;
  /** Cancel whatever still runs. */
  forceClose(): void;
}

export const DEREGISTER_TIMEOUT_MS = 5000;

/**
 * The stop sequence (stop(), or the first signal):
 *   0. onStopStart() (serve(): the health service reports NOT_SERVING);
 *   1. deregister (bounded at 5 s; a failure is logged and shutdown continues: a registry with
 *      TTLs drops us anyway);
 *   2. onDrainStart(), then keep serving for `drainMs` while clients see the removal;
 *   3. close(): in-flight work finishes, bounded by `shutdownTimeoutMs`;
 *   4. forceClose() if work is still running then.
 * A second signal during 1-3 skips ahead to forceClose. After a signal-triggered stop the
 * handlers are removed and, if no other listener for that signal exists, the signal is raised
 * again so the process ends the way it would have without us (exit by SIGTERM/SIGINT).
 * Returns stop(): idempotent, every call returns the same promise; `{ force: true }` skips the
 * drain and cancels in-flight work.
 */
export function gracefulStop(o: GracefulStopOptions): (opts?: { force?: boolean }) => Promise<void> {
  const { logger, label, service, port } = o;
  const signals = o.signals === false ? [] : (o.signals ?? (['SIGTERM', 'SIGINT'] as NodeJS.Signals[]));
  const force = new AbortController();
  let stopping: Promise<void> | undefined;
  let raisedBy: NodeJS.Signals | undefined;

  const removeHandlers = () => {
    for (const s of signals) process.off(s, onSignal);
  };
  function onSignal(sig: NodeJS.Signals): void {
    if (stopping) {
      logger.warn({ signal: sig }, `${label}: second signal; forcing shutdown`);
      force.abort();
      return;
    }
    raisedBy = sig;
    logger.info({ signal: sig, service, port }, `${label}: signal received; deregistering and draining`);
    void stop().catch((err) => logger.error({ err }, `${label}: graceful stop failed`));
  }
  for (const s of signals) process.on(s, onSignal);

  const shutdown = async (): Promise<void> => {
    o.onStopStart?.();
    try {
      const r = await bounded(o.registration.deregister(), DEREGISTER_TIMEOUT_MS, force.signal);
      if (r === 'timeout' && !force.signal.aborted)
        logger.warn({ service, port }, `${label}: deregister timed out; shutting down anyway`);
    } catch (err) {
      logger.warn({ err, service, port }, `${label}: deregister failed; shutting down anyway`);
    }
    o.onDrainStart?.();
    if (o.drainMs > 0 && !force.signal.aborted) await delay(o.drainMs, force.signal).catch(() => undefined);
    if (!force.signal.aborted) {
      const tried = await bounded(o.close(), o.shutdownTimeoutMs, force.signal);
      if (tried !== 'timeout') return;
      logger.warn({ service, port }, `${label}: work still running after the shutdown timeout; forcing`);
    }
    o.forceClose();
  };

  function stop(opts: { force?: boolean } = {}): Promise<void> {
    if (opts.force) force.abort();
    stopping ??= shutdown().finally(() => {
      removeHandlers();
      if (raisedBy && process.listenerCount(raisedBy) === 0) process.kill(process.pid, raisedBy);
    });
    return stopping;
  }
  return stop;
}

/**
 * registerServing() then gracefulStop(), for a server already bound to `port`: what serve() and
 * serveHttp() do after binding. `hooks.abort` releases the server when registration fails.
 */
export async function registerAndManage(
  opts: ServeCommonOptions,
  settings: ReturnType<typeof serveSettings>,
  port: number,
  label: string,
  hooks: Pick<GracefulStopOptions, 'close' | 'forceClose' | 'onDrainStart' | 'onStopStart'> & {
    abort(): Promise<void> | void;
  },
): Promise<{ registration: Registration; stop: (o?: { force?: boolean }) => Promise<void> }> {
  const { logger, drainMs, shutdownTimeoutMs, host } = settings;
  let registration: Registration;
  try {
    registration = await registerServing(opts.discovery.registrar, opts, host, port, logger, label);
  } catch (e) {
    await hooks.abort();
    throw e;
  }
  const stop = gracefulStop({
    registration,
    service: opts.service,
    port,
    drainMs,
    shutdownTimeoutMs,
    signals: opts.signals,
    logger,
    label,
    ...hooks,
  });
  return { registration, stop };
}
