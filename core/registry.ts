import 'reflect-metadata';
import { container, type DependencyContainer } from 'tsyringe';
import type { AdapterDefinition, BalancerDefinition } from './adapter';
import { defineBalancer } from './adapter';
import { ConfigError } from './errors';
import type { Balancer } from './model';

/**
 * The adapter and balancer registry. tsyringe holds the definitions (so applications that use a
 * DI container can resolve or override them); callers only ever see these plain functions.
 */
const root: DependencyContainer = container.createChildContainer();
const adapterToken = (scheme: string) => `wayfinder:adapter:${scheme}`;
const balancerToken = (name: string) => `wayfinder:balancer:${name}`;
const schemes = new Set<string>();
const balancers = new Set<string>();

/** Built-ins are loaded on first use so that, e.g., the etcd client is only required when used. */
const BUILTIN_ADAPTERS: Record<string, string> = {
  memory: '../adapters/memory',
  file: '../adapters/file',
  etcd: '../adapters/etcd',
  zk: '../adapters/zookeeper',
  zookeeper: '../adapters/zookeeper',
  consul: '../adapters/consul',
  dns: '../adapters/dns',
  k8s: '../adapters/k8s',
  kubernetes: '../adapters/k8s',
};
const BUILTIN_BALANCERS: Record<string, string> = {
  round_robin: '../balancers/round-robin',
  weighted: '../balancers/weighted',
  weighted_round_robin: '../balancers/weighted',
  wrr: '../balancers/weighted',
  p2c: '../balancers/p2c',
  p2c_ewma: '../balancers/p2c',
  peak_ewma: '../balancers/p2c',
  least_request: '../balancers/p2c',
  p2c_least_request: '../balancers/p2c',
  ring_hash: '../balancers/ring-hash',
};

function loadBuiltin(path: string): void {
  // The module registers itself through its setup(); a missing module means "not built yet".

  const mod = require(path);
  if (typeof mod.setup === 'function') mod.setup();
}

/** Registers an adapter under its scheme and aliases. Registering again replaces it (harmless). */
export function registerAdapter(def: AdapterDefinition): void {
  for (const s of [def.scheme, ...(def.aliases ?? [])]) {
    root.register(adapterToken(s), { useValue: def });
    schemes.add(s);
  }
}

export function registerBalancer(def: BalancerDefinition): void;
export function registerBalancer(name: string, factory: (config: any) => Balancer): void;
export function registerBalancer(a: BalancerDefinition | string, factory?: (config: any) => Balancer): void {
  const def =
    typeof a === 'string'
      ? defineBalancer({ name: a, description: 'custom balancer', options: {}, create: factory! })
      : a;
  for (const n of [def.name, ...(def.aliases ?? [])]) {
    root.register(balancerToken(n), { useValue: def });
    balancers.add(n);
  }
}

function tryBuiltin(table: Record<string, string>, name: string): boolean {
  const path = table[name];
  if (!path) return false;
  try {
    loadBuiltin(path);
    return true;
  } catch (e) {
    if (
      (e as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' &&
      String((e as Error).message).includes(path.replace('../', ''))
    )
      return false;
    throw e;
  }
}

export function getAdapter(scheme: string): AdapterDefinition {
  const s = scheme.toLowerCase();
  if (!root.isRegistered(adapterToken(s))) tryBuiltin(BUILTIN_ADAPTERS, s);
  if (!root.isRegistered(adapterToken(s))) {
    throw new ConfigError(`unknown registry scheme "${scheme}"; known schemes: ${listAdapterSchemes().join(', ')}`, {
      field: 'registry',
      code: 'UNKNOWN_SCHEME',
    });
  }
  return root.resolve<AdapterDefinition>(adapterToken(s));
}

export function getBalancer(name: string): BalancerDefinition {
  const n = name.replace(/-/g, '_').toLowerCase();
  if (!root.isRegistered(balancerToken(n))) tryBuiltin(BUILTIN_BALANCERS, n);
  if (!root.isRegistered(balancerToken(n))) {
    throw new ConfigError(`unknown balancer "${name}"; known balancers: ${listBalancers().join(', ')}`, {
      field: 'balancer',
    });
  }
  return root.resolve<BalancerDefinition>(balancerToken(n));
}

/** Registered schemes plus the built-in ones (loaded or not). */
export function listAdapterSchemes(): string[] {
  return [...new Set([...available(BUILTIN_ADAPTERS), ...schemes])].sort();
}

export function listBalancers(): string[] {
  return [...new Set([...available(BUILTIN_BALANCERS), ...balancers])].sort();
}

/** The built-in schemes and balancer names (not those registered at run time): for docs. */
export function listBuiltins(): { schemes: string[]; balancers: string[] } {
  return { schemes: available(BUILTIN_ADAPTERS).sort(), balancers: available(BUILTIN_BALANCERS).sort() };
}

function available(table: Record<string, string>): string[] {
  return Object.keys(table).filter((k) => {
    try {
      require.resolve(table[k]);
      return true;
    } catch {
      return false;
    }
  });
}

/** The container behind the registry, for applications that wire Wayfinder into their own tsyringe setup. */
export function wayfinderContainer(): DependencyContainer {
  return root;
}
