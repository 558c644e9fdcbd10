import '../builtins'; // the built-in registries and balancers
import assert from 'node:assert/strict';
import { Discovery } from '../core';
import { cCoreVersion, clientQuirks } from './client-quirks';
import { warningLog } from './fixtures/clients';
import { RawAds, resourcesOf } from './fixtures/raw';
import { startXdsServer, type XdsServer, type XdsServerOptions } from './index';
import { TYPE, type NodeMsg } from './protocol';

/**
 * Telling client builds apart by their Node, and the server's ring_hash guard for C-core 1.50/1.51
 * seen on a raw ADS stream (the real clients: xds/clients.test.ts).
 */

/** Nodes as real clients send them (the first two captured from runs against the server). */
const NODES = {
  python151: { user_agent_name: 'gRPC C-core linux Python', user_agent_version: 'C-core 29.0.0 Python 1.51.1' },
  grpcJs: { user_agent_name: 'gRPC Node Pure JS', user_agent_version: '1.14.1' },
  cpp151: { user_agent_name: 'gRPC C-core linux', user_agent_version: 'C-core 29.0.0' },
  python150: { user_agent_name: 'gRPC C-core linux Python', user_agent_version: 'C-core 28.0.0 Python 1.50.0' },
  python152: { user_agent_name: 'gRPC C-core linux Python', user_agent_version: 'C-core 30.0.0 Python 1.52.0' },
  python148: { user_agent_name: 'gRPC C-core linux Python', user_agent_version: 'C-core 26.0.0 Python 1.48.4' },
  go: { user_agent_name: 'gRPC Go', user_agent_version: '1.60.1' },
  java: { user_agent_name: 'gRPC Java', user_agent_version: '1.51.0' },
} satisfies Record<string, NodeMsg>;

describe('xds client quirks: the C-core version from the Node', () => {
  it('reads the core version and the wrapper (Python) from C-core user agents, nothing from others', () => {
    assert.deepEqual(cCoreVersion(NODES.python151), { core: [29, 0, 0], wrapper: 'Python 1.51.1' });
    assert.deepEqual(cCoreVersion(NODES.cpp151), { core: [29, 0, 0] });
    assert.deepEqual(
      cCoreVersion({ user_agent_name: 'gRPC C-core linux Ruby', user_agent_version: 'C-core 29.1.2-pre1 Ruby 1.51.3' }),
      { core: [29, 1, 2], wrapper: 'Ruby 1.51.3' },
    );
    for (const n of [NODES.grpcJs, NODES.go, NODES.java, undefined, {}])
      assert.equal(cCoreVersion(n), undefined, JSON.stringify(n));
    // A C-core name with a version it does not write, or a C-core version under another name.
    assert.equal(cCoreVersion({ user_agent_name: 'gRPC C-core linux', user_agent_version: '29.0.0' }), undefined);
    assert.equal(cCoreVersion({ user_agent_name: 'gRPC C-core linux', user_agent_version: 'C-core 29' }), undefined);
    assert.equal(cCoreVersion({ user_agent_name: 'envoy', user_agent_version: 'C-core 29.0.0' }), undefined);
  });

  it('flags ring_hash for C-core 1.50.x and 1.51.x (core 28 and 29) only, naming the build and the upstream issue', () => {
    const q = clientQuirks(NODES.python151);
    assert.match(
      q.ringHashCrash ?? '',
      /^C-core 29\.0\.0 \(gRPC 1\.51\.x, Python 1\.51\.1\) crashes .*grpc\/grpc#31766/,
    );
    assert.match(clientQuirks(NODES.cpp151).ringHashCrash ?? '', /^C-core 29\.0\.0 \(gRPC 1\.51\.x\) crashes/);
    assert.match(clientQuirks(NODES.python150).ringHashCrash ?? '', /gRPC 1\.50\.x/);
    for (const n of [NODES.python152, NODES.python148, NODES.grpcJs, NODES.go, NODES.java, undefined])
      assert.equal(clientQuirks(n).ringHashCrash, undefined, JSON.stringify(n));
  });
});

interface ClusterMsg {
  name: string;
  lb_policy?: string;
  ring_hash_lb_config?: unknown;
}
interface AssignmentMsg {
  endpoints: {
    locality: { zone?: string; sub_zone?: string };
    load_balancing_weight: { value: number };
    lb_endpoints: { load_balancing_weight: { value: number } }[];
  }[];
}

