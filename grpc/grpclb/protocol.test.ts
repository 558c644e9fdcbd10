import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { isWayfinderError } from '../../core';
import { EchoClient } from '../../testkit';
import { installGrpc } from '../index';
import { parseGrpclbConfig } from './policy';
import { packIp, unpackIp } from './protocol';

describe('grpclb protocol helpers and policy config', () => {
  it('packs IPv4 into 4 bytes and IPv6 into 16, and back', () => {
    assert.deepEqual([...packIp('10.1.2.3')!], [10, 1, 2, 3]);
    assert.equal(packIp('::1')!.length, 16);
    for (const ip of ['10.1.2.3', '::1', '2001:db8::8a2e:370:7334', 'fe80::1:0:0:1', '1:2:3:4:5:6:7:8'])
      assert.equal(unpackIp(packIp(ip)), ip);
    assert.equal(unpackIp(packIp('::ffff:10.0.0.1')), '::ffff:a00:1');
    assert.equal(packIp('localhost'), undefined);
    assert.equal(unpackIp(Buffer.from([1, 2, 3])), undefined);
  });

  it('validates the policy config in one place, naming the field', () => {
    const ok = parseGrpclbConfig({ balancers: ['127.0.0.1:7000', '[::1]:7001'], fallbackTimeout: '2s' });
    assert.equal(ok.fallbackTimeout, 2000);
    assert.equal(ok.reconnectBackoff, 100);
    const cases: [unknown, string, RegExp][] = [
      [{}, 'balancers', /exactly one of "balancers".*and "balancerRegistry"/],
      [{ balancers: ['nohost'] }, 'balancers', /"balancers" must hold host:port entries/],
      [{ balancers: ['h:1'], fallbackTimeout: 'soon' }, 'fallbackTimeout', /"fallbackTimeout" must be a duration/],
      [
        { balancers: ['h:1'], colour: 'blue' },
        'colour',
        /unknown option "colour"; known options: serviceName, balancers/,
      ],
      [
        { balancers: ['h:1'], reconnectBackoff: '2s', maxReconnectBackoff: '1s' },
        'maxReconnectBackoff',
        /at least "reconnectBackoff"/,
      ],
    ];
    for (const [cfg, field, re] of cases) {
      assert.throws(
        () => parseGrpclbConfig(cfg),
        (e: unknown) =>
          isWayfinderError(e, 'CONFIG_INVALID') &&
          (e as { field?: string }).field === field &&
          re.test((e as Error).message),
        JSON.stringify(cfg),
      );
    }
  });

  it('is registered by installGrpc() so a service config can choose it', async () => {
    installGrpc();
    assert.ok(grpc.experimental.isLoadBalancerNameRegistered('wayfinder_grpclb'));
    // no serviceName and a target our resolver does not serve: calls fail with the reason
    const c = new EchoClient('ipv4:127.0.0.1:9', grpc.credentials.createInsecure(), {
      'grpc.service_config': JSON.stringify({
        loadBalancingConfig: [{ wayfinder_grpclb: { balancers: ['127.0.0.1:9'] } }],
      }),
    });
    try {
      await assert.rejects(
        c.echo({}, { deadlineMs: 2000 }),
        /no service name to ask the balancer for: set "serviceName"/,
      );
    } finally {
      c.close();
    }
  });
});
