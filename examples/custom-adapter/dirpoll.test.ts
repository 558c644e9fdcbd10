// The custom adapter proves itself with the same conformance kit as the built-in ones.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Discovery } from '../../core';
import { registrarConformance, resolverConformance, tempDir } from '../../testkit';
import { createDirPollRegistry, dirPollAdapter, setup, type DirPollRegistration } from '.';

const factory = async () => {
  const tmp = tempDir('wf-dirpoll-');
  const reg = createDirPollRegistry({ path: tmp.dir, interval: 50, ttl: 1000 });
  return {
    ...reg,
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
