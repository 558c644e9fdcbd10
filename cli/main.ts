#!/usr/bin/env node
/**
 * The `wayfinder` command: resolve, watch, register, services, check.
 * Registry from --registry, WAYFINDER_REGISTRY or a config file (--config); errors are one line on
 * stderr and a non-zero exit code (2 for bad usage or configuration, 1 for everything else).
 */
import '../builtins';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { Discovery, isWayfinderError, parseDuration, type Registration, type Snapshot } from '../core';
import { ENDPOINT_HEADER, endpointRows, renderSnapshot, renderTable } from './format';
import { runCheck } from './check';
import { addBalancerCommand } from './balancer';

interface Io {
  out(s: string): void;
  err(s: string): void;
  isTTY: boolean;
  /** Resolves when the user asks to stop (SIGINT/SIGTERM). */
  interrupted(): Promise<string>;
}

const defaultIo: Io = {
  out: (s) => process.stdout.write(`${s}\n`),
  err: (s) => process.stderr.write(`${s}\n`),
  isTTY: !!process.stdout.isTTY,
  interrupted: () =>
    new Promise((resolve) => {
      // Registry clients unref their timers; this keeps the process alive until a signal.
      const keepAlive = setInterval(() => {}, 1 << 30);
      const on = (sig: string) => {
        clearInterval(keepAlive);
        process.off('SIGINT', on);
        process.off('SIGTERM', on);
        resolve(sig);
      };
      process.on('SIGINT', on);
      process.on('SIGTERM', on);
    }),
};

function registryOf(cmd: Command): string | undefined {
  const o = cmd.optsWithGlobals() as { registry?: string; config?: string };
  return o.registry ?? o.config;
}

function duration(v: string): number {
  const ms = parseDuration(v);
  if (ms === undefined) throw new InvalidArgumentError(`invalid duration "${v}" (e.g. 500ms, 5s)`);
  return ms;
}

function meta(v: string, prev: Record<string, string> = {}): Record<string, string> {
  const i = v.indexOf('=');
  if (i <= 0) throw new InvalidArgumentError(`--meta takes key=value, got "${v}"`);
  return { ...prev, [v.slice(0, i)]: v.slice(i + 1) };
}

