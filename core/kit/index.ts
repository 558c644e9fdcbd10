/**
 * The adapter toolkit: what every adapter needs and writes once here. Secret files with one trimming
 * rule, host lists parsed into structured values, a retry/backoff loop that honours an AbortSignal
 * and the injected clock and random source, and the options path (defineAdapter, validateOptions).
 * Adapters import it as `../../core/kit`; authors outside the tree as `wayfinder-discovery/adapter-kit`.
 */
export { readSecretFile, readFileOption, trimSecret, secretFileError } from './secrets';
export { parseHostList, formatHost } from './hosts';
export type { HostAddress, HostListOptions } from './hosts';
export { retry, retryLoop, Backoff, Waker } from './retry';
export { scalarText } from './text';
export type { RetryOptions, RetryLoopOptions } from './retry';
export { defineAdapter } from '../adapter';
export type { AdapterContext, AdapterDefinition, AdapterInstance } from '../adapter';
export { validateOptions, redactOptions } from '../options';
export type { OptionSpec, OptionsSchema, ParsedUrl } from '../options';
export { ConfigError } from '../errors';
export { delay, hostPort, silentLogger } from '../util';
