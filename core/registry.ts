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

/**
 * A plugin that is loaded on first use: `load()` requires the module, whose setup() registers it.
 * Core knows no plugin by path; the package's entry (builtins.ts) hands core its table of
 * built-ins, so that, e.g., the etcd client is only required when an etcd:// URL is used.
 */
export interface LazyPlugin {
  /** Requires the module (which registers itself). */
  load(): void;
  /** Whether the module is present in this build (listed by listAdapterSchemes/listBalancers). */
  available(): boolean;
  /**
   * The optional npm package the plugin needs (e.g. `etcd3`). When loading fails because that
   * package is not installed, getAdapter/getBalancer throws a ConfigError naming it.
   */
  driver?: string;
}
const lazyAdapters = new Map<string, LazyPlugin>();
const lazyBalancers = new Map<string, LazyPlugin>();

/** Adds adapters loaded on first use, keyed by scheme (lower case). Later entries replace earlier ones. */
export function registerLazyAdapters(table: Record<string, LazyPlugin>): void {
  for (const [k, v] of Object.entries(table)) lazyAdapters.set(k, v);
}

/** Adds balancers loaded on first use, keyed by name (lower case, `_` for `-`). */
export function registerLazyBalancers(table: Record<string, LazyPlugin>): void {
  for (const [k, v] of Object.entries(table)) lazyBalancers.set(k, v);
}

/** Registers an adapter under its scheme and aliases. Registering again replaces it (harmless). */
export function registerAdapter(def: AdapterDefinition): void {
  for (const s of [def.scheme, ...(def.aliases ?? [])]) {
    root.register(adapterToken(s), { useValue: def });
    schemes.add(s);
  }
}

export function registerBalancer(def: BalancerDefinition): void;
export function registerBalancer<C>(name: string, factory: (config: C) => Balancer): void;
export function registerBalancer<C>(a: BalancerDefinition | string, factory?: (config: C) => Balancer): void {
  const def =
    typeof a === 'string'
      ? defineBalancer<C>({ name: a, description: 'custom balancer', options: {}, create: factory! })
      : a;
  for (const n of [def.name, ...(def.aliases ?? [])]) {
    root.register(balancerToken(n), { useValue: def });
    balancers.add(n);
  }
}

function tryLazy(table: Map<string, LazyPlugin>, name: string, what: string): void {
  const plugin = table.get(name);
  if (!plugin || !plugin.available()) return;
  try {
    plugin.load();
  } catch (e) {
    const { driver } = plugin;
    if (
      driver &&
      (e as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' &&
      String((e as Error).message).includes(`'${driver}'`)
    ) {
      throw new ConfigError(`${what} needs the optional package "${driver}": npm install ${driver}`, {
        field: what.endsWith('://') ? 'registry' : 'balancer',
        cause: e,
      });
    }
    throw e;
  }
}

export function getAdapter(scheme: string): AdapterDefinition {
  const s = scheme.toLowerCase();
  if (!root.isRegistered(adapterToken(s))) tryLazy(lazyAdapters, s, `${s}://`);
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
  if (!root.isRegistered(balancerToken(n))) tryLazy(lazyBalancers, n, `balancer "${n}"`);
  if (!root.isRegistered(balancerToken(n))) {
    throw new ConfigError(`unknown balancer "${name}"; known balancers: ${listBalancers().join(', ')}`, {
      field: 'balancer',
    });
  }
  return root.resolve<BalancerDefinition>(balancerToken(n));
}

/** Registered schemes plus the lazily loaded ones (loaded or not). */
export function listAdapterSchemes(): string[] {
  return [...new Set([...available(lazyAdapters), ...schemes])].sort();
}

export function listBalancers(): string[] {
  return [...new Set([...available(lazyBalancers), ...balancers])].sort();
}

function available(table: Map<string, LazyPlugin>): string[] {
  return [...table].filter(([, p]) => p.available()).map(([k]) => k);
}

/** The container behind the registry, for applications that wire Wayfinder into their own tsyringe setup. */
export function wayfinderContainer(): DependencyContainer {
  return root;
}
