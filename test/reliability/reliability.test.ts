import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isComplete, RESULTS_FILE, type ReliabilityResult, type ReliabilityRun } from '../../scripts/reliability-docs';
import { Discovery, type Registrar, type Registration, type Snapshot } from '../../index';
import { installGrpc } from '../../grpc';
import { dnsmasqRegistrar, findDnsmasq, startDnsmasq, type Dnsmasq } from '../../testkit/dnsmasq';
import { startEchoServer, type EchoServer } from '../../testkit/echo';
import { findEtcd, findEtcdctl, startEtcd, type EtcdServer } from '../../testkit/etcd';
import { faultProxy, type FaultProxy } from '../../testkit/fault-proxy';
import { startFakeConsul, type FakeConsul } from '../../testkit/fake-consul';
import { startFakeKubeApi, type FakeKubeApi } from '../../testkit/fake-kube-api';
import { FakeKubeAdminRegistrar } from '../../testkit/fake-kube-api-registrar';
import { requireBinaryOrSkip, tempDir, waitFor } from '../../testkit/process';
import { findZooKeeper, startZooKeeper, type ZooKeeperServer } from '../../testkit/zookeeper';
import { Traffic, type CallRecord } from '../traffic';

/**
 * The reliability suite: for each registry, real gRPC traffic (one unary call every CALL_GAP_MS
 * through a `<scheme>://` target, round robin over the backends) while the registry misbehaves.
 * Backends are echo servers on 127.0.0.11-14 sharing one port (Kubernetes and A records carry one
 * port per service). Registrations are made directly against the registry; the client's path to
 * the registry goes through the fault proxy (TCP registries) or is the thing paused (dnsmasq).
 *
 * Each scenario reports calls made, calls failed and the convergence time; the after hook writes
 * them to RESULTS_FILE (OS temp dir, never a committed file) and `npm run docs:reliability`
 * (scripts/reliability-docs.ts) renders them into docs/reliability.md. "Convergence" is the time from the end of the
 * fault (heal) until the calls reach exactly the registry's current set: the last reply from a
 * removed backend and the first from an added one, whichever is later.
 *
 * Durations: the issue asks for 20 s blackholes; that is what runs (BLACKHOLE_MS). Client-side
 * detection knobs are shortened where the defaults are minutes (Consul wait=5s instead of 5 min,
 * Kubernetes idle-timeout=5s instead of 3 min and backoff-max=2s, etcd progress-interval/request-timeout 2 s instead
 * of 10 s/5 s) so a scenario fits its 2-minute bound; the bounds asserted follow from them.
 */

const BLACKHOLE_MS = Number(process.env.RELIABILITY_BLACKHOLE_MS ?? 20_000);
const CALL_GAP_MS = 25;
const SERVICE = 'echo';

const results: ReliabilityResult[] = [];

// ---------------------------------------------------------------- traffic

/** ms from `from` until traffic matched `want`: max(first reply of each added id, last reply of a removed id) - from. */
function convergence(tr: Traffic, from: number, want: string[], removed: string[]): number {
  const after = tr.since(from).filter((r) => r.ok);
  let at = from;
  for (const id of want) {
    const first = after.find((r) => r.id === id);
    if (first) at = Math.max(at, first.t);
  }
  for (const r of after) if (r.id && removed.includes(r.id)) at = Math.max(at, r.t);
  return at - from;
}

function failures(recs: CallRecord[]): string {
  const f = recs.filter((r) => !r.ok);
  return f.length ? ` first failures: ${[...new Set(f.slice(0, 5).map((r) => r.err))].join(' | ')}` : '';
}

// ---------------------------------------------------------------- backends

interface Backends {
  servers: Map<string, EchoServer>;
  port: number;
  host(id: string): string;
  close(): Promise<void>;
}

const IDS = ['b1', 'b2', 'b3', 'b4'];
/** Four echo servers b1..b4 on 127.0.0.11..14, one shared port. */
async function startBackends(): Promise<Backends> {
  for (let attempt = 0; ; attempt++) {
    const servers = new Map<string, EchoServer>();
    try {
      const first = await startEchoServer({ id: 'b1', host: '127.0.0.11' });
      servers.set('b1', first);
      for (let i = 1; i < IDS.length; i++)
        servers.set(IDS[i], await startEchoServer({ id: IDS[i], host: `127.0.0.${11 + i}`, port: first.port }));
      return {
        servers,
        port: first.port,
        host: (id) => `127.0.0.${11 + IDS.indexOf(id)}`,
        close: async () => {
          for (const s of servers.values()) s.kill();
        },
      };
    } catch (e) {
      for (const s of servers.values()) s.kill();
      if (attempt >= 5) throw e;
    }
  }
}

