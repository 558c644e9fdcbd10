import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { endpointKey, isWayfinderError, resolveRegistry } from '../../core';
import { createZooKeeperRegistry, type CuratorPayload } from '../../adapters/zookeeper';
import { SnapshotRecorder, uniqueService } from '../../testkit/conformance';
import { findZooKeeper, startZooKeeper, type ZooKeeperServer } from '../../testkit/zookeeper';
import {
  MissingBinaryError,
  findBinary,
  requireBinaryOrSkip,
  spawnManaged,
  tempDir,
  waitFor,
  type ManagedProcess,
} from '../../testkit/process';
import { closedAfterEach } from './support';

/**
 * Node and Java sharing ZooKeeper through Apache Curator x-discovery (Debian's
 * libcurator-discovery-java 5.4): a small Java peer (fixtures/curator) is compiled with javac and
 * run with java against a real ZooKeeper.
 */
const JAVA_DIR = '/usr/share/java';
const JARS = [
  'curator-x-discovery',
  'curator-framework',
  'curator-client',
  'zookeeper',
  'zookeeper-jute',
  'jackson-databind',
  'jackson-core',
  'jackson-annotations',
  'slf4j-api',
  'slf4j-nop',
  'guava',
  'netty-common',
];
const FIXTURE = path.join(__dirname, 'fixtures', 'curator');

function findCurator(): { java: string; javac: string; classpath: string } {
  const javac = findBinary('javac', 'default-jdk-headless', ['/usr/bin/javac']);
  const java = findBinary('java', 'default-jre-headless', ['/usr/bin/java']);
  const jars = JARS.map((j) => path.join(JAVA_DIR, `${j}.jar`));
  for (const j of jars) if (!existsSync(j)) throw new MissingBinaryError(j, 'libcurator-discovery-java');
  return { java, javac, classpath: jars.join(':') };
}

