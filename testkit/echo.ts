import * as grpc from '@grpc/grpc-js';
import * as path from 'node:path';
import type { Registrar, Registration } from '../core';
import { serve, type ServeOptions, type Served } from '../grpc/serve';
import { checkChannel } from '../grpc/diagnostics';

/**
 * The Echo service (testkit/proto/echo.proto): a server that answers with its id and port after an
 * optional latency, or fails on request, and a client for it. Shared by the demo, the benchmarks
 * and the end-to-end tests. The protobuf wire format is implemented here by hand so nothing but
 * @grpc/grpc-js is needed at run time.
 */

export const ECHO_PROTO_PATH = path.join(__dirname, 'proto', 'echo.proto');
export const ECHO_METHOD_PATH = '/wayfinder.testkit.Echo/Echo';

export interface EchoRequest {
  message?: string;
  /** Extra server-side latency for this call, ms. */
  delayMs?: number;
  /** Fail this call with failCode (default UNAVAILABLE). */
  fail?: boolean;
  failCode?: number;
}

export interface EchoReply {
  message: string;
  serverId: string;
  port: number;
  /** The client's address as the server saw it: one per client connection. */
  peer: string;
  zone: string;
}

// ---- protobuf wire format (proto3: default values are not written; unknown fields are skipped) ----

function putVarint(out: number[], v: number): void {
  while (v > 0x7f) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}
function putString(out: number[], field: number, s: string | undefined): void {
  if (!s) return;
  const b = Buffer.from(s, 'utf8');
  putVarint(out, (field << 3) | 2);
  putVarint(out, b.length);
  for (const x of b) out.push(x);
}
function putUint(out: number[], field: number, v: number | undefined): void {
  if (!v) return;
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
    throw new TypeError(`echo: field ${field} must be a uint32, got ${v}`);
  putVarint(out, field << 3);
  putVarint(out, v);
}

type Fields = Map<number, number | string>;
function decodeFields(buf: Buffer): Fields {
  const fields: Fields = new Map();
  let i = 0;
  const varint = (): number => {
    let v = 0;
    let mul = 1;
    for (let n = 0; n < 10; n++) {
      if (i >= buf.length) throw new Error('echo: truncated varint');
      const b = buf[i++];
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 128;
    }
    throw new Error('echo: varint too long');
  };
  while (i < buf.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === 0) fields.set(field, varint());
    else if (wire === 2) {
      const len = varint();
      if (i + len > buf.length) throw new Error('echo: truncated field');
      fields.set(field, buf.toString('utf8', i, i + len));
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`echo: unsupported wire type ${wire}`);
  }
  return fields;
}
const str = (f: Fields, n: number) => (typeof f.get(n) === 'string' ? (f.get(n) as string) : '');
const num = (f: Fields, n: number) => (typeof f.get(n) === 'number' ? (f.get(n) as number) : 0);

export function encodeEchoRequest(r: EchoRequest): Buffer {
  const out: number[] = [];
  putString(out, 1, r.message);
  putUint(out, 2, r.delayMs);
  if (r.fail) putUint(out, 3, 1);
  putUint(out, 4, r.failCode);
  return Buffer.from(out);
}
export function decodeEchoRequest(b: Buffer): EchoRequest {
  const f = decodeFields(b);
  return { message: str(f, 1), delayMs: num(f, 2), fail: num(f, 3) !== 0, failCode: num(f, 4) };
}
export function encodeEchoReply(r: Partial<EchoReply>): Buffer {
  const out: number[] = [];
  putString(out, 1, r.message);
  putString(out, 2, r.serverId);
  putUint(out, 3, r.port);
  putString(out, 4, r.peer);
  putString(out, 5, r.zone);
  return Buffer.from(out);
}
export function decodeEchoReply(b: Buffer): EchoReply {
  const f = decodeFields(b);
  return { message: str(f, 1), serverId: str(f, 2), port: num(f, 3), peer: str(f, 4), zone: str(f, 5) };
}

/** The Echo service's handlers, typed: `(call, reply)` are inferred under `strict`. */
export interface EchoServiceImplementation extends grpc.UntypedServiceImplementation {
  /** proto3: a field left out of the reply is sent as its default ('' or 0). */
  Echo: grpc.handleUnaryCall<EchoRequest, Partial<EchoReply>>;
}

