import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { findBinary, freePort, spawnManaged, tempDir, waitFor, type ManagedProcess } from './process';

/**
 * Launches a real single-member etcd (Debian's etcd-server, 3.4) on free loopback ports with a
 * temp data dir, for tests and benchmarks. Optional TLS (a throwaway CA made with openssl here and
 * now) and auth (root plus users with prefix-scoped roles, enabled through etcdctl).
 */

export function findEtcd(): string {
  return findBinary('etcd', 'etcd-server', ['/usr/bin/etcd', '/usr/local/bin/etcd']);
}
export function findEtcdctl(): string {
  return findBinary('etcdctl', 'etcd-client', ['/usr/bin/etcdctl', '/usr/local/bin/etcdctl']);
}
export function findOpenssl(): string {
  return findBinary('openssl', 'openssl', ['/usr/bin/openssl']);
}

/** PEM files of a throwaway PKI: a CA, a server cert for 127.0.0.1/localhost and a client cert. */
export interface TestPki {
  dir: string;
  ca: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync(findOpenssl(), args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr || r.stdout}`);
}

/**
 * Makes a self-signed CA and certificates signed by it in `dir` (created if missing). Each call
 * makes a new, unrelated CA: use a second one as the "wrong CA" in fail-closed tests.
 */
export function makeTestPki(dir: string, cn = 'wayfinder-test-ca'): TestPki {
  mkdirSync(dir, { recursive: true });
  const p = (f: string) => path.join(dir, f);
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      `/CN=${cn}`,
      '-keyout',
      p('ca.key'),
      '-out',
      p('ca.pem'),
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  const leaf = (name: string, ext: string) => {
    writeFileSync(p(`${name}.ext`), ext);
    openssl(
      [
        'req',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-subj',
        `/CN=${name}`,
        '-keyout',
        p(`${name}.key`),
        '-out',
        p(`${name}.csr`),
      ],
      dir,
    );
    openssl(
      [
        'x509',
        '-req',
        '-in',
        p(`${name}.csr`),
        '-CA',
        p('ca.pem'),
        '-CAkey',
        p('ca.key'),
        '-CAcreateserial',
        '-days',
        '2',
        '-out',
        p(`${name}.pem`),
        '-extfile',
        p(`${name}.ext`),
      ],
      dir,
    );
  };
  leaf('server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
  leaf('client', 'extendedKeyUsage=clientAuth\n');
  return {
    dir,
    ca: p('ca.pem'),
    caKey: p('ca.key'),
    serverCert: p('server.pem'),
    serverKey: p('server.key'),
    clientCert: p('client.pem'),
    clientKey: p('client.key'),
  };
}

export interface EtcdUser {
  name: string;
  password: string;
  /** Key prefixes this user may read. */
  read?: string[];
  /** Key prefixes this user may read and write. */
  readwrite?: string[];
}

export interface StartEtcdOptions {
  /** Serve clients over TLS with a fresh test CA; `clientCertAuth` also requires client certs. */
  tls?: boolean | { clientCertAuth?: boolean };
  /** Enable auth: a root user (password `rootPassword`) plus these users, each with its own role. */
  auth?: { rootPassword?: string; users?: EtcdUser[]; tokenTtlSec?: number };
  /** etcd's --experimental-watch-progress-notify-interval (default etcd's own, 10m). */
  progressNotifyIntervalMs?: number;
  /** Bound for the health wait (default 20 s). */
  startTimeoutMs?: number;
  extraArgs?: string[];
}

export interface EtcdServer {
  /** `127.0.0.1:<port>` */
  readonly address: string;
  readonly port: number;
  /** Client URL, http:// or https:// */
  readonly url: string;
  readonly dataDir: string;
  /** Present when started with `tls`. */
  readonly pki?: TestPki;
  readonly rootPassword?: string;
  /** Runs etcdctl (v3 API) against this server as root (when auth is on); throws on failure. */
  etcdctl(args: string[], opts?: { user?: string; input?: string }): string;
  /** Graceful stop (SIGTERM); the data dir is kept for restart(). */
  stop(): Promise<void>;
  /** SIGKILL; the data dir is kept. */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT: the process stays, its connections stay open, nothing is answered. */
  pause(): void;
  resume(): void;
  /** Stops if running, optionally wipes the data dir (revisions restart at 1), starts on the same ports. */
  restart(opts?: { wipe?: boolean }): Promise<void>;
  /** Stops and removes every temp file. Idempotent. */
  close(): Promise<void>;
  /** The current store revision. */
  revision(): number;
  running(): boolean;
  output(): string;
}

export async function startEtcd(opts: StartEtcdOptions = {}): Promise<EtcdServer> {
  const etcd = findEtcd();
  const etcdctlBin = findEtcdctl();
  const tmp = tempDir('wayfinder-etcd-');
  const dataDir = path.join(tmp.dir, 'data');
  const clientPort = await freePort();
  let peerPort = await freePort();
  while (peerPort === clientPort) peerPort = await freePort();
  const tlsOpt = opts.tls ? (typeof opts.tls === 'object' ? opts.tls : {}) : undefined;
  const pki = tlsOpt ? makeTestPki(path.join(tmp.dir, 'pki')) : undefined;
  const scheme = pki ? 'https' : 'http';
  const url = `${scheme}://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const rootPassword = opts.auth
    ? (opts.auth.rootPassword ?? `root-${Math.random().toString(36).slice(2)}`)
    : undefined;
  let authEnabled = false;

