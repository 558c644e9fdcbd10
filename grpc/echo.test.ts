import assert from 'node:assert/strict';
import * as protoLoader from '@grpc/proto-loader';
import * as grpc from '@grpc/grpc-js';
import {
  ECHO_PROTO_PATH,
  EchoClient,
  decodeEchoReply,
  decodeEchoRequest,
  encodeEchoReply,
  encodeEchoRequest,
  startEchoServer,
} from '../testkit/echo';

/** The hand-written Echo wire format agrees with testkit/proto/echo.proto as protobufjs reads it. */
describe('testkit Echo service', () => {
  const def = protoLoader.loadSync(ECHO_PROTO_PATH, { keepCase: false, longs: Number, defaults: true });
  const svc = def['wayfinder.testkit.Echo'] as protoLoader.ServiceDefinition;
  const m = svc.Echo;

  it('encodes and decodes like proto-loader, both ways', () => {
    const req = { message: 'héllo ✓', delayMs: 300, fail: true, failCode: 5 };
    assert.deepEqual(m.requestDeserialize(encodeEchoRequest(req)), req);
    assert.deepEqual(decodeEchoRequest(m.requestSerialize(req)), req);
    const reply = { message: 'x'.repeat(300), serverId: 'echo-1', port: 65535, peer: 'ipv4:127.0.0.1:5000', zone: 'z' };
    assert.deepEqual(m.responseDeserialize(encodeEchoReply(reply)), reply);
    assert.deepEqual(decodeEchoReply(m.responseSerialize(reply)), reply);
    assert.deepEqual(decodeEchoRequest(Buffer.alloc(0)), { message: '', delayMs: 0, fail: false, failCode: 0 });
    assert.throws(() => decodeEchoReply(Buffer.from([0x0a, 0x05, 0x61])), /truncated/);
  });

  it('serves a client generated from the .proto, with latency and requested failures', async () => {
    const s = await startEchoServer({ id: 'e1', latencyMs: 40 });
    const Generated = grpc.makeGenericClientConstructor(svc, 'Echo');
    const g = new Generated(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
    const ours = new EchoClient(`127.0.0.1:${s.port}`);
    try {
      const t0 = performance.now();
      const r = await new Promise<any>((res, rej) =>
        (g as any).Echo({ message: 'm' }, (e: Error, v: unknown) => (e ? rej(e) : res(v))),
      );
      assert.ok(performance.now() - t0 >= 35);
      assert.equal(r.message, 'm');
      assert.equal(r.serverId, 'e1');
      assert.equal(r.port, s.port);
      const mine = await ours.echo({ message: 'n' });
      assert.equal(mine.serverId, 'e1');
      await assert.rejects(
        ours.echo({ fail: true, failCode: grpc.status.ABORTED }),
        (e: grpc.ServiceError) => e.code === grpc.status.ABORTED,
      );
      s.setFailRate(1);
      await assert.rejects(ours.echo(), (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE);
      assert.equal(s.calls, 4);
    } finally {
      g.close();
      ours.close();
      s.kill();
    }
  });
});
