import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
// node-zookeeper-client is an optional peer dependency: loaded when a session is joined, not when
// the testkit is imported.
import type * as ZookeeperFaultsModule from './zookeeper-faults';
import {
  MissingBinaryError,
  findBinary,
  freePort,
  spawnManaged,
  tempDir,
  waitFor,
  withTimeout,
  type ManagedProcess,
} from './process';

/**
 * Launches a real standalone ZooKeeper (Debian's `zookeeper` package, 3.8) on a free loopback port
 * with a temp data dir, for tests and benchmarks. It runs ZooKeeperServerMain directly (no init
 * scripts), with a small heap, no AdminServer (its fixed port 8080 would clash between suites) and
 * every four-letter word allowed (readiness is `ruok` -> `imok`).
 */

const JAVA_DIR = '/usr/share/java';
/** The jars ZooKeeperServerMain needs; anything else under /usr/share/java is left off the classpath. */
const JARS = ['zookeeper.jar', 'zookeeper-jute.jar', 'slf4j-api.jar', 'slf4j-log4j12.jar', 'log4j-1.2.jar'];

export interface ZooKeeperInstall {
  java: string;
  classpath: string;
}

/** Finds java and ZooKeeper's jars; throws MissingBinaryError (naming the Debian package) otherwise. */
export function findZooKeeper(): ZooKeeperInstall {
  const java = findBinary('java', 'default-jre-headless', ['/usr/bin/java']);
  if (!existsSync(path.join(JAVA_DIR, 'zookeeper.jar')))
    throw new MissingBinaryError(path.join(JAVA_DIR, 'zookeeper.jar'), 'zookeeper');
  const jars = JARS.map((j) => path.join(JAVA_DIR, j)).filter((j) => existsSync(j));
  // If Debian renames a dependency, fall back to the whole directory (slower start, same result).
  const cp = jars.length === JARS.length ? jars : [`${JAVA_DIR}/*`];
  return { java, classpath: ['/etc/zookeeper/conf', ...cp].join(':') };
}

export interface StartZooKeeperOptions {
  /** ZooKeeper's tick (default 100 ms); sessions may be as short as 2 ticks. */
  tickTimeMs?: number;
  /** Bounds of the session timeouts the server grants (defaults: 2 ticks and 60 s). */
  minSessionTimeoutMs?: number;
  maxSessionTimeoutMs?: number;
  /** JVM heap cap in MiB (default 256): many suites share 2 cores. */
  heapMb?: number;
  /** Bound for the readiness wait (default 30 s). */
  startTimeoutMs?: number;
  /** Extra zoo.cfg lines, `key=value`. */
  extraConfig?: string[];
}

/** What identifies a client session on the server: enough to join (and so end) it from outside. */
export interface ZkSessionCredentials {
  sessionId: Buffer;
  password: Buffer;
}

export interface ZooKeeperServer {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** `127.0.0.1:<port>` */
  readonly connectString: string;
  readonly dataDir: string;
  /** A registry URL for this server: `zk://127.0.0.1:<port><basePath>` plus `?query` when given. */
  url(basePath?: string, query?: string): string;
  /** Sends a four-letter word (ruok, stat, mntr, cons, ...) and returns the reply. */
  fourLetter(cmd: string, timeoutMs?: number): Promise<string>;
  /**
   * Ends a client's session on the server, as a real expiry would: joins the session with its id
   * and password and closes it. The server drops the session's ephemeral nodes and watches at
   * once; the original client learns it on its next (re)connect as SESSION_EXPIRED.
   */
  expireSession(creds: ZkSessionCredentials, timeoutMs?: number): Promise<void>;
  /** Graceful stop (SIGTERM). The data dir is kept: sessions and nodes survive a restart. */
  stop(): Promise<void>;
  /** SIGKILL; the data dir is kept. */
  kill(): Promise<void>;
  /** Starts again on the same port and data dir (stopping first if running). */
  restart(): Promise<void>;
  running(): boolean;
  /** Stops and removes every temp file. Idempotent. */
  close(): Promise<void>;
  output(): string;
}

