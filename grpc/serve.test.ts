import '../builtins'; // the built-in registries and balancers
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Snapshot } from '../core';
import { EchoClient, echoServiceDefinition, startEchoServer, type EchoServer } from '../testkit/echo';
import { spawnManaged, waitFor, withTimeout } from '../testkit/process';
import { installGrpc, serve } from './index';
import { memoryDiscovery, uniqueName } from './fixtures/support';

describe('grpc serve()', function () {
  this.timeout(20_000);
  const cleanups: (() => unknown)[] = [];
  const later = (fn: () => unknown) => cleanups.push(fn);
  before(() => installGrpc());
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  it('binds port 0, registers the bound port, and on stop() deregisters before shutting down', async () => {
    const name = uniqueName('serve');
    const d = await memoryDiscovery(name);
    later(() => d.close());
    const server = new grpc.Server();
    server.addService(echoServiceDefinition, {
      Echo: (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) =>
        cb(null, { message: 'ok', serverId: 's', port: 0, peer: call.getPeer(), zone: '' }),
    });
    const events: string[] = [];
    const tryShutdown = server.tryShutdown.bind(server);
    server.tryShutdown = (cb) => {
      events.push('tryShutdown');
      tryShutdown(cb);
    };
    const served = await serve(server, {
      discovery: d,
      service: 'echo',
      host: '127.0.0.1',
      port: 0,
      drainMs: 300,
      signals: false,
      zone: 'z1',
      weight: 3,
    });
    later(() => served.stop({ force: true }));
    assert.ok(served.port > 0);
    const eps = await d.resolver.resolve('echo');
    assert.deepEqual(
      eps.map((e) => [e.host, e.port, e.zone, e.weight]),
      [['127.0.0.1', served.port, 'z1', 3]],
    );

    const w = d.resolver.watch('echo', (s: Snapshot) => {
      if (s.endpoints.length === 0) events.push('deregistered');
    });
    later(() => w.close());
    const direct = new EchoClient(`127.0.0.1:${served.port}`);
    later(() => direct.close());
    await direct.echo();
    const t0 = performance.now();
    const stopping = served.stop();
    await waitFor('deregistration', () => events.includes('deregistered'), { timeoutMs: 2000, intervalMs: 5 });
    // Still serving during the drain period, after the registry no longer lists it.
    assert.equal((await direct.echo()).message, 'ok');
    assert.ok(!events.includes('tryShutdown'));
    await withTimeout(stopping, 5000, 'stop()');
    assert.deepEqual(events, ['deregistered', 'tryShutdown']);
    assert.ok(performance.now() - t0 >= 290, 'waited the drain period');
    await assert.rejects(direct.echo({}, { deadlineMs: 1000 }));
    assert.equal(served.stop(), served.stop(), 'idempotent');
  });

  /** Steady load of 8 concurrent callers until stop(); counts answers per server and failures. */
  function load(c: EchoClient) {
    const st = { ok: 0, failures: [] as string[], perServer: new Map<string, number>(), running: true };
    const worker = async () => {
      while (st.running) {
        try {
          const r = await c.echo({}, { deadlineMs: 3000 });
          st.ok++;
          st.perServer.set(r.serverId, (st.perServer.get(r.serverId) ?? 0) + 1);
        } catch (e) {
          st.failures.push(`${(e as grpc.ServiceError).code}: ${(e as Error).message}`);
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    return Object.assign(st, {
      stop: async () => {
        st.running = false;
        await Promise.all(workers);
      },
    });
  }

  async function threeServers(prefix: string) {
    const name = uniqueName(prefix);
    const d = await memoryDiscovery(name);
    later(() => d.close());
    const start = (id: string) =>
      startEchoServer({ id, discovery: d, latencyMs: 10, drainMs: 300, shutdownTimeoutMs: 2000 });
    const servers: EchoServer[] = await Promise.all(['s1', 's2', 's3'].map(start));
    for (const s of servers) later(() => s.kill());
    const c = new EchoClient(`memory://${name}/echo`);
    later(() => c.close());
    return { d, servers, c, start };
  }

  it('a rolling restart of one of three servers under steady load loses no calls', async () => {
    const { d, servers, c, start } = await threeServers('rolling');
    const t0 = performance.now();
    const l = load(c);
    later(() => l.stop());
    await waitFor('load on every server', () => servers.every((s) => s.calls > 5), { timeoutMs: 5000 });

    // Roll s1: deregister, drain, shut down (serve()'s stop); then its replacement registers.
    let removedAt: number | undefined;
    let okAtRemoval = 0;
    const w = d.resolver.watch('echo', (s) => {
      if (removedAt === undefined && !s.endpoints.some((e) => e.port === servers[0].port)) {
        removedAt = servers[0].calls;
        okAtRemoval = l.ok;
      }
    });
    later(() => w.close());
    await servers[0].stop();
    const s1Calls = servers[0].calls;
    const okDuringRestart = l.ok - okAtRemoval;
    const replacement = await start('s1b');
    later(() => replacement.kill());
    await waitFor('the replacement to take load', () => replacement.calls > 20, { timeoutMs: 5000 });
    await l.stop();

    console.log(
      `      ${l.ok} calls in ${(performance.now() - t0).toFixed(0)} ms, ${l.failures.length} failed; per server: ${JSON.stringify(Object.fromEntries(l.perServer))}`,
    );
    assert.deepEqual(l.failures, [], `failed calls: ${l.failures.length}`);
    assert.ok(okDuringRestart > 16, `calls kept flowing while s1 drained and shut down: ${okDuringRestart}`);
    assert.ok(removedAt !== undefined);
    assert.ok(
      s1Calls - removedAt! <= 8,
      `s1 took ${s1Calls - removedAt!} calls after its removal was visible (at most the in-flight ones)`,
    );
    for (const id of ['s2', 's3', 's1b']) assert.ok((l.perServer.get(id) ?? 0) > 0, `${id} served calls`);
  });

  it('control: a crash (no deregistration, no drain) under the same load does lose calls', async () => {
    const { servers, c } = await threeServers('crash');
    const l = load(c);
    later(() => l.stop());
    await waitFor('calls in flight on s1', () => servers.every((s) => s.calls > 5) && servers[0].inFlight > 0, {
      timeoutMs: 5000,
      intervalMs: 1,
    });
    servers[0].kill();
    await waitFor('more calls after the crash', () => l.ok > 50, { timeoutMs: 5000 });
    await l.stop();
    assert.ok(l.failures.length > 0, 'calls in flight on the crashed server failed');
  });

  it('on SIGTERM deregisters, keeps serving through the drain, then shuts down and exits by the signal', async function () {
    const fixture = path.join(__dirname, 'fixtures', 'serve-child.ts');
    const child = spawnManaged(process.execPath, ['--require', 'tsx/cjs', fixture], {
      env: { ...process.env, DRAIN_MS: '600' },
    });
    later(() => child.kill());
    const events: Record<string, any>[] = [];
    let buf = '';
    child.child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          events.push(JSON.parse(line));
        } catch {
          /* not ours */
        }
      }
    });
    const reg = await waitFor('the child to register', () => events.find((e) => e.event === 'registered'), {
      timeoutMs: 15_000,
    }).catch((e) => {
      throw new Error(`${e.message}\n${child.output()}`);
    });
    const direct = new EchoClient(`127.0.0.1:${reg.port}`);
    later(() => direct.close());
    assert.equal((await direct.echo({ message: 'before' })).message, 'before');

    child.child.kill('SIGTERM');
    await waitFor('deregistration', () => events.some((e) => e.event === 'deregistered'), {
      timeoutMs: 5000,
      intervalMs: 5,
    });
    assert.equal((await direct.echo({ message: 'draining' })).message, 'draining', 'serves during the drain');
    const exit = await withTimeout(child.exited, 10_000, 'the child to exit');
    const order = events.map((e) => e.event);
    assert.deepEqual(
      order.filter((e) => e !== 'exit'),
      ['registered', 'deregistered', 'tryShutdown'],
      child.output(),
    );
    const at = (ev: string) => events.find((e) => e.event === ev)!.t as number;
    assert.ok(
      at('tryShutdown') - at('deregistered') >= 550,
      `drain lasted ${at('tryShutdown') - at('deregistered')} ms`,
    );
    assert.equal(exit.signal, 'SIGTERM', `exited by the re-raised signal: ${JSON.stringify(exit)}`);
  });
});