describe('xds server: ring_hash guard for C-core 1.50/1.51 on a raw stream', function () {
  this.timeout(30_000);
  const cleanups: (() => unknown)[] = [];
  let xds: XdsServer;
  let d: Discovery;
  let log = warningLog();
  let warnings = log.warnings;

  beforeEach(() => {
    log = warningLog();
    warnings = log.warnings;
  });

  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function start(opts: Partial<XdsServerOptions> = {}) {
    d = await Discovery.fromConfig('memory://xds-quirks');
    cleanups.push(() => d.close());
    xds = await startXdsServer({
      discovery: d,
      host: '127.0.0.1',
      port: 0,
      config: { services: { ring: { lbPolicy: 'ring_hash' } } },
      logger: log,
      ...opts,
    });
    cleanups.push(() => xds.stop());
    await d.registrar.register({ service: 'ring', host: '127.0.0.1', port: 5001, weight: 1 });
    await d.registrar.register({ service: 'ring', host: '127.0.0.1', port: 5002, weight: 3 });
    await d.registrar.register({ service: 'plain', host: '127.0.0.1', port: 5003 });
  }

  function raw(id: string, node: NodeMsg): RawAds {
    const c = new RawAds(xds.port, { id, locality: { zone: 'z' }, ...node });
    cleanups.push(() => c.close());
    return c;
  }

  async function cluster(c: RawAds, names: string[]): Promise<ClusterMsg[]> {
    c.send(TYPE.cluster, names);
    const r = await c.next('CDS');
    assert.equal(r.type_url, TYPE.cluster);
    c.ack(r, names);
    return resourcesOf<ClusterMsg>(r).sort((a, b) => a.name.localeCompare(b.name));
  }

  async function assignment(c: RawAds): Promise<AssignmentMsg> {
    c.send(TYPE.endpoint, ['ring']);
    const r = await c.next('EDS');
    assert.equal(r.type_url, TYPE.endpoint);
    return resourcesOf<AssignmentMsg & { cluster_name: string }>(r)[0];
  }

  /** Locality weights by sub_zone, and endpoint weights: the two weight carriers. */
  function weights(a: AssignmentMsg): { localities: Record<string, number>; endpoints: number[] } {
    const localities: Record<string, number> = {};
    for (const l of a.endpoints) localities[l.locality.sub_zone ?? ''] = l.load_balancing_weight.value;
    return {
      localities,
      endpoints: a.endpoints.flatMap((l) => l.lb_endpoints.map((e) => e.load_balancing_weight.value)).sort(),
    };
  }

  it('a C-core 1.51 client gets a ring_hash service as round_robin (weights per locality), once warned; grpc-js gets ring_hash', async () => {
    await start();
    const py = raw('py-node', NODES.python151);
    const js = raw('js-node', NODES.grpcJs);

    const [pyPlain, pyRing] = await cluster(py, ['plain', 'ring']);
    assert.equal(pyRing.lb_policy, 'ROUND_ROBIN');
    assert.equal(pyRing.ring_hash_lb_config, undefined);
    assert.equal(pyPlain.lb_policy, 'ROUND_ROBIN');
    const [, jsRing] = await cluster(js, ['plain', 'ring']);
    assert.equal(jsRing.lb_policy, 'RING_HASH');

    // round_robin reads only locality weights: the registry weights ride on (zone, weight) localities.
    assert.deepEqual(weights(await assignment(py)).localities, { '': 1, w3: 3 });
    assert.deepEqual(weights(await assignment(js)), { localities: { '': 1 }, endpoints: [1, 3] });

    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.deepEqual(
      { node: warnings[0].obj.node, service: warnings[0].obj.service },
      { node: 'py-node', service: 'ring' },
    );
    assert.match(
      warnings[0].msg,
      /client py-node gets service ring as round_robin instead of ring_hash: C-core 29\.0\.0/,
    );
    assert.match(warnings[0].msg, /grpc\/grpc#31766/);

    // A change of the service reaches the guarded client as round_robin again, without a second warning.
    await d.registrar.register({ service: 'ring', host: '127.0.0.1', port: 5004, weight: 3 });
    const r = await py.next('EDS after a registration');
    assert.equal(r.type_url, TYPE.endpoint);
    assert.deepEqual(weights(resourcesOf<AssignmentMsg & { cluster_name: string }>(r)[0]).localities, { '': 1, w3: 6 });
    assert.equal(warnings.length, 1);

    // The policy back to round_robin: the guarded client gets the shared Cluster (no substitute needed).
    xds.setConfig({});
    const c = await py.next('CDS after the policy change');
    assert.equal(c.type_url, TYPE.cluster);
    assert.deepEqual(
      resourcesOf<ClusterMsg>(c).map((x) => x.lb_policy),
      ['ROUND_ROBIN', 'ROUND_ROBIN'],
    );
  });

  it('a second C-core stream is warned too; C-core 1.52 and the guard turned off get ring_hash', async () => {
    await start();
    await cluster(raw('py-a', NODES.python151), ['ring']);
    await cluster(raw('py-b', NODES.cpp151), ['ring']);
    assert.deepEqual(
      warnings.map((w) => w.obj.node),
      ['py-a', 'py-b'],
    );
    const [newer] = await cluster(raw('py-152', NODES.python152), ['ring']);
    assert.equal(newer.lb_policy, 'RING_HASH');
    await xds.stop();
    await d.close();

    await start({ cCoreRingHashGuard: false });
    const [off] = await cluster(raw('py-off', NODES.python151), ['ring']);
    assert.equal(off.lb_policy, 'RING_HASH');
    assert.deepEqual(weights(await assignment(raw('py-off-eds', NODES.python151))).endpoints, [1, 3]);
    assert.equal(warnings.length, 2);
  });

  it('rejects a cCoreRingHashGuard that is not a boolean, naming it', async () => {
    await assert.rejects(
      startXdsServer({ registry: 'memory://', cCoreRingHashGuard: 'no' as unknown as boolean }),
      /"cCoreRingHashGuard" must be a boolean/,
    );
  });
});
