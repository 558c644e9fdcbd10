import * as dgram from 'node:dgram';
import { promises as dns } from 'node:dns';
import { renameSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { RegistrarBase, RegistrationBase, type CheckedSpec } from '../core';
import { findBinary, freePort, spawnManaged, tempDir, waitFor, withTimeout, type ManagedProcess } from './process';

/**
 * A real dnsmasq (Debian's `dnsmasq-base`) on a free loopback port, serving records the test sets.
 *
 * What dnsmasq 2.90 re-reads on SIGHUP (measured, see docs/adapters/dns.md):
 *  - the --addn-hosts file (A/AAAA records): yes. dnsmasq logs `read <file> - N names` when done,
 *    and setRecords() waits for that line, so the new records are served when it resolves.
 *  - --srv-host records (command line or --conf-file): NO. SIGHUP leaves the old SRV answers in
 *    place; SRV changes need a restart. setRecords() restarts dnsmasq on the same port when the SRV
 *    set changed; while it restarts (tens of ms) queries get ECONNREFUSED, which clients must treat
 *    as a transient registry failure.
 * Answers from both carry the TTL given by `localTtl` (--local-ttl; dnsmasq's default is 0).
 * Names under `domains` that have no record get NXDOMAIN; any other name gets REFUSED (no upstream).
 */

export interface SrvRecord {
  /** The SRV owner name, e.g. `_grpc._tcp.echo.svc.test`. */
  name: string;
  /** The target host name (give it an A/AAAA record in `hosts`), or '.' for "no service". */
  target: string;
  port: number;
  priority?: number;
  weight?: number;
}

export interface DnsRecords {
  /** Host name -> IPv4/IPv6 addresses (A and AAAA records, written to the --addn-hosts file). */
  hosts?: Record<string, string[]>;
  /** SRV records (written as srv-host= lines of the --conf-file; a change restarts dnsmasq). */
  srv?: SrvRecord[];
}

export interface DnsmasqOptions {
  records?: DnsRecords;
  /** TTL in seconds of every answer (--local-ttl); default 0, dnsmasq's own default. */
  localTtl?: number;
  /** Domains answered locally only: unknown names under them get NXDOMAIN. Default ['test']. */
  domains?: string[];
  /** Log every query (--log-queries) so queryCount() can count them. Default true. */
  logQueries?: boolean;
}

export interface Dnsmasq {
  readonly host: string;
  readonly port: number;
  /** `127.0.0.1:<port>`, for Resolver.setServers(). */
  readonly address: string;
  /** `dns://127.0.0.1:<port>`, a Wayfinder registry URL. */
  readonly url: string;
  readonly dir: string;
  /** The records being served. */
  records(): DnsRecords;
  /**
   * Replaces every record. Resolves once dnsmasq serves the new set: after its reload log line
   * (hosts only changed: SIGHUP) or once it answers again (SRV changed: restart on the same port).
   */
  setRecords(records: DnsRecords): Promise<{ restarted: boolean }>;
  /** Read-modify-write of the records, serialised with every other change. */
  updateRecords(fn: (current: DnsRecords) => DnsRecords): Promise<{ restarted: boolean }>;
  /** Queries received since start (counted from --log-queries lines), optionally of one type (A, AAAA, SRV). */
  queryCount(type?: string): number;
  /** SIGSTOP: dnsmasq stays bound but answers nothing, so queries time out. */
  pause(): Promise<void>;
  /** SIGCONT after pause(). */
  resume(): Promise<void>;
  /** Combined output of the current process (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

export function findDnsmasq(): string {
  return findBinary('dnsmasq', 'dnsmasq-base', ['/usr/sbin/dnsmasq', '/usr/local/sbin/dnsmasq']);
}

function hostsFileText(hosts: Record<string, string[]> = {}): string {
  const lines: string[] = [];
  for (const [name, addrs] of Object.entries(hosts)) {
    checkName(name, 'hosts');
    for (const a of addrs) {
      if (!net.isIP(a)) throw new TypeError(`startDnsmasq(): "${a}" for ${name} is not an IP address`);
      lines.push(`${a} ${name}`);
    }
  }
  return lines.join('\n') + '\n';
}

function confFileText(srv: SrvRecord[] = []): string {
  return (
    srv
      .map((r) => {
        checkName(r.name, 'srv');
        if (r.target !== '.') checkName(r.target, 'srv target');
        for (const [k, v] of [
          ['port', r.port],
          ['priority', r.priority ?? 0],
          ['weight', r.weight ?? 0],
        ] as const) {
          if (!Number.isInteger(v) || v < 0 || v > 65535)
            throw new TypeError(`startDnsmasq(): SRV ${k} of ${r.name} must be an integer in 0..65535`);
        }
        return `srv-host=${r.name},${r.target},${r.port},${r.priority ?? 0},${r.weight ?? 0}`;
      })
      .join('\n') + '\n'
  );
}

function checkName(name: string, what: string): void {
  if (!/^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/.test(name))
    throw new TypeError(`startDnsmasq(): ${what} name ${JSON.stringify(name)} is not a DNS name`);
}

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, text, { mode: 0o644 });
  renameSync(tmp, file);
}

/** Whether a UDP port is free on host (freePort() checks only TCP). */
function udpFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => resolve(false));
    s.bind(port, host, () => s.close(() => resolve(true)));
  });
}

