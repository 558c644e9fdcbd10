import '../builtins'; // the built-in registries and balancers
export { PICK_KEY_HEADER, WayfinderAgent, withHost, type WayfinderAgentOptions } from './agent';
export { isServiceHost, type HostRule, type HostRouting } from './hosts';
export { RetryBudget, type RetryOptions } from './retry';
export type { BalancerSpec, DiscoveryLike } from './service';
export { serveHttp, type ServeHttpOptions, type HttpServed } from './serve';
export {
  wayfinderLookup,
  wayfinderHttpAgent,
  type LookupOptions,
  type WayfinderLookupFunction,
  type WayfinderHttpAgentOptions,
} from './lookup';
