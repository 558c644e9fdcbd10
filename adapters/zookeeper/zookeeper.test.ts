import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as zookeeper from 'node-zookeeper-client';
import { ClosedError, Discovery, endpointKey, isWayfinderError, resolveRegistry, type InstanceSpec, type Logger, type Registrar, type Registration, type Snapshot } from '../../core';
import { SnapshotRecorder, registrarConformance, requireBinaryOrSkip, resolverConformance, tempDir, uniqueService, waitFor, withTimeout } from '../../testkit';
import { findZooKeeper, startZooKeeper, type ZooKeeperServer } from '../../testkit/zookeeper';
import { createZooKeeperRegistry, zookeeperAdapter, zookeeperCapabilities, type ZooKeeperOptions, type ZooKeeperRegistry } from '.';
import { digestId, hardClose, sessionHex } from './client';

/**
 * Against a real ZooKeeper 3.8 (one server for this file, started in before()). Sessions here are
 * short (2 s) so expiry tests stay quick; the server allows them (minSessionTimeout 200 ms).
 */

let zk: ZooKeeperServer;
let baseSerial = 0;
const uniqueBase = (p = 'wf') => `/${p}-${process.pid}-${baseSerial++}`;
const SESSION_MS = 2000;
const PROP = 3000;
const open: { close(): Promise<void> }[] = [];

function registry(o: Partial<ZooKeeperOptions> = {}, logger?: Logger): ZooKeeperRegistry {
  const r = createZooKeeperRegistry({ hosts: [zk.connectString], sessionTimeout: SESSION_MS, timeout: 5000, ...o }, logger);
  open.push(r);
  return r;
}

/** A raw vendor client for writing nodes the way other tools (Curator, zkCli) would. */
async function rawClient(auth?: string, connectString = zk.connectString): Promise<zookeeper.Client & { done(): void }> {
  const c = zookeeper.createClient(connectString, { sessionTimeout: 10_000, spinDelay: 100, retries: 0 });
  if (auth) c.addAuthInfo('digest', Buffer.from(auth));
  await withTimeout(new Promise<void>((resolve) => {
    c.once('connected', () => resolve());
    c.connect();
  }), 10_000, 'a raw client to connect');
  return Object.assign(c, { done: () => { c.close(); setTimeout(() => hardClose(c), 500).unref(); } });
}
const p = <T>(fn: (cb: (err: unknown, v?: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))));
const OPEN_ACL = [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('world', 'anyone'))];
const mkdirp = (c: zookeeper.Client, at: string) => p<string>((cb) => c.mkdirp(at, cb));
const createNode = (c: zookeeper.Client, at: string, data: string, mode = zookeeper.CreateMode.PERSISTENT) =>
  p<string>((cb) => c.create(at, Buffer.from(data), OPEN_ACL, mode, cb));
const getData = (c: zookeeper.Client, at: string) => p<Buffer>((cb) => c.getData(at, cb));
const statOf = (c: zookeeper.Client, at: string) => p<zookeeper.Stat>((cb) => c.exists(at, cb));

const keys = (s: Snapshot) => s.endpoints.map(endpointKey).sort();
const hasExactly = (...want: string[]) => (s: Snapshot) => JSON.stringify(keys(s)) === JSON.stringify([...want].sort());

/** A TCP relay that can cut every connection through it and refuse new ones: a network partition. */
async function partitionableProxy(target: number): Promise<{ port: number; cut(): void; heal(): void; close(): Promise<void> }> {
  let blocked = false;
  const pairs = new Set<net.Socket>();
  const server = net.createServer((down) => {
    if (blocked) return void down.destroy();
    const up = net.connect({ host: '127.0.0.1', port: target });
    pairs.add(down).add(up);
    const end = () => {
      down.destroy();
      up.destroy();
      pairs.delete(down);
      pairs.delete(up);
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut() {
      blocked = true;
      for (const s of pairs) s.destroy();
    },
    heal() {
      blocked = false;
    },
    close: () => new Promise<void>((r) => {
      for (const s of pairs) s.destroy();
      server.close(() => r());
    }),
  };
}

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const rec = (level: string) => (obj: object | string, msg?: string) => void lines.push(`${level} ${typeof obj === 'string' ? obj : `${msg ?? ''} ${JSON.stringify(obj)}`}`);
  return { lines, debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error') };
}

function events(reg: Registration): string[] {
  const seen: string[] = [];
  reg.on('lost', () => seen.push('lost'));
  reg.on('restored', () => seen.push('restored'));
  return seen;
}

describe('zookeeper adapter (real ZooKeeper)', function () {
  this.timeout(60_000);

  before(async function () {
    this.timeout(60_000);
    if (!requireBinaryOrSkip(this, findZooKeeper)) return;
    zk = await startZooKeeper({ tickTimeMs: 100, minSessionTimeoutMs: 200 });
  });
  afterEach(async () => {
    await Promise.allSettled(open.splice(0).map((r) => r.close()));
  });
  after(async () => {
    await zk?.close();
  });

  // ---- the conformance kit ----
  // In ZooKeeper liveness belongs to a session, so a "registrant" is a session: the test registrar
  // gives each registration its own session (as separate processes would have), and crash(reg)
  // cuts that session's connection without closing it, so the node goes only at session expiry.
  class SessionPerInstanceRegistrar implements Registrar {
    private readonly producers = new Map<Registration, ZooKeeperRegistry>();
    private closed = false;
    constructor(private readonly base: string) {}
    async register(spec: InstanceSpec): Promise<Registration> {
      if (this.closed) throw new ClosedError('zk test registrar');
      const pr = createZooKeeperRegistry({ hosts: [zk.connectString], path: this.base, sessionTimeout: SESSION_MS, timeout: 5000 });
      try {
        const reg = await pr.registrar.register(spec);
        this.producers.set(reg, pr);
        return reg;
      } catch (e) {
        await pr.close();
        throw e;
      }
    }
    crash(reg: Registration): void {
      const pr = this.producers.get(reg);
      assert.ok(pr, 'crash() of a registration this registrar did not make');
      pr.session.kill();
    }
    async close(): Promise<void> {
      this.closed = true;
      await Promise.allSettled([...this.producers.values()].map((pr) => pr.close()));
    }
  }
  const factory = async () => {
    const base = uniqueBase('conf');
    const consumer = createZooKeeperRegistry({ hosts: [zk.connectString], path: base, sessionTimeout: SESSION_MS, timeout: 5000 });
    const registrar = new SessionPerInstanceRegistrar(base);
    return {
      resolver: consumer.resolver,
      registrar,
      async injectBadEntry(service: string) {
        const c = await rawClient();
        try {
          await mkdirp(c, `${base}/${service}`);
          await createNode(c, `${base}/${service}/corrupt`, '{"host": 42, not json');
        } finally {
          c.done();
        }
      },
      crash: async (reg: Registration) => registrar.crash(reg),
      async cleanup() {
        await Promise.allSettled([consumer.close(), registrar.close()]);
      },
    };
  };
  const timing = { propagationMs: PROP, ttlMs: SESSION_MS + 1500 };
  resolverConformance({ it, describe, name: 'zookeeper', factory, capabilities: zookeeperCapabilities, timing });
  registrarConformance({ it, describe, name: 'zookeeper', factory, capabilities: zookeeperCapabilities, timing });
});
