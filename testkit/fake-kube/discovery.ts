import { GROUP } from './model';

/** The discovery documents (enough for kubectl and the client's discovery), by path. */
export function discoveryDocument(path: string, host: string): unknown {
  const gv = { groupVersion: `${GROUP}/v1`, version: 'v1' };
  switch (path) {
    case '/version':
      return {
        major: '1',
        minor: '32',
        gitVersion: 'v1.32.0-wayfinder-fake',
        gitCommit: '0000000',
        gitTreeState: 'clean',
        buildDate: '2025-01-01T00:00:00Z',
        goVersion: 'go1.23',
        compiler: 'gc',
        platform: 'linux/amd64',
      };
    case '/api':
      return {
        kind: 'APIVersions',
        versions: ['v1'],
        serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: host }],
      };
    case '/apis':
      return {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [{ name: GROUP, versions: [gv], preferredVersion: gv }],
      };
    case '/api/v1':
      return {
        kind: 'APIResourceList',
        groupVersion: 'v1',
        resources: [
          {
            name: 'namespaces',
            singularName: 'namespace',
            namespaced: false,
            kind: 'Namespace',
            verbs: ['create', 'delete', 'get', 'list'],
            shortNames: ['ns'],
          },
        ],
      };
    case `/apis/${GROUP}`:
      return { kind: 'APIGroup', apiVersion: 'v1', name: GROUP, versions: [gv], preferredVersion: gv };
    case `/apis/${GROUP}/v1`:
      return {
        kind: 'APIResourceList',
        apiVersion: 'v1',
        groupVersion: `${GROUP}/v1`,
        resources: [
          {
            name: 'endpointslices',
            singularName: 'endpointslice',
            namespaced: true,
            kind: 'EndpointSlice',
            verbs: ['create', 'delete', 'get', 'list', 'update', 'watch'],
          },
        ],
      };
    default:
      return undefined;
  }
}
