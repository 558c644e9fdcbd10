import * as grpc from '@grpc/grpc-js';
import { hostPort, type Registration } from '../core';
import { registerAndManage, serveSettings, type ServeCommonOptions } from '../core/serving';
import { HealthService } from './health';

export interface ServeOptions extends ServeCommonOptions {
  /** Default: insecure. */
  credentials?: grpc.ServerCredentials;
  /**
   * The grpc.health.v1 service serve() adds to the server (clients with a `healthCheckConfig` in
   * their service config watch it, gRFC A17): '' and `service` are SERVING until the drain starts,
   * then NOT_SERVING, so health-checking clients stop sending before the deregistration reaches
   * them (for them a short `drainMs` is enough: docs/benchmarks.md, health-drain). Pass your own
   * HealthService to set more names, or false to add none. A server that already has a Health
   * service keeps it (and serve() cannot flip it at the drain).
   */
  health?: HealthService | false;
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

function bindAsync(server: grpc.Server, address: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port))),
  );
}

/**
 * Binds `server`, registers it, and stops it gracefully on SIGTERM/SIGINT or stop().
 *
 * Shutdown sequence (stop(), or the first signal; core/serving.ts gracefulStop()):
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
  const settings = serveSettings(opts, 'serve()');
  const { host, bindHost, logger } = settings;
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

  const { registration, stop } = await registerAndManage(opts, settings, port, 'serve()', {
    abort: () => server.forceShutdown(),
    onStopStart: () => health?.shutdown(),
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
    forceClose: () => server.forceShutdown(),
  });
  return { port, host, registration, health, stop };
}
