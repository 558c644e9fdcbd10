import * as net from 'node:net';

/**
 * A TCP fault injector for tests: clients connect to the proxy (127.0.0.1, a free port) and it
 * relays to `target`, a loopback server (real etcd/ZooKeeper or a fake). On command it misbehaves
 * the way networks do:
 *
 *   blackhole()  new connections are accepted and never forwarded; bytes on open connections are
 *                swallowed in both directions. Peers see half-open connections: no RST, no FIN,
 *                nothing but silence, so only timeouts and keepalives can notice.
 *   reset()      every open connection is aborted with a TCP RST (new ones still pass).
 *   latency(ms)  every chunk is delayed by ms in each direction (order kept).
 *   cut(ms)      reset every connection and refuse new ones (accept + RST) for ms, then heal.
 *   heal()       back to relaying for new connections. Connections that were blackholed stay
 *                silent (their bytes are gone, as after a NAT or firewall dropped the flow);
 *                clients must notice and reconnect, which is what the fault is there to test.
 *
 * Only loopback targets are accepted, and the proxy only listens on 127.0.0.1: this is test
 * equipment, never a relay onto the network.
 */

export type FaultMode = 'pass' | 'blackhole' | 'refuse';

export interface FaultProxyOptions {
  /** `host:port` or `{ host, port }`; host must be a loopback address or "localhost". */
  target: string | { host: string; port: number };
  /** Listen port (default: a free one). */
  port?: number;
}

export interface FaultProxyStats {
  /** Connections accepted since start. */
  accepted: number;
  /** Connections open now (relaying or blackholed). */
  open: number;
  /** Connections aborted with RST by reset()/cut()/refuse. */
  reset: number;
  /** Bytes swallowed by blackhole, both directions. */
  swallowedBytes: number;
}

export interface FaultProxy {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** `127.0.0.1:<port>`: give this to the client instead of the target. */
  readonly address: string;
  readonly target: { host: string; port: number };
  readonly mode: FaultMode;
  blackhole(): void;
  reset(): void;
  /** Added delay per chunk and direction, ms (0 to remove). */
  latency(ms: number): void;
  /** Resets and refuses connections for `ms`; resolves when healed (heal() earlier also resolves it). */
  cut(ms: number): Promise<void>;
  heal(): void;
  stats(): FaultProxyStats;
  /** Stops listening and destroys every connection. Idempotent. */
  close(): Promise<void>;
}

/** True for 127.0.0.0/8, ::1, ::ffff:127.x.y.z and "localhost". */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h.toLowerCase() === 'localhost') return true;
  if (net.isIPv4(h)) return h.split('.')[0] === '127';
  if (net.isIPv6(h)) {
    const l = h.toLowerCase();
    if (l === '::1' || l === '0:0:0:0:0:0:0:1') return true;
    const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(l);
    return !!m && m[1].split('.')[0] === '127';
  }
  return false;
}

