// The custom adapter proves itself with the same conformance kit as the built-in ones.
import '../../builtins'; // the built-in registries and balancers
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Discovery } from '../../core';
import { registrarConformance, resolverConformance, tempDir, type ConformanceFaults } from '../../testkit';
import { createDirPollRegistry, dirPollAdapter, setup, type DirPollRegistration } from '.';

/**
 * An outage for the kit: the registry root stops being a directory (moved aside, a plain file in
 * its place), so every read fails with ENOTDIR and the resolver must keep the last good set with
 * the error attached. Writes fail too (nothing can be created under a file), so nothing is lost,
 * and heal() moves the root back. The registrar writes the same tree, so it cannot write during
 * the outage: writesDuringOutage is false and the kit skips its re-list test.
 */
function rootOutage(root: string): ConformanceFaults {
  const aside = `${root}.outage`;
  return {
    outage: async () => {
      await fs.rename(root, aside);
      await fs.writeFile(root, 'not a directory\n');
    },
    heal: async () => {
      const st = await fs.stat(root).catch(() => undefined);
      if (!st || st.isDirectory()) return; // not in an outage
      await fs.rm(root);
      await fs.rename(aside, root);
    },
    writesDuringOutage: false,
  };
}

const factory = async () => {
  const tmp = tempDir('wf-dirpoll-');
  const reg = createDirPollRegistry({ path: tmp.dir, interval: 50, ttl: 1000 });
  return {
    ...reg,
    faults: rootOutage(tmp.dir),
    injectBadEntry: async (service: string) => {
      await fs.mkdir(path.join(tmp.dir, service), { recursive: true });
      await fs.writeFile(path.join(tmp.dir, service, 'corrupt.json'), '{"host": ');
    },
    crash: async (r: DirPollRegistration) => r.stopHeartbeat(),
    cleanup: async () => {
      await reg.registrar.close();
      await reg.resolver.close();
      tmp.remove();
    },
  };
};

resolverConformance({
  it,
  describe,
  name: 'dirpoll (example)',
  factory,
  capabilities: dirPollAdapter.capabilities,
  timing: { propagationMs: 2000, ttlMs: 1500 },
});
registrarConformance({
  it,
  describe,
  name: 'dirpoll (example)',
  factory,
  capabilities: dirPollAdapter.capabilities,
  timing: { propagationMs: 2000, ttlMs: 1500 },
});

describe('dirpoll (example): config', () => {
  it('is chosen by URL once set up, and validates its options', async () => {
    setup();
    const tmp = tempDir('wf-dirpoll-');
    const d = await Discovery.fromConfig(`dirpoll://${tmp.dir}?interval=100ms`);
    assert.equal(d.scheme, 'dirpoll');
    await d.close();
    await assert.rejects(Discovery.fromConfig('dirpoll://?interval=100ms'), /dirpoll: "path" is required/);
    await assert.rejects(
      Discovery.fromConfig(`dirpoll://${tmp.dir}?interval=5ms`),
      /dirpoll: "interval" must be a duration .* of at least 50ms/,
    );
    tmp.remove();
  });
});
