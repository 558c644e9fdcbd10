import assert from 'node:assert/strict';
import { RegistryUnavailableError, WatchResolver, isWayfinderError, type SourceSink, type Snapshot } from '../../core';
import { SnapshotRecorder, findDnsmasq, requireBinaryOrSkip, startDnsmasq, waitFor, type Dnsmasq } from '../../testkit';
import { DnsQueryError } from './client';
import { createDnsRegistry } from './index';
import {
  GrpcConfigError,
  ServiceConfigTracker,
  choiceMatches,
  parseGrpcConfigTxt,
  selectServiceConfig,
  type ClientIdentity,
} from './service-config';

/** gRFC A2 service config from `_grpc_config.<name>` TXT records: selection rules, then real dnsmasq. */

const lb = (name: string, opts: object = {}) => ({ loadBalancingConfig: [{ [name]: opts }] });
const txt = (choices: unknown) => `grpc_config=${JSON.stringify(choices)}`;
const me: ClientIdentity = { percentile: 42, hostname: 'node-7' };

describe('dns service config (gRFC A2): choosing among the choices', () => {
  it('clientLanguage matches "node" case-insensitively; other languages are skipped', () => {
    const choices = parseGrpcConfigTxt([
      [
        txt([
          { clientLanguage: ['go', 'java'], serviceConfig: lb('go_only') },
          { clientLanguage: ['c++', 'NoDe'], serviceConfig: lb('ours') },
          { serviceConfig: lb('anyone') },
        ]),
      ],
    ])!;
    assert.deepEqual(selectServiceConfig(choices, me), lb('ours'));
    assert.equal(choiceMatches({ clientLanguage: ['nodejs'], serviceConfig: {} }, me), false, 'no prefix matching');
    assert.equal(choiceMatches({ clientLanguage: [], serviceConfig: {} }, me), false, 'an empty list matches nobody');
  });

  it('percentage p selects the clients whose number (0..99) is below p: 0 none, 100 all', () => {
    const at = (percentile: number, percentage: number) =>
      choiceMatches({ percentage, serviceConfig: {} }, { ...me, percentile });
    assert.equal(at(42, 43), true);
    assert.equal(at(42, 42), false);
    assert.equal(at(0, 0), false);
    assert.equal(at(0, 1), true);
    assert.equal(at(99, 100), true);
    assert.equal(at(99, 99), false);
    // Over the 100 possible clients, percentage 30 selects exactly 30.
    const chosen = Array.from({ length: 100 }, (_, p) => at(p, 30)).filter(Boolean).length;
    assert.equal(chosen, 30);
  });

  it('the client number is drawn once per registry from the injected random source (0..99)', async () => {
    const d = await dnsmasqOrSkip();
    const name = 'pct.svc.test';
    await d.setRecords({
      hosts: { [name]: ['127.0.0.1'] },
      txt: [
        {
          name: `_grpc_config.${name}`,
          text: txt([{ percentage: 25, serviceConfig: lb('canary') }, { serviceConfig: lb('stable') }]),
        },
      ],
    });
    const configOf = async (random: number) => {
      const reg = createDnsRegistry({ hosts: [d.address], port: 80 }, { random: () => random });
      try {
        return (await firstSnapshot(reg.resolver, name)).serviceConfig;
      } finally {
        await reg.resolver.close();
      }
    };
    assert.deepEqual(await configOf(0.2499), lb('canary'), 'client number 24 < 25');
    assert.deepEqual(await configOf(0.25), lb('stable'), 'client number 25 is not < 25');
    assert.deepEqual(await configOf(0.9999999), lb('stable'));
  });

  it('clientHostname matches the exact host name', () => {
    const choices = parseGrpcConfigTxt([
      [
        txt([
          { clientHostname: ['node-8', 'NODE-7'], serviceConfig: lb('case') },
          { clientHostname: ['node-7'], serviceConfig: lb('exact') },
        ]),
      ],
    ])!;
    assert.deepEqual(selectServiceConfig(choices, me), lb('exact'));
  });

  it('the first choice whose selectors all match wins; none matching means no service config', () => {
    const choices = parseGrpcConfigTxt([
      [
        txt([
          { clientLanguage: ['node'], percentage: 10, serviceConfig: lb('a') }, // percentage fails
          { clientLanguage: ['node'], clientHostname: ['x'], serviceConfig: lb('b') }, // host fails
          { clientLanguage: ['node'], percentage: 50, clientHostname: ['node-7'], serviceConfig: lb('c') },
          { serviceConfig: lb('d') },
        ]),
      ],
    ])!;
    assert.deepEqual(selectServiceConfig(choices, me), lb('c'));
    assert.equal(selectServiceConfig(choices.slice(0, 2), me), undefined);
  });

  it('joins the strings of one record; ignores records without the prefix; no such record is undefined', () => {
    const text = txt([{ serviceConfig: lb('wayfinder_p2c') }]);
    const split = [text.slice(0, 15), text.slice(15, 40), text.slice(40)]; // the prefix is in the first string, as C-core and grpc-js require
    assert.deepEqual(parseGrpcConfigTxt([['v=spf1 -all'], split]), [{ serviceConfig: lb('wayfinder_p2c') }]);
    assert.equal(parseGrpcConfigTxt([['v=spf1 -all'], ['grpc_config_x']]), undefined);
    assert.equal(parseGrpcConfigTxt([]), undefined);
  });

  it('malformed records are GrpcConfigError, naming what is wrong', () => {
    const bad: [string[][], RegExp][] = [
      [[['grpc_config={"serviceConfig":{}}']], /JSON array/],
      [[['grpc_config=[{"serviceConfig":{}']], /not JSON/],
      [[['grpc_config=[{"serviceConfig":{},"weight":3}]']], /unknown field "weight"/],
      [[['grpc_config=[{"clientLanguage":"node","serviceConfig":{}}]']], /"clientLanguage" must be an array/],
      [[['grpc_config=[{"clientHostname":[1],"serviceConfig":{}}]']], /"clientHostname" must be an array/],
      [[['grpc_config=[{"percentage":101,"serviceConfig":{}}]']], /"percentage" must be a number in 0..100/],
      [[['grpc_config=[{"percentage":"5","serviceConfig":{}}]']], /"percentage"/],
      [[['grpc_config=[{"clientLanguage":["node"]}]']], /"serviceConfig" must be an object/],
      [[['grpc_config=[7]']], /choice 0 must be an object/],
      [[[txt([{ serviceConfig: {} }])], [txt([{ serviceConfig: lb('x') }])]], /2 records start with/],
    ];
    for (const [records, why] of bad)
      assert.throws(
        () => parseGrpcConfigTxt(records),
        (e: unknown) => e instanceof GrpcConfigError && why.test((e as Error).message),
        JSON.stringify(records),
      );
  });

  it('a failing TXT query or a malformed record keeps the last good config and is reported', async () => {
    let answer: () => string[][] = () => [[txt([{ serviceConfig: lb('first') }])]];
    const client = { txt: async () => ({ records: answer() }) };
    const t = new ServiceConfigTracker(client, '_grpc_config.x.test', me);
    assert.deepEqual(await t.lookup(), { serviceConfig: lb('first'), bad: [] });
    answer = () => {
      throw new DnsQueryError('_grpc_config.x.test', 'TXT', 'ESERVFAIL', undefined);
    };
    assert.deepEqual(await t.lookup(), {
      serviceConfig: lb('first'),
      bad: [{ key: '_grpc_config.x.test TXT', reason: 'query failed with ESERVFAIL; the last service config is kept' }],
    });
    answer = () => [['grpc_config=nope']];
    const r = await t.lookup();
    assert.deepEqual(r.serviceConfig, lb('first'));
    assert.match(r.bad[0].reason, /^malformed grpc_config: not JSON .*; the last service config is kept$/);
    answer = () => [];
    assert.deepEqual(await t.lookup(), { serviceConfig: undefined, bad: [] }, 'a removed record: no service config');
  });
});

