import { registerLazyAdapters, registerLazyBalancers, type LazyPlugin } from './core';

/**
 * Wayfinder's built-in adapters and balancers, registered into core's registry as lazily loaded
 * plugins: a module (and its registry client) is only required the first time its scheme or name
 * is used. Core knows none of them; importing the package's main entry (index.ts), the gRPC bridge,
 * the testkit or the CLI imports this module.
 */

/** A module of this package, by its path relative to the package root; `driver` as in LazyPlugin. */
function builtin(path: string, driver?: string): LazyPlugin {
  return {
    load() {
      // The module registers itself when first required; setup() registers it again if a test or an
      // application replaced the definition in the meantime.
      const mod = require(path) as { setup?: () => void };
      mod.setup?.();
    },
    available() {
      try {
        require.resolve(path);
        return true;
      } catch {
        return false; // not part of this build
      }
    },
    driver,
  };
}

const memory = builtin('./adapters/memory');
const file = builtin('./adapters/file');
const etcd = builtin('./adapters/etcd', 'etcd3');
const zookeeper = builtin('./adapters/zookeeper', 'node-zookeeper-client');
const consul = builtin('./adapters/consul', 'consul');
const dns = builtin('./adapters/dns');
const k8s = builtin('./adapters/k8s', '@kubernetes/client-node');

/** The built-in adapters by scheme (aliases included). */
export const BUILTIN_ADAPTERS: Readonly<Record<string, LazyPlugin>> = {
  memory,
  file,
  etcd,
  zk: zookeeper,
  zookeeper,
  consul,
  dns,
  k8s,
  kubernetes: k8s,
};

const weighted = builtin('./balancers/weighted');
const p2c = builtin('./balancers/p2c');

/** The built-in balancers by name (aliases included). */
export const BUILTIN_BALANCERS: Readonly<Record<string, LazyPlugin>> = {
  round_robin: builtin('./balancers/round-robin'),
  weighted,
  weighted_round_robin: weighted,
  wrr: weighted,
  p2c,
  p2c_ewma: p2c,
  peak_ewma: p2c,
  least_request: p2c,
  p2c_least_request: p2c,
  ring_hash: builtin('./balancers/ring-hash'),
};

registerLazyAdapters(BUILTIN_ADAPTERS);
registerLazyBalancers(BUILTIN_BALANCERS);

function present(table: Readonly<Record<string, LazyPlugin>>): string[] {
  return Object.keys(table)
    .filter((k) => table[k].available())
    .sort();
}

/** The built-in schemes and balancer names (not those registered at run time): for docs. */
export function listBuiltins(): { schemes: string[]; balancers: string[] } {
  return { schemes: present(BUILTIN_ADAPTERS), balancers: present(BUILTIN_BALANCERS) };
}
