import type * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { silentLogger, type Logger, type Registrar, type Registration } from '../core';
import { defaultServeHost, gracefulStop, registerServing } from '../core/serving';

export interface ServeHttpOptions {
  /** Where to register: a Discovery, or anything with a registrar. */
  discovery: { registrar: Registrar };
  service: string;
  /** Port to listen on; 0 (default) picks a free one, and the port actually bound is registered. */
  port?: number;
  /** The address registered for clients. Default: the first non-internal IPv4 address, else 127.0.0.1. */
  host?: string;
  /** The address listened on. Default: `host` when given, else 0.0.0.0. */
  bindHost?: string;
  id?: string;
  weight?: number;
  zone?: string;
  metadata?: Record<string, string>;
  /**
   * How long to keep serving after deregistering, answering with `Connection: close`, so every
   * client learns of the removal before the server closes. Default 2000 ms (above the propagation
   * time of the watch-based registries; raise it for polling ones).
   */
  drainMs?: number;
  /** Bound on in-flight requests finishing after the drain; then their sockets are destroyed. Default 10000 ms. */
  shutdownTimeoutMs?: number;
  /** Signals that trigger stop(); false to install no handlers. Default SIGTERM and SIGINT. */
  signals?: NodeJS.Signals[] | false;
  logger?: Logger;
}

export interface HttpServed {
  /** The port actually bound (and registered). */
  readonly port: number;
  readonly host: string;
  readonly registration: Registration;
  /** True from deregistration on: responses carry `Connection: close`. */
  readonly draining: boolean;
  /** Deregister, drain, close (see serveHttp()). Idempotent. `{ force: true }` skips the drain and cuts connections. */
  stop(opts?: { force?: boolean }): Promise<void>;
}

type AnyHttpServer = http.Server;

function listen(server: AnyHttpServer, port: number, host: string): Promise<number> {
  if (server.listening) return Promise.resolve((server.address() as AddressInfo).port);
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * Listens, registers, and stops gracefully on SIGTERM/SIGINT or stop(), for any node:http or
 * node:https server (an Express or Koa app's server, Fastify's `server`). A server that already
 * listens is registered on its bound port.
 *
 * Stop sequence (core/serving.ts gracefulStop()):
 *   1. deregister (bounded at 5 s);
 *   2. for `drainMs` keep serving, every response with `Connection: close`, so clients that still
 *      pick this server get their answer and drop the connection;
 *   3. close idle keep-alive sockets and stop listening; in-flight requests finish, bounded by
 *      `shutdownTimeoutMs`;
 *   4. then the remaining sockets are destroyed.
 * Idle sockets are closed only after the drain, when clients have stopped picking this server: a
 * request written on a socket just as the server closes it is the one a client cannot safely retry
 * unless it is idempotent.
 */
export async function serveHttp(server: AnyHttpServer, opts: ServeHttpOptions): Promise<HttpServed> {
  if (!server || typeof server.listen !== 'function' || typeof server.closeIdleConnections !== 'function')
    throw new TypeError('serveHttp(): server must be a node:http or node:https Server');
  if (!opts || typeof opts !== 'object' || !opts.discovery?.registrar)
    throw new TypeError('serveHttp(): opts.discovery (with a registrar) is required');
  const logger = opts.logger ?? silentLogger;
  const drainMs = opts.drainMs ?? 2000;
  const shutdownTimeoutMs = opts.shutdownTimeoutMs ?? 10_000;
  if (!(drainMs >= 0) || !(shutdownTimeoutMs >= 0))
    throw new TypeError('serveHttp(): drainMs and shutdownTimeoutMs must be non-negative');
  const host = opts.host ?? defaultServeHost();
  const bindHost = opts.bindHost ?? (opts.host !== undefined ? opts.host : '0.0.0.0');
  const port = await listen(server, opts.port ?? 0, bindHost);

  let draining = false;
  // First listener, so the header is set before the application writes its response.
  const onRequest = (_req: http.IncomingMessage, res: http.ServerResponse) => {
    if (draining && !res.headersSent) res.setHeader('Connection', 'close');
  };
  server.prependListener('request', onRequest);

  let registration: Registration;
  try {
    registration = await registerServing(opts.discovery.registrar, opts, host, port, logger, 'serveHttp()');
  } catch (e) {
    server.off('request', onRequest);
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
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
    label: 'serveHttp()',
    onDrainStart: () => {
      draining = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
    forceClose: () => {
      draining = true;
      server.closeAllConnections();
      if (server.listening) server.close();
    },
  });

  return {
    port,
    host,
    registration,
    get draining() {
      return draining;
    },
    stop,
  };
}
