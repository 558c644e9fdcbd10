import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { isIP } from 'node:net';
import * as path from 'node:path';

/**
 * The grpc.lb.v1 protocol, loaded at run time from proto/load_balancer.proto (copied next to the
 * compiled code by scripts/copy-assets.js). Messages are plain objects with camelCase fields;
 * int64 counts are numbers; `bytes` are Buffers; the `oneof` that is set is named by
 * loadBalanceRequestType / loadBalanceResponseType.
 */

export const GRPCLB_PROTO_PATH = path.join(__dirname, 'proto', 'load_balancer.proto');
export const BALANCE_LOAD_PATH = '/grpc.lb.v1.LoadBalancer/BalanceLoad';
/** The metadata key a client puts the picked server's load_balance_token under. */
export const LB_TOKEN_METADATA = 'lb-token';

export interface Duration {
  seconds?: number | string;
  nanos?: number;
}

export interface ClientStatsMsg {
  timestamp?: Duration;
  numCallsStarted?: number;
  numCallsFinished?: number;
  numCallsFinishedWithClientFailedToSend?: number;
  numCallsFinishedKnownReceived?: number;
  callsFinishedWithDrop?: { loadBalanceToken?: string; numCalls?: number }[];
}

export interface LoadBalanceRequest {
  initialRequest?: { name?: string };
  clientStats?: ClientStatsMsg;
  loadBalanceRequestType?: 'initialRequest' | 'clientStats';
}

export interface ServerMsg {
  ipAddress?: Buffer;
  port?: number;
  loadBalanceToken?: string;
  drop?: boolean;
}

export interface LoadBalanceResponse {
  initialResponse?: { loadBalancerDelegate?: string; clientStatsReportInterval?: Duration };
  serverList?: { servers?: ServerMsg[] };
  loadBalanceResponseType?: 'initialResponse' | 'serverList';
}

const LOAD_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: false,
  oneofs: true,
};

let cached: protoLoader.PackageDefinition | undefined;
function definition(): protoLoader.PackageDefinition {
  cached ??= protoLoader.loadSync(GRPCLB_PROTO_PATH, LOAD_OPTIONS);
  return cached;
}

/** The LoadBalancer service, for grpc.Server.addService(). */
export function loadBalancerService(): grpc.ServiceDefinition {
  return definition()['grpc.lb.v1.LoadBalancer'] as grpc.ServiceDefinition;
}

/** Serializers of the BalanceLoad method (client side). */
export function balanceLoadMethod(): grpc.MethodDefinition<LoadBalanceRequest, LoadBalanceResponse> {
  return loadBalancerService().BalanceLoad as grpc.MethodDefinition<LoadBalanceRequest, LoadBalanceResponse>;
}

export function durationToMs(d: Duration | undefined): number {
  if (!d) return 0;
  const ms = Number(d.seconds ?? 0) * 1000 + Math.floor((d.nanos ?? 0) / 1e6);
  return Number.isFinite(ms) && ms > 0 ? ms : 0;
}

export function msToDuration(ms: number): Duration {
  return { seconds: Math.floor(ms / 1000), nanos: Math.round((ms % 1000) * 1e6) };
}

/** An IP literal as the protocol's packed bytes (4 for IPv4, 16 for IPv6); undefined for anything else. */
export function packIp(ip: string): Buffer | undefined {
  const v = isIP(ip);
  if (v === 4) return Buffer.from(ip.split('.').map(Number));
  if (v !== 6) return undefined;
  let s = ip.replace(/%.*$/, '');
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (tail) {
    const b = tail[1].split('.').map(Number);
    s = s.slice(0, -tail[1].length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const [head, rest] = s.split('::');
  const h = head ? head.split(':') : [];
  const r = rest !== undefined && rest !== '' ? rest.split(':') : [];
  const groups = rest === undefined ? h : [...h, ...Array(8 - h.length - r.length).fill('0'), ...r];
  if (groups.length !== 8) return undefined;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** The protocol's packed bytes back to an IP literal; undefined unless 4 or 16 bytes. */
export function unpackIp(b: Buffer | Uint8Array | undefined): string | undefined {
  if (!b) return undefined;
  if (b.length === 4) return Array.from(b).join('.');
  if (b.length !== 16) return undefined;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i] << 8) | b[i + 1]).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}
