import * as grpc from '@grpc/grpc-js';
import { hostPort, silentLogger, type Logger, type Registrar, type Registration } from '../core';
import { defaultServeHost, gracefulStop, registerServing } from '../core/serving';

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
   * the watch-based registries; raise it for polling ones (DNS TTL, file poll).
   */
  drainMs?: number;
  /** Bound on tryShutdown() waiting for in-flight calls; then forceShutdown(). Default 10000 ms. */
  shutdownTimeoutMs?: number;
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
   * Deregister, drain, shut down (see serve()). Idempotent: every call returns the same promise.
   * `{ force: true }` skips the drain and cancels in-flight calls.
   */
  stop(opts?: { force?: boolean }): Promise<void>;
}

const DEFAULT_DRAIN_MS = 2000;
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;

function bindAsync(server: grpc.Server, address: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port))),
  );
}

/**
 * Binds `server`, registers it, and stops it gracefully on SIGTERM/SIGINT or stop().
 *
 * Shutdown sequence (stop(), or the first signal; core/serving.ts gracefulStop()):
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
  const host = opts.host ?? defaultServeHost();
  const bindHost = opts.bindHost ?? (opts.host !== undefined ? opts.host : '0.0.0.0');
  const port = await bindAsync(
    server,
    hostPort(bindHost, opts.port ?? 0),
    opts.credentials ?? grpc.ServerCredentials.createInsecure(),
  );

  let registration: Registration;
  try {
    registration = await registerServing(opts.discovery.registrar, opts, host, port, logger, 'serve()');
  } catch (e) {
    server.forceShutdown();
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
    label: 'serve()',
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
    forceClose: () => server.forceShutdown(),
  });

  return { port, host, registration, stop };
}
