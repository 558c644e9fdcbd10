import { randomBytes, randomUUID } from 'node:crypto';
import {
  addressType,
  clone,
  keyOf,
  kubeTime,
  portsKey,
  slicePortsKey,
  SVC_LABEL,
  type FakeKubeEndpoint,
  type FakeKubePort,
  type RawJson,
  type Slice,
} from './model';
import type { SliceStore } from './store';

/**
 * The EndpointSlice controller, for the in-process admin API: endpoints of a service are grouped
 * into slices by address type and port set, at most `maxPerSlice` per slice; writes bypass auth
 * and validation (like writing to the store).
 */
export class SliceController {
  constructor(
    private readonly store: SliceStore,
    private readonly maxPerSlice: number,
  ) {}

  upsertEndpoint(ns: string, service: string, ep: FakeKubeEndpoint): void {
    this.mutate(ns, service, (d, t) => this.upsertInto(ns, service, d, t, ep));
  }

  deleteEndpoint(ns: string, service: string, address: string, ports?: FakeKubePort[]): boolean {
    let found = false;
    this.mutate(ns, service, (d, t) => {
      found = deleteFrom(d, t, address, ports);
    });
    return found;
  }

  setEndpoints(ns: string, service: string, eps: FakeKubeEndpoint[]): void {
    this.mutate(ns, service, (d, t) => {
      const want = new Set(eps.map((e) => `${e.address}|${portsKey(e.ports)}`));
      for (const [k, s] of d) {
        const keep = s.endpoints.filter((e) => want.has(`${(e.addresses as string[])[0]}|${slicePortsKey(s)}`));
        if (keep.length !== s.endpoints.length) {
          s.endpoints = keep;
          t.add(k);
        }
      }
      for (const ep of eps) this.upsertInto(ns, service, d, t, ep);
    });
  }

  /** Stores a raw slice as given (malformed on purpose), with the metadata the server owns filled in. */
  putSlice(raw: Record<string, unknown>): void {
    const md = raw.metadata as { namespace?: unknown; name?: unknown } | undefined;
    const ns = md?.namespace;
    const name = md?.name;
    if (typeof ns !== 'string' || typeof name !== 'string')
      throw new TypeError('putSlice(): metadata.namespace and metadata.name are required');
    const key = keyOf(ns, name);
    const prev = this.store.objects.get(key);
    const s: Slice = clone(raw as RawJson);
    s.apiVersion = 'discovery.k8s.io/v1';
    s.kind = 'EndpointSlice';
    const given = (s.metadata ?? {}) as Partial<Slice['metadata']>;
    s.metadata = {
      ...given,
      namespace: ns,
      name,
      uid: given.uid ?? prev?.metadata.uid ?? randomUUID(),
      creationTimestamp: given.creationTimestamp ?? prev?.metadata.creationTimestamp ?? kubeTime(),
      labels: given.labels ?? {},
      generation: (prev?.metadata.generation ?? 0) + 1,
      resourceVersion: '',
    };
    this.store.commit(prev ? 'MODIFIED' : 'ADDED', key, s, prev);
  }

  deleteSlice(ns: string, name: string): boolean {
    return this.store.remove(keyOf(ns, name)) !== undefined;
  }

  slices(ns?: string, service?: string): Slice[] {
    return [...this.store.objects.values()]
      .filter(
        (s) =>
          (ns === undefined || s.metadata.namespace === ns) &&
          (service === undefined || s.metadata.labels?.[SVC_LABEL] === service),
      )
      .map(clone);
  }

  /** Applies changes to a draft of the service's slices, then commits one event per changed slice. */
  private mutate(ns: string, service: string, fn: (draft: Map<string, Slice>, touched: Set<string>) => void): void {
    const draft = new Map(this.slices(ns, service).map((s) => [keyOf(ns, s.metadata.name), s]));
    const touched = new Set<string>();
    fn(draft, touched);
    for (const key of touched) {
      const prev = this.store.objects.get(key);
      const next = draft.get(key);
      if (!next || next.endpoints.length === 0) {
        this.store.remove(key);
        draft.delete(key);
      } else if (!prev) this.store.commit('ADDED', key, next);
      else {
        next.metadata.generation = prev.metadata.generation + 1;
        this.store.commit('MODIFIED', key, next, prev);
      }
    }
  }