function int(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer, got "${v}"`);
    return n;
  };
}

export function buildProgram(io: Io = defaultIo): Command {
  const program = new Command('wayfinder')
    .description(
      'Service discovery from the command line: resolve, watch and register services in any Wayfinder registry.',
    )
    .addOption(
      new Option('-r, --registry <url>', 'registry URL (default: $WAYFINDER_REGISTRY, else the file registry)'),
    )
    .addOption(new Option('-c, --config <file>', 'a .json/.yaml config file instead of --registry'))
    .showHelpAfterError(false)
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .exitOverride();

  program
    .command('resolve')
    .description('print the current endpoints of a service')
    .argument('<service>', 'service name')
    .option('--json', 'print JSON instead of a table')
    .option('-t, --timeout <duration>', 'give up after this long', duration, 10_000)
    .action(async (service: string, opts: { json?: boolean; timeout: number }, cmd: Command) => {
      const d = await Discovery.fromConfig(registryOf(cmd));
      try {
        const eps = await d.resolver.resolve(service, { signal: AbortSignal.timeout(opts.timeout) });
        io.out(
          opts.json
            ? JSON.stringify(eps, null, 2)
            : eps.length
              ? renderTable(ENDPOINT_HEADER, endpointRows(eps))
              : `${service}: no endpoints`,
        );
      } finally {
        await d.close();
      }
    });

  program
    .command('watch')
    .description('show the endpoints of a service live, until Ctrl-C')
    .argument('<service>', 'service name')
    .option('--json', 'print one JSON snapshot per line')
    .action(async (service: string, opts: { json?: boolean }, cmd: Command) => {
      const d = await Discovery.fromConfig(registryOf(cmd));
      const w = d.resolver.watch(service, (s) => {
        if (opts.json)
          return io.out(
            JSON.stringify({
              ...s,
              error: s.error ? { code: s.error.code, message: s.error.message } : undefined,
              at: new Date().toISOString(),
            }),
          );
        const text = renderSnapshot(s, new Date());
        io.out(io.isTTY ? `\x1b[2J\x1b[H${text}\n\n(Ctrl-C to stop)` : `${text}\n`);
      });
      await io.interrupted();
      w.close();
      await d.close();
    });

  program
    .command('register')
    .description('register an instance and keep it alive until Ctrl-C, then deregister it')
    .argument('<service>', 'service name')
    .requiredOption('-p, --port <port>', 'port of the instance', int('--port'))
    .option('-H, --host <host>', 'host of the instance', '127.0.0.1')
    .option('-w, --weight <n>', 'weight (positive integer)', int('--weight'))
    .option('-z, --zone <zone>', 'zone / locality')
    .option('--id <id>', 'instance id (default host:port)')
    .option('-m, --meta <key=value>', 'metadata, repeatable', meta)
    .action(
      async (
        service: string,
        opts: {
          port: number;
          host: string;
          weight?: number;
          zone?: string;
          id?: string;
          meta?: Record<string, string>;
        },
        cmd: Command,
      ) => {
        const d = await Discovery.fromConfig(registryOf(cmd));
        let reg: Registration;
        try {
          reg = await d.registrar.register({
            service,
            host: opts.host,
            port: opts.port,
            weight: opts.weight,
            zone: opts.zone,
            id: opts.id,
            metadata: opts.meta,
          });
        } catch (e) {
          await d.close();
          throw e;
        }
        reg.on('lost', (err) => io.err(`registration lost${err ? `: ${err.message}` : ''}; restoring`));
        reg.on('restored', () => io.err('registration restored'));
        io.out(`registered ${service} ${reg.id} in ${d.description}; Ctrl-C to deregister`);
        await io.interrupted();
        await reg.deregister();
        await d.close();
        io.out(`deregistered ${reg.id}`);
      },
    );

  program
    .command('services')
    .description('list service names (where the registry can enumerate them); --watch: the live catalog')
    .option('--json', 'print JSON')
    .option('--watch', 'show every service and its endpoint count live (discovery.catalog), until Ctrl-C')
    .action(async (opts: { json?: boolean; watch?: boolean }, cmd: Command) => {
      const d = await Discovery.fromConfig(registryOf(cmd));
      if (opts.watch) {
        const line = (s: Snapshot) =>
          opts.json
            ? JSON.stringify({ service: s.service, endpoints: s.endpoints, revision: s.revision })
            : `${s.service}\t${s.endpoints.length} endpoint${s.endpoints.length === 1 ? '' : 's'}${s.endpoints.length ? '' : ' (removed)'}`;
        const w = d.catalog.watch((c) => {
          if (!c.initial) return io.out(line(c.snapshot));
          const all = [...c.snapshots.values()].sort((a, b) => (a.service < b.service ? -1 : 1));
          if (opts.json)
            io.out(
              JSON.stringify({ initial: true, services: Object.fromEntries(all.map((s) => [s.service, s.endpoints])) }),
            );
          else io.out(all.length ? all.map(line).join('\n') : '(no services)');
        });
        await io.interrupted();
        w.close();
        await d.close();
        return;
      }
      try {
        const names = await d.listServices();
        io.out(opts.json ? JSON.stringify(names) : names.length ? names.join('\n') : '(no services)');
      } finally {
        await d.close();
      }
    });

  program
    .command('check')
    .description('diagnose a registry: configuration, connectivity, read and write permissions')
    .option('-t, --timeout <duration>', 'bound for each step', duration, 5000)
    .action(async (opts: { timeout: number }, cmd: Command) => {
      const ok = await runCheck(registryOf(cmd), opts.timeout, io.out);
      if (!ok) throw new CheckFailed();
    });

  addBalancerCommand(program, io);
  return program;
}

class CheckFailed extends Error {}

/** Runs the CLI; resolves with the exit code (never calls process.exit itself). */
export async function run(argv: string[], io: Io = defaultIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2; // commander printed the message
    if (e instanceof CheckFailed) return 1;
    if (isWayfinderError(e)) {
      io.err(`wayfinder: ${e.message} (${e.code})`);
      return e.code === 'CONFIG_INVALID' || e.code === 'UNKNOWN_SCHEME' ? 2 : 1;
    }
    if (e instanceof TypeError) {
      io.err(`wayfinder: ${e.message}`);
      return 2;
    }
    io.err(`wayfinder: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

if (require.main === module) {
  void run(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
    // Registry clients may hold sockets briefly after close(); don't wait for them.
    setTimeout(() => process.exit(code), 200).unref();
  });
}
