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
 *  - --srv-host and --txt-record records (command line or --conf-file): NO. SIGHUP leaves the old
 *    SRV and TXT answers in place; changes need a restart. setRecords() restarts dnsmasq on the same
 *    port when the SRV or TXT set changed; while it restarts (tens of ms) queries get ECONNREFUSED,
 *    which clients must treat as a transient registry failure.
 * TXT character-strings are at most 255 bytes: dnsmasq 2.90 splits a longer text into 255-byte
 * strings of the same record (measured), which resolvers hand over as one record of several strings
 * (node: resolveTxt() -> [["<255 bytes>", "<rest>"]]); gRFC A2 readers concatenate them.
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

export interface TxtRecord {
  /** The owner name, e.g. `_grpc_config.echo.svc.test`. */
  name: string;
  /**
   * The record's character-strings. A string longer than 255 bytes is split by dnsmasq into
   * 255-byte strings of the same record. Printable ASCII (quotes, commas and backslashes are fine).
   */
  text: string | string[];
}

export interface DnsRecords {
  /** Host name -> IPv4/IPv6 addresses (A and AAAA records, written to the --addn-hosts file). */
  hosts?: Record<string, string[]>;
  /** SRV records (written as srv-host= lines of the --conf-file; a change restarts dnsmasq). */
  srv?: SrvRecord[];
  /** TXT records (written as txt-record= lines of the --conf-file; a change restarts dnsmasq). */
  txt?: TxtRecord[];
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
   * (hosts only changed: SIGHUP) or once it answers again (SRV or TXT changed: restart on the same
   * port).
   */
  setRecords(records: DnsRecords): Promise<{ restarted: boolean }>;
  /** Read-modify-write of the records, serialised with every other change. */
  updateRecords(fn: (current: DnsRecords) => DnsRecords): Promise<{ restarted: boolean }>;
  /** Queries received since start (counted from --log-queries lines), optionally of one type (A, AAAA, SRV, TXT). */
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

function srvLine(r: SrvRecord): string {
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
}

/** One txt-record= line: every string quoted, `"` and `\\` escaped (dnsmasq's conf-file syntax). */
function txtLine(r: TxtRecord): string {
  checkName(r.name, 'txt');
  const strings = typeof r.text === 'string' ? [r.text] : r.text;
  if (strings.length === 0) throw new TypeError(`startDnsmasq(): TXT ${r.name} needs at least one string`);
  const quoted = strings.map((t) => {
    if (!/^[\x20-\x7e]*$/.test(t))
      throw new TypeError(`startDnsmasq(): TXT ${r.name}: text must be printable ASCII, got ${JSON.stringify(t)}`);
    return `"${t.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
  });
  return `txt-record=${r.name},${quoted.join(',')}`;
}

/** The --conf-file: the records dnsmasq reads only at start (SRV and TXT). */
function confFileText(r: Pick<DnsRecords, 'srv' | 'txt'>): string {
  return [...(r.srv ?? []).map(srvLine), ...(r.txt ?? []).map(txtLine)].join('\n') + '\n';
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

/** A copy of `r` with every list present (what `current` holds). */
function normalise(r: DnsRecords = {}): Required<DnsRecords> {
  return { hosts: { ...(r.hosts ?? {}) }, srv: [...(r.srv ?? [])], txt: [...(r.txt ?? [])] };
}

/**
 * The running server, split along its routes: the record files (write), the process (spawn,
 * signal, stop), reading its log (reload lines, query counts) and applying a change (SIGHUP or
 * restart, serialised).
 */
class DnsmasqServer implements Dnsmasq {
  readonly host = '127.0.0.1';
  port = 0;
  private proc?: ManagedProcess;
  private log = '';
  private readonly queries = new Map<string, number>();
  private reloads = 0;
  private reloadWaiters: (() => void)[] = [];
  private stopped = false;
  /** Changes apply one at a time, in call order (a restart must not interleave with a SIGHUP). */
  private readonly serial = serialQueue();
  private readonly hostsFile: string;
  private readonly confFile: string;
  private current: Required<DnsRecords>;

  constructor(
    private readonly bin: string,
    private readonly tmp: ReturnType<typeof tempDir>,
    private readonly domains: string[],
    private readonly opts: DnsmasqOptions,
  ) {
    this.hostsFile = path.join(tmp.dir, 'hosts');
    this.confFile = path.join(tmp.dir, 'dnsmasq.conf');
    this.current = normalise(opts.records);
    writeAtomic(this.hostsFile, hostsFileText(this.current.hosts));
    writeAtomic(this.confFile, confFileText(this.current));
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }
  get url(): string {
    return `dns://${this.address}`;
  }
  get dir(): string {
    return this.tmp.dir;
  }

  /** Binds a free port; the port is only probably free (another process may take it): retry. */
  async start(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      this.port = await freePort(this.host);
      if (!(await udpFree(this.host, this.port))) continue;
      try {
        await this.spawn();
        return;
      } catch (e) {
        await this.proc?.stop(1000);
        if (attempt >= 3) {
          this.tmp.remove();
          throw e;
        }
      }
    }
  }

  // ---- the process ----

  private async spawn(): Promise<void> {
    const args = dnsmasqArgs(this.port, this.host, this.dir, this.hostsFile, this.confFile, this.domains, this.opts);
    const p = spawnManaged(this.bin, args);
    this.proc = p;
    const onData = lineSplitter((l) => this.onLine(l));
    p.child.stdout?.on('data', onData);
    p.child.stderr?.on('data', onData);
    const exitedEarly = p.exited.then(() => {
      throw new Error(`dnsmasq exited at start: ${p.output().slice(-2000)}`);
    });
    exitedEarly.catch(() => undefined);
    await Promise.race([answering(this.host, this.port, this.domains[0] ?? 'test', p), exitedEarly]);
  }

  private signal(sig: NodeJS.Signals): void {
    if (!this.proc?.child.pid) throw new Error('dnsmasq is not running');
    process.kill(this.proc.child.pid, sig);
  }

  // ---- its log ----

  private onLine(line: string): void {
    this.log = (this.log + line + '\n').slice(-65536);
    const q = /\bquery\[(\w+)\]/.exec(line);
    if (q) this.queries.set(q[1], (this.queries.get(q[1]) ?? 0) + 1);
    if (line.includes(`read ${this.hostsFile} - `)) {
      this.reloads++;
      const ws = this.reloadWaiters;
      this.reloadWaiters = [];
      for (const w of ws) w();
    }
  }

  /** Resolves after the next `read <hosts file>` line following this call. */
  private nextReload(): Promise<void> {
    const seen = this.reloads;
    return new Promise<void>((resolve) => {
      const check = (): void => void (this.reloads > seen ? resolve() : this.reloadWaiters.push(check));
      this.reloadWaiters.push(check);
    });
  }

  // ---- changes ----

  private async apply(records: DnsRecords): Promise<{ restarted: boolean }> {
    if (this.stopped) throw new Error('dnsmasq is stopped');
    const next = normalise(records);
    const hostsText = hostsFileText(next.hosts);
    const confText = confFileText(next);
    const restart = confText !== confFileText(this.current);
    if (restart) writeAtomic(this.confFile, confText);
    writeAtomic(this.hostsFile, hostsText);
    this.current = next;
    if (restart) {
      await this.proc?.stop(2000);
      await this.spawn();
      return { restarted: true };
    }
    const reloaded = this.nextReload();
    this.signal('SIGHUP');
    await withTimeout(reloaded, 5000, `dnsmasq to re-read ${this.hostsFile} after SIGHUP`);
    return { restarted: false };
  }

  records(): DnsRecords {
    return structuredClone(this.current);
  }
  setRecords(records: DnsRecords): Promise<{ restarted: boolean }> {
    return this.serial(() => this.apply(records));
  }
  updateRecords(fn: (current: DnsRecords) => DnsRecords): Promise<{ restarted: boolean }> {
    return this.serial(() => this.apply(fn(structuredClone(this.current))));
  }
  queryCount(type?: string): number {
    if (type) return this.queries.get(type) ?? 0;
    let n = 0;
    for (const v of this.queries.values()) n += v;
    return n;
  }
  async pause(): Promise<void> {
    this.signal('SIGSTOP');
  }
  async resume(): Promise<void> {
    this.signal('SIGCONT');
  }
  output(): string {
    return this.log;
  }
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      if (this.proc?.child.pid) process.kill(this.proc.child.pid, 'SIGCONT');
    } catch {
      /* already gone */
    }
    await this.proc?.stop(2000);
    this.tmp.remove();
  }
}

/** Starts dnsmasq on a free 127.0.0.1 UDP+TCP port. Call stop() in an after() hook. */
export async function startDnsmasq(opts: DnsmasqOptions = {}): Promise<Dnsmasq> {
  const bin = findDnsmasq();
  const tmp = tempDir('wayfinder-dnsmasq-');
  let server: DnsmasqServer;
  try {
    server = new DnsmasqServer(bin, tmp, opts.domains ?? ['test'], opts);
  } catch (e) {
    tmp.remove(); // invalid records
    throw e;
  }
  await server.start();
  return server;
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
