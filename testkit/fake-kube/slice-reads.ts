import { json, type Call } from './http';
import { clone, GROUP, HttpError, keyOf, type Slice } from './model';
import { parseFieldSelector, parseLabelSelector } from './selectors';
import type { SliceStore } from './store';

/** GET of one EndpointSlice. */
export function getSlice(call: Call, store: SliceStore, ns: string | undefined, name: string): void {
  if (ns === undefined) return call.fail(404, 'NotFound', 'the server could not find the requested resource');
  call.log.verb = 'get';
  const s = store.objects.get(keyOf(ns, name));
  if (!s) return call.fail(404, 'NotFound', `endpointslices.${GROUP} "${name}" not found`);
  json(call.res, 200, clone(s));
}

/** Which resourceVersion a list reads at, and the key it continues after. */
function listPoint(store: SliceStore, q: Record<string, string>): { at: number; after: string } {
  if (q.continue) {
    let tok: { rv: number; start: string };
    try {
      tok = JSON.parse(Buffer.from(q.continue, 'base64').toString('utf8'));
    } catch {
      throw new HttpError(400, 'BadRequest', 'continue key is not valid: illegal base64 data');
    }
    if (tok.rv < store.compactedRv) {
      throw new HttpError(
        410,
        'Expired',
        'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
      );
    }
    return { at: tok.rv, after: tok.start };
  }
  if (q.resourceVersion && q.resourceVersion !== '0') {
    const want = Number(q.resourceVersion);
    if (!Number.isInteger(want) || want < 0)
      throw new HttpError(
        400,
        'BadRequest',
        `resourceVersion: Invalid value: "${q.resourceVersion}": must be a valid resourceVersion`,
      );
    if (q.resourceVersionMatch === 'Exact') return { at: want, after: '' };
    if (want > store.rv)
      throw new HttpError(504, 'Timeout', `Too large resource version: ${want}, current: ${store.rv}`);
  }
  return { at: store.rv, after: '' };
}

/** LIST with label/field selectors, limit/continue and resourceVersion/resourceVersionMatch; as=Table too. */
export function listSlices(call: Call, store: SliceStore, ns: string | undefined): void {
  const q = call.query;
  const selector = parseLabelSelector(q.labelSelector);
  const fields = parseFieldSelector(q.fieldSelector);
  const limit = q.limit ? Number(q.limit) : 0;
  if (q.limit && (!Number.isInteger(limit) || limit < 0))
    throw new HttpError(400, 'BadRequest', `limit: Invalid value: "${q.limit}"`);
  const { at, after } = listPoint(store, q);
  const state = at === store.rv ? store.objects : store.stateAt(at);
  const all = [...state.entries()]
    .filter(
      ([, s]) => (ns === undefined || s.metadata.namespace === ns) && selector(s.metadata.labels ?? {}) && fields(s),
    )
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .filter(([k]) => k > after);
  const page = limit > 0 ? all.slice(0, limit) : all;
  const more = limit > 0 && all.length > limit;
  const cont = more
    ? Buffer.from(JSON.stringify({ rv: at, start: page[page.length - 1][0] })).toString('base64')
    : undefined;
  const items = page.map(([, s]) => clone(s));
  if (/as=Table/.test(call.req.headers.accept ?? '')) return json(call.res, 200, table(items, String(at), cont));
  json(call.res, 200, {
    kind: 'EndpointSliceList',
    apiVersion: `${GROUP}/v1`,
    metadata: {
      resourceVersion: String(at),
      ...(cont ? { continue: cont, remainingItemCount: all.length - limit } : {}),
    },
    items,
  });
}

const column = (name: string, description: string, format = '') => ({
  name,
  type: 'string',
  format,
  description,
  priority: 0,
});

const COLUMNS = [
  column('Name', 'Name must be unique within a namespace.', 'name'),
  column('AddressType', 'addressType specifies the type of address carried by this EndpointSlice.'),
  column('Ports', 'ports specifies the list of network ports exposed by each endpoint in this slice.'),
  column('Endpoints', 'endpoints is a list of unique endpoints in this slice.'),
  column('Age', 'CreationTimestamp is a timestamp representing the server time when this object was created.'),
];

/** The server-side printing kubectl asks for (`Accept: ...;as=Table`), with kubectl's columns. */
function table(items: Slice[], listRv: string, cont?: string): Record<string, unknown> {
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion: listRv, ...(cont ? { continue: cont } : {}) },
    columnDefinitions: COLUMNS,
    rows: items.map((s) => {
      const addrs = s.endpoints.flatMap((e) => (e.addresses as string[] | undefined) ?? []);
      const shown =
        addrs.length === 0
          ? '<none>'
          : addrs.slice(0, 3).join(',') + (addrs.length > 3 ? ` + ${addrs.length - 3} more...` : '');
      const ports =
        !s.ports || s.ports.length === 0
          ? '<unset>'
          : s.ports.map((p) => (p.port === undefined ? '<unset>' : String(p.port))).join(',');
      return {
        cells: [s.metadata.name, s.addressType, ports, shown, age(s.metadata.creationTimestamp)],
        object: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: s.metadata },
      };
    }),
  };
}

/** kubectl's AGE column. Wall time on purpose: it is compared with the objects' wall-clock timestamps. */
function age(from: string): string {
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(from)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  return `${Math.floor(s / 3600)}h`;
}