describe('Snapshot.serviceConfig through the shared WatchResolver', () => {
  it('a change of the service config alone is a new snapshot; an unchanged one is not; a registry error keeps it', async () => {
    let sink: SourceSink | undefined;
    const r = new WatchResolver('sc', (_service, s) => ((sink = s), () => undefined));
    const rec = new SnapshotRecorder();
    const w = r.watch('svc', rec.onSnapshot);
    const eps = [{ id: '127.0.0.1:80', host: '127.0.0.1', port: 80, metadata: {} }];
    const settle = () => new Promise((res) => setImmediate(res));
    try {
      sink!.update(eps, { serviceConfig: lb('a') });
      await settle();
      sink!.update(eps, { serviceConfig: lb('a') });
      await settle();
      sink!.update(eps, { serviceConfig: lb('b') });
      await settle();
      sink!.error(new RegistryUnavailableError('down'));
      await settle();
      sink!.update(eps, {});
      await settle();
      assert.deepEqual(
        rec.snapshots.map((x) => [
          x.serviceConfig ? Object.keys((x.serviceConfig.loadBalancingConfig as object[])[0])[0] : '-',
          x.error?.code ?? 'ok',
        ]),
        [
          ['a', 'ok'],
          ['b', 'ok'],
          ['b', 'REGISTRY_UNAVAILABLE'],
          ['-', 'ok'],
        ],
      );
    } finally {
      w.close();
      await r.close();
    }
  });
});

