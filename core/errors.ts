/**
 * Typed errors with stable codes. Codes never change within a major version; messages may.
 * Programmer misuse (wrong argument types) throws plain TypeError instead.
 */
export const ErrorCodes = {
  CONFIG_INVALID: 'CONFIG_INVALID',
  UNKNOWN_SCHEME: 'UNKNOWN_SCHEME',
  REGISTRY_UNAVAILABLE: 'REGISTRY_UNAVAILABLE',
  NO_ENDPOINTS: 'NO_ENDPOINTS',
  REGISTRATION_LOST: 'REGISTRATION_LOST',
  BAD_ENTRY: 'BAD_ENTRY',
  AUTH_FAILED: 'AUTH_FAILED',
  NOT_SUPPORTED: 'NOT_SUPPORTED',
  CLOSED: 'CLOSED',
  ABORTED: 'ABORTED',
} as const;
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class WayfinderError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.code = code;
    this.name = new.target.name;
  }
  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message };
  }
}

/** A malformed configuration. The message names the field and, where it helps, the accepted values. */
export class ConfigError extends WayfinderError {
  readonly field?: string;
  constructor(message: string, options?: { field?: string; cause?: unknown; code?: ErrorCode }) {
    super(options?.code ?? 'CONFIG_INVALID', message, options);
    this.field = options?.field;
  }
}

/** The registry cannot be reached or answered with a failure; last good endpoints are kept. */
export class RegistryUnavailableError extends WayfinderError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('REGISTRY_UNAVAILABLE', message, options);
  }
}

export class NoEndpointsError extends WayfinderError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NO_ENDPOINTS', message, options);
  }
}

export class RegistrationLostError extends WayfinderError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('REGISTRATION_LOST', message, options);
  }
}

export interface BadEntry {
  /** Where the entry lives in the registry (key, path, record name). */
  key: string;
  reason: string;
}

/** One or more registry entries could not be parsed; they were skipped and the rest kept. */
export class BadEntryError extends WayfinderError {
  readonly entries: BadEntry[];
  constructor(entries: BadEntry[], options?: { cause?: unknown }) {
    const head = entries
      .slice(0, 3)
      .map((e) => `${e.key}: ${e.reason}`)
      .join('; ');
    const more = entries.length > 3 ? ` (+${entries.length - 3} more)` : '';
    super(
      'BAD_ENTRY',
      `skipped ${entries.length} malformed registry entr${entries.length === 1 ? 'y' : 'ies'}: ${head}${more}`,
      options,
    );
    this.entries = entries;
  }
}

export class AuthFailedError extends WayfinderError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AUTH_FAILED', message, options);
  }
}

export class NotSupportedError extends WayfinderError {
  constructor(message: string) {
    super('NOT_SUPPORTED', message);
  }
}

export class ClosedError extends WayfinderError {
  constructor(what: string) {
    super('CLOSED', `${what} is closed`);
  }
}

export function isWayfinderError(e: unknown, code?: ErrorCode): e is WayfinderError {
  return e instanceof WayfinderError && (code === undefined || e.code === code);
}

/** Wrap any thrown value as a WayfinderError (REGISTRY_UNAVAILABLE unless it already is one). */
export function toWayfinderError(e: unknown, context: string): WayfinderError {
  if (e instanceof WayfinderError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new RegistryUnavailableError(`${context}: ${msg}`, { cause: e });
}
