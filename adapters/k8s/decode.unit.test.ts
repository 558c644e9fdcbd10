import assert from 'node:assert/strict';
import { ConfigError } from '../../core';
import { endpointsFromSlices, parseK8sTarget, type K8sTarget } from './index';

// Kubernetes targets and discovery.k8s.io/v1 EndpointSlices, value by value: what each target
// parses to (or the field it is refused on), and which endpoints and bad entries a set of slices
// decodes to. No API server: pure functions on crafted objects.

const targetError = (name: string, field: string, message: string) =>
  assert.throws(
    () => parseK8sTarget(name, 'default'),
    (e: Error) => e instanceof ConfigError && e.field === field && e.message === message,
    `expected ${JSON.stringify(name)} to be refused on ${field}`,
  );

const echo: K8sTarget = { service: 'echo', namespace: 'prod' };
/** A slice of service echo in namespace prod. */
const slice = (
  name: string,
  endpoints: unknown,
  ports: unknown = [{ name: 'grpc', port: 50051 }],
  addressType = 'IPv4',
) => ({
  metadata: { name, namespace: 'prod' },
  addressType,
  ports,
  endpoints,
});
const at = (address: string, extra: Record<string, unknown> = {}) => ({ addresses: [address], ...extra });
/** Endpoint as the core hands it on: id host:port, metadata, zone only when set. */
const ep = (host: string, port: number, extra: Record<string, unknown> = {}) => ({
  id: `${host.includes(':') ? `[${host}]` : host}:${port}`,
  host,
  port,
  metadata: {},
  ...extra,
});