export function fourLetterWord(host: string, port: number, cmd: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    let out = '';
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`"${cmd}" to ${host}:${port}: no reply within ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('connect', () => s.write(cmd));
    s.on('data', (d) => (out += d.toString()));
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
  });
}

/** Joins a session with its id and password and closes it; 'expired' when the server says it is gone. */
async function joinAndClose(
  port: number,
  creds: ZkSessionCredentials,
  timeoutMs: number,
): Promise<'expired' | 'closed'> {
  const zookeeper = await import('node-zookeeper-client');
  // require, not import(): a relative dynamic import() is resolved as ESM (no extension lookup) under tsx.
  const { hardClose } = require('./zookeeper-faults') as typeof ZookeeperFaultsModule;
  const c = zookeeper.createClient(`127.0.0.1:${port}`, {
    sessionTimeout: 30_000,
    spinDelay: 100,
    retries: 0,
    // @types lacks these, but the client joins an existing session when given them.
    ...({ sessionId: creds.sessionId, sessionPassword: creds.password } as object),
  });
  try {
    const joined = await withTimeout(
      new Promise<'connected' | 'expired'>((resolve) => {
        c.once('connected', () => resolve('connected'));
        c.once('expired', () => resolve('expired'));
        c.connect();
      }),
      timeoutMs,
      'joining the session to expire it',
    );
    if (joined === 'expired') return 'expired';
    const closed = new Promise<void>((resolve) => c.once('disconnected', () => resolve()));
    c.close();
    await withTimeout(closed, timeoutMs, 'closing the joined session');
    return 'closed';
  } finally {
    // Whatever happened, never leave this helper client reconnecting in the background.
    hardClose(c);
  }
}

/** What a test zoo.cfg says; writeZooCfg() adds the settings every test server shares. */
export interface ZooCfg {
  tickTimeMs: number;
  dataDir: string;
  /** Served on 127.0.0.1 only. */
  clientPort: number;
  /** Bounds of the session timeouts the server grants (defaults: 2 ticks and 60 s). */
  minSessionTimeoutMs?: number;
  maxSessionTimeoutMs?: number;
  /** Further `key=value` lines (an ensemble's quorum settings, a test's extraConfig). */
  extra?: string[];
}

/**
 * Writes the zoo.cfg of a test ZooKeeper (standalone or ensemble member): loopback client port,
 * every 4lw allowed, no AdminServer, no connection cap, and no fsync (a test server: 2 shared cores
 * are not spent waiting on disk).
 */
export function writeZooCfg(file: string, c: ZooCfg): void {
  writeFileSync(
    file,
    [
      `tickTime=${c.tickTimeMs}`,
      `dataDir=${c.dataDir}`,
      `clientPort=${c.clientPort}`,
      'clientPortAddress=127.0.0.1',
      `minSessionTimeout=${c.minSessionTimeoutMs ?? c.tickTimeMs * 2}`,
      `maxSessionTimeout=${c.maxSessionTimeoutMs ?? 60_000}`,
      '4lw.commands.whitelist=*',
      'admin.enableServer=false',
      'maxClientCnxns=0',
      'forceSync=no',
      ...(c.extra ?? []),
      '',
    ].join('\n'),
  );
}

/** The JVM command line of a test ZooKeeper (small heap, fast start, no AdminServer, every 4lw allowed). */
export function zooKeeperJavaArgs(
  install: ZooKeeperInstall,
  cfgFile: string,
  mainClass: string,
  heapMb: number,
): string[] {
  return [
    `-Xmx${heapMb}m`,
    '-Xss512k',
    '-XX:+UseSerialGC',
    '-XX:TieredStopAtLevel=1',
    '-Dzookeeper.4lw.commands.whitelist=*',
    '-Dzookeeper.admin.enableServer=false',
    '-Dzookeeper.jmx.log4j.disable=true',
    '-Dzookeeper.root.logger=WARN,CONSOLE',
    '-Dzookeeper.forceSync=no',
    '-cp',
    install.classpath,
    mainClass,
    cfgFile,
  ];
}

export async function startZooKeeper(opts: StartZooKeeperOptions = {}): Promise<ZooKeeperServer> {
  const install = findZooKeeper();
  const tmp = tempDir('wayfinder-zk-');
  const dataDir = path.join(tmp.dir, 'data');
  mkdirSync(dataDir, { recursive: true });
  const port = await freePort();
  const tick = opts.tickTimeMs ?? 100;
  const cfgFile = path.join(tmp.dir, 'zoo.cfg');
  writeZooCfg(cfgFile, {
    tickTimeMs: tick,
    dataDir,
    clientPort: port,
    minSessionTimeoutMs: opts.minSessionTimeoutMs,
    maxSessionTimeoutMs: opts.maxSessionTimeoutMs,
    extra: opts.extraConfig,
  });
  const args = zooKeeperJavaArgs(
    install,
    cfgFile,
    'org.apache.zookeeper.server.ZooKeeperServerMain',
    opts.heapMb ?? 256,
  );

  let proc: ManagedProcess | undefined;
  const launch = async (): Promise<void> => {
    const p = (proc = spawnManaged(install.java, args, { cwd: tmp.dir }));
    let exited = false;
    void p.exited.then(() => (exited = true));
    await waitFor(
      `ZooKeeper on 127.0.0.1:${port} to answer ruok`,
      async () => {
        if (exited) throw new Error(`ZooKeeper exited during start-up: ${p.output().slice(-2000)}`);
        return (await fourLetterWord('127.0.0.1', port, 'ruok', 1000)) === 'imok';
      },
      { timeoutMs: opts.startTimeoutMs ?? 30_000, intervalMs: 100 },
    ).catch(async (e) => {
      await p.stop(1000);
      throw new Error(`${(e as Error).message}\nZooKeeper output:\n${p.output().slice(-3000)}`);
    });
  };
  const isRunning = () => !!proc && proc.child.exitCode === null && proc.child.signalCode === null;

  try {
    await launch();
  } catch (e) {
    tmp.remove();
    throw e;
  }

  let closed = false;
  const server: ZooKeeperServer = {
    host: '127.0.0.1',
    port,
    connectString: `127.0.0.1:${port}`,
    dataDir,
    url: (basePath = '', query?: string) => `zk://127.0.0.1:${port}${basePath}${query ? `?${query}` : ''}`,
    fourLetter: (cmd, timeoutMs = 3000) => fourLetterWord('127.0.0.1', port, cmd, timeoutMs),
    async expireSession(creds, timeoutMs = 10_000) {
      // The session's own client reconnects at once when the server moves the session to our
      // helper connection, and may take it back before our closeSession is processed. So repeat
      // until the server itself answers a join with "expired": only then is the session gone.
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`expireSession: the session was still alive after ${timeoutMs} ms`);
        if ((await joinAndClose(port, creds, left)) === 'expired') return;
      }
    },
    async stop() {
      await proc?.stop(5000);
    },
    async kill() {
      await proc?.kill('SIGKILL');
    },
    async restart() {
      if (closed) throw new Error('ZooKeeper server is closed');
      if (isRunning()) await proc!.stop(5000);
      await launch();
    },
    running: isRunning,
    async close() {
      if (closed) return;
      closed = true;
      await proc?.stop(3000);
      tmp.remove();
    },
    output: () => proc?.output() ?? '',
  };
  return server;
}
