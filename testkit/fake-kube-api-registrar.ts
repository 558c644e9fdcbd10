import { createHash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { CoreV1Api, DiscoveryV1Api, type KubeConfig, type V1EndpointSlice } from '@kubernetes/client-node';
import { RegistrarBase, RegistrationBase, type CheckedSpec } from '../core';
import type { FakeKubeApi } from './fake-kube-api';

/**
 * Test-only registrars for the read-only k8s adapter, so the conformance kit can write instances:
 * one through the fake's admin API (plays the EndpointSlice controller), one through a real API
 * server with client-node (one slice per instance, labelled for the service, in a throwaway
 * namespace), for running the same suites against a real cluster.
 */

/** `weight`/`metadata` have no place in an EndpointSlice and are ignored; `zone` is the endpoint's zone. */
class AdminRegistration extends RegistrationBase {
  constructor(
    spec: CheckedSpec,
    private readonly fake: FakeKubeApi,
    private readonly namespace: string,
  ) {
    super(spec);
  }
  protected async write(spec: CheckedSpec): Promise<void> {
    this.fake.upsertEndpoint(this.namespace, spec.service, {
      address: spec.host,
      ports: [{ port: spec.port }],
      zone: spec.zone,
    });
  }
  protected async remove(): Promise<void> {
    this.fake.deleteEndpoint(this.namespace, this.spec.service, this.spec.host, [{ port: this.spec.port }]);
  }
}

export class FakeKubeAdminRegistrar extends RegistrarBase<AdminRegistration> {
  constructor(
    private readonly fake: FakeKubeApi,
    private readonly namespace: string,
  ) {
    super('fake-kube-admin');
  }
  protected async create(spec: CheckedSpec): Promise<AdminRegistration> {
    const r = new AdminRegistration(spec, this.fake, this.namespace);
    this.fake.upsertEndpoint(this.namespace, spec.service, {
      address: spec.host,
      ports: [{ port: spec.port }],
      zone: spec.zone,
    });
    return r;
  }
}

const sliceName = (spec: CheckedSpec) =>
  `${spec.service.slice(0, 40)}-wf-${createHash('sha256').update(`${spec.host}:${spec.port}`).digest('hex').slice(0, 10)}`;

function sliceBody(spec: CheckedSpec, namespace: string, resourceVersion?: string): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: sliceName(spec),
      namespace,
      resourceVersion,
      labels: {
        'kubernetes.io/service-name': spec.service,
        'endpointslice.kubernetes.io/managed-by': 'wayfinder-test',
      },
    },
    addressType: isIPv4(spec.host) ? 'IPv4' : isIPv6(spec.host) ? 'IPv6' : 'FQDN',
    endpoints: [
      {
        addresses: [spec.host],
        conditions: { ready: true, serving: true, terminating: false },
        ...(spec.zone ? { zone: spec.zone } : {}),
      },
    ],
    ports: [{ port: spec.port, protocol: 'TCP' }],
  };
}

class ApiRegistration extends RegistrationBase {
  constructor(
    spec: CheckedSpec,
    private readonly api: DiscoveryV1Api,
    private readonly namespace: string,
  ) {
    super(spec);
  }
  protected async write(spec: CheckedSpec): Promise<void> {
    const cur = await this.api.readNamespacedEndpointSlice({ name: sliceName(spec), namespace: this.namespace });
    await this.api.replaceNamespacedEndpointSlice({
      name: sliceName(spec),
      namespace: this.namespace,
      body: sliceBody(spec, this.namespace, cur.metadata?.resourceVersion),
    });
  }
  protected async remove(): Promise<void> {
    try {
      await this.api.deleteNamespacedEndpointSlice({ name: sliceName(this.spec), namespace: this.namespace });
    } catch (e) {
      if ((e as { code?: number }).code !== 404) throw e;
    }
  }
}

export class KubeApiRegistrar extends RegistrarBase<ApiRegistration> {
  private readonly api: DiscoveryV1Api;
  constructor(
    kc: KubeConfig,
    private readonly namespace: string,
  ) {
    super('kube-api-test');
    this.api = kc.makeApiClient(DiscoveryV1Api);
  }
  protected async create(spec: CheckedSpec): Promise<ApiRegistration> {
    await this.api.createNamespacedEndpointSlice({ namespace: this.namespace, body: sliceBody(spec, this.namespace) });
    return new ApiRegistration(spec, this.api, this.namespace);
  }
  /** Writes a slice the adapter must reject (an address that is not IPv4 in an IPv4 slice cannot be written through a real API server, so this uses an FQDN slice with two unnamed ports: unusable without a port in the target). */
  async injectBadEntry(service: string): Promise<void> {
    await this.api.createNamespacedEndpointSlice({
      namespace: this.namespace,
      body: {
        metadata: {
          name: `${service.slice(0, 40)}-wf-corrupt`,
          labels: { 'kubernetes.io/service-name': service, 'endpointslice.kubernetes.io/managed-by': 'wayfinder-test' },
        },
        addressType: 'FQDN',
        endpoints: [{ addresses: ['bad.example'], conditions: { ready: true } }],
        ports: [
          { name: 'a', port: 1 },
          { name: 'b', port: 2 },
        ],
      },
    });
  }
}

/** Creates a throwaway namespace; the returned function deletes it (and everything in it). */
export async function createTestNamespace(kc: KubeConfig, name: string): Promise<() => Promise<void>> {
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespace({
    body: { metadata: { name, labels: { 'app.kubernetes.io/created-by': 'wayfinder-tests' } } },
  });
  return async () => {
    try {
      await core.deleteNamespace({ name });
    } catch (e) {
      if ((e as { code?: number }).code !== 404) throw e;
    }
  };
}
