import { faultProxy, type FaultProxy } from './fault-proxy';
import type { ManagedProcess } from './process';

/** What a local cluster (etcd, ZooKeeper) exposes per member for fault tests. */
export interface MemberControl {
  /** The member's own client address, `127.0.0.1:<port>` (bypasses its proxy). */
  readonly directAddress: string;
  /** The proxied client address clients should use. */
  readonly address: string;
  /** The fault proxy in front of this member's client port (blackhole() = partitioned from clients). */
  readonly proxy: FaultProxy;
  /** Graceful stop (SIGTERM); the data dir is kept for restart(). */
  stop(): Promise<void>;
  /** SIGKILL; the data dir is kept. */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT. */
  pause(): void;
  resume(): void;
  /** Stops if running and starts again with its data (rejoins the cluster); resolves once it serves. */
  restart(): Promise<void>;
  running(): boolean;
  /** Everything the member's process printed. */
  output(): string;
}

/**
 * The member processes of a local cluster, each behind a fault proxy on its client port: start
 * (proxies first, then every member, then a readiness wait; all torn down if that fails), the
 * per-member controls (stop, kill, pause, resume, restart with its data), and close. Shared by
 * testkit/etcd-cluster.ts and testkit/zookeeper-ensemble.ts.
 */
export class MemberProcesses {
  private readonly procs: (ManagedProcess | undefined)[];
  private readonly proxies: FaultProxy[] = [];
  private closed = false;

  constructor(
    /** Each member's client port (127.0.0.1). */
    private readonly clientPorts: number[],
    /** Starts member i's process (again, on restart, with the same data). */
    private readonly spawn: (i: number) => ManagedProcess,
    /** Runs after every process is gone (e.g. removes the data dirs). */
    private readonly cleanup: () => void,
    /** Names the cluster in errors ("etcd cluster", "ZooKeeper ensemble"). */
    private readonly what: string,
  ) {
    this.procs = clientPorts.map(() => undefined);
  }

  /** Starts the proxies and every member, then waits for `ready`; on failure closes everything and throws. */
  async start(ready: () => Promise<void>): Promise<void> {
    try {
      for (const port of this.clientPorts) this.proxies.push(await faultProxy({ target: { host: '127.0.0.1', port } }));
      this.clientPorts.forEach((_, i) => this.launch(i));
      await ready();
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  isRunning(i: number): boolean {
    const p = this.procs[i];
    return !!p && p.child.exitCode === null && p.child.signalCode === null;
  }

  /** Indexes of the members whose process is running. */
  running(): number[] {
    return this.clientPorts.map((_, i) => i).filter((i) => this.isRunning(i));
  }

  /** The last `chars` of member i's output. */
  output(i: number, chars = Infinity): string {
    const out = this.procs[i]?.output() ?? '';
    return chars === Infinity ? out : out.slice(-chars);
  }

  /** Proxied client addresses, in member order. */
  addresses(): string[] {
    return this.proxies.map((p) => p.address);
  }

  /** Member i's controls; restart() stops it if running, starts it again and waits for `ready`. */
  control(i: number, ready: () => Promise<unknown>): MemberControl {
    return {
      directAddress: `127.0.0.1:${this.clientPorts[i]}`,
      address: this.proxies[i].address,
      proxy: this.proxies[i],
      stop: async () => void (await this.procs[i]?.stop(5000)),
      kill: async () => void (await this.procs[i]?.kill('SIGKILL')),
      pause: () => void this.procs[i]?.kill('SIGSTOP'),
      resume: () => void this.procs[i]?.kill('SIGCONT'),
      restart: async () => {
        if (this.closed) throw new Error(`${this.what} is closed`);
        if (this.isRunning(i)) {
          await this.procs[i]!.kill('SIGCONT').catch(() => undefined);
          await this.procs[i]!.stop(5000);
        }
        this.launch(i);
        await ready();
      },
      running: () => this.isRunning(i),
      output: () => this.output(i),
    };
  }

  /** Stops every member (a paused one is resumed first so it can exit), the proxies, then cleans up. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(
      this.procs.map(async (p) => {
        if (!p) return;
        await p.kill('SIGCONT').catch(() => undefined);
        await p.stop(3000);
      }),
    );
    await Promise.all(this.proxies.map((p) => p.close()));
    this.cleanup();
  }

  private launch(i: number): void {
    this.procs[i] = this.spawn(i);
  }
}
