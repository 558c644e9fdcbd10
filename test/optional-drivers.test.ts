import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { runTsChild } from './support';

/**
 * The registry clients are optional packages: loading an adapter whose client is not installed
 * fails with a ConfigError naming the package to install (issue 21). Run in a child process whose
 * resolver cannot see the hidden packages, so this process's module cache is untouched.
 */
const child = path.join(__dirname, 'fixtures', 'missing-driver.ts');

describe('optional registry drivers', function () {
  this.timeout(90_000); // a child process that loads every registry client; slow on a shared machine
  it('names the package to install when an adapter cannot load its client', async () => {
    const { lines, code, stderr } = await runTsChild(child, {
      WAYFINDER_HIDE: 'etcd3,node-zookeeper-client,consul,@kubernetes/client-node',
      WAYFINDER_SCHEMES: 'etcd,zk,zookeeper,consul,k8s,kubernetes,file,memory',
    });
    assert.equal(code, 0, stderr);
    const by = Object.fromEntries(lines.map((l) => [l.scheme, l]));
    const expect: Record<string, string> = {
      etcd: 'etcd3',
      zk: 'node-zookeeper-client',
      zookeeper: 'node-zookeeper-client',
      consul: 'consul',
      k8s: '@kubernetes/client-node',
      kubernetes: '@kubernetes/client-node',
    };
    for (const [scheme, pkg] of Object.entries(expect)) {
      assert.deepEqual(
        by[scheme],
        {
          scheme,
          name: 'ConfigError',
          code: 'CONFIG_INVALID',
          field: 'registry',
          message: `${scheme}:// needs the optional package "${pkg}": npm install ${pkg}`,
        },
        scheme,
      );
    }
    // Adapters without a client package still load.
    assert.deepEqual(by.file, { scheme: 'file', loaded: true });
    assert.deepEqual(by.memory, { scheme: 'memory', loaded: true });
  });

  it('loads every adapter when the clients are installed', async () => {
    const { lines, code, stderr } = await runTsChild(child, {
      WAYFINDER_HIDE: '',
      WAYFINDER_SCHEMES: 'etcd,zk,consul,k8s',
    });
    assert.equal(code, 0, stderr);
    assert.deepEqual(
      lines.map((l) => [l.scheme, l.loaded]),
      [
        ['etcd', true],
        ['zk', true],
        ['consul', true],
        ['k8s', true],
      ],
    );
  });
});