/**
 * Types an Echo implementation for `server.addService(echoServiceDefinition, echoImplementation({...}))`:
 * grpc-js's addService() takes untyped handlers, so this is where `call` and `reply` get their types.
 */
export function echoImplementation(impl: EchoServiceImplementation): EchoServiceImplementation {
  return impl;
}

export const echoServiceDefinition: grpc.ServiceDefinition<EchoServiceImplementation> = {
  Echo: {
    path: ECHO_METHOD_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: encodeEchoRequest,
    requestDeserialize: decodeEchoRequest,
    responseSerialize: encodeEchoReply,
    responseDeserialize: decodeEchoReply,
  },
};

// ---- server ----

/** weight, zone, metadata, drainMs and shutdownTimeoutMs mean what they mean for serve(). */
export interface EchoServerOptions extends Pick<
  ServeOptions,
  'weight' | 'zone' | 'metadata' | 'drainMs' | 'shutdownTimeoutMs'
> {
  /** Reported in every reply. Default "echo-<port>". */
  id?: string;
  /** Bound and registered address. Default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Latency added to every call, ms. */
  latencyMs?: number;
  /** Fraction of calls (0..1) that fail with failCode. */
  failRate?: number;
  /** Default UNAVAILABLE. */
  failCode?: number;
  /** When given, the server is registered through grpc serve() (deregistered and drained on stop()). */
  discovery?: { registrar: Registrar };
  /** Default "echo". */
  service?: string;
  /** Signals that stop the server gracefully. Default none (tests and demos decide). */
  signals?: NodeJS.Signals[] | false;
  serverOptions?: grpc.ServerOptions;
}

export interface EchoServer {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  readonly server: grpc.Server;
  /** Present when started with `discovery`. */
  readonly registration?: Registration;
  /** Calls answered (successfully or not). */
  readonly calls: number;
  /** Distinct client addresses seen: one per client connection. */
  readonly peers: ReadonlySet<string>;
  /** Calls waiting out their latency right now. */
  readonly inFlight: number;
  setLatency(ms: number): void;
  setFailRate(rate: number): void;
  /** Graceful: deregister, drain, tryShutdown (see serve()). Without discovery: tryShutdown. */
  stop(): Promise<void>;
  /** A crash: connections cut now, nothing deregistered. */
  kill(): void;
}

export async function startEchoServer(opts: EchoServerOptions = {}): Promise<EchoServer> {
  let latencyMs = opts.latencyMs ?? 0;
  let failRate = opts.failRate ?? 0;
  const host = opts.host ?? '127.0.0.1';
  const server = new grpc.Server(opts.serverOptions);
  let calls = 0;
  const peers = new Set<string>();
  const state = { id: opts.id ?? '', port: 0 };
  const pending = new Set<NodeJS.Timeout>();

  server.addService(echoServiceDefinition, {
    Echo(call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) {
      calls++;
      const peer = call.getPeer();
      peers.add(peer);
      const req = call.request;
      const answer = () => {
        if (req.fail || (failRate > 0 && Math.random() < failRate)) {
          callback({
            code: req.failCode || opts.failCode || grpc.status.UNAVAILABLE,
            details: `echo ${state.id}: failure requested`,
          });
          return;
        }
        callback(null, {
          message: req.message ?? '',
          serverId: state.id,
          port: state.port,
          peer,
          zone: opts.zone ?? '',
        });
      };
      const wait = latencyMs + (req.delayMs ?? 0);
      if (wait <= 0) return answer();
      const t = setTimeout(() => {
        pending.delete(t);
        answer();
      }, wait);
      pending.add(t);
    },
  });

  let served: Served | undefined;
  if (opts.discovery) {
    served = await serve(server, {
      discovery: opts.discovery,
      service: opts.service ?? 'echo',
      host,
      port: opts.port ?? 0,
      id: opts.id,
      weight: opts.weight,
      zone: opts.zone,
      metadata: opts.metadata,
      drainMs: opts.drainMs,
      shutdownTimeoutMs: opts.shutdownTimeoutMs,
      signals: opts.signals ?? false,
    });
    state.port = served.port;
  } else {
    state.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        `${host.includes(':') ? `[${host}]` : host}:${opts.port ?? 0}`,
        grpc.ServerCredentials.createInsecure(),
        (err, port) => (err ? reject(err) : resolve(port)),
      ),
    );
  }
  if (!state.id) state.id = `echo-${state.port}`;

  let stopping: Promise<void> | undefined;
  return {
    id: state.id,
    host,
    port: state.port,
    server,
    registration: served?.registration,
    get calls() {
      return calls;
    },
    peers,
    get inFlight() {
      return pending.size;
    },
    setLatency(ms) {
      latencyMs = ms;
    },
    setFailRate(rate) {
      failRate = rate;
    },
    stop() {
      stopping ??= served ? served.stop() : new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      return stopping;
    },
    kill() {
      for (const t of pending) clearTimeout(t);
      pending.clear();
      server.forceShutdown();
    },
  };
}

