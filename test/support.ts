import { spawn } from 'node:child_process';
import * as path from 'node:path';
import type { Logger } from '../core';

/** Shared helpers of the reliability, security and fuzz suites. */

export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  /** The structured part, serialised (with Error objects expanded) so secrets in it are visible to greps. */
  obj: string;
}

/** A logger that keeps every line, for assertions and for the secrets-in-logs check. */
export function captureLogger(sink: LogLine[] = []): Logger & { lines: LogLine[]; text(): string } {
  const make = (level: LogLine['level']) => (obj: object | string, msg?: string) => {
    if (typeof obj === 'string') sink.push({ level, msg: obj, obj: '' });
    else sink.push({ level, msg: msg ?? '', obj: serialise(obj) });
  };
  return {
    debug: make('debug'),
    info: make('info'),
    warn: make('warn'),
    error: make('error'),
    lines: sink,
    text: () => sink.map((l) => `${l.level} ${l.msg} ${l.obj}`).join('\n'),
  };
}

/** JSON with Errors expanded (message, code, cause chain), cycles cut. */
export function serialise(v: unknown): string {
  const seen = new WeakSet<object>();
  return (
    JSON.stringify(v, (_k, x) => {
      if (x instanceof Error)
        return {
          name: x.name,
          message: x.message,
          code: (x as { code?: unknown }).code,
          stack: x.stack,
          cause: (x as { cause?: unknown }).cause,
        };
      if (typeof x === 'bigint') return x.toString();
      if (Buffer.isBuffer(x)) return x.toString('utf8');
      if (x && typeof x === 'object') {
        if (seen.has(x)) return '[cycle]';
        seen.add(x);
      }
      return x;
    }) ?? ''
  );
}

/** Runs a TypeScript fixture with tsx; resolves with its stdout lines parsed as JSON. */
export function runTsChild(
  file: string,
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<{ lines: any[]; code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      cwd: path.resolve(__dirname, '..'),
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${file} did not finish within ${timeoutMs} ms; stderr: ${err.slice(-2000)}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(t);
      const lines = out
        .split('\n')
        .filter((l) => l.trim().startsWith('{'))
        .map((l) => JSON.parse(l));
      resolve({ lines, code, stderr: err });
    });
  });
}
