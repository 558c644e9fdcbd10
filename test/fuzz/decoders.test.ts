import '../../builtins'; // the built-in registries and balancers
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { entryToRaw } from '../../adapters/consul';
import { DnsLookups } from '../../adapters/dns';
import { decodeValue } from '../../adapters/etcd';
import { BadValue } from '../../adapters/etcd/format';
import { DocFormatError, parseDoc, serviceView } from '../../adapters/file/store';
import { endpointsFromSlices, parseK8sTarget } from '../../adapters/k8s';
import { decode as decodeZk } from '../../adapters/zookeeper/format';
import {
  checkEndpoint,
  collectEndpoints,
  Discovery,
  isWayfinderError,
  parseRegistryUrl,
  resolveRegistry,
  type Endpoint,
} from '../../core';

/**
 * Property tests for every decoder of registry data and for config: whatever the registry or the
 * user hands over, decoding never throws anything but its documented error, every endpoint that
 * comes out is valid, and every input that goes in is either an endpoint or a reported bad entry.
 * Seeds are fixed per run by fast-check's default (printed on failure, for replay).
 */

const RUNS = Number(process.env.FUZZ_RUNS ?? 400);

/** What every adapter promises about the endpoints it hands to the core. */
function assertValid(e: Endpoint): void {
  assert.equal(typeof e.host, 'string');
  assert.ok(e.host.length > 0);
  assert.ok(Number.isInteger(e.port) && e.port >= 1 && e.port <= 65535, `port ${e.port}`);
  assert.ok(e.weight === undefined || (Number.isInteger(e.weight) && e.weight >= 1), `weight ${e.weight}`);
  assert.equal(typeof e.id, 'string');
  for (const v of Object.values(e.metadata)) assert.equal(typeof v, 'string');
  assert.ok(e.zone === undefined || typeof e.zone === 'string');
}

// Values that look like endpoints often enough to reach the deep branches.
const weird = fc.oneof(
  fc.anything(),
  fc.constant(null),
  fc.constant(undefined),
  fc.string(),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.array(fc.anything(), { maxLength: 3 }),
);
const hostLike = fc.oneof(fc.constantFrom('127.0.0.1', '::1', '[::1]', '10.0.0.1', 'echo.svc', ''), fc.string(), weird);
const portLike = fc.oneof(
  fc.integer({ min: -5, max: 70000 }),
  fc.constantFrom('50051', '0', '65536', '1e3', ' 80', '080'),
  weird,
);
const endpointLike = fc.record(
  {
    id: fc.oneof(fc.string(), weird),
    host: hostLike,
    port: portLike,
    weight: fc.oneof(fc.integer({ min: -2, max: 10 }), fc.double(), weird),
    zone: fc.oneof(fc.string(), weird),
    metadata: fc.oneof(fc.dictionary(fc.string(), fc.string()), fc.dictionary(fc.string(), weird), weird),
    health: fc.oneof(fc.constantFrom('passing', 'warning', 'critical', 'dead'), weird),
  },
  { requiredKeys: [] },
);
const jsonText = fc.oneof(
  fc.json(),
  endpointLike.map((o) => JSON.stringify(o) ?? 'null'),
  fc.string(),
  fc.string().map((s) => `{"host":"127.0.0.1","port":${s}}`),
);
const bytes = fc.oneof(
  jsonText.map((s) => Buffer.from(s)),
  fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
);