  const args = [
    '--name',
    'wf',
    '--data-dir',
    dataDir,
    '--listen-client-urls',
    url,
    '--advertise-client-urls',
    url,
    '--listen-peer-urls',
    peerUrl,
    '--initial-advertise-peer-urls',
    peerUrl,
    '--initial-cluster',
    `wf=${peerUrl}`,
    '--initial-cluster-state',
    'new',
    '--logger',
    'zap',
    '--log-level',
    'warn',
    ...(opts.progressNotifyIntervalMs
      ? ['--experimental-watch-progress-notify-interval', `${opts.progressNotifyIntervalMs}ms`]
      : []),
    ...(opts.auth?.tokenTtlSec ? ['--auth-token-ttl', String(opts.auth.tokenTtlSec)] : []),
    ...(pki ? ['--cert-file', pki.serverCert, '--key-file', pki.serverKey, '--trusted-ca-file', pki.ca] : []),
    ...(tlsOpt?.clientCertAuth ? ['--client-cert-auth'] : []),
    ...(opts.extraArgs ?? []),
  ];

  const ctlBase = (user?: string): string[] => {
    const a = ['--endpoints', url, '--dial-timeout', '3s', '--command-timeout', '5s'];
    if (pki) a.push('--cacert', pki.ca, '--cert', pki.clientCert, '--key', pki.clientKey);
    if (user) a.push('--user', user);
    else if (authEnabled) a.push('--user', `root:${rootPassword}`);
    return a;
  };
  const etcdctl = (cmd: string[], o: { user?: string; input?: string } = {}): string => {
    const r = spawnSync(etcdctlBin, [...ctlBase(o.user), ...cmd], {
      encoding: 'utf8',
      env: { ...process.env, ETCDCTL_API: '3' },
      input: o.input,
      timeout: 15_000,
    });
    if (r.status !== 0)
      throw new Error(
        `etcdctl ${cmd.join(' ')} failed (${r.status ?? r.signal}): ${(r.stderr || r.stdout || String(r.error ?? '')).trim()}`,
      );
    return r.stdout;
  };

  let proc: ManagedProcess | undefined;
  const launch = async (): Promise<void> => {
    proc = spawnManaged(etcd, args, {
      env: { ...process.env, ETCD_UNSUPPORTED_ARCH: process.env.ETCD_UNSUPPORTED_ARCH ?? '' },
    });
    const p = proc;
    let exited = false;
    void p.exited.then(() => (exited = true));
    await waitFor(
      `etcd on ${url} to become healthy`,
      () => {
        if (exited) throw new Error(`etcd exited during start-up: ${p.output().slice(-2000)}`);
        // Health is a linearizable read: it only passes once the member has a leader and serves.
        const r = spawnSync(etcdctlBin, [...ctlBase(), 'endpoint', 'health'], {
          encoding: 'utf8',
          env: { ...process.env, ETCDCTL_API: '3' },
          timeout: 5000,
        });
        return r.status === 0;
      },
      { timeoutMs: opts.startTimeoutMs ?? 20_000, intervalMs: 100 },
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\netcd output:\n${p.output().slice(-3000)}`);
    });
  };

  const setupAuth = (): void => {
    if (!opts.auth || authEnabled) return;
    etcdctl(['user', 'add', 'root', '--interactive=false'], { input: `${rootPassword}\n` });
    etcdctl(['user', 'grant-role', 'root', 'root']);
    for (const u of opts.auth.users ?? []) {
      const role = `${u.name}-role`;
      etcdctl(['user', 'add', u.name, '--interactive=false'], { input: `${u.password}\n` });
      etcdctl(['role', 'add', role]);
      for (const pfx of u.read ?? []) etcdctl(['role', 'grant-permission', role, 'read', pfx, '--prefix=true']);
      for (const pfx of u.readwrite ?? [])
        etcdctl(['role', 'grant-permission', role, 'readwrite', pfx, '--prefix=true']);
      etcdctl(['user', 'grant-role', u.name, role]);
    }
    etcdctl(['auth', 'enable']);
    authEnabled = true;
  };

  let closed = false;
  await launch();
  try {
    setupAuth();
  } catch (e) {
    await proc?.stop();
    tmp.remove();
    throw e;
  }

  const server: EtcdServer = {
    address: `127.0.0.1:${clientPort}`,
    port: clientPort,
    url,
    dataDir,
    pki,
    rootPassword,
    etcdctl,
    async stop() {
      await proc?.stop(5000);
    },
    async kill() {
      await proc?.kill('SIGKILL');
    },
    pause() {
      void proc?.kill('SIGSTOP');
    },
    resume() {
      void proc?.kill('SIGCONT');
    },
    async restart(o = {}) {
      if (closed) throw new Error('etcd server is closed');
      if (proc && server.running()) {
        proc.kill('SIGCONT').catch(() => undefined);
        await proc.stop(5000);
      }
      if (o.wipe) {
        rmSync(dataDir, { recursive: true, force: true });
        authEnabled = false;
      }
      await launch();
      setupAuth();
    },
    async close() {
      if (closed) return;
      closed = true;
      if (proc && server.running()) {
        await proc.kill('SIGCONT').catch(() => undefined);
        await proc.stop(3000);
      }
      tmp.remove();
    },
    revision() {
      const out = etcdctl(['endpoint', 'status', '-w', 'json']);
      const parsed = JSON.parse(out) as { Status: { header: { revision: number } } }[];
      return Number(parsed[0].Status.header.revision);
    },
    running() {
      return !!proc && proc.child.exitCode === null && proc.child.signalCode === null;
    },
    output() {
      return proc?.output() ?? '';
    },
  };
  return server;
}
