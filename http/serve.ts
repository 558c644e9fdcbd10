import type * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registration } from '../core';
import { registerAndManage, serveSettings, type ServeCommonOptions } from '../core/serving';

/**
 * The options of grpc serve() (core/serving.ts): discovery, service, port, host, bindHost, id,
 * weight, zone, metadata, drainMs (answering with `Connection: close` meanwhile),
 * shutdownTimeoutMs (then the remaining sockets are destroyed), signals, logger.
 */
export type ServeHttpOptions = ServeCommonOptions;

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
  const settings = serveSettings(opts, 'serveHttp()');
  const { host, bindHost } = settings;
  const port = await listen(server, opts.port ?? 0, bindHost);

  let draining = false;
  // First listener, so the header is set before the application writes its response.
  const onRequest = (_req: http.IncomingMessage, res: http.ServerResponse) => {
    if (draining && !res.headersSent) res.setHeader('Connection', 'close');
  };
  server.prependListener('request', onRequest);

  const { registration, stop } = await registerAndManage(opts, settings, port, 'serveHttp()', {
    abort: async () => {
      server.off('request', onRequest);
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
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
