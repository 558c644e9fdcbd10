#!/usr/bin/env node
/**
 * The `wayfinder` command: resolve, watch, register, services, check.
 * Registry from --registry, WAYFINDER_REGISTRY or a config file (--config); errors are one line on
 * stderr and a non-zero exit code (2 for bad usage or configuration, 1 for everything else).
 */
import '../builtins';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  Discovery,
  RegistryUnavailableError,
  isWayfinderError,
  parseDuration,
  type Registration,
  type Snapshot,
} from '../core';
import { ENDPOINT_HEADER, endpointRows, renderSnapshot, renderTable } from './format';
import { runCheck } from './check';
import { addBalancerCommand } from './balancer';
import { bounded, closeWithin, errorLine, registryDisplay } from './bounded';

/** The package's version (package.json above this file, in the repository and in dist/ alike). */
function packageVersion(): string {
  for (let dir = __dirname; path.dirname(dir) !== dir; dir = path.dirname(dir)) {
    const f = path.join(dir, 'package.json');
    if (existsSync(f)) return (JSON.parse(readFileSync(f, 'utf8')) as { version: string }).version;
  }
  return 'unknown';
}

/** The registry of the command being run, for error lines. */
let currentRegistry: string | undefined;
import { addXdsCommand } from './xds';

interface Io {
  out(s: string): void;
  err(s: string): void;
  isTTY: boolean;
  /** Resolves when the user asks to stop (SIGINT/SIGTERM). */
  interrupted(): Promise<string>;
  /** Calls fn on every SIGHUP (reload) until the returned function is called. */
  hangups(fn: () => void): () => void;
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
  hangups: (fn) => {
    const on = () => fn();
    process.on('SIGHUP', on);
    return () => void process.off('SIGHUP', on);
  },
};

function registryOf(cmd: Command): string | undefined {
  const o = cmd.optsWithGlobals() as { registry?: string; config?: string };
  const source = o.registry ?? o.config;
  currentRegistry = registryDisplay(source);
  return source;
}

/** Discovery.fromConfig within the command's bound. */
function open(cmd: Command, ms: number): Promise<Discovery> {
  const source = registryOf(cmd);
  return bounded(Discovery.fromConfig(source), ms, 'connecting', currentRegistry);
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
    .version(packageVersion(), '-V, --version', 'print the version')
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
      const d = await open(cmd, opts.timeout);
      try {
        const eps = await bounded(
          d.resolver.resolve(service, { signal: AbortSignal.timeout(opts.timeout) }),
          opts.timeout,
          `resolving "${service}"`,
          currentRegistry,
        );
        io.out(
          opts.json
            ? JSON.stringify(eps, null, 2)
            : eps.length
              ? renderTable(ENDPOINT_HEADER, endpointRows(eps))
              : `${service}: no endpoints`,
        );
      } finally {
        await closeWithin(() => d.close());
      }
    });

  program
    .command('watch')
    .description('show the endpoints of a service live, until Ctrl-C')
    .argument('<service>', 'service name')
    .option('--json', 'print one JSON snapshot per line')
    .option('-t, --timeout <duration>', 'say so on stderr when nothing arrived within this long', duration, 10_000)
    .action(async (service: string, opts: { json?: boolean; timeout: number }, cmd: Command) => {
      const d = await open(cmd, opts.timeout);
      let lastChange: Date | undefined;
      let received = false;
      const silence = setTimeout(() => {
        if (!received)
          io.err(
            `wayfinder: ${errorLine(new RegistryUnavailableError(`no answer within ${opts.timeout} ms while watching "${service}"; still trying (Ctrl-C to stop)`), currentRegistry)}`,
          );
      }, opts.timeout);
      silence.unref();
      const w = d.resolver.watch(service, (s) => {
        received = true;
        if (!s.error || s.error.code === 'BAD_ENTRY') lastChange = new Date();
        if (opts.json)
          return io.out(
            JSON.stringify({
              ...s,
              error: s.error ? { code: s.error.code, message: s.error.message } : undefined,
              at: new Date().toISOString(),
            }),
          );
        const text = renderSnapshot(s, lastChange);
        io.out(io.isTTY ? `\x1b[2J\x1b[H${text}\n\n(Ctrl-C to stop)` : `${text}\n`);
      });
      await io.interrupted();
      clearTimeout(silence);
      w.close();
      await closeWithin(() => d.close());
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
    .option('-t, --timeout <duration>', 'give up registering after this long', duration, 10_000)
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
          timeout: number;
        },
        cmd: Command,
      ) => {
        const d = await open(cmd, opts.timeout);
        let reg: Registration;
        try {
          reg = await bounded(
            d.registrar.register({
              service,
              host: opts.host,
              port: opts.port,
              weight: opts.weight,
              zone: opts.zone,
              id: opts.id,
              metadata: opts.meta,
            }),
            opts.timeout,
            `registering "${service}"`,
            currentRegistry,
          );
        } catch (e) {
          await closeWithin(() => d.close());
          throw e;
        }
        reg.on('lost', (err) => io.err(`registration lost${err ? `: ${err.message}` : ''}; restoring`));
        reg.on('restored', () => io.err('registration restored'));
        // Listen for the signal before saying so: whoever reads the line may send it at once.
        const interrupted = io.interrupted();
        io.out(`registered ${service} ${reg.id} in ${d.description}; Ctrl-C to deregister`);
        await interrupted;
        await reg.deregister();
        await d.close();
        io.out(`deregistered ${reg.id}`);
      },
    );

  program
    .command('services')
    .description('list service names (where the registry can enumerate them); --watch: the live catalog')
    .option('--json', 'print JSON')
    .option('-t, --timeout <duration>', 'give up after this long', duration, 10_000)
    .option('--watch', 'show every service and its endpoint count live (discovery.catalog), until Ctrl-C')
    .action(async (opts: { json?: boolean; watch?: boolean; timeout: number }, cmd: Command) => {
      const d = await open(cmd, opts.timeout);
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
        await closeWithin(() => d.close());
        return;
      }
      try {
        const names = await bounded(d.listServices(), opts.timeout, 'listing services', currentRegistry);
        io.out(opts.json ? JSON.stringify(names) : names.length ? names.join('\n') : '(no services)');
      } finally {
        await closeWithin(() => d.close());
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
  addXdsCommand(program, io);
  return program;
}

class CheckFailed extends Error {}

/** Runs the CLI; resolves with the exit code (never calls process.exit itself). */
export async function run(argv: string[], io: Io = defaultIo): Promise<number> {
  const program = buildProgram(io);
  currentRegistry = undefined;
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2; // commander printed the message
    if (e instanceof CheckFailed) return 1;
    if (isWayfinderError(e)) {
      io.err(`wayfinder: ${errorLine(e, currentRegistry)}`);
      return e.code === 'CONFIG_INVALID' || e.code === 'UNKNOWN_SCHEME' ? 2 : 1;
    }
    if (e instanceof TypeError) {
      io.err(`wayfinder: ${e.message}`);
      return 2;
    }
    io.err(`wayfinder: ${errorLine(e, currentRegistry)}`);
    return 1;
  }
}

if (require.main === module) {
  // `wayfinder check | head -1`: the reader went away; that is the end, not an error.
  for (const stream of [process.stdout, process.stderr])
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw e;
    });
  void run(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
    // Registry clients may hold sockets briefly after close(); don't wait for them.
    setTimeout(() => process.exit(code), 200).unref();
  });
}
