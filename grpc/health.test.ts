import '../builtins'; // the built-in registries and balancers
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { Discovery, Logger } from '../core';
import { EchoClient, echoServiceDefinition } from '../testkit/echo';
import { waitFor, withTimeout } from '../testkit/process';
import { HealthService, checkServiceConfig, healthServiceDefinition, installGrpc, serve, type Served } from './index';
import { memoryDiscovery, uniqueName } from './fixtures/support';
import { settings } from './shared';

/** An echo server through serve() that records when each call arrives. */
interface Backend {
  served: Served;
  id: string;
  arrivals: number[];
}

describe('grpc health checking (gRFC A17)', function () {
  this.timeout(30_000);
  const cleanups: (() => unknown)[] = [];
  const later = (fn: () => unknown) => cleanups.push(fn);
  before(() => installGrpc());
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  async function backend(
    d: Discovery,
    id: string,
    o: { health?: HealthService | false; setup?(s: grpc.Server): void } = {},
  ) {
    const server = new grpc.Server();
    const b = { id, arrivals: [] as number[] } as Backend;
    server.addService(echoServiceDefinition, {
      Echo: (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => {
        b.arrivals.push(performance.now());
        cb(null, { message: 'ok', serverId: id, port: 0, peer: call.getPeer(), zone: '' });
      },
    });
    o.setup?.(server);
    b.served = await serve(server, {
      discovery: d,
      service: 'echo',
      host: '127.0.0.1',
      drainMs: 0,
      signals: false,
      ...(o.health !== undefined ? { health: o.health } : {}),
    });
    later(() => b.served.stop({ force: true }));
    return b;
  }

  function healthClient(name: string, serviceName = 'echo') {
    const c = new EchoClient(`memory://${name}/echo`, undefined, {
      'grpc.service_config': JSON.stringify({
        loadBalancingConfig: [{ wayfinder_round_robin: {} }],
        healthCheckConfig: { serviceName },
      }),
    });
    later(() => c.close());
    return c;
  }

  /** Four callers in a loop until the test ends; failures are collected. */
  function load(c: EchoClient) {
    const st = { running: true, ok: 0, failures: [] as string[] };
    const worker = async () => {
      while (st.running) {
        try {
          await c.echo({}, { deadlineMs: 3000, waitForReady: true });
          st.ok++;
        } catch (e) {
          st.failures.push((e as Error).message);
        }
      }
    };
    const all = Promise.all([worker(), worker(), worker(), worker()]);
    later(async () => {
      st.running = false;
      await withTimeout(all, 5000, 'load workers');
    });
    return st;
  }

  const after = (b: Backend, t: number) => b.arrivals.filter((x) => x > t).length;

  it('a server set NOT_SERVING soon gets no new call while still registered, and calls again once SERVING', async () => {
    const name = uniqueName('health');
    const d = await memoryDiscovery(name);
    later(() => d.close());
    const a = await backend(d, 'a');
    const b = await backend(d, 'b');
    const st = load(healthClient(name));
    await waitFor('both backends called', () => a.arrivals.length > 20 && b.arrivals.length > 20, { intervalMs: 5 });

    const tFlip = performance.now();
    a.served.health!.setStatus('echo', 'NOT_SERVING');
    // The status is pushed on the health Watch stream: the channel stops picking a as soon as the
    // message arrives, well within 1 s even on a loaded machine. Checked while traffic flows: b takes
    // 300 calls after that second, a none.
    await waitFor('300 calls on b more than 1 s after NOT_SERVING', () => after(b, tFlip + 1000) > 300, {
      intervalMs: 5,
    });
    assert.equal(after(a, tFlip + 1000), 0, 'a received calls more than 1 s after NOT_SERVING');
    const ports = (await d.resolver.resolve('echo')).map((e) => e.port);
    assert.ok(ports.includes(a.served.port), 'a is still registered');

    const tBack = performance.now();
    a.served.health!.setStatus('echo', 'SERVING');
    await waitFor('a called again', () => after(a, tBack) > 10, { intervalMs: 5 });
    assert.deepEqual(st.failures, []);
  });

  it('serve() reports NOT_SERVING when its drain starts, before the deregistration', async () => {
    const name = uniqueName('health');
    const d = await memoryDiscovery(name);
    later(() => d.close());
    const a = await backend(d, 'a');
    const b = await backend(d, 'b');
    const health = a.served.health!;
    assert.equal(health.getStatus(''), 'SERVING');
    assert.equal(health.getStatus('echo'), 'SERVING');
    const statusesAtDeregister: string[] = [];
    const deregister = a.served.registration.deregister.bind(a.served.registration);
    a.served.registration.deregister = () => {
      statusesAtDeregister.push(health.getStatus(''), health.getStatus('echo'));
      return deregister();
    };
    const st = load(healthClient(name));
    await waitFor('both backends called', () => a.arrivals.length > 20 && b.arrivals.length > 20, { intervalMs: 5 });
    await withTimeout(a.served.stop(), 5000, 'stop()');
    assert.deepEqual(statusesAtDeregister, ['NOT_SERVING', 'NOT_SERVING']);
    health.setStatus('echo', 'SERVING');
    assert.equal(health.getStatus('echo'), 'NOT_SERVING', 'setStatus is ignored after shutdown()');
    assert.deepEqual(st.failures, []);
  });

  it('a server without the Health service (UNIMPLEMENTED) counts as serving, with one warning per endpoint', async () => {
    const warnings: { address?: string; msg?: string }[] = [];
    const logger: Logger = {
      debug() {},
      info() {},
      error() {},
      warn(obj, msg) {
        if (typeof obj === 'object' && /does not implement/.test(msg ?? ''))
          warnings.push({ ...(obj as { address?: string }), msg });
      },
    };
    const saved = settings.logger;
    installGrpc({ logger });
    later(() => installGrpc({ logger: saved }));
    const name = uniqueName('health');
    const d = await memoryDiscovery(name);
    later(() => d.close());
    const a = await backend(d, 'a', { health: false });
    const b = await backend(d, 'b', { health: false });
    assert.equal(a.served.health, undefined);
    const c = healthClient(name);
    for (let i = 0; i < 100; i++) await c.echo({}, { waitForReady: true });
    assert.ok(a.arrivals.length > 20 && b.arrivals.length > 20, 'both unhealth-checked servers serve');
    assert.deepEqual(
      warnings.map((w) => w.address).sort(),
      [`127.0.0.1:${a.served.port}`, `127.0.0.1:${b.served.port}`].sort(),
    );
  });

  it('a broken watch stream is retried with backoff; the endpoint gets no call until the watch answers', async () => {
    const name = uniqueName('health');
    const d = await memoryDiscovery(name);
    later(() => d.close());
    const own = new HealthService({ '': 'SERVING', echo: 'SERVING' });
    const watchStarts: number[] = [];
    const a = await backend(d, 'a', {
      setup(server) {
        const h = own.handlers();
        server.addService(healthServiceDefinition(), {
          Check: h.Check!,
          Watch: (call: grpc.ServerWritableStream<any, any>) => {
            watchStarts.push(performance.now());
            // The first two watches break before answering.
            if (watchStarts.length <= 2) call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'broken' });
            else (h.Watch as (c: typeof call) => void)(call);
          },
        });
      },
    });
    assert.equal(a.served.health, undefined, "serve() kept the server's own Health service");
    const b = await backend(d, 'b');
    const st = load(healthClient(name));
    await waitFor('third watch', () => watchStarts.length >= 3, { timeoutMs: 10_000, intervalMs: 5 });
    const gaps = [watchStarts[1]! - watchStarts[0]!, watchStarts[2]! - watchStarts[1]!];
    assert.ok(
      gaps.every((g) => g >= 400),
      `retried after a backoff (gaps ${gaps.map(Math.round).join(', ')} ms)`,
    );
    assert.equal(a.arrivals.filter((t) => t < watchStarts[2]!).length, 0, 'no call while the watch was broken');
    await waitFor('a called once its watch answers', () => a.arrivals.length > 10, { intervalMs: 5 });

    const tFlip = performance.now();
    own.setStatus('echo', 'NOT_SERVING');
    // Pushed on the watch stream: no call on a from 1 s after the flip, checked while b takes 300 calls.
    await waitFor('300 calls on b more than 1 s after NOT_SERVING', () => after(b, tFlip + 1000) > 300, {
      intervalMs: 5,
    });
    assert.equal(after(a, tFlip + 1000), 0);
    assert.deepEqual(st.failures, []);
  });

  it('checkServiceConfig rejects a malformed healthCheckConfig', () => {
    assert.throws(() => checkServiceConfig({ healthCheckConfig: { serviceName: 3 } }), /healthCheckConfig/);
    assert.throws(() => checkServiceConfig({ healthCheckConfig: 'echo' }), /healthCheckConfig/);
    checkServiceConfig({ healthCheckConfig: { serviceName: '' } });
  });
});