/** Starts dnsmasq on a free 127.0.0.1 UDP+TCP port. Call stop() in an after() hook. */
function dnsmasqArgs(
  port: number,
  host: string,
  dir: string,
  hostsFile: string,
  confFile: string,
  domains: string[],
  opts: DnsmasqOptions,
): string[] {
  const a = [
    '--keep-in-foreground',
    `--port=${port}`,
    `--listen-address=${host}`,
    '--bind-interfaces',
    '--no-resolv',
    '--no-hosts',
    `--addn-hosts=${hostsFile}`,
    `--conf-file=${confFile}`,
    `--pid-file=${path.join(dir, 'dnsmasq.pid')}`,
    `--local-ttl=${opts.localTtl ?? 0}`,
    '--log-facility=-',
    ...domains.map((d) => `--local=/${d}/`),
  ];
  if (opts.logQueries !== false) a.push('--log-queries');
  // As root dnsmasq drops to "nobody", which could not re-read files in our 0700 temp dir.
  if (typeof process.getuid === 'function' && process.getuid() === 0) a.push(`--user=${os.userInfo().username}`);
  return a;
}

/** Resolves when the server answers a query (NXDOMAIN counts; refused connections do not). */
async function answering(host: string, port: number, domain: string, proc: ManagedProcess): Promise<void> {
  const r = new dns.Resolver({ timeout: 300, tries: 1 });
  r.setServers([`${host}:${port}`]);
  await waitFor(
    `dnsmasq on ${host}:${port} to answer`,
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`dnsmasq exited: ${proc.output().slice(-2000)}`);
      try {
        await r.resolve4(`wayfinder-ready.${domain}`);
        return true;
      } catch (e) {
        return ['ENOTFOUND', 'ENODATA', 'EREFUSED'].includes((e as NodeJS.ErrnoException).code ?? '');
      }
    },
    { timeoutMs: 10_000, intervalMs: 20 },
  );
}

/** A stream data handler calling `onLine` once per complete line (a partial line waits for its end). */
function lineSplitter(onLine: (line: string) => void): (d: Buffer) => void {
  let partial = '';
  return (d) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) onLine(l);
  };
}

/** Runs the functions given to it one at a time, in call order, whether each succeeds or fails. */
function serialQueue(): <T>(fn: () => Promise<T>) => Promise<T> {
  let queue: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => Promise<T>): Promise<T> => {
    const p = queue.then(fn);
    queue = p.catch(() => undefined);
    return p;
  };
}

