/**
 * A worked custom adapter: "dirpoll", a registry kept as one JSON file per instance in a directory
 * tree (<root>/<service>/<id>.json), read by polling. It is small on purpose and shows every part
 * an adapter has: an options schema, URL mapping, a polling watch loop on WatchResolver, a
 * registrar with a heartbeat (file mtime) and TTL, BAD_ENTRY reporting, and setup().
 *
 *   dirpoll:///var/lib/myreg?interval=500ms&ttl=10s
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import {
  ConfigError,
  RegistrarBase,
  RegistrationBase,
  RegistryUnavailableError,
  WatchResolver,
  collectEndpoints,
  defineAdapter,
  instanceToJson,
  registerAdapter,
  type AdapterContext,
  type CheckedSpec,
} from '../../core';

export interface DirPollOptions {
  path: string;
  interval: number;
  ttl: number;
}

async function readService(root: string, service: string, ttl: number) {
  const dir = path.join(root, service);
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { endpoints: [], bad: [] }; // no instances
    throw e;
  }
  const entries: { key: string; value: unknown }[] = [];
  for (const name of names.filter((n) => n.endsWith('.json'))) {
    const file = path.join(dir, name);
    try {
      const [text, st] = await Promise.all([fs.readFile(file, 'utf8'), fs.stat(file)]);
      if (Date.now() - st.mtimeMs > ttl) continue; // heartbeat too old: the registrant is dead
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        value = undefined; // collectEndpoints reports it as BAD_ENTRY
      }
      entries.push({ key: file, value });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // removed between readdir and read
    }
  }
  return collectEndpoints(entries);
}

export class DirPollRegistration extends RegistrationBase {
  private timer?: NodeJS.Timeout;
  constructor(
    spec: CheckedSpec,
    private readonly root: string,
    private readonly ttl: number,
  ) {
    super(spec);
  }
  get file(): string {
    return path.join(this.root, this.service, `${encodeURIComponent(this.id)}.json`);
  }
  async start(): Promise<void> {
    await this.write(this.spec);
    // Heartbeat: touch the file three times per TTL; restore it if someone deleted it.
    this.timer = setInterval(() => void this.beat(), Math.max(100, this.ttl / 3));
    this.timer.unref();
  }
  /** Stops the heartbeat without deleting the file (what a crash looks like). */
  stopHeartbeat(): void {
    clearInterval(this.timer);
  }
  private async beat(): Promise<void> {
    const now = new Date();
    try {
      await fs.utimes(this.file, now, now);
      this.emitRestored();
    } catch (e) {
      this.emitLost(e as Error);
      await this.write(this.spec).catch(() => {});
    }
  }
  protected async write(spec: CheckedSpec): Promise<void> {
    await fs.mkdir(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    await fs.writeFile(tmp, JSON.stringify(instanceToJson(spec)));
    await fs.rename(tmp, this.file); // atomic: readers never see half a file
  }
  protected async remove(): Promise<void> {
    this.stopHeartbeat();
    await fs.rm(this.file, { force: true });
  }
}

class DirPollRegistrar extends RegistrarBase<DirPollRegistration> {
  constructor(private readonly opts: DirPollOptions) {
    super('dirpoll');
  }
  protected async create(spec: CheckedSpec): Promise<DirPollRegistration> {
    const r = new DirPollRegistration(spec, this.opts.path, this.opts.ttl);
    await r.start();
    return r;
  }
}

export function createDirPollRegistry(opts: DirPollOptions, ctx?: Partial<AdapterContext>) {
  const refreshers = new Map<string, () => void>();
  const resolver = new WatchResolver(
    'dirpoll',
    (service, sink) => {
      let stopped = false;
      let timer: NodeJS.Timeout | undefined;
      const poll = async () => {
        clearTimeout(timer);
        try {
          const { endpoints, bad } = await readService(opts.path, service, opts.ttl);
          if (!stopped) sink.update(endpoints, { bad });
        } catch (e) {
          if (!stopped)
            sink.error(
              new RegistryUnavailableError(`dirpoll: cannot read ${opts.path}: ${(e as Error).message}`, { cause: e }),
            );
        }
        if (!stopped) timer = setTimeout(poll, opts.interval);
      };
      refreshers.set(service, () => void poll());
      void poll();
      return () => {
        stopped = true;
        clearTimeout(timer);
        refreshers.delete(service);
      };
    },
    { logger: ctx?.logger, refresh: (service) => refreshers.get(service)?.() },
  );
  return { resolver, registrar: new DirPollRegistrar(opts) };
}

export const dirPollAdapter = defineAdapter<DirPollOptions>({
  scheme: 'dirpoll',
  description: 'Example: one JSON file per instance under a directory, polled.',
  capabilities: {
    watch: 'poll',
    register: true,
    ttl: true,
    weights: true,
    zones: true,
    metadata: true,
    listServices: false,
  },
  options: {
    path: {
      type: 'string',
      required: true,
      doc: 'Root directory of the registry (the URL path).',
      check: (v: string) => (path.isAbsolute(v) ? undefined : 'must be an absolute path'),
    },
    interval: { type: 'duration', default: 1000, min: 50, doc: 'How often watchers re-read the directory.' },
    ttl: { type: 'duration', default: 10_000, min: 500, doc: 'An instance whose file is older than this is dead.' },
  },
  validate(o) {
    if (o.interval > o.ttl) throw new ConfigError('dirpoll: "interval" must not exceed "ttl"', { field: 'interval' });
  },
  create: (options, ctx) => createDirPollRegistry(options, ctx),
});

/** Registers dirpoll:// with Wayfinder (and with installGrpc's resolvers once called again). */
export function setup(): void {
  registerAdapter(dirPollAdapter);
}