describe('fuzz: registry decoders never throw, and keep only valid endpoints', () => {
  it('checkEndpoint / collectEndpoints (shared by every adapter): every entry is an endpoint or a bad entry', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(endpointLike, weird), { maxLength: 12 }), (values) => {
        const { endpoints, bad } = collectEndpoints(
          values.map((value, i) => ({ key: `k${i}`, value })),
          { includeCritical: true },
        );
        endpoints.forEach(assertValid);
        const good = values.filter((v) => checkEndpoint(v).ok).length;
        assert.equal(bad.length, values.length - good);
        assert.ok(endpoints.length <= good);
      }),
      { numRuns: RUNS },
    );
  });

  for (const format of ['wayfinder', 'grpc-go'] as const) {
    it(`etcd values, ${format} format: decodeValue throws only BadValue; the rest passes checkEndpoint or is reported`, () => {
      const goValue = fc.record(
        {
          Addr: fc.oneof(
            fc.constantFrom('127.0.0.1:1', '[::1]:50051', 'h:0', 'h:99999', ':80', 'h:'),
            fc.string(),
            weird,
          ),
          Metadata: fc.oneof(fc.dictionary(fc.string(), weird), weird),
        },
        { requiredKeys: [] },
      );
      const input =
        format === 'grpc-go'
          ? fc.oneof(
              bytes,
              goValue.map((o) => Buffer.from(JSON.stringify(o) ?? '')),
            )
          : bytes;
      fc.assert(
        fc.property(input, fc.string({ maxLength: 8 }), (value, id) => {
          let raw: Record<string, unknown>;
          try {
            raw = decodeValue(format, id, value);
          } catch (e) {
            assert.ok(e instanceof BadValue, `threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
            return;
          }
          const c = checkEndpoint(raw);
          if (c.ok) assertValid(c.endpoint);
          else assert.equal(typeof c.reason, 'string');
        }),
        { numRuns: RUNS },
      );
    });
  }

  for (const format of ['wayfinder', 'curator'] as const) {
    it(`ZooKeeper node data, ${format} format: decode never throws; ok values pass or fail checkEndpoint cleanly`, () => {
      const curator = fc.record(
        {
          name: fc.oneof(fc.string(), weird),
          id: fc.oneof(fc.string(), weird),
          address: hostLike,
          port: portLike,
          sslPort: portLike,
          payload: fc.oneof(
            fc.record({ '@class': fc.string(), metadata: fc.dictionary(fc.string(), weird) }, { requiredKeys: [] }),
            weird,
          ),
          serviceType: fc.oneof(fc.constantFrom('DYNAMIC', 'STATIC', 'PERMANENT'), weird),
          registrationTimeUTC: weird,
        },
        { requiredKeys: [] },
      );
      const input = fc.oneof(
        bytes,
        curator.map((o) => Buffer.from(JSON.stringify(o) ?? '')),
        fc.constant(undefined),
      );
      fc.assert(
        fc.property(input, fc.string({ maxLength: 8 }), (data, node) => {
          const d = decodeZk(format, node, data);
          if (!d.ok) return assert.equal(typeof d.reason, 'string');
          const c = checkEndpoint(d.value);
          if (c.ok) assertValid(c.endpoint);
        }),
        { numRuns: RUNS },
      );
    });
  }

  it('Consul /v1/health/service entries: entryToRaw never throws; every entry is an endpoint, excluded, or a bad entry', () => {
    const entry = fc.record(
      {
        Node: fc.oneof(
          fc.record({ Node: fc.oneof(fc.string(), weird), Address: hostLike }, { requiredKeys: [] }),
          weird,
        ),
        Service: fc.oneof(
          fc.record(
            {
              ID: fc.oneof(fc.string(), weird),
              Service: fc.string(),
              Address: hostLike,
              Port: portLike,
              Meta: fc.oneof(fc.dictionary(fc.string(), fc.string()), weird),
              Weights: fc.oneof(
                fc.record(
                  {
                    Passing: fc.oneof(fc.integer({ min: -1, max: 5 }), weird),
                    Warning: fc.oneof(fc.integer({ min: -1, max: 5 }), weird),
                  },
                  { requiredKeys: [] },
                ),
                weird,
              ),
              Tags: weird,
            },
            { requiredKeys: [] },
          ),
          weird,
        ),
        Checks: fc.oneof(
          fc.array(
            fc.oneof(
              fc.record(
                { Status: fc.oneof(fc.constantFrom('passing', 'warning', 'critical', 'maintenance'), weird) },
                { requiredKeys: [] },
              ),
              weird,
            ),
            { maxLength: 3 },
          ),
          fc.constant(null),
          fc.constant(undefined),
          weird,
        ),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.array(fc.oneof(entry, weird), { maxLength: 6 }), (body) => {
        const raws = body
          .map((e) => entryToRaw(e as never, 'zone'))
          .filter((x): x is { key: string; value: unknown } => x !== null);
        const { endpoints } = collectEndpoints(raws);
        endpoints.forEach(assertValid);
      }),
      { numRuns: RUNS },
    );
  });

  // Found by the fuzzer: a non-list Checks used to throw inside the watch loop and fail the whole
  // response (REGISTRY_UNAVAILABLE) instead of making that one entry bad.
  it('Consul: an entry whose Checks is not a list is one bad entry, not a failed response', () => {
    const raws = [
      { Service: { ID: 'a', Address: '127.0.0.1', Port: 1 }, Checks: false },
      { Service: { ID: 'b', Address: '127.0.0.1', Port: 2 }, Checks: [] },
    ].map((e) => entryToRaw(e as never, 'zone'));
    const { endpoints } = collectEndpoints(raws.filter((x): x is { key: string; value: unknown } => x !== null));
    assert.deepEqual(
      endpoints.map((e) => e.port),
      [2],
    );
  });

  // Found by the fuzzer (random seed): String() / a template literal of an object whose toString is
  // not a function throws "Cannot convert object to primitive value". Keys are built with scalarText.
  it('Consul: a Node.Node that cannot be stringified ([{"toString":[]}]) is a bad entry, not a TypeError', () => {
    const body: unknown[] = [[{ Node: { Node: [{ toString: [] }] } }]];
    for (const e of body) assert.doesNotThrow(() => entryToRaw(e as never, 'zone'));
    const raw = entryToRaw(
      { Node: { Node: [{ toString: [] }] }, Service: { ID: { toString: 1 }, Port: 1 } } as never,
      'zone',
    );
    assert.equal(raw?.key, '?/?');
  });

  it('Kubernetes: a slice whose metadata cannot be stringified is reported under a "?" key, not a TypeError', () => {
    const slice = { metadata: { namespace: { toString: [] }, name: [{ toString: [] }] }, endpoints: 'x' };
    const { bad } = endpointsFromSlices(parseK8sTarget('echo.default', 'default'), [slice]);
    assert.deepEqual(bad, [{ key: 'endpointslices/?/?', reason: '"endpoints" is not a list' }]);
  });

  it('Kubernetes EndpointSlices: endpointsFromSlices never throws and returns only valid endpoints', () => {
    const ep = fc.record(
      {
        addresses: fc.oneof(
          fc.array(fc.oneof(fc.constantFrom('10.0.0.1', 'fd00::1', 'pod-1.echo', '300.1.1.1'), fc.string(), weird), {
            maxLength: 2,
          }),
          weird,
        ),
        conditions: fc.oneof(
          fc.record({ ready: weird, serving: weird, terminating: weird }, { requiredKeys: [] }),
          weird,
        ),
        zone: weird,
        hints: weird,
        targetRef: fc.oneof(
          fc.record({ kind: fc.constantFrom('Pod', 'Node'), name: fc.oneof(fc.string(), weird) }),
          weird,
        ),
        nodeName: weird,
        hostname: weird,
      },
      { requiredKeys: [] },
    );
    const slice = fc.record(
      {
        metadata: fc.oneof(fc.record({ name: fc.string(), namespace: fc.string() }), weird),
        addressType: fc.oneof(fc.constantFrom('IPv4', 'IPv6', 'FQDN', 'Unix'), weird),
        endpoints: fc.oneof(fc.array(fc.oneof(ep, weird), { maxLength: 4 }), weird),
        ports: fc.oneof(
          fc.array(
            fc.oneof(
              fc.record({ name: fc.oneof(fc.constantFrom('grpc', ''), weird), port: portLike }, { requiredKeys: [] }),
              weird,
            ),
            { maxLength: 3 },
          ),
          weird,
        ),
      },
      { requiredKeys: [] },
    );
    const targets = [
      parseK8sTarget('echo.default', 'default'),
      parseK8sTarget('echo.default:grpc', 'default'),
      parseK8sTarget('echo.default:8080', 'default'),
    ];
    fc.assert(
      fc.property(
        fc.array(fc.oneof(slice, weird), { maxLength: 4 }),
        fc.constantFrom(...targets),
        fc.boolean(),
        (slices, t, fallback) => {
          const { endpoints, bad } = endpointsFromSlices(t, slices, fallback);
          endpoints.forEach(assertValid);
          assert.ok(Array.isArray(bad));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('DNS SRV answers (with their A/AAAA lookups): never throws; weights >= 1; targets without addresses are bad entries', async () => {
    const srv = fc.record({
      name: fc.oneof(fc.constantFrom('', '.', 't1.test', 't2.test', '127.0.0.1', '::1'), fc.string()),
      port: fc.integer({ min: -1, max: 70000 }),
      priority: fc.integer({ min: -1, max: 70000 }),
      weight: fc.integer({ min: -1, max: 70000 }),
    });
    const addr = fc.record({
      address: fc.oneof(fc.constantFrom('10.0.0.1', 'fd00::2', ''), fc.string()),
      ttl: fc.oneof(fc.nat(), fc.constant(-1)),
      family: fc.constantFrom(4 as const, 6 as const),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(srv, { maxLength: 6 }),
        fc.dictionary(fc.constantFrom('t1.test', 't2.test', 'other'), fc.array(addr, { maxLength: 3 })),
        async (records, addrs) => {
          const client = {
            srv: async () => ({ records }),
            addresses: async (name: string, family: 4 | 6) => ({
              records: (Object.hasOwn(addrs, name) ? addrs[name] : []).filter((a) => a.family === family),
              nxdomain: false,
            }),
          };
          const lookups = new DnsLookups(client as never, { family: 'any', probe: false, timeout: 100 } as never);
          const r = await lookups.lookup({ kind: 'srv', name: '_grpc._tcp.echo.test' });
          r.endpoints.forEach(assertValid);
          for (const e of r.endpoints) assert.ok((e.weight ?? 1) >= 1);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('file registry documents: parseDoc throws only DocFormatError; serviceView never throws and keeps only valid endpoints', () => {
    const entry = fc.oneof(
      endpointLike.map((o) => ({ ...o, expires: undefined as unknown })),
      fc.record(
        {
          host: fc.constant('127.0.0.1'),
          port: fc.integer({ min: 1, max: 65535 }),
          expires: fc.oneof(fc.integer(), fc.string(), weird),
          ttl: weird,
        },
        { requiredKeys: ['host', 'port'] },
      ),
      weird,
    );
    const doc = fc.record(
      {
        version: fc.oneof(fc.constant(1), weird),
        revision: weird,
        services: fc.oneof(
          fc.dictionary(
            fc.constantFrom('echo', 'x'),
            fc.oneof(fc.dictionary(fc.string({ maxLength: 5 }), entry), weird),
          ),
          weird,
        ),
      },
      { requiredKeys: [] },
    );
    const text = fc.oneof(
      doc.map((d) => JSON.stringify(d) ?? ''),
      fc.json(),
      fc.string(),
    );
    fc.assert(
      fc.property(text, (t) => {
        let d;
        try {
          d = parseDoc(t);
        } catch (e) {
          assert.ok(e instanceof DocFormatError, `threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
          return;
        }
        for (const service of ['echo', 'x', 'missing']) {
          const v = serviceView(d, service, Date.now(), 10_000);
          v.endpoints.forEach(assertValid);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

describe('fuzz: configuration', () => {
  const schemes = ['memory', 'file', 'etcd', 'zk', 'zookeeper', 'consul', 'dns', 'k8s', 'kubernetes', 'nope', 'ETCD'];
  const hostPart = fc.oneof(
    fc.constantFrom('', '127.0.0.1:2379', 'h1:1,h2:2', '[::1]:53', 'h:0', 'h:99999', 'u:p@h:1', '[bad', 'a b'),
    fc.string({ maxLength: 12 }),
  );
  const param = fc.tuple(
    fc.oneof(
      fc.constantFrom(
        'prefix',
        'format',
        'ttl',
        'cache',
        'token',
        'namespace',
        'dc',
        'port',
        'srv',
        'name',
        'path',
        'hosts',
        'min-refresh',
      ),
      fc.string({ maxLength: 6 }),
    ),
    fc.oneof(fc.constantFrom('', '/s', 'wayfinder', '10s', '-1', 'x'), fc.string({ maxLength: 8 })),
  );
  const url = fc
    .tuple(
      fc.constantFrom(...schemes),
      hostPart,
      fc.oneof(
        fc.constant(''),
        fc.string({ maxLength: 8 }).map((s) => `/${s}`),
      ),
      fc.array(param, { maxLength: 4 }),
    )
    .map(
      ([s, h, p, q]) =>
        `${s}://${h}${p}${q.length ? `?${q.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')}` : ''}`,
    );

  it('resolveRegistry (what Discovery.fromConfig validates): any URL is accepted or refused with a WayfinderError, never another exception', () => {
    fc.assert(
      fc.property(fc.oneof(url, fc.string()), (u) => {
        try {
          resolveRegistry(u);
        } catch (e) {
          assert.ok(
            isWayfinderError(e),
            `${JSON.stringify(u)} threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`,
          );
        }
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it('parseRegistryUrl: never throws anything but ConfigError for strings without user info', () => {
    fc.assert(
      fc.property(
        fc.oneof(url, fc.string()).filter((u) => !u.includes('@')),
        (u) => {
          try {
            parseRegistryUrl(u);
          } catch (e) {
            assert.ok(
              isWayfinderError(e, 'CONFIG_INVALID'),
              `${JSON.stringify(u)} threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`,
            );
          }
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });

  it('Discovery.fromConfig with config objects: refused with ConfigError (or built, for memory), never another exception', async () => {
    const obj = fc.record(
      {
        registry: fc.oneof(
          fc.record(
            {
              scheme: fc.constantFrom('memory', 'nope', 'dns', 'etcd'),
              name: fc.oneof(fc.string({ maxLength: 6 }), weird),
              ttl: weird,
              cache: weird,
              prefix: weird,
            },
            { requiredKeys: ['scheme'] },
          ),
          weird,
        ),
        balancer: fc.oneof(fc.constantFrom('round_robin', 'p2c', 'nope'), weird),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(obj, fc.dictionary(fc.string({ maxLength: 5 }), weird)), async (cfg) => {
        const reg = (cfg as { registry?: unknown }).registry;
        // Only memory registries may be built (others would start connecting); validation is what is fuzzed.
        if (reg && typeof reg === 'object' && (reg as { scheme?: unknown }).scheme !== 'memory') {
          try {
            resolveRegistry(reg as never);
          } catch (e) {
            assert.ok(
              isWayfinderError(e) || e instanceof TypeError,
              `threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`,
            );
          }
          return;
        }
        if (reg === undefined || typeof reg === 'string') return; // default registry / URLs: covered above
        try {
          const d = await Discovery.fromConfig(cfg as never);
          await d.close();
        } catch (e) {
          assert.ok(
            isWayfinderError(e) || e instanceof TypeError,
            `threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`,
          );
        }
      }),
      { numRuns: RUNS },
    );
  });
});
