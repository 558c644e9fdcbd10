import assert from 'node:assert/strict';
import type { Endpoint, Logger, Pick } from '../../core';
import { makeEndpoints } from '../../testkit';
import { WeightedBalancer, WeightedPicker } from '.';

type Call = Extract<Pick, { endpoint: Endpoint }>;

describe('weighted: pinned warnings and name', () => {
  it('the invalid-weight warning lists at most 10 endpoints and counts them all', () => {
    const warnings: unknown[] = [];
    const logger: Logger = { debug() {}, info() {}, error() {}, warn: (o) => void warnings.push(o) };
    const eps = makeEndpoints(12).map((e) => ({ ...e, weight: 0 }));
    new WeightedPicker(eps, () => 0, { logger });
    assert.deepEqual(warnings, [{ endpoints: eps.slice(0, 10).map((e) => `${e.id}=0`), count: 12 }]);
  });

  it('invalid weights without a logger: weight 1, no throw', () => {
    const eps = makeEndpoints(2).map((e) => ({ ...e, weight: -1 }));
    const p = new WeightedPicker(eps, () => 0);
    const ids = Array.from({ length: 4 }, () => (p.pick() as Call).endpoint.id);
    assert.deepEqual([...ids].sort(), ['ep-0', 'ep-0', 'ep-1', 'ep-1']);
  });

  it('is named weighted', () => {
    assert.equal(new WeightedBalancer().name, 'weighted');
  });
});
