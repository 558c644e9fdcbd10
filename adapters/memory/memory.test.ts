import assert from 'node:assert/strict';
import { createMemoryRegistry, MemoryStore, memoryAdapter, memoryStore } from '.';
import { Discovery as D } from '../../core';
import { registrarConformance, resolverConformance, SnapshotRecorder, uniqueService } from '../../testkit';

const factory = async () => {
  const reg = createMemoryRegistry(new MemoryStore());
  return {
    resolver: reg.resolver,
    registrar: reg.registrar!,
    injectBadEntry: async (service: string) => reg.store.put(service, 'corrupt', { host: 42, port: 'x' }),
    cleanup: async () => {
      await reg.registrar!.close();
      await reg.resolver.close();
    },
  };
};

resolverConformance({
  it,
  describe,
  name: 'memory',
  factory,
  capabilities: memoryAdapter.capabilities,
  timing: { propagationMs: 1000 },
});
registrarConformance({
  it,
  describe,
  name: 'memory',
  factory,
  capabilities: memoryAdapter.capabilities,
  timing: { propagationMs: 1000 },
});

describe('memory adapter', () => {
  it('memory://name URLs in one process share a store', async () => {
    const name = uniqueService('store');
    const a = await D.fromConfig(`memory://${name}`);
    const b = await D.fromConfig({ registry: { scheme: 'memory', name } });
    try {
      const r = new SnapshotRecorder();
      const w = b.resolver.watch('echo', r.onSnapshot);
      await a.registrar.register({ service: 'echo', host: '127.0.0.1', port: 9000 });
      await r.until((s) => s.endpoints.length === 1, 1000);
      assert.deepEqual(await b.listServices(), ['echo']);
      assert.ok(memoryStore(name).entries('echo').length === 1);
      w.close();
    } finally {
      await a.close();
      await b.close();
    }
    assert.equal(memoryStore(name).entries('echo').length, 0, 'close() deregistered');
  });
});
