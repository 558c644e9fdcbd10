import assert from 'node:assert/strict';
import fc from 'fast-check';
import { endpointKey, type Endpoint } from '../../core';
import { EndpointStates, type TrackedState } from './endpoint-states';

interface S extends TrackedState {
  serial: number;
}

describe('EndpointStates (state table shared by p2c, outlier ejection and slow start)', () => {
  it('property: over any sequence of sets (reused, copied, reordered, mutated arrays) a key keeps its state while present and gets a new one after leaving', () => {
    // Each step: which of 12 ports are in the set, whether each endpoint is a fresh copy, the order,
    // and whether the caller reuses (and rewrites) the previous array in place.
    const step = fc.record({
      present: fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
      copy: fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
      reverse: fc.boolean(),
      reuseArray: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 25 }), (steps) => {
        let serial = 0;
        const table = new EndpointStates<S>((key) => ({ key, gen: 0, serial: serial++ }), { trackObjects: true });
        let objects: Endpoint[] = Array.from({ length: 12 }, (_, i) => ({
          id: `e${i}`,
          host: '10.0.0.1',
          port: 7000 + i,
          metadata: {},
        }));
        let prev = new Map<string, S>();
        let arr: Endpoint[] = [];
        for (const st of steps) {
          objects = objects.map((e, i) => (st.copy[i] ? { ...e } : e));
          const chosen = objects.filter((_, i) => st.present[i]);
          if (st.reverse) chosen.reverse();
          if (st.reuseArray) {
            arr.length = 0;
            arr.push(...chosen);
          } else arr = chosen;
          const states = table.sync(arr);
          const now = new Map<string, S>();
          arr.forEach((e, i) => {
            const s = states[i];
            assert.equal(s.key, endpointKey(e));
            assert.ok(s.gen >= 0);
            const before = prev.get(s.key);
            if (before) assert.equal(s, before, `${s.key} lost its state while present`);
            else assert.ok(![...prev.values()].includes(s), 'a new key got an old state');
            assert.equal(table.stateOf(e), s);
            now.set(s.key, s);
          });
          for (const [k, s] of prev) if (!now.has(k)) assert.equal(s.gen, -1, `${k} left but its state is live`);
          assert.equal(table.size, now.size);
          prev = now;
        }
      }),
      { numRuns: 300, seed: 3 },
    );
  });

  it('finds the live state of an object from an older set by host:port, and none once the key left', () => {
    const table = new EndpointStates<S>((key) => ({ key, gen: 0, serial: 0 }), { trackObjects: true });
    const a: Endpoint = { id: 'a', host: '10.0.0.1', port: 1, metadata: {} };
    const [s] = table.sync([a]);
    const a2 = { ...a };
    table.sync([a2]);
    assert.equal(table.stateOf(a), s, 'old object, same key: same live state');
    table.sync([]);
    assert.equal(table.stateOf(a2), undefined);
    assert.equal(s.gen, -1);
  });
});
