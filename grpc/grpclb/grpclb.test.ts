import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { Discovery, type Registration } from '../../core';
import {
  EchoClient,
  echoServiceDefinition,
  freePort,
  waitFor,
  withTimeout,
  type EchoReply,
  type EchoRequest,
} from '../../testkit';
import { installGrpc } from '../index';
import { startBalancerServer, type BalancerServer } from './server';
import { BALANCE_LOAD_PATH, LB_TOKEN_METADATA, balanceLoadMethod } from './protocol';

/**
 * Our wayfinder_grpclb client against our balancer server, over real loopback gRPC. Backends are
 * echo servers that record the lb-token of every call; the registry is an in-process memory
 * registry shared by the balancer (its view) and the client's resolver (its fallback addresses).
 */

interface Backend {
  port: number;
  id: string;
  tokens: string[];
  registration: Registration;
  stop(): Promise<void>;
}

async function startBackend(d: Discovery, opts: { weight?: number; service?: string } = {}): Promise<Backend> {
  const server = new grpc.Server();
  const tokens: string[] = [];
  const state = { id: '', port: 0 };
  server.addService(echoServiceDefinition, {
    Echo(call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, cb: grpc.sendUnaryData<EchoReply>) {
      tokens.push(String(call.metadata.get(LB_TOKEN_METADATA)[0] ?? ''));
      cb(null, {
        message: call.request.message ?? '',
        serverId: state.id,
        port: state.port,
        peer: call.getPeer(),
        zone: '',
      });
    },
  });
  state.port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  state.id = `b-${state.port}`;
  const registration = await d.registrar.register({
    service: opts.service ?? 'echo',
    host: '127.0.0.1',
    port: state.port,
    id: state.id,
    weight: opts.weight,
  });
  return {
    port: state.port,
    id: state.id,
    tokens,
    registration,
    async stop() {
      await registration.deregister().catch(() => undefined);
      server.forceShutdown();
    },
  };
}

function lbConfig(balancers: string[], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ loadBalancingConfig: [{ wayfinder_grpclb: { balancers, ...extra } }] });
}

let registryCount = 0;

