/**
 * wayfinder-discovery/xds: an xDS control plane (State-of-the-World ADS v3 and LRS) fed by any
 * Wayfinder registry, for proxyless gRPC clients in every language (docs/xds.md).
 */
import '../builtins'; // the built-in registries and balancers
export { startXdsServer, type XdsServer, type XdsServerOptions, type XdsNack } from './server';
export {
  checkXdsConfig,
  loadXdsConfig,
  resolvePolicy,
  DEFAULT_HASH_HEADER,
  type XdsConfig,
  type ServicePolicy,
  type OutlierDetectionPolicy,
  type LbPolicyName,
  type ResolvedPolicy,
} from './config';
export type { XdsLoadTotals } from './lrs';
export type { EndpointFeed, FeedMode, FeedSource } from './feed';
