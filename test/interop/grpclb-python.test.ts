import '../../builtins'; // the built-in registries and balancers
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { Discovery } from '../../core';
import '../../index';
import { startBalancerServer, type BalancerServer } from '../../grpc/grpclb/server';
import { decodeEchoReply, startEchoServer, type EchoServer } from '../../testkit/echo';
import { findDnsmasq, startDnsmasq, type Dnsmasq } from '../../testkit/dnsmasq';
import { findBinary, requireBinaryOrSkip } from '../../testkit/process';

/**
 * A C-core client (Debian's python3-grpcio, C-core 1.51) as a grpclb client of Wayfinder's
 * balancer: its service config names grpclb (as a channel argument, or in the `_grpc_config.<name>`
 * TXT record, gRFC A2), its c-ares resolver asks a real dnsmasq for `_grpclb._tcp.<name>` (SRV) to
 * find the balancer, and the balancer hands out the backends that a Wayfinder registry holds.
 */
const SCRIPT = path.join(__dirname, 'fixtures', 'python', 'grpclb_client.py');

function findPythonGrpc(): string {
  const py = findBinary('python3', 'python3-grpcio', ['/usr/bin/python3']);
  const r = spawnSync(py, ['-c', 'import grpc'], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`python3-grpcio is not importable by ${py}: ${r.stderr}`);
  return py;
}

describe('interop: python3-grpcio (C-core) as a grpclb client of the Wayfinder balancer', function () {
  this.timeout(90_000);
  let python: string;
  let dnsmasq: Dnsmasq;
  let discovery: Discovery;
  let balancer: BalancerServer;
  const backends: EchoServer[] = [];
  const service = 'echo.svc.test';

  before(async function () {
    this.timeout(60_000);
    requireBinaryOrSkip(this, () => {
      findDnsmasq();
      python = findPythonGrpc();
    });
    discovery = await Discovery.fromConfig({ registry: 'memory://grpclb-python' });
    for (let i = 0; i < 2; i++) backends.push(await startEchoServer({ id: `py-backend-${i}`, service, discovery }));
    balancer = await startBalancerServer({ discovery, host: '127.0.0.1', port: 0, statsIntervalMs: 0 });
    dnsmasq = await startDnsmasq({
      records: {
        hosts: { 'lb.svc.test': ['127.0.0.1'] },
        srv: [{ name: `_grpclb._tcp.${service}`, target: 'lb.svc.test', port: balancer.port }],
      },
    });
  });
  after(async () => {
    await Promise.allSettled([dnsmasq?.stop(), balancer?.stop(), ...backends.map((b) => b.stop())]);
    await discovery?.close();
  });

  /** `serviceConfig`: JSON for the channel argument, or "dns" (the TXT record, resolution turned on). */
  function pythonCalls(calls: number, serviceConfig: string, callTimeoutS = 10): Promise<string[]> {
    return new Promise((resolve, reject) => {
      execFile(
        python,
        [SCRIPT, `dns://${dnsmasq.address}/${service}:443`, String(calls), serviceConfig, String(callTimeoutS)],
        { encoding: 'utf8', timeout: 60_000 },
        (err, stdout, stderr) => {
          if (err) return reject(new Error(`python client failed (${err.message}): ${stdout}${stderr}`));
          resolve(
            stdout
              .trim()
              .split('\n')
              .map((l) => decodeEchoReply(Buffer.from(l, 'base64')).serverId),
          );
        },
      );
    });
  }

  /** The balancer's SRV record, plus `_grpc_config.<service>` when `choices` are given. */
  function setTxt(choices?: object[]): Promise<unknown> {
    return dnsmasq.updateRecords((r) => ({
      ...r,
      txt: choices ? [{ name: `_grpc_config.${service}`, text: `grpc_config=${JSON.stringify(choices)}` }] : [],
    }));
  }
  const GRPCLB = { loadBalancingConfig: [{ grpclb: {} }] };

  it('channel-arg service config {"loadBalancingConfig":[{"grpclb":{}}]}: calls spread over the backends the balancer hands out', async () => {
    await setTxt();
    const ids = await pythonCalls(20, JSON.stringify(GRPCLB));
    assert.equal(ids.length, 20);
    assert.deepEqual([...new Set(ids)].sort(), ['py-backend-0', 'py-backend-1']);
    // echo.svc.test has no A record: the backends can only have come from the balancer.
    const { Resolver } = await import('node:dns/promises');
    const res = new Resolver({ timeout: 500, tries: 1 });
    res.setServers([dnsmasq.address]);
    await assert.rejects(res.resolve4(service), { code: 'ENODATA' });
  });

  it('service config from the _grpc_config TXT record alone (C-core\'s language is "c++"; the Node choice is skipped)', async () => {
    // The first choice is for Node clients only and would leave C-core with pick_first over no
    // addresses (every call would time out); C-core must skip it and take the "c++" one.
    await setTxt([
      { clientLanguage: ['node'], serviceConfig: { loadBalancingConfig: [{ pick_first: {} }] } },
      { clientLanguage: ['c++'], serviceConfig: GRPCLB },
    ]);
    const txtBefore = dnsmasq.queryCount('TXT');
    const ids = await pythonCalls(20, 'dns');
    assert.equal(ids.length, 20);
    assert.deepEqual([...new Set(ids)].sort(), ['py-backend-0', 'py-backend-1']);
    assert.ok(dnsmasq.queryCount('TXT') > txtBefore, 'C-core asked for the TXT record');
  });

  it('controls: no TXT record, or C-core 1.51 left at its default (no TXT lookup): no backends, calls time out', async () => {
    await setTxt();
    await assert.rejects(pythonCalls(1, 'dns', 3), /DEADLINE_EXCEEDED/);
    await setTxt([{ clientLanguage: ['c++'], serviceConfig: GRPCLB }]);
    const txtBefore = dnsmasq.queryCount('TXT');
    await assert.rejects(pythonCalls(1, 'none', 3), /DEADLINE_EXCEEDED/);
    assert.equal(dnsmasq.queryCount('TXT'), txtBefore, 'C-core 1.51 does not ask for TXT by default');
  });
});