export async function startDnsmasq(opts: DnsmasqOptions = {}): Promise<Dnsmasq> {
  const bin = findDnsmasq();
  const tmp = tempDir('wayfinder-dnsmasq-');
  const hostsFile = path.join(tmp.dir, 'hosts');
  const confFile = path.join(tmp.dir, 'dnsmasq.conf');
  const domains = opts.domains ?? ['test'];
  const host = '127.0.0.1';
  let current: DnsRecords = { hosts: { ...(opts.records?.hosts ?? {}) }, srv: [...(opts.records?.srv ?? [])] };
  writeAtomic(hostsFile, hostsFileText(current.hosts));
  writeAtomic(confFile, confFileText(current.srv));

  let port = 0;
  let proc: ManagedProcess | undefined;
  let log = '';
  const queries = new Map<string, number>();
  let reloads = 0;
  let reloadWaiters: (() => void)[] = [];
  let stopped = false;

  const onLine = (line: string) => {
    const q = /\bquery\[(\w+)\]/.exec(line);
    if (q) queries.set(q[1], (queries.get(q[1]) ?? 0) + 1);
    if (line.includes(`read ${hostsFile} - `)) {
      reloads++;
      const ws = reloadWaiters;
      reloadWaiters = [];
      for (const w of ws) w();
    }
  };

  const spawnOnce = async () => {
    const p = spawnManaged(bin, dnsmasqArgs(port, host, tmp.dir, hostsFile, confFile, domains, opts));
    proc = p;
    const onData = lineSplitter((l) => {
      log = (log + l + '\n').slice(-65536);
      onLine(l);
    });
    p.child.stdout?.on('data', onData);
    p.child.stderr?.on('data', onData);
    const exitedEarly = p.exited.then(() => {
      throw new Error(`dnsmasq exited at start: ${p.output().slice(-2000)}`);
    });
    exitedEarly.catch(() => undefined);
    await Promise.race([answering(host, port, domains[0] ?? 'test', p), exitedEarly]);
  };

  // The port is only probably free (another process may take it between probe and bind): retry.
  for (let attempt = 0; ; attempt++) {
    port = await freePort(host);
    if (!(await udpFree(host, port))) continue;
    try {
      await spawnOnce();
      break;
    } catch (e) {
      await proc?.stop(1000);
      if (attempt >= 3) {
        tmp.remove();
        throw e;
      }
    }
  }

  const signal = (sig: NodeJS.Signals) => {
    if (!proc?.child.pid) throw new Error('dnsmasq is not running');
    process.kill(proc.child.pid, sig);
  };

  const sameSrv = (a: SrvRecord[] = [], b: SrvRecord[] = []) => confFileText(a) === confFileText(b);

  // Changes apply one at a time, in call order (a restart must not interleave with a SIGHUP).
  const serial = serialQueue();

  const apply = async (records: DnsRecords): Promise<{ restarted: boolean }> => {
    if (stopped) throw new Error('dnsmasq is stopped');
    const next: DnsRecords = { hosts: { ...(records.hosts ?? {}) }, srv: [...(records.srv ?? [])] };
    const hostsText = hostsFileText(next.hosts);
    const restart = !sameSrv(current.srv, next.srv);
    if (restart) writeAtomic(confFile, confFileText(next.srv));
    writeAtomic(hostsFile, hostsText);
    current = next;
    if (restart) {
      await proc?.stop(2000);
      await spawnOnce();
      return { restarted: true };
    }
    const seen = reloads;
    const reloaded = new Promise<void>((resolve) => {
      const check = (): void => void (reloads > seen ? resolve() : reloadWaiters.push(check));
      reloadWaiters.push(check);
    });
    signal('SIGHUP');
    await withTimeout(reloaded, 5000, `dnsmasq to re-read ${hostsFile} after SIGHUP`);
    return { restarted: false };
  };

  const handle: Dnsmasq = {
    host,
    port,
    address: `${host}:${port}`,
    url: `dns://${host}:${port}`,
    dir: tmp.dir,
    records: () => structuredClone(current),
    setRecords(records) {
      return serial(() => apply(records));
    },
    updateRecords(fn) {
      return serial(() => apply(fn(structuredClone(current))));
    },
    queryCount(type) {
      if (type) return queries.get(type) ?? 0;
      let n = 0;
      for (const v of queries.values()) n += v;
      return n;
    },
    async pause() {
      signal('SIGSTOP');
    },
    async resume() {
      signal('SIGCONT');
    },
    output: () => log,
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        if (proc?.child.pid) process.kill(proc.child.pid, 'SIGCONT');
      } catch {
        /* already gone */
      }
      await proc?.stop(2000);
      tmp.remove();
    },
  };
  return handle;
}