describe('Kubernetes decoding (exact targets and slices)', () => {
  it('targets: service, service.namespace, the .svc forms, a port number or a port name', () => {
    assert.deepEqual(parseK8sTarget('echo', 'default'), { service: 'echo', namespace: 'default' });
    assert.deepEqual(parseK8sTarget('echo.prod', 'default'), { service: 'echo', namespace: 'prod' });
    assert.deepEqual(parseK8sTarget('echo.prod.svc', 'default'), { service: 'echo', namespace: 'prod' });
    assert.deepEqual(parseK8sTarget('echo.prod.svc.cluster.local:grpc', 'default'), {
      service: 'echo',
      namespace: 'prod',
      portName: 'grpc',
    });
    assert.deepEqual(parseK8sTarget('echo:8080', 'ns'), { service: 'echo', namespace: 'ns', portNumber: 8080 });
    assert.deepEqual(parseK8sTarget('e.1ns:1', 'default'), { service: 'e', namespace: '1ns', portNumber: 1 });
    assert.deepEqual(parseK8sTarget('echo:65535', 'default').portNumber, 65535);
    assert.deepEqual(parseK8sTarget(`${'a'.repeat(63)}.${'b'.repeat(63)}`, 'default'), {
      service: 'a'.repeat(63),
      namespace: 'b'.repeat(63),
    });
    assert.deepEqual(parseK8sTarget(`echo:${'p'.repeat(15)}`, 'default').portName, 'p'.repeat(15));
    assert.deepEqual(parseK8sTarget('echo:h-2', 'default').portName, 'h-2');
    // Digits then letters are a name, not a number.
    assert.deepEqual(parseK8sTarget('echo:80a', 'default'), { service: 'echo', namespace: 'default', portName: '80a' });
  });

  it('targets: a fourth label that is not "svc" is refused on "service"', () => {
    for (const name of ['echo.prod.cluster', 'echo.prod.x.svc']) {
      targetError(name, 'service', `k8s: target ${JSON.stringify(name)} must be service[.namespace[.svc...]][:port]`);
    }
  });

  it('targets: service names follow DNS-1035 (letter first, at most 63), namespaces DNS-1123', () => {
    for (const service of ['Echo', '1echo', 'echo-', '-echo', 'ec_ho', 'a'.repeat(64), '']) {
      const name = `${service}.prod`;
      targetError(
        name,
        'service',
        `k8s: service name ${JSON.stringify(service)} in ${JSON.stringify(name)} is not a Kubernetes service name (lowercase letters, digits, '-', starting with a letter, at most 63)`,
      );
    }
    for (const ns of ['Prod', 'prod-', '-prod', 'b'.repeat(64), '']) {
      const name = `echo.${ns}`;
      targetError(
        name,
        'namespace',
        `k8s: namespace ${JSON.stringify(ns)} in ${JSON.stringify(name)} is not a Kubernetes namespace name`,
      );
    }
    assert.throws(() => parseK8sTarget('echo', 'Bad'), { field: 'namespace' });
    // A leading colon leaves an empty service name (the port is split off first).
    targetError(
      ':80',
      'service',
      `k8s: service name "" in ":80" is not a Kubernetes service name (lowercase letters, digits, '-', starting with a letter, at most 63)`,
    );
  });

  it('targets: a port number in 1..65535, or a port name (at most 15, lowercase), else refused on "port"', () => {
    for (const p of ['0', '65536', '99999']) {
      targetError(`echo:${p}`, 'port', `k8s: port in ${JSON.stringify(`echo:${p}`)} must be in 1..65535`);
    }
    for (const p of ['', 'GRPC', 'grpc-', '-grpc', 'p'.repeat(16), 'a b', 'a_b']) {
      targetError(
        `echo:${p}`,
        'port',
        `k8s: port ${JSON.stringify(p)} in ${JSON.stringify(`echo:${p}`)} is neither a number nor a port name`,
      );
    }
  });

  it('a ready slice: host, the slice port, zone, pod/node/hostname metadata; endpoints sorted by address', () => {
    const r = endpointsFromSlices(echo, [
      slice('s1', [
        at('10.0.0.2', { conditions: {} }),
        at('10.0.0.1', {
          conditions: { ready: true, serving: true, terminating: false },
          zone: 'z1',
          targetRef: { kind: 'Pod', name: 'echo-1' },
          nodeName: 'node-a',
          hostname: 'h1',
        }),
        { addresses: ['10.0.0.3', '10.0.0.4'] },
      ]),
    ]);
    assert.deepEqual(r, {
      endpoints: [
        ep('10.0.0.1', 50051, {
          zone: 'z1',
          metadata: { 'k8s.pod': 'echo-1', 'k8s.node': 'node-a', 'k8s.hostname': 'h1' },
        }),
        ep('10.0.0.2', 50051),
        ep('10.0.0.3', 50051),
      ],
      bad: [],
    });
  });

  it('metadata: only a Pod targetRef names the pod; non-string fields are left out', () => {
    const meta = (e: Record<string, unknown>) =>
      endpointsFromSlices(echo, [slice('s', [at('10.0.0.1', e)])]).endpoints[0].metadata;
    assert.deepEqual(meta({ targetRef: { kind: 'Node', name: 'n' } }), {});
    assert.deepEqual(meta({ targetRef: { kind: 'Pod', name: 5 } }), {});
    assert.deepEqual(meta({ targetRef: { kind: 'Pod' }, nodeName: 3, hostname: null }), {});
    assert.deepEqual(meta({ nodeName: 'n1' }), { 'k8s.node': 'n1' });
    assert.deepEqual(meta({ hostname: 'h' }), { 'k8s.hostname': 'h' });
  });

  it('zone: the endpoint zone, else the first zone hint, else none', () => {
    const zone = (e: Record<string, unknown>) =>
      endpointsFromSlices(echo, [slice('s', [at('10.0.0.1', e)])]).endpoints[0].zone;
    assert.equal(zone({ zone: 'z1', hints: { forZones: [{ name: 'z2' }] } }), 'z1');
    assert.equal(zone({ zone: '', hints: { forZones: [{ name: 'z2' }, { name: 'z3' }] } }), 'z2');
    assert.equal(zone({ zone: 7, hints: { forZones: [{ name: 'z2' }] } }), 'z2');
    assert.equal(zone({ hints: { forZones: [{ name: 9 }] } }), undefined);
    assert.equal(zone({ hints: { forZones: [] } }), undefined);
    assert.equal(zone({ hints: {} }), undefined);
    assert.equal(zone({}), undefined);
  });

  it('conditions: a missing ready counts as ready; ready false is left out; a non-object is no conditions', () => {
    const hosts = (conditions: unknown, fallback = false) =>
      endpointsFromSlices(echo, [slice('s', [at('10.0.0.1', { conditions }), at('10.0.0.9')])], fallback).endpoints.map(
        (e) => e.host,
      );
    assert.deepEqual(hosts({ ready: true }), ['10.0.0.1', '10.0.0.9']);
    assert.deepEqual(hosts({ ready: null }), ['10.0.0.1', '10.0.0.9']);
    assert.deepEqual(hosts({ serving: false }), ['10.0.0.1', '10.0.0.9']);
    assert.deepEqual(hosts('ready'), ['10.0.0.1', '10.0.0.9']);
    assert.deepEqual(hosts(null), ['10.0.0.1', '10.0.0.9']);
    assert.deepEqual(hosts({ ready: false }), ['10.0.0.9']);
    assert.deepEqual(hosts({ ready: false, serving: true, terminating: true }), ['10.0.0.9']);
  });

  it('no ready endpoint: the serving and terminating ones, marked k8s.terminating, unless the fallback is off', () => {
    const draining = { ready: false, serving: true, terminating: true };
    const slices = [
      slice('s1', [
        at('10.0.0.1', { conditions: draining, nodeName: 'n1' }),
        at('10.0.0.2', { conditions: { ready: false, serving: false, terminating: true } }),
        at('10.0.0.3', { conditions: { ready: false, terminating: true } }),
        at('10.0.0.4', { conditions: { ready: false, serving: true, terminating: false } }),
        at('10.0.0.5', { conditions: { ready: false, serving: true, terminating: 'true' } }),
        at('10.0.0.6', { conditions: { ready: false, serving: true } }),
      ]),
    ];
    assert.deepEqual(endpointsFromSlices(echo, slices), {
      endpoints: [ep('10.0.0.1', 50051, { metadata: { 'k8s.node': 'n1', 'k8s.terminating': 'true' } })],
      bad: [],
    });
    assert.deepEqual(endpointsFromSlices(echo, slices, false), { endpoints: [], bad: [] });
    // One ready endpoint anywhere (another slice) and the draining ones are not used.
    assert.deepEqual(endpointsFromSlices(echo, [...slices, slice('s2', [at('10.0.0.7')])]).endpoints, [
      ep('10.0.0.7', 50051),
    ]);
  });

  it('address types: IPv4, IPv6 and FQDN each take only their own kind of address; others are bad entries', () => {
    const v6 = endpointsFromSlices(echo, [slice('s6', [at('::1'), at('10.0.0.1')], undefined, 'IPv6')]);
    assert.deepEqual(v6, {
      endpoints: [ep('::1', 50051)],
      bad: [{ key: 'endpointslices/prod/s6/endpoints[1]', reason: 'address "10.0.0.1" is not a valid IPv6 address' }],
    });
    const v4 = endpointsFromSlices(echo, [slice('s4', [at('::1'), at('10.0.0.1'), at('echo.local')])]);
    assert.deepEqual(v4, {
      endpoints: [ep('10.0.0.1', 50051)],
      bad: [
        { key: 'endpointslices/prod/s4/endpoints[0]', reason: 'address "::1" is not a valid IPv4 address' },
        { key: 'endpointslices/prod/s4/endpoints[2]', reason: 'address "echo.local" is not a valid IPv4 address' },
      ],
    });
    const fqdn = endpointsFromSlices(echo, [
      slice(
        'sf',
        [at('echo-0.echo.prod.svc'), at('bad_name'), at('-a.b'), at(`${'a'.repeat(64)}.b`), at('A9')],
        undefined,
        'FQDN',
      ),
    ]);
    assert.deepEqual(fqdn.endpoints, [ep('A9', 50051), ep('echo-0.echo.prod.svc', 50051)]);
    assert.deepEqual(
      fqdn.bad.map((b) => b.key),
      [1, 2, 3].map((i) => `endpointslices/prod/sf/endpoints[${i}]`),
    );
    assert.equal(fqdn.bad[0].reason, 'address "bad_name" is not a valid FQDN address');
  });

  it('malformed slices and endpoints are reported under their keys; empty slices are not', () => {
    const r = endpointsFromSlices(echo, [
      slice('a', 'nope'),
      slice('b', null),
      slice('c', undefined),
      slice('d', [], undefined, 'IPv5'),
      slice('e', [at('10.0.0.1')], undefined, 'IPv5'),
      { ...slice('f', [at('10.0.0.1')]), addressType: undefined },
      slice('g', [{ addresses: [] }, { addresses: '10.0.0.1' }, { addresses: [5] }, null, {}, at('10.0.0.2')]),
      { endpoints: {} },
    ]);
    assert.deepEqual(r, {
      endpoints: [ep('10.0.0.2', 50051)],
      bad: [
        { key: 'endpointslices/prod/a', reason: '"endpoints" is not a list' },
        { key: 'endpointslices/prod/e', reason: 'unknown addressType "IPv5"' },
        { key: 'endpointslices/prod/f', reason: 'unknown addressType undefined' },
        ...[0, 1, 2, 3, 4].map((i) => ({
          key: `endpointslices/prod/g/endpoints[${i}]`,
          reason: '"addresses" must be a non-empty list of strings',
        })),
        { key: 'endpointslices/?/?', reason: '"endpoints" is not a list' },
      ],
    });
  });

  it('ports: the target port number wins; a port name picks that port; a slice without it is skipped', () => {
    const eps = (t: K8sTarget, ports: unknown) => endpointsFromSlices(t, [slice('s', [at('10.0.0.1')], ports)]);
    assert.deepEqual(eps({ ...echo, portNumber: 9000 }, []), { endpoints: [ep('10.0.0.1', 9000)], bad: [] });
    const two = [
      { name: 'http', port: 8080 },
      { name: 'grpc', port: 50051 },
    ];
    assert.deepEqual(eps({ ...echo, portName: 'grpc' }, two), { endpoints: [ep('10.0.0.1', 50051)], bad: [] });
    assert.deepEqual(eps({ ...echo, portName: 'http' }, [null, ...two]), {
      endpoints: [ep('10.0.0.1', 8080)],
      bad: [],
    });
    assert.deepEqual(eps({ ...echo, portName: 'admin' }, two), { endpoints: [], bad: [] });
    assert.deepEqual(eps({ ...echo, portName: 'grpc' }, [{ port: 1 }]), { endpoints: [], bad: [] });
    assert.deepEqual(eps({ ...echo, portName: 'grpc' }, [{ name: 'grpc' }]), {
      endpoints: [],
      bad: [{ key: 'endpointslices/prod/s', reason: 'port "grpc" has no number' }],
    });
    assert.deepEqual(eps({ ...echo, portName: 'grpc' }, [{ name: 'grpc', port: '50051' }]).bad, [
      { key: 'endpointslices/prod/s', reason: 'port "grpc" has no number' },
    ]);
  });

  it('ports: without a port in the target, the one port of the slice, else the reason', () => {
    const eps = (ports: unknown) => endpointsFromSlices(echo, [{ ...slice('s', [at('10.0.0.1')]), ports }]);
    assert.deepEqual(eps([{ port: 7000 }]), { endpoints: [ep('10.0.0.1', 7000)], bad: [] });
    assert.deepEqual(eps(['x', null, { name: 'only', port: 7001 }]).endpoints, [ep('10.0.0.1', 7001)]);
    const noPort = 'the slice lists no port; give one in the target (service.namespace:port)';
    for (const ports of [[], undefined, 'grpc', [null, 3]]) {
      assert.deepEqual(eps(ports), { endpoints: [], bad: [{ key: 'endpointslices/prod/s', reason: noPort }] });
    }
    assert.deepEqual(eps([{ name: 'grpc', port: 50051 }, { port: 8080 }]).bad, [
      {
        key: 'endpointslices/prod/s',
        reason: 'the slice has 2 ports (grpc, 8080); name one in the target (service.namespace:name)',
      },
    ]);
    assert.deepEqual(eps([{ name: 'grpc' }]).bad, [
      {
        key: 'endpointslices/prod/s',
        reason: 'the slice has 1 ports (grpc); name one in the target (service.namespace:name)',
      },
    ]);
  });

  it("the core's checks apply after: a bad port is a bad entry; the same address in two slices is one endpoint", () => {
    const r = endpointsFromSlices(echo, [
      slice('s1', [at('10.0.0.1')], [{ port: 0 }]),
      slice('s2', [at('10.0.0.2'), at('10.0.0.3', { zone: 'z' })]),
      slice('s3', [at('10.0.0.3')]),
    ]);
    assert.deepEqual(r, {
      endpoints: [ep('10.0.0.2', 50051), ep('10.0.0.3', 50051)],
      bad: [{ key: 'endpointslices/prod/s1/endpoints[0]', reason: '"port" must be an integer in 1..65535' }],
    });
  });

  it('the fallback reports the bad entries of both passes, slice problems first', () => {
    const r = endpointsFromSlices(echo, [
      slice('a', 'x'),
      slice('b', [at('10.0.0.1')], [{ port: 70000 }]),
      slice('c', [at('10.0.0.2', { conditions: { ready: false, serving: true, terminating: true } })], [{ port: 0 }]),
      slice('d', [at('10.0.0.3', { conditions: { ready: false, serving: true, terminating: true } })]),
    ]);
    assert.deepEqual(r, {
      endpoints: [ep('10.0.0.3', 50051, { metadata: { 'k8s.terminating': 'true' } })],
      bad: [
        { key: 'endpointslices/prod/a', reason: '"endpoints" is not a list' },
        { key: 'endpointslices/prod/b/endpoints[0]', reason: '"port" must be an integer in 1..65535' },
        { key: 'endpointslices/prod/c/endpoints[0]', reason: '"port" must be an integer in 1..65535' },
      ],
    });
    assert.deepEqual(endpointsFromSlices(echo, [slice('b', [at('10.0.0.1')], [{ port: 70000 }])], false), {
      endpoints: [],
      bad: [{ key: 'endpointslices/prod/b/endpoints[0]', reason: '"port" must be an integer in 1..65535' }],
    });
  });
});
