import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Discovery, isWayfinderError } from '../../index';
import { findEtcd, findEtcdctl, findOpenssl, startEtcd, type EtcdServer } from '../../testkit/etcd';
import { startFakeConsul, type FakeConsul } from '../../testkit/fake-consul';
import { startFakeKubeApi, type FakeKubeApi } from '../../testkit/fake-kube-api';
import { requireBinaryOrSkip, tempDir, withTimeout } from '../../testkit/process';
import { findZooKeeper, startZooKeeper, type ZooKeeperServer } from '../../testkit/zookeeper';
import { captureLogger, serialise } from '../support';

/**
 * Security, across registries: the right credential works and a wrong one fails closed with
 * AUTH_FAILED (filling what the adapters' own suites leave out: etcd without a client certificate
 * where one is required, a ZooKeeper identity with the wrong password, a Kubernetes token wrong
 * from the start, a Consul token in the token-file), and, over everything these tests do, no secret
 * in any log line, error message (with its cause chain), status() or description.
 */

const SECRETS = {
  etcdRoot: 'etcdRootPw-5e1f',
  etcdUser: 'etcdUserPw-77aa',
  etcdWrong: 'etcdWrongPw-0c3d',
  zkAlice: 'zkAlicePw-91b2',
  zkWrong: 'zkWrongPw-4d8e',
  consulReader: 'consul-reader-token-6a0f',
  consulWrong: 'consul-wrong-token-13c9',
  kubeToken: 'kube-token-right-ee41',
  kubeWrong: 'kube-token-wrong-b7d0',
};