describe('interop: Apache Curator x-discovery (Java) and the zk adapter', function () {
  this.timeout(120_000);
  let zk: ZooKeeperServer;
  let tools: ReturnType<typeof findCurator>;
  let classes: { dir: string; remove(): void };
  const toClose = closedAfterEach();
  let baseSerial = 0;
  const uniqueBase = () => `/wf-curator-${process.pid}-${baseSerial++}`;

  before(async function () {
    this.timeout(120_000);
    requireBinaryOrSkip(this, () => {
      findZooKeeper();
      tools = findCurator();
    });
    classes = tempDir('wayfinder-curator-');
    const javac = spawnSync(
      tools.javac,
      [
        '-d',
        classes.dir,
        '-cp',
        tools.classpath,
        path.join(FIXTURE, 'CuratorPeer.java'),
        path.join(FIXTURE, 'org/springframework/cloud/zookeeper/discovery/ZookeeperInstance.java'),
      ],
      { encoding: 'utf8', timeout: 90_000 },
    );
    assert.equal(javac.status, 0, `javac failed: ${javac.stderr}${javac.error ?? ''}`);
    zk = await startZooKeeper();
  });
  after(async () => {
    await zk?.close();
    classes?.remove();
  });

  const javaArgs = (...args: string[]) => [
    '-Xmx64m',
    '-cp',
    `${classes.dir}:${tools.classpath}`,
    'CuratorPeer',
    ...args,
  ];

  /**
   * Java's queryForInstances with a payload type; the instance lines, or the Java error line. Run
   * asynchronously: blocking the event loop for a JVM start would starve the Node ZooKeeper session.
   */
  function javaQuery(
    base: string,
    service: string,
    type: 'void' | 'map' | 'spring',
  ): Promise<{ ok: boolean; lines: string[] }> {
    return new Promise((resolve, reject) => {
      execFile(
        tools.java,
        javaArgs('query', zk.connectString, base, service, type),
        { encoding: 'utf8', timeout: 60_000 },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
          const lines = stdout.trim().split('\n');
          if (code === 0 && lines.at(-1) === 'DONE')
            return resolve({ ok: true, lines: lines.filter((l) => l.startsWith('INSTANCE ')) });
          if (code === 2) return resolve({ ok: false, lines: lines.filter((l) => l.startsWith('ERROR ')) });
          reject(new Error(`java query failed (${err?.message ?? code}): ${stdout}${stderr}`));
        },
      );
    });
  }

  async function javaRegister(base: string, service: string, id: string, port: number, type: 'map' | 'spring') {
    const p: ManagedProcess = spawnManaged(
      tools.java,
      javaArgs('register', zk.connectString, base, service, id, String(port), type),
    );
    toClose.push({ close: () => p.stop(2000) });
    await waitFor('the Java registration', () => p.output().includes('REGISTERED') || p.child.exitCode !== null, {
      timeoutMs: 60_000,
    });
    assert.ok(p.output().includes('REGISTERED'), `Java peer failed: ${p.output()}`);
    return p;
  }

  function nodeRegistry(base: string, payload?: CuratorPayload) {
    const r = createZooKeeperRegistry({
      hosts: [zk.connectString],
      path: base,
      format: 'curator',
      ...(payload ? { 'curator-payload': payload } : {}),
    });
    toClose.push({ close: () => r.close() });
    return r;
  }

  it('takes curator-payload from URLs, defaults to map and refuses it without format=curator', () => {
    assert.equal(
      resolveRegistry('zk://127.0.0.1:2181/services?format=curator&curator-payload=spring-cloud').options[
        'curator-payload'
      ],
      'spring-cloud',
    );
    assert.throws(
      () => resolveRegistry('zk://127.0.0.1:2181/services?curator-payload=none'),
      (e: unknown) => isWayfinderError(e, 'CONFIG_INVALID') && /curator-payload/.test((e as Error).message),
    );
    assert.throws(
      () => resolveRegistry('zk://127.0.0.1:2181/services?format=curator&curator-payload=void'),
      /"curator-payload" must be one of "map", "none", "spring-cloud"/,
    );
  });

  it('resolves instances Java registered with Map and ZookeeperInstance payloads', async () => {
    const base = uniqueBase();
    const svc = uniqueService('java');
    await javaRegister(base, svc, 'java-map', 7501, 'map');
    await javaRegister(base, svc, 'java-spring', 7502, 'spring');
    const r = nodeRegistry(base);
    const rec = new SnapshotRecorder();
    const w = r.resolver.watch(svc, rec.onSnapshot);
    toClose.push({ close: () => w.close() });
    const s = await rec.until((x) => x.endpoints.length === 2, 30_000, 'both Java instances');
    assert.equal(s.error, undefined);
    const byId = new Map(s.endpoints.map((e) => [e.id, e]));
    assert.equal(endpointKey(byId.get('java-map')!), '127.0.0.1:7501');
    assert.equal(byId.get('java-map')!.metadata.version, 'java-1');
    assert.equal(byId.get('java-map')!.zone, 'z-java');
    assert.equal(endpointKey(byId.get('java-spring')!), '127.0.0.1:7502');
    assert.equal(byId.get('java-spring')!.metadata.version, 'java-1');
  });

  const settings: {
    payload: CuratorPayload | undefined;
    reads: ('void' | 'map' | 'spring')[];
    fails: ('void' | 'map' | 'spring')[];
    shown: RegExp;
  }[] = [
    {
      payload: undefined,
      reads: ['map'],
      fails: ['void', 'spring'],
      shown: /\{metadata=\{v=1\}, weight=2, zone=z1\}$/,
    },
    { payload: 'none', reads: ['void', 'map', 'spring'], fails: [], shown: / null$/ },
    {
      payload: 'spring-cloud',
      reads: ['spring'],
      fails: ['void', 'map'],
      shown: /ZookeeperInstance\{id=node-1, name=\S+, metadata=\{v=1, weight=2, zone=z1\}\}$/,
    },
  ];
  for (const c of settings) {
    it(`curator-payload=${c.payload ?? '(default map)'}: Java reads it as ${c.reads.join(', ')}${c.fails.length ? `; ${c.fails.join(', ')} fail${c.fails.length === 1 ? 's' : ''}` : ''}`, async () => {
      const base = uniqueBase();
      const svc = uniqueService('node');
      const r = nodeRegistry(base, c.payload);
      await r.registrar.register({
        service: svc,
        id: 'node-1',
        host: '127.0.0.1',
        port: 7510,
        weight: 2,
        zone: 'z1',
        metadata: { v: '1' },
      });
      for (const type of c.reads) {
        const q = await javaQuery(base, svc, type);
        assert.ok(q.ok, `Java with payload type ${type}: ${q.lines.join(' ')}`);
        assert.equal(q.lines.length, 1, `one instance for ${type}: ${q.lines.join(' | ')}`);
        assert.match(q.lines[0], /^INSTANCE node-1 127\.0\.0\.1 7510 /);
        if (type !== 'void' || c.payload === 'none') assert.match(q.lines[0], c.shown);
      }
      for (const type of c.fails) {
        const q = await javaQuery(base, svc, type);
        assert.ok(!q.ok, `Java with payload type ${type} should fail on this payload`);
        assert.match(q.lines.join(' '), /ClassCastException/);
      }
      // And Node still reads its own registration back.
      const eps = await r.resolver.resolve(svc);
      assert.deepEqual(eps.map(endpointKey), ['127.0.0.1:7510']);
    });
  }
});
