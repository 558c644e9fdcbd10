import assert from 'node:assert/strict';
import type { Endpoint } from '../../core';
import { EndpointStates, type TrackedState } from './endpoint-states';

interface S extends TrackedState {
  serial: number;
}

const ep = (port: number): Endpoint => ({ id: `e${port}`, host: '10.0.0.1', port, metadata: {} });

function table(trackObjects: boolean): EndpointStates<S> {
  let serial = 0;
  return new EndpointStates<S>((key) => ({ key, gen: 0, serial: serial++ }), { trackObjects });
}

describe('EndpointStates: pinned transitions', () => {
  it('a key given twice in one set counts once: the key that left is still dropped', () => {
    const t = table(true);
    const a = ep(1);
    const b = ep(2);
    const [sa, sb] = t.sync([a, b]);
    const out = t.sync([a, { ...a }]);
    assert.equal(out[0], sa);
    assert.equal(out[1], sa, 'the duplicate shares the state');
    assert.equal(sb.gen, -1, 'b left: its state is dropped');
    assert.equal(t.size, 1);
    assert.equal(t.get('10.0.0.1:2'), undefined);
  });

  it('an object from an older set finds nothing once its key left, and the new state after it came back', () => {
    const t = table(true);
    const a = ep(1);
    const [first] = t.sync([a]);
    t.sync([{ ...a }]); // same key, new object
    t.sync([]);
    assert.equal(first.gen, -1);
    assert.equal(t.stateOf(a), undefined, 'the first object of a dropped key still maps to its dead state');
    const [again] = t.sync([{ ...a }]);
    assert.notEqual(again, first, 'a key that came back gets a new state');
    assert.equal(t.stateOf(a), again);
  });

  it('without trackObjects, stateOf finds the live state by host:port', () => {
    const t = table(false);
    const a = ep(1);
    const [s] = t.sync([a]);
    assert.equal(t.stateOf({ ...a }), s);
    assert.equal(t.stateOf(ep(2)), undefined);
  });
});
