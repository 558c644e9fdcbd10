import * as grpc from '@grpc/grpc-js';
import * as os from 'node:os';
import {
  delay,
  hostPort,
  silentLogger,
  type InstanceSpec,
  type Logger,
  type Registrar,
  type Registration,
} from '../core';
import { HealthService } from './health';

export interface ServeOptions {
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
  /** Default: insecure. */
  credentials?: grpc.ServerCredentials;
  id?: string;
  weight?: number;
  zone?: string;
  metadata?: Record<string, string>;
  /**
   * How long to keep serving after deregistering, so that every client learns of the removal and
   * stops picking this server before it shuts down. Default 2000 ms: above the propagation time of
   * the watch-based registries; raise it for polling ones (DNS TTL, file poll). Clients that
   * health-check (healthCheckConfig) stop at the NOT_SERVING sent when the drain starts, so for
   * them a short drain is enough (docs/benchmarks.md, health-drain).
   */
  drainMs?: number;
  /** Bound on tryShutdown() waiting for in-flight calls; then forceShutdown(). Default 10000 ms. */
  shutdownTimeoutMs?: number;
  /**
   * The grpc.health.v1 service serve() adds to the server (clients with a `healthCheckConfig` in
   * their service config watch it, gRFC A17): '' and `service` are SERVING until the drain starts,
   * then NOT_SERVING, so health-checking clients stop sending before the deregistration reaches
   * them. Pass your own HealthService to set more names, or false to add none. A server that
   * already has a Health service keeps it (and serve() cannot flip it at the drain).
   */
  health?: HealthService | false;
  /** Signals that trigger stop(); false to install no handlers. Default SIGTERM and SIGINT. */
  signals?: NodeJS.Signals[] | false;
  logger?: Logger;
}

export interface Served {
  /** The port actually bound (and registered). */
  readonly port: number;
  readonly host: string;
  readonly registration: Registration;
  /**
   * The health service serve() added (set statuses with `health.setStatus(name, 'NOT_SERVING')`),
   * or undefined when disabled or the server had its own.
   */
  readonly health: HealthService | undefined;
  /**
   * Deregister, drain, shut down (see serve()). Idempotent: every call returns the same promise.
   * `{ force: true }` skips the drain and cancels in-flight calls.
   */
  stop(opts?: { force?: boolean }): Promise<void>;
}

const DEFAULT_DRAIN_MS = 2000;
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;
const DEREGISTER_TIMEOUT_MS = 5000;

function defaultHost(): string {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

function bindAsync(server: grpc.Server, address: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port))),
  );
}