/** Keeps the registered set of backends equal to what a scenario asks for. */
class Members {
  private readonly regs = new Map<string, Registration>();
  constructor(
    private readonly registrar: Registrar,
    private readonly b: Backends,
  ) {}
  /** Writes retried (8 tries, 250 ms apart): a write right after a registry restart may meet a dead keep-alive socket (see retried). */
  retried = 0;
  private async retry<T>(fn: () => Promise<T>): Promise<T> {
    for (let i = 0; ; i++) {
      try {
        return await fn();
      } catch (e) {
        if (i >= 7) throw e;
        this.retried++;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }
  /**
   * Additions first, then removals. A Registration's deregister() settles once (a failed one cannot
   * be retried through it), while register() is a fresh call each time: so the writes that may
   * meet a dead keep-alive socket right after a registry restart are the retryable ones.
   */
  async set(ids: string[]): Promise<void> {
    for (const id of ids) {
      if (!this.regs.has(id))
        this.regs.set(
          id,
          await this.retry(() =>
            this.registrar.register({ service: SERVICE, host: this.b.host(id), port: this.b.port, id }),
          ),
        );
    }
    for (const [id, reg] of this.regs) {
      if (!ids.includes(id)) {
        await this.retry(() => reg.deregister());
        this.regs.delete(id);
      }
    }
  }
  get ids(): string[] {
    return [...this.regs.keys()].sort();
  }
}

// ---------------------------------------------------------------- registrant child (SIGSTOP)

const REGISTRANT = path.join(__dirname, 'fixtures', 'registrant.ts');

function startRegistrant(
  registry: string,
  host: string,
  port: number,
  id: string,
): { child: ChildProcess; events: { event: string; t: number }[]; registered: Promise<void> } {
  const child = spawn(process.execPath, ['--import', 'tsx', REGISTRANT], {
    cwd: path.resolve(__dirname, '../..'),
    env: { ...process.env, REGISTRY: registry, SERVICE, HOST: host, PORT: String(port), ID: id },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const events: { event: string; t: number }[] = [];
  let buf = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const registered = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          const ev = JSON.parse(line);
          events.push(ev);
          if (ev.event === 'registered') resolve();
          if (ev.event === 'error') reject(new Error(`registrant: ${ev.message}`));
        } catch {
          /* not ours */
        }
      }
    });
    child.once('exit', (code) => reject(new Error(`registrant exited with ${code}: ${err.slice(-2000)}`)));
  });
  return { child, events, registered };
}

/** An observer of the registry's truth, connected directly (not through the fault). */
async function observe(url: string): Promise<{ has(id: string): boolean; close(): Promise<void> }> {
  const d = await Discovery.fromConfig(url);
  let last: Snapshot | undefined;
  const w = d.resolver.watch(SERVICE, (s) => (last = s));
  return {
    has: (id) => !!last?.endpoints.some((e) => e.id === id || e.metadata?.['dns.target']?.includes(id)),
    close: async () => {
      w.close();
      await d.close();
    },
  };
}

// ---------------------------------------------------------------- subjects

interface Subject {
  name: string;
  /** gRPC target for the client, given the backends' port. */
  target(port: number): string;
  registrar(): Promise<Registrar>;
  /** Start and end of the outage. */
  breakRegistry(): Promise<void>;
  healRegistry(): Promise<void>;
  outage: string;
  /** Whether registrations can change while the registry is broken (false: changes are made after heal). */
  changeDuringOutage: boolean;
  outageMs: number;
  convergeBoundMs: number;
  /** Extra fault injected during the outage, after the change (etcd compaction). */
  duringOutage?(): Promise<string>;
  restart?: { what: string; run(): Promise<void>; boundMs: number };
  /** Registry URL for a SIGSTOP-able registrant, with a short TTL; and that TTL. */
  registrant?: { url: string; ttlMs: number; boundMs: number };
  observerUrl?: string;
  specials?: { name: string; run(): Promise<string>; boundMs: number }[];
  close(): Promise<void>;
}

type Scenario = 'restart' | 'registrant' | 'specials';

/**
 * The scenarios every subject goes through, in one describe block. `supports` names the optional
 * ones that apply (a read-only registry has no registrant to SIGSTOP, ...): only those are defined,
 * and a supported scenario whose subject lacks it fails.
 */
