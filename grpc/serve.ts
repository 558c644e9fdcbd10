import * as grpc from '@grpc/grpc-js';
import { hostPort, type Registration } from '../core';
import { registerAndManage, serveSettings, type ServeCommonOptions } from '../core/serving';

export interface ServeOptions extends ServeCommonOptions {
  /** Default: insecure. */
  credentials?: grpc.ServerCredentials;
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
  const settings = serveSettings(opts, 'serve()');
  const { host, bindHost } = settings;
  const port = await bindAsync(
    server,
    hostPort(bindHost, opts.port ?? 0),
    opts.credentials ?? grpc.ServerCredentials.createInsecure(),
  );

  const { registration, stop } = await registerAndManage(opts, settings, port, 'serve()', {
    abort: () => server.forceShutdown(),
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
    forceClose: () => server.forceShutdown(),
  });
  return { port, host, registration, stop };
}
