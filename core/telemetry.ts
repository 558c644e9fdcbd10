import {
  metrics,
  type Attributes,
  type Counter,
  type Histogram,
  type Meter,
  type ObservableGauge,
  type UpDownCounter,
} from '@opentelemetry/api';

/**
 * Metrics through the OpenTelemetry API. Wayfinder bundles no exporter: without an SDK registered
 * (metrics.setGlobalMeterProvider) every instrument is a no-op costing a function call. Instruments
 * are created lazily, on first use, from the global provider at that time.
 *
 * | instrument | kind | attributes |
 * | --- | --- | --- |
 * | wayfinder.resolver.endpoints | gauge | service, registry |
 * | wayfinder.resolver.updates | counter | service, registry |
 * | wayfinder.registry.errors | counter | registry, code |
 * | wayfinder.registration.lost / .restored | counter | service |
 * | wayfinder.picks | counter | endpoint (host:port), balancer |
 * | wayfinder.calls.in_flight | up-down counter | endpoint |
 * | wayfinder.call.duration | histogram (ms) | endpoint, ok |
 * | wayfinder.latency.ewma | gauge (ms) | endpoint (from latency-aware balancers) |
 */
export const METER_NAME = 'wayfinder';

interface Instruments {
  meter: Meter;
  updates: Counter;
  errors: Counter;
  lost: Counter;
  restored: Counter;
  picks: Counter;
  inFlight: UpDownCounter;
  duration: Histogram;
  endpoints: ObservableGauge;
  ewma: ObservableGauge;
}

let cached: Instruments | undefined;
let cachedFor: unknown;
const endpointCounts = new Map<string, { attrs: Attributes; value: number }>();
const ewmaSources = new Set<() => Iterable<{ endpoint: string; ms: number }>>();

function instruments(): Instruments {
  const provider = metrics.getMeterProvider();
  if (cached && cachedFor === provider) return cached;
  const meter = metrics.getMeter(METER_NAME);
  const endpoints = meter.createObservableGauge('wayfinder.resolver.endpoints', {
    description: 'Endpoints in the last snapshot of a watched service',
  });
  endpoints.addCallback((r) => {
    for (const { attrs, value } of endpointCounts.values()) r.observe(value, attrs);
  });
  const ewma = meter.createObservableGauge('wayfinder.latency.ewma', {
    description: 'Latency EWMA per endpoint',
    unit: 'ms',
  });
  ewma.addCallback((r) => {
    for (const src of ewmaSources) for (const { endpoint, ms } of src()) r.observe(ms, { endpoint });
  });
  cached = {
    meter,
    updates: meter.createCounter('wayfinder.resolver.updates', { description: 'Snapshots delivered to watchers' }),
    errors: meter.createCounter('wayfinder.registry.errors', { description: 'Registry errors seen by resolvers' }),
    lost: meter.createCounter('wayfinder.registration.lost', { description: 'Registrations lost (lease/session/TTL)' }),
    restored: meter.createCounter('wayfinder.registration.restored', {
      description: 'Registrations restored after a loss',
    }),
    picks: meter.createCounter('wayfinder.picks', { description: 'Balancer picks per endpoint' }),
    inFlight: meter.createUpDownCounter('wayfinder.calls.in_flight', { description: 'Calls in flight per endpoint' }),
    duration: meter.createHistogram('wayfinder.call.duration', {
      description: 'Call duration per endpoint',
      unit: 'ms',
    }),
    endpoints,
    ewma,
  };
  cachedFor = provider;
  return cached;
}

export const telemetry = {
  /**
   * True when an OpenTelemetry SDK is registered. Hot paths (per-call instruments) check this first
   * so that without an SDK they cost nothing beyond this check.
   */
  active(): boolean {
    const p = metrics.getMeterProvider() as { constructor?: { name?: string } };
    return p.constructor?.name !== 'NoopMeterProvider';
  },
  snapshot(registry: string, service: string, endpoints: number): void {
    const attrs = { registry, service };
    endpointCounts.set(`${registry}\0${service}`, { attrs, value: endpoints });
    instruments().updates.add(1, attrs);
  },
  unwatched(registry: string, service: string): void {
    endpointCounts.delete(`${registry}\0${service}`);
  },
  registryError(registry: string, code: string): void {
    instruments().errors.add(1, { registry, code });
  },
  registrationLost(service: string): void {
    instruments().lost.add(1, { service });
  },
  registrationRestored(service: string): void {
    instruments().restored.add(1, { service });
  },
  pick(endpoint: string, balancer: string): void {
    instruments().picks.add(1, { endpoint, balancer });
  },
  callStarted(endpoint: string): void {
    instruments().inFlight.add(1, { endpoint });
  },
  callEnded(endpoint: string, ok: boolean, ms: number): void {
    const i = instruments();
    i.inFlight.add(-1, { endpoint });
    i.duration.record(ms, { endpoint, ok });
  },
  /** Latency-aware balancers register a source of per-endpoint EWMA values; returns an unregister function. */
  addEwmaSource(src: () => Iterable<{ endpoint: string; ms: number }>): () => void {
    ewmaSources.add(src);
    instruments();
    return () => ewmaSources.delete(src);
  },
};
