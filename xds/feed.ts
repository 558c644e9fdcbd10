/**
 * Where the xDS server gets endpoint sets from: one interface (EndpointFeed), shared with the grpclb
 * balancer server, with two implementations: the registry's catalog (catalogFeed, the default when
 * the adapter has a registry-wide watch) and one resolver watch per subscribed service
 * (resolverFeed). See grpc/control-plane.ts.
 */
export {
  catalogFeed,
  endpointFeed,
  holdsService,
  resolverFeed,
  type EndpointFeed,
  type FeedMode,
  type FeedSource,
} from '../grpc/control-plane';