  private upsertInto(
    ns: string,
    service: string,
    draft: Map<string, Slice>,
    touched: Set<string>,
    ep: FakeKubeEndpoint,
  ): void {
    const type = addressType(ep.address);
    const pk = portsKey(ep.ports);
    const obj = endpointObject(ns, ep);
    const fits = (s: Slice) => s.addressType === type && slicePortsKey(s) === pk;
    for (const [key, s] of draft) {
      if (fits(s) && sliceHas(s, ep.address)) {
        if (replaceEndpoint(s, ep.address, obj)) touched.add(key);
        return;
      }
    }
    for (const [key, s] of draft) {
      if (fits(s) && s.endpoints.length < this.maxPerSlice) {
        s.endpoints.push(obj);
        touched.add(key);
        return;
      }
    }
    const s = newSlice(ns, service, type, ep.ports);
    s.endpoints.push(obj);
    const key = keyOf(ns, s.metadata.name);
    draft.set(key, s);
    touched.add(key);
  }
}

const sliceHas = (s: Slice, address: string) =>
  s.endpoints.some((e) => (e.addresses as string[] | undefined)?.[0] === address);

/** Puts `obj` in place of the endpoint with `address` when it differs (keeping its pod uid); returns whether it did. */
function replaceEndpoint(s: Slice, address: string, obj: Record<string, unknown>): boolean {
  const i = s.endpoints.findIndex((e) => (e.addresses as string[])[0] === address);
  if (JSON.stringify({ ...s.endpoints[i], targetRef: undefined }) === JSON.stringify({ ...obj, targetRef: undefined }))
    return false;
  (obj.targetRef as { uid: string }).uid =
    (s.endpoints[i].targetRef as { uid: string } | undefined)?.uid ?? randomUUID();
  s.endpoints[i] = obj;
  return true;
}

function deleteFrom(draft: Map<string, Slice>, touched: Set<string>, address: string, ports?: FakeKubePort[]): boolean {
  let found = false;
  for (const [key, s] of draft) {
    if (ports && slicePortsKey(s) !== portsKey(ports)) continue;
    const before = s.endpoints.length;
    s.endpoints = s.endpoints.filter((e) => (e.addresses as string[] | undefined)?.[0] !== address);
    if (s.endpoints.length !== before) {
      found = true;
      touched.add(key);
    }
  }
  return found;
}

function endpointObject(ns: string, ep: FakeKubeEndpoint): Record<string, unknown> {
  const ready = ep.ready ?? true;
  const o: Record<string, unknown> = {
    addresses: [ep.address],
    conditions: { ready, serving: ep.serving ?? ready, terminating: ep.terminating ?? false },
    targetRef: {
      kind: 'Pod',
      namespace: ns,
      name: ep.pod ?? `pod-${ep.address.replace(/[^A-Za-z0-9]/g, '-')}`,
      uid: randomUUID(),
    },
  };
  if (ep.hostname) o.hostname = ep.hostname;
  if (ep.nodeName) o.nodeName = ep.nodeName;
  if (ep.zone) o.zone = ep.zone;
  if (ep.hintZones) o.hints = { forZones: ep.hintZones.map((name) => ({ name })) };
  return o;
}

function newSlice(ns: string, service: string, type: string, ports: FakeKubePort[]): Slice {
  const suffix = randomBytes(4)
    .toString('base64url')
    .toLowerCase()
    .replace(/[^a-z0-9]/g, 'x')
    .slice(0, 5);
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${service}-${suffix}`,
      generateName: `${service}-`,
      namespace: ns,
      uid: randomUUID(),
      resourceVersion: '',
      generation: 1,
      creationTimestamp: kubeTime(),
      labels: { [SVC_LABEL]: service, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
      annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': kubeTime() },
    },
    addressType: type,
    endpoints: [],
    ports: ports.map((p) => ({
      name: p.name ?? '',
      port: p.port,
      protocol: p.protocol ?? 'TCP',
      ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
    })),
  };
}
