import * as grpc from '@grpc/grpc-js';
import { getBalancer, validateOptions } from '../core';

/** The typed LB config of one wayfinder_* policy: the balancer's options, validated by its schema. */
export interface WayfinderLbConfig extends grpc.experimental.TypedLoadBalancingConfig {
  readonly balancer: string;
  readonly options: Record<string, unknown>;
}

const configClasses = new Map<string, { createFromJson(obj: unknown): unknown }>();

export function makeConfigClass(policy: string, balancer: string) {
  return class implements WayfinderLbConfig {
    readonly balancer = balancer;
    constructor(readonly options: Record<string, unknown> = {}) {}
    getLoadBalancerName(): string {
      return policy;
    }
    toJsonObject(): object {
      return { [policy]: this.options };
    }
    /** Throws ConfigError naming the option (grpc-js prefixes the policy name). */
    static createFromJson(obj: unknown) {
      if (obj !== undefined && obj !== null && (typeof obj !== 'object' || Array.isArray(obj)))
        throw new TypeError(`${policy}: config must be an object`);
      const def = getBalancer(balancer);
      return new this(validateOptions(def.name, def.options, (obj ?? {}) as Record<string, unknown>));
    }
  };
}

/**
 * Validates the first LB config grpc-js would choose from a service config's list when it is one
 * of ours. Returns the problem, or undefined. (grpc-js itself skips a config it cannot parse and
 * falls back to pick_first silently; we prefer a clear error.)
 */
export function validateLbConfigList(list: unknown[]): string | undefined {
  for (const entry of list) {
    if (!entry || typeof entry !== 'object') return undefined;
    const [name] = Object.keys(entry);
    if (!name || !grpc.experimental.isLoadBalancerNameRegistered(name)) continue;
    const cls = configClasses.get(name);
    if (!cls) return undefined;
    try {
      cls.createFromJson((entry as Record<string, unknown>)[name]);
      return undefined;
    } catch (e) {
      return (e as Error).message;
    }
  }
  return undefined;
}

/**
 * Registers the config parser of a policy that is not a generic `wayfinder_<balancer>` one (e.g.
 * wayfinder_grpclb), so its service-config errors are reported like ours instead of grpc-js's
 * silent fallback to pick_first, and it is listed by registeredPolicies().
 */
export function registerPolicyConfig(policy: string, cls: { createFromJson(obj: unknown): unknown }): void {
  configClasses.set(policy, cls);
}

/** Whether a policy's config parser is registered (registerPolicy() is idempotent through it). */
export function hasPolicyConfig(policy: string): boolean {
  return configClasses.has(policy);
}

export function registeredPolicies(): string[] {
  return [...configClasses.keys()].sort();
}