function parseTarget(t: FaultProxyOptions['target']): { host: string; port: number } {
  let host: string;
  let port: number;
  if (typeof t === 'string') {
    const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(t);
    if (!m) throw new TypeError(`faultProxy(): target must be "host:port", got ${JSON.stringify(t)}`);
    host = m[1].replace(/^\[|\]$/g, '');
    port = Number(m[2]);
  } else if (t && typeof t === 'object') {
    host = t.host;
    port = t.port;
  } else {
    throw new TypeError('faultProxy(): "target" is required');
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new TypeError(`faultProxy(): target port must be in 1..65535, got ${port}`);
  if (typeof host !== 'string' || !isLoopbackHost(host))
    throw new TypeError(`faultProxy(): only loopback targets are allowed, got ${JSON.stringify(host)}`);
  return { host, port };
}

interface Conn {
  client: net.Socket;
  upstream?: net.Socket;
  /** Once blackholed a connection never relays again (its bytes are lost). */
  black: boolean;
}

/** Starts the proxy; resolves once it listens. */
export async function faultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const target = parseTarget(opts.target);
  let mode: FaultMode = 'pass';
  let delayMs = 0;
  const conns = new Set<Conn>();
  const stats: FaultProxyStats = { accepted: 0, open: 0, reset: 0, swallowedBytes: 0 };
  let cutTimer: NodeJS.Timeout | undefined;
  let cutDone: (() => void) | undefined;

  const abort = (s: net.Socket | undefined) => {
    if (!s || s.destroyed) return;
    // resetAndDestroy sends RST where the socket is connected; otherwise plain destroy.
    try {
      s.resetAndDestroy();
    } catch {
      s.destroy();
    }
  };
  const drop = (c: Conn) => {
    if (!conns.delete(c)) return;
    stats.open = conns.size;
    c.client.destroy();
    c.upstream?.destroy();
  };
  const goBlack = (c: Conn) => {
    c.black = true;
  };

  /** Relays a→b, honouring latency and blackhole at the moment each chunk arrives. */
  const relay = (c: Conn, from: net.Socket, to: net.Socket) => {
    let nextAt = 0;
    from.on('data', (chunk: Buffer) => {
      if (c.black) {
        stats.swallowedBytes += chunk.length;
        return;
      }
      if (delayMs <= 0 && nextAt <= Date.now()) {
        to.write(chunk);
        return;
      }
      // Constant per-chunk delay; never earlier than the previous chunk, so order is kept.
      const at = Math.max(Date.now() + delayMs, nextAt);
      nextAt = at;
      setTimeout(() => {
        if (!c.black && !to.destroyed) to.write(chunk);
        else stats.swallowedBytes += chunk.length;
      }, at - Date.now()).unref();
    });
    from.on('end', () => {
      if (!c.black) setTimeout(() => to.end(), Math.max(0, nextAt - Date.now())).unref();
    });
  };

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (client) => {
    stats.accepted++;
    const c: Conn = { client, black: false };
    conns.add(c);
    stats.open = conns.size;
    client.on('error', () => drop(c));
    client.on('close', () => drop(c));
    if (mode === 'refuse') {
      stats.reset++;
      abort(client);
      return;
    }
    if (mode === 'blackhole') {
      // Accepted, never forwarded: the client believes it is connected.
      c.black = true;
      client.on('data', (d: Buffer) => (stats.swallowedBytes += d.length));
      return;
    }
    const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    c.upstream = upstream;
    upstream.on('error', () => {
      // Target down: the client sees a reset, as it would connecting directly.
      abort(client);
      drop(c);
    });
    upstream.on('close', () => {
      if (!c.black) drop(c);
    });
    relay(c, client, upstream);
    relay(c, upstream, client);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;

  const heal = () => {
    mode = 'pass';
    if (cutTimer) clearTimeout(cutTimer);
    cutTimer = undefined;
    const done = cutDone;
    cutDone = undefined;
    done?.();
  };
  const resetAll = () => {
    for (const c of [...conns]) {
      stats.reset++;
      abort(c.client);
      abort(c.upstream);
      drop(c);
    }
  };
  let closed = false;

  return {
    host: '127.0.0.1',
    port,
    address: `127.0.0.1:${port}`,
    target,
    get mode() {
      return mode;
    },
    blackhole() {
      mode = 'blackhole';
      for (const c of conns) goBlack(c);
    },
    reset: resetAll,
    latency(ms: number) {
      if (!Number.isFinite(ms) || ms < 0) throw new TypeError(`latency(): ms must be >= 0, got ${ms}`);
      delayMs = ms;
    },
    cut(ms: number) {
      if (!Number.isFinite(ms) || ms < 0) throw new TypeError(`cut(): ms must be >= 0, got ${ms}`);
      heal();
      mode = 'refuse';
      resetAll();
      return new Promise<void>((resolve) => {
        cutDone = resolve;
        cutTimer = setTimeout(heal, ms);
      });
    },
    heal,
    stats: () => ({ ...stats, open: conns.size }),
    async close() {
      if (closed) return;
      closed = true;
      heal();
      for (const c of [...conns]) drop(c);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