function reliabilitySuite(
  name: string,
  supports: Scenario[],
  skipIf: (ctx: Mocha.Context) => void,
  make: () => Promise<Subject>,
): void {
  describe(`reliability: ${name}`, function () {
    this.timeout(120_000);
    let s: Subject;
    let b: Backends;
    let members: Members;
    let tr: Traffic;
    before(async function () {
      this.timeout(90_000);
      skipIf(this);
      installGrpc();
      b = await startBackends();
      s = await make();
      members = new Members(await s.registrar(), b);
      await members.set(['b1', 'b2']);
      tr = new Traffic(s.target(b.port), { gapMs: CALL_GAP_MS });
      await tr.reaches(['b1', 'b2'], 20_000);
    });
    after(async () => {
      await tr?.stop();
      await s?.close();
      await b?.close();
    });

    it(`registry outage (${BLACKHOLE_MS / 1000} s) under traffic: zero failed calls, then converges`, async function () {
      const t0 = Date.now();
      await s.breakRegistry();
      const notes: string[] = [s.outage];
      // The truth moves on while the client cannot see it (where the registry allows writes).
      if (s.changeDuringOutage) {
        await members.set(['b2', 'b3']);
        if (s.duringOutage) notes.push(await s.duringOutage());
      }
      await new Promise((r) => setTimeout(r, Math.max(0, t0 + s.outageMs - Date.now()))); // the outage's length is the point
      const during = tr.since(t0);
      const tHeal = Date.now();
      await s.healRegistry();
      let from = tHeal;
      if (!s.changeDuringOutage) {
        from = Date.now();
        await members.set(['b2', 'b3']);
        notes.push('change made after the outage (the registry takes no writes during it)');
      }
      await tr.reaches(['b2', 'b3'], s.convergeBoundMs + 5000);
      const conv = convergence(tr, from, ['b3'], ['b1']);
      const all = tr.since(t0);
      results.push({
        registry: name,
        scenario: `outage ${Math.round(s.outageMs / 1000)} s`,
        calls: all.length,
        failed: all.filter((r) => !r.ok).length,
        convergenceMs: conv,
        boundMs: s.convergeBoundMs,
        notes: notes.join('; '),
      });
      assert.ok(during.length > s.outageMs / 200, `traffic kept flowing (${during.length} calls)`);
      assert.equal(all.filter((r) => !r.ok).length, 0, `failed calls:${failures(all)}`);
      assert.ok(conv <= s.convergeBoundMs, `converged in ${conv} ms, bound ${s.convergeBoundMs} ms`);
    });

    if (supports.includes('restart'))
      it('registry restarted under traffic: zero failed calls; changes flow again', async function () {
        assert.ok(s.restart, 'restart scenario missing');
        const t0 = Date.now();
        await s.restart.run();
        const from = Date.now();
        await members.set(['b1', 'b2']);
        await tr.reaches(['b1', 'b2'], s.restart.boundMs + 5000);
        const conv = convergence(tr, from, ['b1'], ['b3']);
        const all = tr.since(t0);
        const retried = members.retried
          ? `; the test's own registry write right after the restart failed and was retried ${members.retried}x`
          : '';
        members.retried = 0;
        results.push({
          registry: name,
          scenario: 'registry restart',
          calls: all.length,
          failed: all.filter((r) => !r.ok).length,
          convergenceMs: conv,
          boundMs: s.restart.boundMs,
          notes: `${s.restart.what}; convergence = a change made right after the restart reaching the calls${retried}`,
        });
        assert.equal(all.filter((r) => !r.ok).length, 0, `failed calls:${failures(all)}`);
        assert.ok(conv <= s.restart.boundMs, `converged in ${conv} ms, bound ${s.restart.boundMs} ms`);
      });

    if (supports.includes('registrant'))
      it('registrant SIGSTOPped past its TTL: deregistered, then re-registered after SIGCONT; zero failed calls', async function () {
        assert.ok(s.registrant && s.observerUrl, 'registrant scenario missing');
        const obs = await observe(s.observerUrl);
        const reg = startRegistrant(s.registrant.url, b.host('b4'), b.port, 'b4');
        try {
          await reg.registered;
          const base = members.ids;
          await tr.reaches([...base, 'b4'], 15_000);
          const t0 = Date.now();
          process.kill(reg.child.pid!, 'SIGSTOP');
          await waitFor('b4 to be deregistered', () => !obs.has('b4'), { timeoutMs: s.registrant.boundMs + 10_000 });
          const gone = Date.now() - t0;
          await tr.reaches(base, 10_000);
          const tCont = Date.now();
          process.kill(reg.child.pid!, 'SIGCONT');
          await waitFor('b4 to be registered again', () => obs.has('b4'), { timeoutMs: 20_000 });
          const back = Date.now() - tCont;
          await tr.reaches([...base, 'b4'], 15_000);
          const all = tr.since(t0);
          results.push({
            registry: name,
            scenario: 'registrant SIGSTOP',
            calls: all.length,
            failed: all.filter((r) => !r.ok).length,
            convergenceMs: gone,
            boundMs: s.registrant.boundMs,
            notes: `TTL ${s.registrant.ttlMs} ms; deregistered ${gone} ms after SIGSTOP (the figure), re-registered ${back} ms after SIGCONT (events: ${reg.events.map((e) => e.event).join(', ')})`,
          });
          assert.equal(all.filter((r) => !r.ok).length, 0, `failed calls:${failures(all)}`);
          assert.ok(gone <= s.registrant.boundMs, `deregistered after ${gone} ms, bound ${s.registrant.boundMs} ms`);
        } finally {
          try {
            process.kill(reg.child.pid!, 'SIGCONT');
          } catch {
            /* gone */
          }
          reg.child.kill('SIGKILL');
          await obs.close();
        }
      });

    if (supports.includes('specials'))
      it('registry-specific faults under traffic: zero failed calls; changes flow again', async function () {
        assert.ok(s.specials?.length, 'registry-specific scenarios missing');
        for (const sp of s.specials) {
          const t0 = Date.now();
          const before = members.ids;
          const note = await sp.run();
          const from = Date.now();
          const next = before.includes('b3') ? ['b1', 'b2'] : ['b2', 'b3'];
          const removed = before.filter((id) => !next.includes(id));
          await members.set(next);
          await tr.reaches(next, sp.boundMs + 5000);
          const conv = convergence(
            tr,
            from,
            next.filter((id) => !before.includes(id)),
            removed,
          );
          const all = tr.since(t0);
          results.push({
            registry: name,
            scenario: sp.name,
            calls: all.length,
            failed: all.filter((r) => !r.ok).length,
            convergenceMs: conv,
            boundMs: sp.boundMs,
            notes: note,
          });
          assert.equal(all.filter((r) => !r.ok).length, 0, `${sp.name}: failed calls:${failures(all)}`);
          assert.ok(conv <= sp.boundMs, `${sp.name}: converged in ${conv} ms, bound ${sp.boundMs} ms`);
        }
      });
  });
}

