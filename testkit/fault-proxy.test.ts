import assert from 'node:assert/strict';
import * as net from 'node:net';
import { faultProxy, isLoopbackHost, type FaultProxy } from './fault-proxy';
import { withTimeout } from './process';

/** A TCP echo server on loopback, counting connections. */
async function echoServer(): Promise<{ port: number; connections: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0 };
  const srv = net.createServer((s) => {
    state.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    get connections() {
      return state.connections;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => srv.close(() => r()));
    },
  };
}

/** Connects and resolves with the socket plus a reader of what arrives. */
function connect(port: number): Promise<{ s: net.Socket; received(): string; closed: Promise<{ error?: string }> }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let got = '';
    s.on('data', (d) => (got += d.toString()));
    const closed = new Promise<{ error?: string }>((r) => {
      let error: string | undefined;
      s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
      s.on('close', () => r({ error }));
    });
    s.once('connect', () => resolve({ s, received: () => got, closed }));
    s.once('error', reject);
  });
}

async function roundTrip(c: { s: net.Socket; received(): string }, msg: string, ms = 2000): Promise<number> {
  const before = c.received().length;
  const t0 = Date.now();
  c.s.write(msg);
  await withTimeout(
    new Promise<void>((r) => {
      const check = () => (c.received().length >= before + msg.length ? r() : setTimeout(check, 2));
      check();
    }),
    ms,
    `echo of ${msg}`,
  );
  return Date.now() - t0;
}

describe('testkit: faultProxy', () => {
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let proxy: FaultProxy;
  const open: net.Socket[] = [];
  beforeEach(async () => {
    echo = await echoServer();
    proxy = await faultProxy({ target: `127.0.0.1:${echo.port}` });
  });
  afterEach(async () => {
    for (const s of open.splice(0)) s.destroy();
    await proxy.close();
    await echo.close();
  });
  const dial = async () => {
    const c = await connect(proxy.port);
    open.push(c.s);
    return c;
  };

  it('refuses non-loopback targets and accepts loopback forms', async () => {
    for (const bad of ['10.0.0.1:80', '8.8.8.8:53', 'example.com:80', '[2001:db8::1]:80', '0.0.0.0:80']) {
      await assert.rejects(faultProxy({ target: bad }), /loopback/, bad);
    }
    await assert.rejects(faultProxy({ target: { host: '192.168.1.1', port: 1 } }), /loopback/);
    for (const ok of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1'])
      assert.ok(isLoopbackHost(ok), ok);
    assert.equal(proxy.host, '127.0.0.1');
  });

  it('relays both ways while healthy', async () => {
    const c = await dial();
    await roundTrip(c, 'hello');
    assert.equal(c.received(), 'hello');
    assert.equal(echo.connections, 1);
  });

  it('blackhole: open connections go silent (no RST, no FIN); new ones are accepted but never reach the target', async () => {
    const c = await dial();
    await roundTrip(c, 'a');
    proxy.blackhole();
    c.s.write('lost');
    const fresh = await dial(); // accepted: the client believes it is connected
    fresh.s.write('also lost');
    const settled = await Promise.race([
      c.closed.then(() => 'closed'),
      fresh.closed.then(() => 'closed'),
      new Promise((r) => setTimeout(() => r('silent'), 500)),
    ]);
    assert.equal(settled, 'silent');
    assert.equal(c.received(), 'a', 'nothing comes back');
    assert.equal(echo.connections, 1, 'the new connection never reached the target');
    assert.ok(proxy.stats().swallowedBytes >= 'lost'.length + 'also lost'.length);
    // Healing serves new connections; the blackholed ones stay dead (their bytes are gone).
    proxy.heal();
    const after = await dial();
    await roundTrip(after, 'back');
    await assert.rejects(roundTrip(c, 'x', 300), /timed out/);
  });

  it('reset: open connections are aborted with ECONNRESET; new connections pass', async () => {
    const c = await dial();
    await roundTrip(c, 'a');
    proxy.reset();
    const { error } = await withTimeout(c.closed, 2000, 'close after reset');
    assert.equal(error, 'ECONNRESET');
    await roundTrip(await dial(), 'again');
  });

  it('latency: each direction is delayed, order kept; removing it restores speed', async () => {
    const c = await dial();
    const base = await roundTrip(c, 'fast');
    proxy.latency(150);
    const slow = await roundTrip(c, 'slow-1slow-2');
    assert.ok(slow >= 290, `round trip ${slow} ms should carry ~2 x 150 ms`);
    c.s.write('1');
    c.s.write('2');
    c.s.write('3');
    await roundTrip(c, '4');
    assert.ok(c.received().endsWith('1234'), `order kept: ${c.received()}`);
    proxy.latency(0);
    // Without the latency a round trip no longer carries 2 x 150 ms (slack for a loaded machine).
    assert.ok((await roundTrip(c, 'quick')) < base + 250);
  });

  it('cut(ms): resets open connections, refuses new ones for ms, then heals by itself', async () => {
    const c = await dial();
    const t0 = Date.now();
    const healed = proxy.cut(400);
    assert.equal((await withTimeout(c.closed, 2000, 'reset')).error, 'ECONNRESET');
    assert.equal(proxy.mode, 'refuse');
    const during = await dial().catch((e: NodeJS.ErrnoException) => e);
    if (!(during instanceof Error)) {
      // The accept happened before the RST: the connection then dies at once.
      const { error } = await withTimeout(during.closed, 2000, 'refused connection closing');
      assert.equal(error, 'ECONNRESET');
    }
    await healed;
    assert.ok(Date.now() - t0 >= 390, 'healed after the cut');
    assert.equal(proxy.mode, 'pass');
    await roundTrip(await dial(), 'up');
  });

  it('a target that is down looks like a reset connection to the client', async () => {
    await echo.close();
    const c = await dial();
    const { error } = await withTimeout(c.closed, 2000, 'close');
    assert.equal(error, 'ECONNRESET');
  });
});