// ---- client ----

export interface EchoCallOptions {
  deadlineMs?: number;
  metadata?: grpc.Metadata;
  waitForReady?: boolean;
}

/** A client for the Echo service: `new EchoClient('wayfinder:///echo')`. */
export class EchoClient extends grpc.Client {
  constructor(
    target: string,
    credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
    options?: grpc.ClientOptions,
  ) {
    // A Wayfinder target before installGrpc(), or a mistyped wayfinder_* policy: say so clearly.
    checkChannel(target, options);
    super(target, credentials, options);
  }

  echo(req: EchoRequest = {}, opts: EchoCallOptions = {}): Promise<EchoReply> {
    return new Promise((resolve, reject) => {
      const callOpts: grpc.CallOptions = { deadline: Date.now() + (opts.deadlineMs ?? 5000) };
      const metadata = opts.metadata?.clone() ?? new grpc.Metadata();
      if (opts.waitForReady !== undefined)
        metadata.setOptions({ ...metadata.getOptions(), waitForReady: opts.waitForReady });
      this.makeUnaryRequest<EchoRequest, EchoReply>(
        ECHO_METHOD_PATH,
        encodeEchoRequest,
        decodeEchoReply,
        req,
        metadata,
        callOpts,
        (err, reply) => (err ? reject(err) : resolve(reply!)),
      );
    });
  }
}

// ---- the end-to-end check shared by the registry adapters' suites ----

/**
 * Two echo servers register through `discovery`; calls through `target` must reach both; then one
 * stops gracefully (deregister, drain `drainMs`, shut down) and every later call must reach the
 * other: the channel followed the registry before the drain ended, so no call hit a closing server.
 */
export async function grpcFailoverCheck(o: {
  discovery: { registrar: Registrar };
  target: string;
  service: string;
  drainMs?: number;
  timeoutMs?: number;
}): Promise<void> {
  const servers: EchoServer[] = [];
  const client = new EchoClient(o.target);
  try {
    for (const suffix of ['a', 'b'])
      servers.push(
        await startEchoServer({
          discovery: o.discovery,
          service: o.service,
          id: `${o.service}-${suffix}`,
          host: '127.0.0.1',
          drainMs: o.drainMs ?? 300,
        }),
      );
    const [a, b] = servers;
    const seen = new Set<string>();
    const deadline = Date.now() + (o.timeoutMs ?? 10_000);
    while (seen.size < 2) {
      if (Date.now() > deadline)
        throw new Error(`calls through ${o.target} reached only ${[...seen].join(', ') || 'no server'}`);
      const r = await client.echo({ message: 'hi' }, { waitForReady: true });
      if (r.message !== 'hi') throw new Error(`echo answered ${JSON.stringify(r.message)}`);
      seen.add(r.serverId);
    }
    await a.stop();
    for (let i = 0; i < 20; i++) {
      const id = (await client.echo({ message: `after ${i}` })).serverId;
      if (id !== b.id) throw new Error(`call ${i} after ${a.id} stopped reached ${id}`);
    }
  } finally {
    client.close();
    await Promise.allSettled(servers.map((s) => s.stop()));
  }
}