const needs = (find: () => unknown) => (ctx: Mocha.Context) => {
  requireBinaryOrSkip(ctx, find);
};

// ---------------------------------------------------------------- etcd

reliabilitySuite(
  'etcd',
  ['restart', 'registrant'],
  needs(() => (findEtcd(), findEtcdctl())),
  async () => {
    const etcd: EtcdServer = await startEtcd();
    const proxy: FaultProxy = await faultProxy({ target: etcd.address });
    const prefix = `/reliability-${process.pid}`;
    const direct = `etcd://${etcd.address}?prefix=${prefix}`;
    const d = await Discovery.fromConfig(direct);
    return {
      name: 'etcd',
      target: (_port) =>
        `etcd://${proxy.address}/${SERVICE}?prefix=${prefix}&progress-interval=2s&request-timeout=2s&dial-timeout=2s`,
      registrar: async () => d.registrar,
      outage:
        'client-to-etcd TCP blackholed (half-open); the change is followed by a compaction past it, so the watch must re-list',
      changeDuringOutage: true,
      outageMs: BLACKHOLE_MS,
      // Measured 0.1-12 s across runs: the watch is found dead within progress-interval + request-timeout, but the
      // vendor client keeps using the half-open HTTP/2 connection (no gRPC keepalive) until it fails.
      convergeBoundMs: 25_000,
      breakRegistry: async () => proxy.blackhole(),
      healRegistry: async () => proxy.heal(),
      async duringOutage() {
        const rev = etcd.revision();
        etcd.etcdctl(['compaction', String(rev)]);
        return `etcd compacted at revision ${rev} during the watch gap`;
      },
      restart: { what: 'etcd SIGTERM + start on the same port and data', run: () => etcd.restart(), boundMs: 10_000 },
      registrant: { url: `${direct}&ttl=2s`, ttlMs: 2000, boundMs: 2000 + 3000 },
      observerUrl: direct,
      close: async () => {
        await d.close();
        await proxy.close();
        await etcd.close();
      },
    };
  },
);