describe('grpclb: wayfinder_grpclb client and balancer server over loopback', function () {
  this.timeout(20_000);
  let d: Discovery;
  let registryUrl: string;
  const cleanups: (() => unknown)[] = [];

  before(() => installGrpc());
  beforeEach(async () => {
    registryUrl = `memory://grpclb-${process.pid}-${++registryCount}`;
    d = await Discovery.fromConfig(registryUrl);
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await d.close();
  });

  async function backend(opts: { weight?: number } = {}): Promise<Backend> {
    const b = await startBackend(d, opts);
    cleanups.push(() => b.stop());
    return b;
  }
  async function balancer(opts: Partial<Parameters<typeof startBalancerServer>[0]> = {}): Promise<BalancerServer> {
    const b = await startBalancerServer({ discovery: d, host: '127.0.0.1', port: 0, statsIntervalMs: 200, ...opts });
    cleanups.push(() => b.kill());
    return b;
  }
  function client(balancers: string[], extra: Record<string, unknown> = {}): EchoClient {
    const c = new EchoClient(`${registryUrl}/echo`, grpc.credentials.createInsecure(), {
      'grpc.service_config': lbConfig(balancers, extra),
    });
    cleanups.push(() => c.close());
    return c;
  }

  it("sends every call to a server from the balancer's list, in its order, with that entry's lb-token", async () => {
    const [a, b] = [await backend({ weight: 1 }), await backend({ weight: 3 })];
    const lb = await balancer({ expandByWeight: true });
    const c = client([`127.0.0.1:${lb.port}`]);
    // Until both connections are READY the picker skips the other's entries.
    await waitFor('both backends serving', async () => (await c.echo(), a.tokens.length > 0 && b.tokens.length > 0));
    const seen: string[] = [];
    for (let i = 0; i < 40; i++) seen.push((await c.echo({ message: String(i) })).serverId);
    // weights 1:3 expanded into the list: exactly a quarter to a (round-robin over a 4-entry list)
    assert.equal(seen.filter((s) => s === a.id).length, 10);
    assert.equal(seen.filter((s) => s === b.id).length, 30);
    assert.deepEqual([...new Set(a.tokens)], [a.id]);
    assert.deepEqual([...new Set(b.tokens)], [b.id]);
  });

  it('honours drop entries, and the balancer aggregates the load reports (started, finished, received, drops per token)', async () => {
    await backend();
    await backend();
    const lb = await balancer({ dropRate: 0.25, dropToken: 'shed' });
    const c = client([`127.0.0.1:${lb.port}`]);
    await c.echo({}, { deadlineMs: 5000 }).catch(() => undefined); // warm-up: the first list is in
    await waitFor('a first load report', () => lb.stats('echo').reports > 0, { timeoutMs: 5000 });
    const before = lb.stats('echo');
    let ok = 0;
    let dropped = 0;
    for (let i = 0; i < 200; i++) {
      try {
        await c.echo();
        ok++;
      } catch (e) {
        const err = e as grpc.ServiceError;
        assert.equal(err.code, grpc.status.UNAVAILABLE);
        assert.match(err.details, /dropped by the load balancer/);
        dropped++;
      }
    }
    // round-robin over a list with a quarter of drop entries: 50 of 200, give or take the start offset
    assert.ok(Math.abs(dropped - 50) <= 2, `dropped ${dropped} of 200`);
    const want = {
      started: before.callsStarted + 200,
      finished: before.callsFinished + 200,
      received: before.callsKnownReceived + ok,
      drops: (before.drops.shed ?? 0) + dropped,
    };
    const t = await waitFor(
      'load reports covering all 200 calls',
      () => {
        const s = lb.stats('echo');
        return s.callsFinished >= want.finished ? s : undefined;
      },
      { timeoutMs: 5000 },
    );
    assert.equal(t.callsStarted, want.started);
    assert.equal(t.callsFinished, want.finished);
    assert.equal(t.callsKnownReceived, want.received);
    assert.equal(t.callsFailedToSend, before.callsFailedToSend);
    assert.deepEqual(Object.keys(t.drops), ['shed']);
    assert.equal(t.drops.shed, want.drops);
    assert.equal(t.clients, 1);

    // Shedding everything: every call is dropped, none reaches a backend.
    lb.setDropRate('echo', 1);
    // The 25% list never has two drops in a row: two in a row means the drop-all list is in.
    const dropped2 = async () =>
      (await c.echo().then(
        () => false,
        (e) => /dropped/.test(e.details),
      )) &&
      (await c.echo().then(
        () => false,
        (e) => /dropped/.test(e.details),
      ));
    await waitFor('the drop-all list', dropped2, { timeoutMs: 5000 });
    for (let i = 0; i < 10; i++) await assert.rejects(c.echo(), /dropped by the load balancer/);
  });

  it('keeps serving through a balancer restart mid-traffic with no failed call, then follows the new balancer', async () => {
    const a = await backend();
    const lb = await balancer();
    const port = lb.port;
    const c = client([`127.0.0.1:${port}`], { reconnectBackoff: '50ms', maxReconnectBackoff: '200ms' });
    await c.echo();
    let stop = false;
    let calls = 0;
    const failures: unknown[] = [];
    const traffic = (async () => {
      while (!stop) {
        try {
          await c.echo({}, { deadlineMs: 2000 });
          calls++;
        } catch (e) {
          failures.push(e);
        }
      }
    })();
    try {
      await waitFor('traffic', () => calls > 20);
      lb.kill();
      const during = calls;
      await waitFor('calls while the balancer is down', () => calls > during + 50);
      const lb2 = await balancer({ port });
      await waitFor('the client to reopen its stream to the restarted balancer', () => lb2.streams === 1, {
        timeoutMs: 5000,
      });
      // The new balancer's list is used: a backend registered now gets calls.
      const b = await backend();
      await waitFor('calls on the backend registered after the restart', () => b.tokens.length > 5, {
        timeoutMs: 5000,
      });
      assert.ok(a.tokens.length > 20);
    } finally {
      stop = true;
      await traffic;
    }
    assert.deepEqual(
      failures.map((e) => (e as Error).message),
      [],
    );
  });

  it('moves to another balancer replica when one stops', async () => {
    await backend();
    const lb1 = await balancer();
    const lb2 = await balancer();
    const c = client([`127.0.0.1:${lb1.port}`, `127.0.0.1:${lb2.port}`], { reconnectBackoff: '20ms' });
    await c.echo();
    assert.equal(lb1.streams + lb2.streams, 1);
    const [first, second] = lb1.streams === 1 ? [lb1, lb2] : [lb2, lb1];
    await first.stop();
    await waitFor('a stream on the other replica', () => second.streams === 1, { timeoutMs: 5000 });
    for (let i = 0; i < 10; i++) await c.echo();
  });

  it("falls back to the resolver's addresses when no balancer answers in time, and returns to the balancer's list when one does", async () => {
    const a = await backend();
    const port = await freePort();
    const c = client([`127.0.0.1:${port}`], {
      fallbackTimeout: '300ms',
      reconnectBackoff: '50ms',
      maxReconnectBackoff: '100ms',
    });
    const t0 = Date.now();
    const r = await withTimeout(c.echo({}, { deadlineMs: 5000 }), 5000, 'a call in fallback');
    assert.equal(r.serverId, a.id);
    assert.ok(Date.now() - t0 >= 250, 'the first call waited for the fallback timeout');
    assert.equal(a.tokens.at(-1), '', 'fallback calls carry no lb-token');

    const lb = await balancer({ port });
    await waitFor(
      "calls carrying the balancer's token",
      async () => {
        await c.echo();
        return a.tokens.at(-1) === a.id;
      },
      { timeoutMs: 5000 },
    );

    // The stream breaks: the last list keeps serving (tokens still sent), not the fallback.
    lb.kill();
    const n = a.tokens.length;
    for (let i = 0; i < 20; i++) await c.echo();
    assert.deepEqual([...new Set(a.tokens.slice(n))], [a.id]);
    assert.equal(lb.streams, 0);
  });

  it('the balancer rejects a stream whose first message is not an initial request', async () => {
    const lb = await balancer();
    const raw = new grpc.Client(`127.0.0.1:${lb.port}`, grpc.credentials.createInsecure());
    cleanups.push(() => raw.close());
    const m = balanceLoadMethod();
    const call = raw.makeBidiStreamRequest(BALANCE_LOAD_PATH, m.requestSerialize, m.responseDeserialize);
    const err = await withTimeout(
      new Promise<grpc.ServiceError>((resolve) => {
        call.on('error', resolve);
        call.on('data', () => undefined);
        call.write({ clientStats: { numCallsStarted: 1 } });
      }),
      5000,
      'the stream error',
    );
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
  });
});
