import type { Balancer, OptionsSchema } from '../../core';
import { outlierOptions, withOutlierEjection, type OutlierConfig } from '../outlier';
import { slowStartOptions, withSlowStart, type SlowStartConfig } from '../slow-start';
import { subsetOptions, withSubset, type SubsetConfig } from '../subset';
import { withZoneAware, zoneAwareOptions, type ZoneAwareConfig } from '../zone-aware';

/**
 * The decorator options every built-in balancer takes, flat beside its own (`slowStart`,
 * `outlier`, `outlier*`, `localZone`, `zone*`, `subsetSize`, `clientId`). The one place they are defined: each balancer
 * definition spreads this into its options schema, so core's validateOptions checks them the same
 * way everywhere.
 */
export const decoratorOptions: OptionsSchema = {
  ...slowStartOptions,
  ...outlierOptions,
  ...zoneAwareOptions,
  ...subsetOptions,
};

export type DecoratorConfig = OutlierConfig & SlowStartConfig & ZoneAwareConfig & SubsetConfig;

/**
 * The balancer `make` builds, with the configured decorators, outermost first: deterministic
 * subsetting (of the whole listed set), outlier ejection, slow start, zone-aware routing. `make`
 * is called once, or once per zone (plus once) when zone-aware routing is on, so a stateful
 * balancer keeps its state per zone.
 */
export function decorate(make: () => Balancer, config: DecoratorConfig): Balancer {
  return withSubset(withOutlierEjection(withSlowStart(withZoneAware(make, config), config), config), config);
}