describe('security: credentials fail closed, secrets never shown', function () {
  this.timeout(90_000);
  const logger = captureLogger();
  /** Everything user-visible these tests produced, for the final grep. */
  const seen: string[] = [];
  const cleanups: (() => Promise<void> | void)[] = [];
  const tmp = tempDir('wf-sec-');
  after(async () => {
    for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => undefined);
    tmp.remove();
  });
  async function discovery(url: string): Promise<Discovery> {
    const d = await Discovery.fromConfig(url, { logger });
    cleanups.push(() => d.close());
    seen.push(d.description);
    return d;
  }
  /** Records an error (message, code, JSON, cause chain) and returns it. */
  function record(e: unknown): unknown {
    seen.push(String(e), serialise(e));
    for (let c = (e as { cause?: unknown })?.cause, i = 0; c && i < 5; c = (c as { cause?: unknown }).cause, i++)
      seen.push(String(c), serialise(c));
    return e;
  }
  const failure = (p: Promise<unknown>) => withTimeout(p, 20_000, 'the call to settle').then(() => undefined, record);
  const status = (d: Discovery) => seen.push(JSON.stringify(d.status()));

  describe('etcd: users and client certificates', () => {
    let etcd: EtcdServer;
    let tls: EtcdServer;
    before(async function () {
      requireBinaryOrSkip(this, () => (findEtcd(), findEtcdctl(), findOpenssl()));
      etcd = await startEtcd({
        auth: {
          rootPassword: SECRETS.etcdRoot,
          users: [{ name: 'app', password: SECRETS.etcdUser, readwrite: ['/services/'] }],
        },
      });
      tls = await startEtcd({ tls: { clientCertAuth: true } });
      cleanups.push(
        () => etcd.close(),
        () => tls.close(),
      );
    });

    it('the right password resolves and registers; a wrong one is AUTH_FAILED for both', async () => {
      const ok = await discovery(`etcd://app:${SECRETS.etcdUser}@${etcd.address}`);
      await ok.registrar.register({ service: 'sec', host: '127.0.0.1', port: 7001 });
      assert.deepEqual(
        (await ok.resolver.resolve('sec')).map((e) => e.port),
        [7001],
      );
      status(ok);
      const bad = await discovery(`etcd://app:${SECRETS.etcdWrong}@${etcd.address}?request-timeout=2s`);
      assert.ok(isWayfinderError(await failure(bad.resolver.resolve('sec')), 'AUTH_FAILED'));
      assert.ok(
        isWayfinderError(
          await failure(bad.registrar.register({ service: 'sec', host: '127.0.0.1', port: 7002 })),
          'AUTH_FAILED',
        ),
      );
      status(bad);
    });

    it('with --client-cert-auth: the client certificate works; a client without one fails closed', async () => {
      const pki = tls.pki!;
      const ok = await discovery(`etcd://${tls.address}?ca=${pki.ca}&cert=${pki.clientCert}&key=${pki.clientKey}`);
      assert.deepEqual(await ok.resolver.resolve('sec'), []);
      const bad = await discovery(`etcd://${tls.address}?ca=${pki.ca}&request-timeout=2s&dial-timeout=2s`);
      const err = await failure(bad.resolver.resolve('sec'));
      // The server refuses the handshake (TLS alert "bad certificate"): AUTH_FAILED, no endpoints.
      assert.ok(isWayfinderError(err, 'AUTH_FAILED'), `expected AUTH_FAILED, got ${err}`);
    });
  });

  describe('ZooKeeper: digest identities', () => {
    let zk: ZooKeeperServer;
    before(async function () {
      requireBinaryOrSkip(this, findZooKeeper);
      zk = await startZooKeeper();
      cleanups.push(() => zk.close());
    });

    it('acl=creator-only: the identity reads its nodes; the same user with a wrong password is AUTH_FAILED', async () => {
      const base = `/sec-${process.pid}`;
      const pw = path.join(tmp.dir, 'alice.pw');
      writeFileSync(pw, `${SECRETS.zkAlice}\n`);
      const alice = await discovery(
        zk.url(base, `password-file=${pw}&acl=creator-only`).replace('zk://', 'zk://alice@'),
      );
      await alice.registrar.register({ service: 'sec', host: '127.0.0.1', port: 7101 });
      assert.deepEqual(
        (await alice.resolver.resolve('sec')).map((e) => e.port),
        [7101],
      );
      status(alice);
      const wrong = await discovery(zk.url(base).replace('zk://', `zk://alice:${SECRETS.zkWrong}@`));
      assert.ok(isWayfinderError(await failure(wrong.resolver.resolve('sec')), 'AUTH_FAILED'));
      assert.ok(
        isWayfinderError(
          await failure(wrong.registrar.register({ service: 'sec', host: '127.0.0.1', port: 7102 })),
          'AUTH_FAILED',
        ),
      );
      status(wrong);
    });
  });

  describe('Consul: ACL tokens (fake agent)', () => {
    let consul: FakeConsul;
    before(async () => {
      consul = await startFakeConsul({
        acl: {
          defaultPolicy: 'deny',
          tokens: { [SECRETS.consulReader]: { servicePrefix: { '': 'write' }, nodePrefix: { '': 'read' } } },
        },
      });
      cleanups.push(() => consul.close());
    });

    it('token-file with the right token works (sent as a header only); a wrong token is AUTH_FAILED', async () => {
      const file = path.join(tmp.dir, 'consul.token');
      writeFileSync(file, `${SECRETS.consulReader}\n`);
      const ok = await discovery(`consul://${consul.address}?token-file=${file}`);
      await ok.registrar.register({ service: 'sec', host: '127.0.0.1', port: 7201 });
      assert.deepEqual(
        (await ok.resolver.resolve('sec')).map((e) => e.port),
        [7201],
      );
      assert.ok(
        consul.healthRequests('sec').every((r) => r.tokenVia === 'header' && !r.rawUrl.includes(SECRETS.consulReader)),
      );
      status(ok);
      const bad = await discovery(`consul://${consul.address}?token=${SECRETS.consulWrong}`);
      assert.ok(isWayfinderError(await failure(bad.resolver.resolve('sec')), 'AUTH_FAILED'));
      status(bad);
    });
  });

  describe('Kubernetes: bearer tokens (fake API server)', () => {
    let kube: FakeKubeApi;
    before(async () => {
      kube = await startFakeKubeApi({ token: SECRETS.kubeToken });
      cleanups.push(() => kube.stop());
    });

    it('the right token lists EndpointSlices; a token wrong from the start is AUTH_FAILED, never an empty set', async () => {
      kube.upsertEndpoint('default', 'sec', { address: '127.0.0.1', ports: [{ port: 7301 }] });
      const ok = await discovery(
        `k8s://?kubeconfig=${kube.writeKubeconfig({ file: path.join(tmp.dir, 'ok.kubeconfig') })}`,
      );
      assert.deepEqual(
        (await ok.resolver.resolve('sec.default:7301')).map((e) => e.port),
        [7301],
      );
      status(ok);
      const bad = await discovery(
        `k8s://?kubeconfig=${kube.writeKubeconfig({ token: SECRETS.kubeWrong, file: path.join(tmp.dir, 'bad.kubeconfig') })}`,
      );
      assert.ok(isWayfinderError(await failure(bad.resolver.resolve('sec.default:7301')), 'AUTH_FAILED'));
      status(bad);
    });
  });

  describe('secrets', () => {
    it('no secret appears in any log line, error, status() or description produced above', function () {
      if (seen.length === 0) this.skip();
      const texts = [...seen, ...logger.lines.map((l) => `${l.level} ${l.msg} ${l.obj}`)];
      assert.ok(logger.lines.length > 0, 'the suites above logged something (else this check proves nothing)');
      for (const [name, secret] of Object.entries(SECRETS)) {
        const hit = texts.find((t) => t.includes(secret));
        assert.equal(hit, undefined, `secret ${name} leaked into: ${hit?.slice(0, 500)}`);
      }
    });
  });
});
