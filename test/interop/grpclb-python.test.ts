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
 * balancer: its service config names grpclb, its c-ares resolver asks a real dnsmasq for
 * `_grpclb._tcp.<name>` (SRV) to find the balancer, and the balancer hands out the backends that
 * a Wayfinder registry holds.
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

  function pythonCalls(calls: number, serviceConfig: string): Promise<string[]> {
    return new Promise((resolve, reject) => {
      execFile(
        python,
        [SCRIPT, `dns://${dnsmasq.address}/${service}:443`, String(calls), serviceConfig],
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

  it('channel-arg service config {"loadBalancingConfig":[{"grpclb":{}}]}: calls spread over the backends the balancer hands out', async () => {
    const ids = await pythonCalls(20, JSON.stringify({ loadBalancingConfig: [{ grpclb: {} }] }));
    assert.equal(ids.length, 20);
    assert.deepEqual([...new Set(ids)].sort(), ['py-backend-0', 'py-backend-1']);
    // echo.svc.test has no A record: the backends can only have come from the balancer.
    const { Resolver } = await import('node:dns/promises');
    const res = new Resolver({ timeout: 500, tries: 1 });
    res.setServers([dnsmasq.address]);
    await assert.rejects(res.resolve4(service), { code: 'ENODATA' });
  });
});