// ---------------------------------------------------------------- ZooKeeper

reliabilitySuite('ZooKeeper', ['restart', 'registrant'], needs(findZooKeeper), async () => {
  const zk: ZooKeeperServer = await startZooKeeper();
  const proxy = await faultProxy({ target: zk.connectString });
  const base = `/reliability-${process.pid}`;
  const direct = zk.url(base);
  const d = await Discovery.fromConfig(direct);
  return {
    name: 'ZooKeeper',
    target: () => `zk://${proxy.address}/${SERVICE}?path=${base}&sessionTimeout=4s&timeout=2s`,
    registrar: async () => d.registrar,
    outage:
      "client-to-ZooKeeper TCP blackholed, longer than the client session timeout (4 s): the client's session expires and it must start a new one and re-read",
    changeDuringOutage: true,
    outageMs: BLACKHOLE_MS,
    convergeBoundMs: 10_000,
    breakRegistry: async () => proxy.blackhole(),
    healRegistry: async () => proxy.heal(),
    restart: { what: 'ZooKeeper SIGTERM + start on the same port and data', run: () => zk.restart(), boundMs: 15_000 },
    registrant: { url: `${direct}?sessionTimeout=2s`, ttlMs: 2000, boundMs: 2000 + 3000 },
    observerUrl: direct,
    close: async () => {
      await d.close();
      await proxy.close();
      await zk.close();
    },
  };
});

// ---------------------------------------------------------------- Consul (fake agent)

reliabilitySuite(
  'Consul (fake agent)',
  ['restart', 'registrant', 'specials'],
  () => undefined,
  async () => {
    // Agent time compressed for DeregisterCriticalServiceAfter (its 1 min minimum reaps in 600 ms).
    const consul: FakeConsul = await startFakeConsul({ reapIntervalMs: 100, deregisterTimeScale: 0.01 });
    const proxy = await faultProxy({ target: consul.address });
    const direct = `consul://${consul.address}`;
    const d = await Discovery.fromConfig(direct);
    return {
      name: 'Consul',
      target: () => `consul://${proxy.address}/${SERVICE}?wait=5s`,
      registrar: async () => d.registrar,
      outage: 'client-to-agent TCP blackholed; a hung blocking query is cut after wait + wait/16 + 1 s (wait=5s)',
      changeDuringOutage: true,
      outageMs: BLACKHOLE_MS,
      convergeBoundMs: 12_000,
      breakRegistry: async () => proxy.blackhole(),
      healRegistry: async () => proxy.heal(),
      restart: {
        what: 'agent stopped and started on the same port with its services (as from its data dir)',
        run: () => consul.restart({ persist: true }),
        boundMs: 8000,
      },
      registrant: { url: `${direct}?ttl=1s`, ttlMs: 1000, boundMs: 1000 + 3000 },
      observerUrl: direct,
      specials: [
        {
          name: 'Consul index reset',
          // The open blocking query (index N > the reset index) returns only at wait (5 s); its answer's
          // lower index restarts the loop from 0.
          boundMs: 5000 + 5000 / 16 + 1000 + 2000,
          run: async () => {
            consul.resetIndex(1);
            return 'X-Consul-Index reset to 1 (as after a snapshot restore); the blocked query returns at wait=5s with a lower index and the loop restarts from 0; convergence = the next change reaching the calls';
          },
        },
      ],
      close: async () => {
        await d.close();
        await proxy.close();
        await consul.close();
      },
    };
  },
);

// ---------------------------------------------------------------- DNS (dnsmasq)

reliabilitySuite('DNS (dnsmasq)', ['restart'], needs(findDnsmasq), async () => {
  const dns: Dnsmasq = await startDnsmasq({ domains: ['test'] });
  return {
    name: 'DNS',
    target: () =>
      `wayfinder+dns://${dns.address}/_grpc._tcp.${SERVICE}.test?min-refresh=200ms&max-refresh=1s&timeout=300ms&tries=1&probe=false`,
    registrar: async () => dnsmasqRegistrar(dns),
    outage: 'dnsmasq SIGSTOPped (bound, silent: UDP has no connection for the proxy to blackhole)',
    changeDuringOutage: false,
    outageMs: BLACKHOLE_MS,
    convergeBoundMs: 3000,
    breakRegistry: () => dns.pause(),
    healRegistry: () => dns.resume(),
    restart: {
      what: "dnsmasq restarted on the same port (every SRV change restarts it; a server-side restart is the registrar's own write here)",
      run: async () => {
        await dns.updateRecords((r) => ({ ...r }));
      },
      boundMs: 3000,
    },
    close: () => dns.stop(),
  };
});

