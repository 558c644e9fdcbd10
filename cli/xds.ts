import { type Command, Option } from 'commander';
import { Discovery } from '../core';
import { loadXdsConfig, startXdsServer } from '../xds';
import { port, type BalancerIo } from './balancer';

/** The part of the CLI's io this command uses (see cli/main.ts): the same as `wayfinder balancer`'s. */
export type XdsIo = BalancerIo;

/**
 * `wayfinder xds --registry <url> --port <p> [--config <policy file>]`: an xDS control plane (ADS
 * + LRS) serving the registry's services until interrupted. Here the global --config names the
 * per-service policy file (JSON/YAML), not a registry config: the registry comes from --registry
 * or WAYFINDER_REGISTRY. Prints one line when listening and, on exit, the load reports as JSON.
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
        try {
          const interrupted = io.interrupted(); // listening for the signal before the line that invites it
          io.out(
            `xds server listening on ${opts.host}:${server.port} for ${d.description}${g.config ? ` with policy ${g.config}` : ''}; Ctrl-C to stop`,
          );
          await interrupted;
        } finally {
          await server.stop();
          io.out(JSON.stringify({ stats: server.stats() }));
          await d.close();
        }
      },
    );
}
