import type { BadEntry } from '../../core';
import type { DnsClient } from './client';
import { DnsQueryError } from './client';

/**
 * gRPC service config from DNS (gRFC A2): the TXT record `_grpc_config.<name>` holds
 * `grpc_config=<JSON array of choices>`; each choice is
 *   { "clientLanguage": [...], "percentage": 0..100, "clientHostname": [...], "serviceConfig": {...} }
 * with every selector optional. The first choice whose selectors all match this client wins; its
 * `serviceConfig` is the service's config. The strings of one record are concatenated.
 */

/** Our language name in clientLanguage lists: grpc-js's, matched case-insensitively. */
export const CLIENT_LANGUAGE = 'node';
export const GRPC_CONFIG_PREFIX = 'grpc_config=';
const CHOICE_FIELDS = new Set(['clientLanguage', 'percentage', 'clientHostname', 'serviceConfig']);

/** Who is asking: what the selectors are matched against. */
export interface ClientIdentity {
  /** This client's number in 0..99, drawn once per registry: a choice with `percentage` p matches when it is < p. */
  percentile: number;
  /** os.hostname(), matched exactly against clientHostname. */
  hostname: string;
}

export interface Choice {
  clientLanguage?: string[];
  percentage?: number;
  clientHostname?: string[];
  serviceConfig: Record<string, unknown>;
}

/** A TXT record that is not a valid grpc_config (the message says what is wrong). */
export class GrpcConfigError extends Error {
  override readonly name = 'GrpcConfigError';
}

/** The TXT name holding the service config of a DNS name (`echo.test` -> `_grpc_config.echo.test`). */
export function grpcConfigName(host: string): string {
  return `_grpc_config.${host}`;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function stringList(v: unknown, field: string, i: number): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string'))
    throw new GrpcConfigError(`choice ${i}: "${field}" must be an array of strings`);
  return v;
}

/**
 * The choices of a `grpc_config=` record, or undefined when no record starts with the prefix.
 * Throws GrpcConfigError for a record that does (more than one such record is ambiguous: DNS does
 * not order records).
 */
export function parseGrpcConfigTxt(records: string[][]): Choice[] | undefined {
  const ours = records.filter((r) => r.length > 0 && r[0].startsWith(GRPC_CONFIG_PREFIX));
  if (ours.length === 0) return undefined;
  if (ours.length > 1)
    throw new GrpcConfigError(`${ours.length} records start with "${GRPC_CONFIG_PREFIX}"; there must be one`);
  const text = ours[0].join('').slice(GRPC_CONFIG_PREFIX.length);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new GrpcConfigError(`not JSON after "${GRPC_CONFIG_PREFIX}": ${(e as Error).message}`);
  }
  if (!Array.isArray(json)) throw new GrpcConfigError('must be a JSON array of choices');
  return json.map((c: unknown, i) => {
    if (!isObject(c)) throw new GrpcConfigError(`choice ${i} must be an object`);
    for (const k of Object.keys(c))
      if (!CHOICE_FIELDS.has(k))
        throw new GrpcConfigError(`choice ${i}: unknown field "${k}" (known: ${[...CHOICE_FIELDS].join(', ')})`);
    if (!isObject(c.serviceConfig)) throw new GrpcConfigError(`choice ${i}: "serviceConfig" must be an object`);
    const choice: Choice = { serviceConfig: c.serviceConfig };
    if (c.clientLanguage !== undefined) choice.clientLanguage = stringList(c.clientLanguage, 'clientLanguage', i);
    if (c.clientHostname !== undefined) choice.clientHostname = stringList(c.clientHostname, 'clientHostname', i);
    if (c.percentage !== undefined) {
      if (typeof c.percentage !== 'number' || !(c.percentage >= 0 && c.percentage <= 100))
        throw new GrpcConfigError(`choice ${i}: "percentage" must be a number in 0..100`);
      choice.percentage = c.percentage;
    }
    return choice;
  });
}

/** Whether every selector of a choice matches this client. */
export function choiceMatches(c: Choice, who: ClientIdentity): boolean {
  if (c.clientLanguage && !c.clientLanguage.some((l) => l.toLowerCase() === CLIENT_LANGUAGE)) return false;
  if (c.percentage !== undefined && !(who.percentile < c.percentage)) return false;
  if (c.clientHostname && !c.clientHostname.includes(who.hostname)) return false;
  return true;
}

/** The first matching choice's service config; undefined when none matches (no service config). */
export function selectServiceConfig(choices: Choice[], who: ClientIdentity): Record<string, unknown> | undefined {
  return choices.find((c) => choiceMatches(c, who))?.serviceConfig;
}

/**
 * One service's service config as the registry's refreshes see it: the last good config is kept
 * when the TXT query fails or the record is malformed (both reported as a BAD_ENTRY entry, never
 * failing the lookup); a missing record means no service config.
 */
export class ServiceConfigTracker {
  private last?: Record<string, unknown>;
  constructor(
    private readonly client: Pick<DnsClient, 'txt'>,
    private readonly name: string,
    private readonly who: ClientIdentity,
  ) {}

  async lookup(): Promise<{ serviceConfig?: Record<string, unknown>; bad: BadEntry[] }> {
    const key = `${this.name} TXT`;
    let records: string[][];
    try {
      ({ records } = await this.client.txt(this.name));
    } catch (e) {
      const code = e instanceof DnsQueryError ? e.code : (e as Error).message;
      return { serviceConfig: this.last, bad: [{ key, reason: `query failed with ${code}; ${this.keeping()}` }] };
    }
    try {
      const choices = parseGrpcConfigTxt(records);
      this.last = choices && selectServiceConfig(choices, this.who);
      return { serviceConfig: this.last, bad: [] };
    } catch (e) {
      if (!(e instanceof GrpcConfigError)) throw e;
      return {
        serviceConfig: this.last,
        bad: [{ key, reason: `malformed grpc_config: ${e.message}; ${this.keeping()}` }],
      };
    }
  }

  private keeping(): string {
    return this.last ? 'the last service config is kept' : 'no service config';
  }
}