// ---------------------------------------------------------------- Kubernetes (fake API server)

reliabilitySuite(
  'Kubernetes (fake API server)',
  ['restart', 'specials'],
  () => undefined,
  async () => {
    const kube: FakeKubeApi = await startFakeKubeApi();
    const proxy = await faultProxy({ target: `127.0.0.1:${kube.port}` });
    const tmp = tempDir('wf-rel-kube-');
    const file = path.join(tmp.dir, 'kubeconfig');
    writeFileSync(
      file,
      readFileSync(kube.writeKubeconfig(), 'utf8').split(`127.0.0.1:${kube.port}`).join(proxy.address),
    );
    const registrar = new FakeKubeAdminRegistrar(kube, 'default');
    return {
      name: 'Kubernetes',
      target: (port) => `k8s:///${SERVICE}.default:${port}?kubeconfig=${file}&idle-timeout=5s&backoff-max=2s`,
      registrar: async () => registrar,
      outage: 'client-to-API-server TCP blackholed; the silent watch is restarted after idle-timeout (5 s)',
      changeDuringOutage: true,
      outageMs: BLACKHOLE_MS,
      convergeBoundMs: 12_000,
      breakRegistry: async () => proxy.blackhole(),
      healRegistry: async () => proxy.heal(),
      restart: {
        what: 'API server unreachable for 5 s (connections reset, new ones refused), then back: the fake cannot restart on the same port, the fault proxy stands in',
        run: () => proxy.cut(5000),
        boundMs: 12_000,
      },
      specials: [
        {
          name: 'Kubernetes 410 Gone',
          boundMs: 5000,
          run: async () => {
            kube.compact();
            const n = kube.closeWatches();
            return `history compacted and ${n} watch(es) ended: the re-watch from the old resourceVersion gets 410 Expired and must re-list`;
          },
        },
        {
          name: 'Kubernetes silent watch stall',
          boundMs: 5000 + 5000,
          run: async () => {
            const n = kube.stallWatches();
            return `${n} watch(es) went silent with the connection open (no events, no bookmarks); bound = idle-timeout 5 s + re-list`;
          },
        },
      ],
      close: async () => {
        await registrar.close();
        await proxy.close();
        await kube.stop();
        tmp.remove();
      },
    };
  },
);

// ---------------------------------------------------------------- file

reliabilitySuite(
  'file',
  ['registrant'],
  () => undefined,
  async () => {
    const tmp = tempDir('wf-rel-file-');
    const file = path.join(tmp.dir, 'registry.json');
    // Long heartbeats for the backends' registrar, so the corruption below is not repaired at once.
    const d = await Discovery.fromConfig(`file://${file}?ttl=60s`);
    let saved = '';
    return {
      name: 'file',
      target: () => `file:///${SERVICE}?path=${file}`,
      registrar: async () => d.registrar,
      outage: 'registry file overwritten with garbage (a file registry has no network to cut), restored afterwards',
      changeDuringOutage: false,
      outageMs: 10_000,
      convergeBoundMs: 2000,
      breakRegistry: async () => {
        saved = readFileSync(file, 'utf8');
        writeFileSync(file, '{ this is not json');
      },
      healRegistry: async () => {
        // A heartbeat during the outage may have repaired the file already; only restore garbage.
        if (readFileSync(file, 'utf8').startsWith('{ this is not')) writeFileSync(file, saved);
      },
      registrant: { url: `file://${file}?ttl=2s`, ttlMs: 2000, boundMs: 2000 + 1500 },
      observerUrl: `file://${file}`,
      close: async () => {
        await d.close();
        tmp.remove();
      },
    };
  },
);

// ---------------------------------------------------------------- results

/** The measured figures go to RESULTS_FILE (temp dir); `npm run docs:reliability` renders docs/reliability.md. */
after(function () {
  if (results.length === 0) return;
  const run: ReliabilityRun = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    blackholeMs: BLACKHOLE_MS,
    callGapMs: CALL_GAP_MS,
    results,
  };
  writeFileSync(RESULTS_FILE, JSON.stringify(run, null, 2));
  console.log(
    `    reliability results${isComplete(run) ? '' : ' (partial run)'} written to ${RESULTS_FILE}; \`npm run docs:reliability\` renders docs/reliability.md`,
  );
});
