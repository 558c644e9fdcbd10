import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { MemberProcesses, type MemberControl } from './member-processes';
import { freePort, spawnManaged, tempDir, waitFor } from './process';
import { findZooKeeper, fourLetterWord, writeZooCfg, zooKeeperJavaArgs } from './zookeeper';

/**
 * A real ZooKeeper ensemble (QuorumPeerMain, N servers) on free loopback ports, for failover tests:
 * per-server stop/kill/pause/restart, the current leader, and a fault proxy in front of each
 * server's client port so a test can partition one server from the client while the ensemble still
 * sees it. Clients connect through the proxies: `ensemble.connectString`.
 */

export interface StartZooKeeperEnsembleOptions {
  /** Number of servers (default 3). */
  servers?: number;
  /** ZooKeeper's tick (default 100 ms); initLimit 20 ticks, syncLimit 5 ticks. */
  tickTimeMs?: number;
  minSessionTimeoutMs?: number;
  maxSessionTimeoutMs?: number;
  /** JVM heap cap per server in MiB (default 128). */
  heapMb?: number;
  /** Bound for the whole ensemble to serve (default 60 s). */
  startTimeoutMs?: number;
  extraConfig?: string[];
}

/** One server of the ensemble; restart() resolves once it serves in the quorum. */
export interface ZooKeeperMember extends MemberControl {
  /** 0-based index; the ZooKeeper server id (myid) is index + 1. */
  readonly index: number;
  /** "leader", "follower", or undefined when it does not serve (no quorum, stopped, paused). */
  mode(timeoutMs?: number): Promise<'leader' | 'follower' | undefined>;
  fourLetter(cmd: string, timeoutMs?: number): Promise<string>;
}

export interface ZooKeeperEnsemble {
  readonly members: ZooKeeperMember[];
  /** Proxied client addresses, comma-separated: `127.0.0.1:a,127.0.0.1:b,...`. */
  readonly connectString: string;
  /** A registry URL over every member: `zk://<connectString><basePath>` plus `?query`. */
  url(basePath?: string, query?: string): string;
  /** Index of the current leader (waits, bounded, for one). */
  leader(timeoutMs?: number): Promise<number>;
  /** Resolves once every running member serves (as leader or follower). */
  waitServing(timeoutMs?: number): Promise<void>;
  /** Stops every server, closes the proxies and removes the data. Idempotent. */
  close(): Promise<void>;
}

export async function startZooKeeperEnsemble(opts: StartZooKeeperEnsembleOptions = {}): Promise<ZooKeeperEnsemble> {
  const install = findZooKeeper();
  const n = opts.servers ?? 3;
  const tick = opts.tickTimeMs ?? 100;
  const tmp = tempDir('wayfinder-zk-ensemble-');
  const used = new Set<number>();
  const port = async () => {
    for (;;) {
      const p = await freePort();
      if (!used.has(p)) return (used.add(p), p);
    }
  };
  const specs: { clientPort: number; quorumPort: number; electionPort: number; dir: string }[] = [];
  for (let i = 0; i < n; i++)
    specs.push({
      clientPort: await port(),
      quorumPort: await port(),
      electionPort: await port(),
      dir: path.join(tmp.dir, `s${i + 1}`),
    });
  const serverLines = specs.map((s, i) => `server.${i + 1}=127.0.0.1:${s.quorumPort}:${s.electionPort}`);
  const cfgFiles = specs.map((s, i) => {
    const dataDir = path.join(s.dir, 'data');
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(path.join(dataDir, 'myid'), `${i + 1}\n`);
    const cfg = path.join(s.dir, 'zoo.cfg');
    writeZooCfg(cfg, {
      tickTimeMs: tick,
      dataDir,
      clientPort: s.clientPort,
      minSessionTimeoutMs: opts.minSessionTimeoutMs,
      maxSessionTimeoutMs: opts.maxSessionTimeoutMs,
      extra: [
        'initLimit=20',
        'syncLimit=5',
        // Listen on the configured loopback address only (the default binds quorum ports on all).
        'quorumListenOnAllIPs=false',
        ...serverLines,
        ...(opts.extraConfig ?? []),
      ],
    });
    return cfg;
  });

  const ensemble = new MemberProcesses(
    specs.map((s) => s.clientPort),
    (i) =>
      spawnManaged(
        install.java,
        zooKeeperJavaArgs(
          install,
          cfgFiles[i],
          'org.apache.zookeeper.server.quorum.QuorumPeerMain',
          opts.heapMb ?? 128,
        ),
        { cwd: specs[i].dir },
      ),
    () => tmp.remove(),
    'ZooKeeper ensemble',
  );
  const isRunning = (i: number) => ensemble.isRunning(i);
  const mode = async (i: number, timeoutMs = 1000): Promise<'leader' | 'follower' | undefined> => {
    if (!isRunning(i)) return undefined;
    const out = await fourLetterWord('127.0.0.1', specs[i].clientPort, 'srvr', timeoutMs).catch(() => '');
    const m = /Mode: (leader|follower)/.exec(out);
    return m ? (m[1] as 'leader' | 'follower') : undefined;
  };
  const waitMemberServing = (i: number, timeoutMs: number) =>
    waitFor(`ZooKeeper server ${i + 1} to serve`, () => mode(i), { timeoutMs, intervalMs: 100 }).catch((e) => {
      throw new Error(`${(e as Error).message}\nserver ${i + 1} output:\n${ensemble.output(i, 2000)}`);
    });
  const waitServing = async (timeoutMs = 30_000) => {
    await Promise.all(ensemble.running().map((i) => waitMemberServing(i, timeoutMs)));
  };
  await ensemble.start(() => waitServing(opts.startTimeoutMs ?? 60_000));

  const connectString = ensemble.addresses().join(',');
  const members: ZooKeeperMember[] = specs.map((s, i) => ({
    index: i,
    ...ensemble.control(i, () => waitMemberServing(i, 30_000)),
    mode: (timeoutMs) => mode(i, timeoutMs),
    fourLetter: (cmd, timeoutMs = 3000) => fourLetterWord('127.0.0.1', s.clientPort, cmd, timeoutMs),
  }));

  return {
    members,
    connectString,
    url: (basePath = '', query?: string) => `zk://${connectString}${basePath}${query ? `?${query}` : ''}`,
    async leader(timeoutMs = 20_000) {
      const i = await waitFor(
        'a ZooKeeper leader',
        async () => {
          const modes = await Promise.all(specs.map((_, j) => mode(j)));
          const at = modes.indexOf('leader');
          return at >= 0 ? at + 1 : undefined;
        },
        { timeoutMs, intervalMs: 100 },
      );
      return i - 1;
    },
    waitServing,
    close: () => ensemble.close(),
  };
}