// ---- against a real dnsmasq ----

let shared: Dnsmasq | undefined;
async function dnsmasqOrSkip(): Promise<Dnsmasq> {
  shared ??= await startDnsmasq({ domains: ['test'] });
  return shared;
}
after(async () => {
  await shared?.stop();
  shared = undefined;
});

function firstSnapshot(
  resolver: { watch(s: string, cb: (s: Snapshot) => void): { close(): void } },
  service: string,
): Promise<Snapshot> {
  return new Promise((resolve) => {
    const w = resolver.watch(service, (s) => {
      queueMicrotask(() => w.close());
      resolve(s);
    });
  });
}

describe('dns service config against a real dnsmasq', function () {
  this.timeout(30_000);
  let d: Dnsmasq;
  before(async function () {
    requireBinaryOrSkip(this, () => findDnsmasq());
    d = await dnsmasqOrSkip();
  });
  const regs: { resolver: { close(): Promise<void> } }[] = [];
  afterEach(async () => {
    await Promise.allSettled(regs.splice(0).map((r) => r.resolver.close()));
  });
  function registry(extra: Record<string, unknown> = {}) {
    const reg = createDnsRegistry({ hosts: [d.address], 'min-refresh': 100, 'max-refresh': 300, ...extra });
    regs.push(reg);
    return reg;
  }

  it('reads _grpc_config.<name> for name:port and SRV names; a config over 255 bytes arrives in several strings and is joined', async () => {
    const big = { ...lb('wayfinder_p2c'), methodConfig: [{ name: [{ service: 'x'.repeat(300) }], timeout: '1s' }] };
    await d.setRecords({
      hosts: { 'big.svc.test': ['127.0.0.1'] },
      srv: [{ name: '_grpc._tcp.big.svc.test', target: 'big.svc.test', port: 7001 }],
      txt: [{ name: '_grpc_config.big.svc.test', text: txt([{ clientLanguage: ['node'], serviceConfig: big }]) }],
    });
    const { Resolver } = await import('node:dns/promises');
    const raw = new Resolver();
    raw.setServers([d.address]);
    const [record] = await raw.resolveTxt('_grpc_config.big.svc.test');
    assert.ok(record.length >= 2, `one record of ${record.length} strings`);
    const reg = registry();
    for (const service of ['big.svc.test:7000', '_grpc._tcp.big.svc.test']) {
      const s = await firstSnapshot(reg.resolver, service);
      assert.equal(s.error, undefined);
      assert.equal(s.endpoints.length, 1);
      assert.deepEqual(s.serviceConfig, big, service);
    }
  });

  it('no record: no service config and no error; service-config=false asks no TXT question at all', async () => {
    await d.setRecords({
      hosts: { 'plain.svc.test': ['127.0.0.1'], 'cfg.svc.test': ['127.0.0.1'] },
      txt: [{ name: '_grpc_config.cfg.svc.test', text: txt([{ serviceConfig: lb('wayfinder_p2c') }]) }],
    });
    const s = await firstSnapshot(registry().resolver, 'plain.svc.test:80');
    assert.equal(s.error, undefined);
    assert.equal(s.serviceConfig, undefined);
    assert.ok(!('serviceConfig' in s));
    // Counted by name in dnsmasq's query log (other registries of this suite poll other names).
    const logged = (type: string, qname: string) =>
      d
        .output()
        .split('\n')
        .filter((l) => l.includes(`query[${type}] ${qname} `)).length;
    const txtName = '_grpc_config.cfg.svc.test';
    const offReg = registry({ 'service-config': false });
    const off = await firstSnapshot(offReg.resolver, 'cfg.svc.test:80');
    await offReg.resolver.close();
    assert.equal(off.serviceConfig, undefined);
    assert.equal(off.endpoints.length, 1);
    // Its A query is in the log, so a TXT query sent beside it would be too.
    await waitFor('the A query in the log', async () => logged('A', 'cfg.svc.test') >= 1, {
      timeoutMs: 5000,
      intervalMs: 10,
    });
    assert.equal(logged('TXT', txtName), 0, 'no TXT query with service-config=false');
    const on = await firstSnapshot(registry().resolver, 'cfg.svc.test:80');
    assert.deepEqual(on.serviceConfig, lb('wayfinder_p2c'));
    await waitFor('the TXT query in the log', async () => logged('TXT', txtName) >= 1, {
      timeoutMs: 5000,
      intervalMs: 10,
    });
  });

  it('a malformed record is BAD_ENTRY naming the TXT record, and the endpoints are still delivered', async () => {
    await d.setRecords({
      hosts: { 'bad.svc.test': ['127.0.0.1', '127.0.0.2'] },
      txt: [{ name: '_grpc_config.bad.svc.test', text: 'grpc_config=[{"serviceConfig":{},"bogus":1}]' }],
    });
    const s = await firstSnapshot(registry().resolver, 'bad.svc.test:80');
    assert.equal(s.endpoints.length, 2);
    assert.equal(s.serviceConfig, undefined);
    assert.ok(s.error && isWayfinderError(s.error) && s.error.code === 'BAD_ENTRY', String(s.error));
    assert.match(s.error.message, /_grpc_config\.bad\.svc\.test TXT.*unknown field "bogus"/);
  });

  it('a refused TXT query never empties the set: the endpoints come with the failure reported', async () => {
    // dnsmasq answers A for a hosts-file name outside its local domains and refuses the rest.
    await d.setRecords({ hosts: { 'echo.corp': ['127.0.0.1'] } });
    const s = await firstSnapshot(registry({ family: 'ipv4' }).resolver, 'echo.corp:80');
    assert.equal(s.endpoints.length, 1);
    assert.ok(s.error && s.error.code === 'BAD_ENTRY', String(s.error));
    assert.match(s.error.message, /_grpc_config\.echo\.corp TXT.*query failed with EREFUSED; no service config/);
  });

  it('a changed record is picked up on the next refresh, with the same endpoints; removing it removes the config', async () => {
    const name = 'switch.svc.test';
    const records = (choice: unknown) => ({
      hosts: { [name]: ['127.0.0.1'] },
      txt: choice ? [{ name: `_grpc_config.${name}`, text: txt([choice]) }] : [],
    });
    await d.setRecords(records({ serviceConfig: lb('wayfinder_round_robin') }));
    const rec = new SnapshotRecorder();
    const w = registry().resolver.watch(`${name}:80`, rec.onSnapshot);
    try {
      await rec.until((s) => JSON.stringify(s.serviceConfig) === JSON.stringify(lb('wayfinder_round_robin')), 5000);
      await d.setRecords(records({ serviceConfig: lb('wayfinder_p2c') }));
      const s = await rec.until((x) => JSON.stringify(x.serviceConfig) === JSON.stringify(lb('wayfinder_p2c')), 5000);
      assert.equal(s.endpoints.length, 1);
      assert.equal(s.error, undefined);
      await d.setRecords(records(undefined));
      await rec.until((x) => x.serviceConfig === undefined && !x.error, 5000);
    } finally {
      w.close();
    }
  });
});
