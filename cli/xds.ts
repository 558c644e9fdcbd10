import { type Command, Option } from 'commander';
import { Discovery } from '../core';
import { loadXdsConfig, startXdsServer, type XdsConfig, type XdsServer } from '../xds';
import { port, type BalancerIo } from './balancer';

/** The part of the CLI's io this command uses (see cli/main.ts): `wayfinder balancer`'s, and SIGHUP. */
export interface XdsIo extends BalancerIo {
  /** Calls fn on every SIGHUP until the returned function is called. */
  hangups(fn: () => void): () => void;
}

/**
 * `wayfinder xds --registry <url> --port <p> [--config <policy file>]`: an xDS control plane (ADS
 * + LRS) serving the registry's services until interrupted. Here the global --config names the
 * per-service policy file (JSON/YAML), not a registry config: the registry comes from --registry
 * or WAYFINDER_REGISTRY. Prints one line when listening and, on exit, the load reports as JSON.
 * SIGHUP reads the policy file again: a valid one is applied (clients get the changed resources),
 * a malformed one is reported naming the field and the policy in force stays.
 */
export function addXdsCommand(program: Command, io: XdsIo): Command {
  return program
    .command('xds')
    .description(
      'run an xDS control plane (ADS + LRS) over the registry for proxyless gRPC clients, until Ctrl-C; ' +
        '--config names a per-service policy file (lbPolicy, outlierDetection, maxRequests)',
    )
    .addOption(
      new Option('-p, --port <port>', 'port to listen on (0: any free port)').argParser(port).makeOptionMandatory(),
    )
    .option('-H, --host <host>', 'address to bind', '0.0.0.0')
    .option('--inline-routes', 'put routes inline in the Listeners instead of serving them over RDS')
    .option('--no-load-reporting', 'do not ask clients for load reports (LRS)')
    .option(
      '--no-c-core-ring-hash-guard',
      'send ring_hash to C-core 1.50/1.51 clients too (by default they get round_robin: ring_hash crashes them, grpc/grpc#31766)',
    )
    .action(
      async (
        opts: {
          port: number;
          host: string;
          inlineRoutes?: boolean;
          loadReporting: boolean;
          cCoreRingHashGuard: boolean;
        },
        cmd: Command,
      ) => {
        const g = cmd.optsWithGlobals() as { registry?: string; config?: string };
        const config = g.config ? loadXdsConfig(g.config) : undefined;
        const d = await Discovery.fromConfig(g.registry);
        const server = await startXdsServer({
          discovery: d,
          port: opts.port,
          host: opts.host,
          config,
          inlineRoutes: !!opts.inlineRoutes,
          loadReporting: opts.loadReporting,
          cCoreRingHashGuard: opts.cCoreRingHashGuard,
          logger: {
            debug() {},
            info() {},
            warn: (_o, msg) => io.err(msg ?? String(_o)),
            error: (_o, msg) => io.err(msg ?? String(_o)),
          },
        }).catch(async (e) => {
          await d.close();
          throw e;
        });
        const offHangups = io.hangups(() => reload(g.config, server, io));
        try {
          const interrupted = io.interrupted(); // listening for the signal before the line that invites it
          io.out(
            `xds server listening on ${opts.host}:${server.port} for ${d.description}${g.config ? ` with policy ${g.config}` : ''}; Ctrl-C to stop`,
          );
          await interrupted;
        } finally {
          offHangups();
          await server.stop();
          io.out(JSON.stringify({ stats: server.stats() }));
          await d.close();
        }
      },
    );
}

/** SIGHUP: the policy file read again and applied, or the error reported and the policy kept. */
function reload(file: string | undefined, server: XdsServer, io: XdsIo): void {
  if (!file) {
    io.err('xds server: SIGHUP ignored: no --config policy file to reload');
    return;
  }
  let config: XdsConfig;
  try {
    config = loadXdsConfig(file);
  } catch (e) {
    io.err(`xds server: policy ${file} not reloaded, the policy in force stays: ${(e as Error).message}`);
    return;
  }
  server.setConfig(config);
  io.out(`xds server: policy reloaded from ${file}`);
}
