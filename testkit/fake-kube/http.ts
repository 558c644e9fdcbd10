import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError, status, type FakeKubeRequest, type RawJson } from './model';

/** One request being served: what the routes read and how they answer a failure. */
export interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  /** The path without trailing slashes. */
  path: string;
  query: Record<string, string>;
  log: FakeKubeRequest;
  /** Answers with a Status object and records the code in the request log. */
  fail(code: number, reason: string, message: string): void;
}

export function newCall(req: IncomingMessage, res: ServerResponse, tokenGeneration: number): Call {
  const u = new URL(req.url ?? '/', 'https://fake');
  const query: Record<string, string> = {};
  for (const [k, v] of u.searchParams) query[k] = v;
  const path = u.pathname.replace(/\/+$/, '') || '/';
  const log: FakeKubeRequest = {
    method: req.method ?? 'GET',
    path,
    query,
    status: 200,
    verb: 'other',
    tokenGeneration,
  };
  const fail = (code: number, reason: string, message: string) => {
    log.status = code;
    json(res, code, status(code, reason, message));
  };
  return { req, res, path, query, log, fail };
}

/** Answers an error thrown by a route: its own Status for an HttpError, else 500. */
export function failWith(call: Call, e: unknown, prefix = ''): void {
  if (e instanceof HttpError) return call.fail(e.code, e.reason, e.message);
  call.fail(500, 'InternalError', `${prefix}${(e as Error).message}`);
}

export const methodNotAllowed = (call: Call): void =>
  call.fail(
    405,
    'MethodNotAllowed',
    `the server does not allow this method on the requested resource (${call.req.method})`,
  );

export function json(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, {
    'Content-Type': 'application/json',
    'Cache-Control': 'no-cache, private',
    'Content-Length': Buffer.byteLength(text),
    'Audit-Id': randomUUID(),
  });
  res.end(text);
}

export function readBody(req: IncomingMessage): Promise<RawJson> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
      } catch (e) {
        const message = `the body of the request was in an unknown format: ${(e as Error).message}`;
        reject(new HttpError(400, 'BadRequest', message));
      }
    });
  });
}

/** Bearer tokens: every one ever issued (a request names its generation), and which are accepted now. */
export class TokenRing {
  private readonly tokens: string[];
  private readonly accepted = new Set<number>([0]);

  constructor(first?: string) {
    this.tokens = [first ?? randomBytes(16).toString('hex')];
  }

  get current(): string {
    return this.tokens[this.tokens.length - 1];
  }

  /** The generation of the accepted token the request carries, or -1. */
  authenticate(req: IncomingMessage): number {
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    if (!m) return -1;
    const i = this.tokens.lastIndexOf(m[1]);
    return i >= 0 && this.accepted.has(i) ? i : -1;
  }

  rotate(next?: string, keepOld = false): string {
    const t = next ?? randomBytes(16).toString('hex');
    this.tokens.push(t);
    if (!keepOld) this.accepted.clear();
    this.accepted.add(this.tokens.length - 1);
    return t;
  }
}
