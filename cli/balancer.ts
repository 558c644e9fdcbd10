import { type Command, InvalidArgumentError, Option } from 'commander';
import { Discovery, parseDuration, type Registration } from '../core';
import { startBalancerServer } from '../grpc/grpclb/server';

/** The part of the CLI's io this command uses (see cli/main.ts). */
export interface BalancerIo {
  out(s: string): void;
  err(s: string): void;
  /** Resolves when the user asks to stop (SIGINT/SIGTERM). */
  interrupted(): Promise<string>;
}

/** A --port value: an integer within 0..65535 (shared by the long-running server commands). */
export function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError(`--port must be an integer within 0..65535, got "${v}"`);
  return n;
}

function fraction(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !(n >= 0 && n <= 1))
    throw new InvalidArgumentError(`--drop-rate must be a number within 0..1, got "${v}"`);
  return n;
}

function duration(v: string): number {
  const ms = parseDuration(v);
  if (ms === undefined) throw new InvalidArgumentError(`invalid duration "${v}" (e.g. 500ms, 5s)`);
  return ms;
}

interface BalancerCliOptions {
  port: number;
  host: string;
  expandByWeight?: boolean;
  expandByLoad?: boolean;
  dropRate?: number;
  statsInterval: number;
  registerAs?: string;
  advertiseHost: string;
  printReports?: boolean;
}

/**
 * `wayfinder balancer --registry <url> --port <p>`: a grpclb balancer (grpc.lb.v1 BalanceLoad)
 * serving the registry's services until interrupted. Prints one line when listening, each load
 * report with --print-reports, and on exit the aggregated load reports as JSON (the last line).
 */
export function addBalancerCommand(program: Command, io: BalancerIo): Command {
  return program
    .command('balancer')
    .description('run a grpclb lookaside balancer (grpc.lb.v1.LoadBalancer) over the registry, until Ctrl-C')
    .addOption(
      new Option('-p, --port <port>', 'port to listen on (0: any free port)').argParser(port).makeOptionMandatory(),
    )
    .option('-H, --host <host>', 'address to bind', '0.0.0.0')
    .option('--expand-by-weight', 'repeat each endpoint in the server list in proportion to its weight')
    .option('--expand-by-load', 'give endpoints whose metadata "load" is higher fewer entries')
    .option('--drop-rate <fraction>', 'fraction of calls clients should drop (load shedding)', fraction)
    .option('--stats-interval <duration>', 'how often clients report load (0: never)', duration, 10_000)
    .option(
      '--register-as <name>',
      'register this balancer in the registry under this name (for clients using balancerRegistry)',
    )
    .option('--advertise-host <host>', 'address registered with --register-as', '127.0.0.1')
    .option('--print-reports', 'print every load report received, one JSON line each')
    .action(async (opts: BalancerCliOptions, cmd: Command) => {
      const g = cmd.optsWithGlobals() as { registry?: string; config?: string };
      const d = await Discovery.fromConfig(g.registry ?? g.config);
      let reg: Registration | undefined;
      const server = await startBalancerServer({
        discovery: d,
        port: opts.port,
        host: opts.host,
        expandByWeight: !!opts.expandByWeight,
        expandByLoad: !!opts.expandByLoad,
        dropRate: opts.dropRate,
        statsIntervalMs: opts.statsInterval,
        onReport: opts.printReports ? (service, report) => io.out(JSON.stringify({ service, report })) : undefined,
      }).catch(async (e) => {
        await d.close();
        throw e;
      });
      try {
        if (opts.registerAs)
          reg = await d.registrar.register({ service: opts.registerAs, host: opts.advertiseHost, port: server.port });
        const interrupted = io.interrupted(); // listening for the signal before the line that invites it
        io.out(
          `balancer listening on ${opts.host}:${server.port} for ${d.description}${reg ? `, registered as ${opts.registerAs}` : ''}; Ctrl-C to stop`,
        );
        await interrupted;
      } finally {
        await reg?.deregister().catch((e) => io.err(`deregistering the balancer failed: ${(e as Error).message}`));
        await server.stop();
        io.out(JSON.stringify({ stats: server.stats() }));
        await d.close();
      }
    });
}
