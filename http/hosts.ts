import { isIP } from 'node:net';

/** Host names matched exactly (case-insensitive), by a RegExp, or by a predicate. */
export type HostRule = readonly (string | RegExp)[] | ((host: string) => boolean);

export interface HostRouting {
  /** Hosts that name services even though they contain a dot (e.g. `billing.internal`). */
  services?: HostRule;
  /** Hosts that always pass through to a plain undici Agent (checked first). */
  passThrough?: HostRule;
}

function matches(rule: HostRule | undefined, host: string): boolean {
  if (!rule) return false;
  if (typeof rule === 'function') return rule(host);
  for (const r of rule) if (typeof r === 'string' ? r.toLowerCase() === host : r.test(host)) return true;
  return false;
}

/**
 * Whether a URL host names a service in the registry (true) or is an ordinary host that passes
 * through (false). `host` is the URL's hostname: lowercase, IPv6 in brackets. In order:
 *  1. `passThrough` matches: pass through;
 *  2. `services` matches: a service;
 *  3. an IP literal, `localhost` or `*.localhost`: pass through;
 *  4. a name without a dot (`billing`): a service;
 *  5. anything else (a name with a dot, `api.example.com`): pass through.
 * Rule 5 is deliberate: a dotted name is a DNS name unless the user says otherwise. Asking the
 * registry first would cost a registry round trip for every external host, and a typo in a service
 * name or a registry outage would silently send traffic meant for an internal service to whatever
 * public DNS answers for that name.
 */
export function isServiceHost(host: string, routing: HostRouting = {}): boolean {
  const h = host.toLowerCase();
  if (matches(routing.passThrough, h)) return false;
  if (matches(routing.services, h)) return true;
  const bare = h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
  if (isIP(bare) !== 0) return false;
  if (bare === 'localhost' || bare.endsWith('.localhost')) return false;
  return !bare.includes('.');
}

export function checkHostRule(rule: unknown, field: string): void {
  if (rule === undefined || typeof rule === 'function') return;
  if (!Array.isArray(rule) || !rule.every((r) => typeof r === 'string' || r instanceof RegExp))
    throw new TypeError(`WayfinderAgent: "${field}" must be an array of host names / RegExps, or a function`);
}
