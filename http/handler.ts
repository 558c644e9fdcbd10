import type { Duplex } from 'node:stream';
import { util as undiciUtil, type Dispatcher } from 'undici';

/**
 * The dispatch handler callbacks the agent drives: undici's original (v1) interface, which
 * undici's Pool, fetch(), request() and stream() all speak. Handlers written against the newer
 * controller interface (onRequestStart/onResponseStart..., what undici's interceptors produce) are
 * adapted by toLegacyHandler().
 */
export interface LegacyHandler {
  onConnect?(abort: (err?: Error) => void, context?: unknown): void;
  onResponseStarted?(): void;
  onHeaders?(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean;
  onData?(chunk: Buffer): boolean;
  onComplete?(trailers: Buffer[] | string[] | null): void;
  onError?(err: Error): void;
  onUpgrade?(statusCode: number, rawHeaders: Buffer[] | string[] | null, socket: Duplex): void;
  onBodySent?(chunk: unknown): void;
  onRequestSent?(): void;
}

interface NewHandler {
  onRequestStart?(controller: unknown, context: unknown): void;
  onRequestUpgrade?(controller: unknown, statusCode: number, headers: unknown, socket: Duplex): void;
  onResponseStart?(controller: unknown, statusCode: number, headers: unknown, statusMessage?: string): void;
  onResponseData?(controller: unknown, chunk: Buffer): void;
  onResponseEnd?(controller: unknown, trailers: unknown): void;
  onResponseError?(controller: unknown, err: Error): void;
}

/** The controller a new-style handler gets: pause/resume map onto the v1 return values. */
class Controller {
  paused = false;
  aborted = false;
  reason: Error | null = null;
  rawHeaders: Buffer[] | null = null;
  rawTrailers: Buffer[] | string[] | null = null;
  resumeFn: (() => void) | null = null;
  constructor(private readonly abortFn: (err?: Error) => void) {}
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.resumeFn?.();
  }
  abort(reason?: Error): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason ?? null;
    this.abortFn(reason);
  }
}

const noAbort = () => {};

class LegacyFacade implements LegacyHandler {
  private controller = new Controller(noAbort);
  constructor(private readonly h: NewHandler) {}
  onConnect(abort: (err?: Error) => void, context?: unknown): void {
    this.controller = new Controller(abort);
    this.h.onRequestStart?.(this.controller, context);
  }
  onUpgrade(statusCode: number, rawHeaders: Buffer[] | string[] | null, socket: Duplex): void {
    this.controller.rawHeaders = rawHeaders as Buffer[] | null;
    this.h.onRequestUpgrade?.(this.controller, statusCode, undiciUtil.parseHeaders(rawHeaders ?? []), socket);
  }
  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    this.controller.resumeFn = resume;
    this.controller.rawHeaders = rawHeaders;
    this.h.onResponseStart?.(this.controller, statusCode, undiciUtil.parseHeaders(rawHeaders), statusText);
    return !this.controller.paused;
  }
  onData(chunk: Buffer): boolean {
    this.h.onResponseData?.(this.controller, chunk);
    return !this.controller.paused;
  }
  onComplete(trailers: Buffer[] | string[] | null): void {
    this.controller.rawTrailers = trailers;
    this.h.onResponseEnd?.(this.controller, undiciUtil.parseHeaders((trailers ?? []) as Buffer[]));
  }
  onError(err: Error): void {
    if (!this.h.onResponseError) throw err;
    this.h.onResponseError(this.controller, err);
  }
}

/** The handler as v1 callbacks: itself when it already is one, else adapted. */
export function toLegacyHandler(handler: Dispatcher.DispatchHandler): LegacyHandler {
  const h = handler as NewHandler & LegacyHandler;
  return typeof h.onRequestStart === 'function' ? new LegacyFacade(h) : h;
}
