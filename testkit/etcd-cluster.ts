import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { findEtcd, findEtcdctl } from './etcd';
import { MemberProcesses, type MemberControl } from './member-processes';
import { freePort, spawnManaged, tempDir, waitFor } from './process';

/**
 * A real etcd cluster of N members on free loopback ports, for failover tests: per-member
 * stop/kill/pause/restart, the current leader, and a fault proxy in front of each member's client
 * port so a test can partition one member from the client while the members still see each other.
 * Clients connect through the proxies: `cluster.hosts` (`etcd://${cluster.hosts.join(',')}`).
 */

export interface StartEtcdClusterOptions {
  /** Number of members (default 3). */
  members?: number;
  /** etcd --election-timeout, ms (default 500); heartbeat is a fifth of it. */
  electionTimeoutMs?: number;
  /** Bound for the whole cluster to be healthy (default 30 s). */
  startTimeoutMs?: number;
  extraArgs?: string[];
}

/** One member of the cluster; restart() resolves once it answers a health check. */
export interface EtcdMember extends MemberControl {
  readonly index: number;
  readonly name: string;
}

export interface EtcdCluster {
  readonly members: EtcdMember[];
  /** Proxied client addresses of every member, in member order. */
  readonly hosts: string[];
  /** Index of the current leader as the running members see it (waits, bounded, for one). */
  leader(timeoutMs?: number): Promise<number>;
  /** Resolves once every running member answers a health check (a linearizable read). */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Runs etcdctl against the given members (default: all), async. */
  etcdctl(args: string[], members?: number[]): Promise<string>;
  /** Stops every member, closes the proxies and removes the data. Idempotent. */
  close(): Promise<void>;
}

function run(bin: string, args: string[], timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      args,
      { encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, ETCDCTL_API: '3' } },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`etcdctl ${args.join(' ')}: ${(stderr || err.message).trim()}`));
        else resolve(stdout);
      },
    );
  });
}

export async function startEtcdCluster(opts: StartEtcdClusterOptions = {}): Promise<EtcdCluster> {
  const etcd = findEtcd();
  const etcdctlBin = findEtcdctl();
  const n = opts.members ?? 3;
  const election = opts.electionTimeoutMs ?? 500;
  const tmp = tempDir('wayfinder-etcd-cluster-');
  const ports = new Set<number>();
  const port = async () => {
    for (;;) {
      const p = await freePort();
      if (!ports.has(p)) return (ports.add(p), p);
    }
  };
  const specs: { name: string; clientPort: number; peerPort: number; dataDir: string }[] = [];
  for (let i = 0; i < n; i++)
    specs.push({
      name: `m${i}`,
      clientPort: await port(),
      peerPort: await port(),
      dataDir: path.join(tmp.dir, `m${i}`),
    });
  const initialCluster = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peerPort}`).join(',');
  const token = `wf-${process.pid}-${Date.now()}`;
  const argsOf = (s: (typeof specs)[number]) => [
    '--name',
    s.name,
    '--data-dir',
    s.dataDir,
    '--listen-client-urls',
    `http://127.0.0.1:${s.clientPort}`,
    '--advertise-client-urls',
    `http://127.0.0.1:${s.clientPort}`,
    '--listen-peer-urls',
    `http://127.0.0.1:${s.peerPort}`,
    '--initial-advertise-peer-urls',
    `http://127.0.0.1:${s.peerPort}`,
    '--initial-cluster',
    initialCluster,
    '--initial-cluster-state',
    'new',
    '--initial-cluster-token',
    token,
    '--heartbeat-interval',
    String(Math.max(10, Math.round(election / 5))),
    '--election-timeout',
    String(election),
    '--logger',
    'zap',
    '--log-level',
    'error',
    ...(opts.extraArgs ?? []),
  ];
  const cluster = new MemberProcesses(
    specs.map((s) => s.clientPort),
    (i) =>
      spawnManaged(etcd, argsOf(specs[i]), {
        env: { ...process.env, ETCD_UNSUPPORTED_ARCH: process.env.ETCD_UNSUPPORTED_ARCH ?? '' },
      }),
    () => tmp.remove(),
    'etcd cluster',
  );
  const isRunning = (i: number) => cluster.isRunning(i);
  const direct = (i: number) => `http://127.0.0.1:${specs[i].clientPort}`;
  const etcdctl = (args: string[], members = specs.map((_, i) => i)) =>
    run(etcdctlBin, ['--endpoints', members.map(direct).join(','), '--dial-timeout', '2s', ...args]);
  const healthy = async (i: number) => {
    await etcdctl(['endpoint', 'health', '--command-timeout', '2s'], [i]);
    return true;
  };
  const waitHealthy = async (timeoutMs = 20_000) => {
    await Promise.all(
      cluster.running().map((i) =>
        waitFor(`etcd member m${i} to be healthy`, () => healthy(i), { timeoutMs, intervalMs: 100 }).catch((e) => {
          throw new Error(`${(e as Error).message}\nm${i} output:\n${cluster.output(i, 2000)}`);
        }),
      ),
    );
  };
  await cluster.start(() => waitHealthy(opts.startTimeoutMs ?? 30_000));

  const members: EtcdMember[] = specs.map((s, i) => ({
    index: i,
    name: s.name,
    ...cluster.control(i, () =>
      waitFor(`etcd member m${i} to be healthy after restart`, () => healthy(i), {
        timeoutMs: 20_000,
        intervalMs: 100,
      }),
    ),
  }));

  return {
    members,
    hosts: cluster.addresses(),
    async leader(timeoutMs = 10_000) {
      return waitFor(
        'an etcd leader',
        async () => {
          // Each running member on its own (a paused one must not hide the others); ids are uint64,
          // kept as strings.
          const ids = await Promise.all(
            specs.map(async (_, i) => {
              if (!isRunning(i)) return undefined;
              const out = await etcdctl(['endpoint', 'status', '-w', 'json', '--command-timeout', '1s'], [i]).catch(
                () => undefined,
              );
              if (!out) return undefined;
              const st = JSON.parse(out.replace(/(":\s*)(\d{10,})/g, '$1"$2"')) as {
                Status: { header: { member_id: string }; leader: string };
              }[];
              return { self: String(st[0].Status.header.member_id), leader: String(st[0].Status.leader) };
            }),
          );
          const leaderId = ids.find((x) => x && x.leader !== '0')?.leader;
          const idx = ids.findIndex((x) => x?.self === leaderId);
          return idx >= 0 ? idx + 1 : undefined; // +1: waitFor wants a truthy value
        },
        { timeoutMs, intervalMs: 100 },
      ).then((i) => i - 1);
    },
    waitHealthy,
    etcdctl,
    close: () => cluster.close(),
  };
}