export interface DnsmasqRegistrarOptions {
  /** Zone the records go in (must be one of the server's `domains`, or under one). Default 'test'. */
  domain?: string;
  /** SRV labels before the service name. Default '_grpc._tcp'. */
  srv?: string;
}

/** The DNS names a dnsmasqRegistrar writes for `service`: the SRV owner name. */
export function dnsmasqSrvName(service: string, o: DnsmasqRegistrarOptions = {}): string {
  return `${o.srv ?? '_grpc._tcp'}.${service}.${o.domain ?? 'test'}`;
}

/** The target host name a dnsmasqRegistrar uses for an address. */
function targetName(host: string, domain: string): string {
  return net.isIP(host) ? `ip-${host.replace(/[.:]/g, '-')}.${domain}` : host;
}

class DnsmasqRegistration extends RegistrationBase {
  constructor(
    spec: CheckedSpec,
    private readonly d: Dnsmasq,
    private readonly o: Required<DnsmasqRegistrarOptions>,
  ) {
    super(spec);
  }
  private record(spec: CheckedSpec): SrvRecord {
    return {
      name: dnsmasqSrvName(spec.service, this.o),
      target: targetName(spec.host, this.o.domain),
      port: spec.port,
      priority: 0,
      weight: spec.weight,
    };
  }
  /** Writes (or replaces) this instance's SRV record and its target's address record. */
  async put(spec: CheckedSpec): Promise<void> {
    const mine = this.record(this.spec);
    const rec = this.record(spec);
    await this.d.updateRecords((r) => {
      const hosts = { ...r.hosts };
      if (net.isIP(spec.host)) hosts[rec.target] = [spec.host];
      const srv = (r.srv ?? []).filter(
        (x) => !(x.name === mine.name && x.target === mine.target && x.port === mine.port),
      );
      return { hosts, srv: [...srv, rec] };
    });
  }
  protected write(spec: CheckedSpec): Promise<void> {
    return this.put(spec);
  }
  protected async remove(): Promise<void> {
    const mine = this.record(this.spec);
    await this.d.updateRecords((r) => {
      const srv = (r.srv ?? []).filter(
        (x) => !(x.name === mine.name && x.target === mine.target && x.port === mine.port),
      );
      const hosts = { ...r.hosts };
      if (net.isIP(this.spec.host) && !srv.some((x) => x.target === mine.target)) delete hosts[mine.target];
      return { hosts, srv };
    });
  }
}

class DnsmasqRegistrar extends RegistrarBase<DnsmasqRegistration> {
  constructor(
    private readonly d: Dnsmasq,
    private readonly o: Required<DnsmasqRegistrarOptions>,
  ) {
    super('dnsmasq (test)');
  }
  protected async create(spec: CheckedSpec): Promise<DnsmasqRegistration> {
    const reg = new DnsmasqRegistration(spec, this.d, this.o);
    await reg.put(spec);
    return reg;
  }
}

/**
 * A test-only registrar for read-only DNS: register({service, host, port, weight}) writes the SRV
 * record `<srv>.<service>.<domain>` -> `ip-<host>.<domain>`:port (weight as given, priority 0) plus
 * the target's A/AAAA record, the way an operator would; every change restarts dnsmasq (SRV).
 */
export function dnsmasqRegistrar(d: Dnsmasq, o: DnsmasqRegistrarOptions = {}): RegistrarBase {
  return new DnsmasqRegistrar(d, { domain: o.domain ?? 'test', srv: o.srv ?? '_grpc._tcp' });
}
