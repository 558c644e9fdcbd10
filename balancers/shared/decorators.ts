import type { Balancer, OptionsSchema } from '../../core';
import { outlierOptions, withOutlierEjection, type OutlierConfig } from '../outlier';
import { slowStartOptions, withSlowStart, type SlowStartConfig } from '../slow-start';

/**
 * The decorator options every built-in balancer takes, flat beside its own (`slowStart`,
 * `outlier`, `outlier*`). The one place they are defined: each balancer definition spreads this
 * into its options schema, so core's validateOptions checks them the same way everywhere.
 */
export const decoratorOptions: OptionsSchema = { ...slowStartOptions, ...outlierOptions };

export type DecoratorConfig = OutlierConfig & SlowStartConfig;

/** `inner` with the configured decorators: outlier ejection around slow start around `inner`. */
export function decorate(inner: Balancer, config: DecoratorConfig): Balancer {
  return withOutlierEjection(withSlowStart(inner, config), config);
}
