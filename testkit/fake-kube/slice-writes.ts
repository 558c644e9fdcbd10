import { randomBytes, randomUUID } from 'node:crypto';
import * as net from 'node:net';
import { failWith, json, methodNotAllowed, readBody, type Call } from './http';
import { clone, GROUP, keyOf, kubeTime, type RawJson, type Slice } from './model';
import type { Namespaces } from './namespaces';
import type { SliceStore } from './store';

/** EndpointSlice writes through the API (create, replace, delete), validated like the apiserver's. */
export async function writeSlice(
  call: Call,
  store: SliceStore,
  namespaces: Namespaces,
  ns: string | undefined,
  name: string | undefined,
): Promise<void> {
  try {
    if (ns === undefined) return call.fail(405, 'MethodNotAllowed', 'writes need a namespace');
    if (!namespaces.has(ns)) return call.fail(404, 'NotFound', `namespaces "${ns}" not found`);
    const method = call.req.method;
    if (method === 'DELETE' && name !== undefined) return deleteSlice(call, store, ns, name);
    if (method !== 'POST' && method !== 'PUT') return methodNotAllowed(call);
    const body = await readBody(call.req);
    const invalid = validateSlice(body);
    if (invalid)
      return call.fail(422, 'Invalid', `EndpointSlice.${GROUP} "${body?.metadata?.name ?? ''}" is invalid: ${invalid}`);
    const md = body.metadata ?? {};
    if (md.namespace !== undefined && md.namespace !== ns) {
      const message = 'the namespace of the provided object does not match the namespace sent on the request';
      return call.fail(400, 'BadRequest', message);
    }
    if (method === 'POST') return createSlice(call, store, ns, name, body);
    replaceSlice(call, store, ns, name, body);
  } catch (e) {
    failWith(call, e);
  }
}

function deleteSlice(call: Call, store: SliceStore, ns: string, name: string): void {
  const prev = store.remove(keyOf(ns, name));
  if (!prev) return call.fail(404, 'NotFound', `endpointslices.${GROUP} "${name}" not found`);
  json(call.res, 200, {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Success',
    details: { name, group: GROUP, kind: 'endpointslices', uid: prev.metadata.uid },
  });
}

function createSlice(call: Call, store: SliceStore, ns: string, name: string | undefined, body: RawJson): void {
  if (name !== undefined) return call.fail(405, 'MethodNotAllowed', 'POST goes to the collection');
  const md = body.metadata ?? {};
  const n =
    md.name ?? (md.generateName ? `${md.generateName}${randomBytes(4).toString('hex').slice(0, 5)}` : undefined);
  if (typeof n !== 'string')
    return call.fail(422, 'Invalid', 'metadata.name: Required value: name or generateName is required');
  if (store.objects.has(keyOf(ns, n)))
    return call.fail(409, 'AlreadyExists', `endpointslices.${GROUP} "${n}" already exists`);
  const s = sliceFrom(body, {
    name: n,
    namespace: ns,
    uid: randomUUID(),
    generation: 1,
    creationTimestamp: kubeTime(),
  });
  store.commit('ADDED', keyOf(ns, n), s);
  json(call.res, 201, clone(s));
}

function replaceSlice(call: Call, store: SliceStore, ns: string, name: string | undefined, body: RawJson): void {
  const md = body.metadata ?? {};
  if (name === undefined || md.name !== name)
    return call.fail(400, 'BadRequest', 'the name of the object does not match the name on the URL');
  const prev = store.objects.get(keyOf(ns, name));
  if (!prev) return call.fail(404, 'NotFound', `endpointslices.${GROUP} "${name}" not found`);
  if (md.resourceVersion && md.resourceVersion !== prev.metadata.resourceVersion) {
    return call.fail(
      409,
      'Conflict',
      `Operation cannot be fulfilled on endpointslices.${GROUP} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    );
  }
  const s = sliceFrom(body, {
    name,
    namespace: ns,
    uid: prev.metadata.uid,
    creationTimestamp: prev.metadata.creationTimestamp,
    generation: prev.metadata.generation + 1,
  });
  store.commit('MODIFIED', keyOf(ns, name), s, prev);
  json(call.res, 200, clone(s));
}

/** The object to store from a client's body: its fields, with the metadata the server owns set. */
function sliceFrom(
  body: RawJson,
  owned: Pick<Slice['metadata'], 'name' | 'namespace' | 'uid' | 'generation' | 'creationTimestamp'>,
): Slice {
  const md = body.metadata ?? {};
  return {
    ...clone(body),
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { ...md, ...owned, resourceVersion: '', labels: md.labels ?? {} },
  };
}

/** The apiserver's validation of what clients write (the admin API skips it, to store malformed data). */
export function validateSlice(b: RawJson): string | undefined {
  if (!b || typeof b !== 'object') return 'body must be an object';
  if (!['IPv4', 'IPv6', 'FQDN'].includes(b.addressType))
    return `addressType: Unsupported value: ${JSON.stringify(b.addressType)}: supported values: "FQDN", "IPv4", "IPv6"`;
  if (!Array.isArray(b.endpoints)) return 'endpoints: Required value';
  if (b.endpoints.length > 1000) return 'endpoints: Too many: must have at most 1000 items';
  for (const [i, e] of b.endpoints.entries()) {
    if (!Array.isArray(e?.addresses) || e.addresses.length < 1 || e.addresses.length > 100)
      return `endpoints[${i}].addresses: Required value: must contain at least 1 address`;
    for (const a of e.addresses) {
      if (!validAddress(b.addressType, a))
        return `endpoints[${i}].addresses[0]: Invalid value: ${JSON.stringify(a)}: must be a valid ${b.addressType} address`;
    }
  }
  if (b.ports != null && (!Array.isArray(b.ports) || b.ports.length > 20000)) return 'ports: Invalid value';
  return undefined;
}

function validAddress(type: string, a: unknown): boolean {
  if (type === 'IPv4') return net.isIPv4(a as string);
  if (type === 'IPv6') return net.isIPv6(a as string);
  return typeof a === 'string' && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(a);
}