function bounded<T>(p: Promise<T>, ms: number, signal?: AbortSignal): Promise<T | 'timeout'> {
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

/**
 * Binds `server`, registers it, and stops it gracefully on SIGTERM/SIGINT or stop().
 *
 * Shutdown sequence (stop(), or the first signal):
 *   0. the health service reports NOT_SERVING for every name (clients that health-check move away
 *      within one round trip);
 *   1. deregister (bounded at 5 s; a failure is logged and shutdown continues: a registry with
 *      TTLs drops us anyway);
 *   2. keep serving for `drainMs` while clients see the removal and move their new calls away;
 *   3. server.tryShutdown(): no new streams, in-flight calls finish, bounded by `shutdownTimeoutMs`;
 *   4. server.forceShutdown() if calls are still running then.
 * A second signal during 1-3 skips ahead to forceShutdown. After a signal-triggered stop the
 * handlers are removed and, if no other listener for that signal exists, the signal is raised
 * again so the process ends the way it would have without us (exit by SIGTERM/SIGINT).
 */
export async function serve(server: grpc.Server, opts: ServeOptions): Promise<Served> {
  if (!(server instanceof grpc.Server)) throw new TypeError('serve(): server must be a @grpc/grpc-js Server');
  if (!opts || typeof opts !== 'object' || !opts.discovery?.registrar)
    throw new TypeError('serve(): opts.discovery (with a registrar) is required');
  const logger = opts.logger ?? silentLogger;
  const drainMs = opts.drainMs ?? DEFAULT_DRAIN_MS;
  const shutdownTimeoutMs = opts.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
  if (!(drainMs >= 0) || !(shutdownTimeoutMs >= 0))
    throw new TypeError('serve(): drainMs and shutdownTimeoutMs must be non-negative');
  const host = opts.host ?? defaultHost();
  const bindHost = opts.bindHost ?? (opts.host !== undefined ? opts.host : '0.0.0.0');
  let health: HealthService | undefined;
  if (opts.health !== false) {
    const h = opts.health ?? new HealthService({ '': 'SERVING' });
    if (h.addTo(server)) {
      health = h;
      if (h.getStatus(opts.service) === 'SERVICE_UNKNOWN') h.setStatus(opts.service, 'SERVING');
    } else
      logger.info(
        { service: opts.service },
        'serve(): the server has its own grpc.health.v1 service; it is not set NOT_SERVING at the drain',
      );
  }
  const port = await bindAsync(
    server,
    hostPort(bindHost, opts.port ?? 0),
    opts.credentials ?? grpc.ServerCredentials.createInsecure(),
  );

  const spec: InstanceSpec = { service: opts.service, host, port };
  if (opts.id !== undefined) spec.id = opts.id;
  if (opts.weight !== undefined) spec.weight = opts.weight;
  if (opts.zone !== undefined) spec.zone = opts.zone;
  if (opts.metadata !== undefined) spec.metadata = opts.metadata;
  let registration: Registration;
  try {
    registration = await opts.discovery.registrar.register(spec);
  } catch (e) {
    server.forceShutdown();
    throw e;
  }
  registration.on('lost', (err) =>
    logger.warn(
      { service: opts.service, port, err: err?.message },
      'serve(): registration lost; the registrar is restoring it',
    ),
  );

  const signals = opts.signals === false ? [] : (opts.signals ?? (['SIGTERM', 'SIGINT'] as NodeJS.Signals[]));
  const force = new AbortController();
  let stopping: Promise<void> | undefined;
  let raisedBy: NodeJS.Signals | undefined;

  const removeHandlers = () => {
    for (const s of signals) process.off(s, onSignal);
  };
  function onSignal(sig: NodeJS.Signals): void {
    if (stopping) {
      logger.warn({ signal: sig }, 'serve(): second signal; forcing shutdown');
      force.abort();
      return;
    }
    raisedBy = sig;
    logger.info({ signal: sig, service: opts.service, port }, 'serve(): signal received; deregistering and draining');
    void stop().catch((err) => logger.error({ err }, 'serve(): graceful stop failed'));
  }
  for (const s of signals) process.on(s, onSignal);

  const shutdown = async (): Promise<void> => {
    health?.shutdown();
    try {
      const r = await bounded(registration.deregister(), DEREGISTER_TIMEOUT_MS, force.signal);
      if (r === 'timeout' && !force.signal.aborted)
        logger.warn({ service: opts.service, port }, 'serve(): deregister timed out; shutting down anyway');
    } catch (err) {
      logger.warn({ err, service: opts.service, port }, 'serve(): deregister failed; shutting down anyway');
    }
    if (drainMs > 0 && !force.signal.aborted) await delay(drainMs, force.signal).catch(() => undefined);
    if (!force.signal.aborted) {
      const tried = await bounded(
        new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
        shutdownTimeoutMs,
        force.signal,
      );
      if (tried !== 'timeout') return;
      logger.warn({ service: opts.service, port }, 'serve(): calls still running after the shutdown timeout; forcing');
    }
    server.forceShutdown();
  };

  function stop(o: { force?: boolean } = {}): Promise<void> {
    if (o.force) force.abort();
    stopping ??= shutdown().finally(() => {
      removeHandlers();
      if (raisedBy && process.listenerCount(raisedBy) === 0) process.kill(process.pid, raisedBy);
    });
    return stopping;
  }

  return { port, host, registration, health, stop };
}
