import assert from 'node:assert/strict';
import { ConfigError, getBalancer, resolveBalancer, type Endpoint, type Pick } from '../../core';
import { makeEndpoints, testBalancerContext } from '../../testkit';
import { OutlierBalancer } from '../outlier';
import { SlowStartBalancer } from '../slow-start';
import { decoratorOptions } from './decorators';

type Call = Extract<Pick, { endpoint: Endpoint }>;

// Every built-in balancer name (aliases resolve to these definitions).
const BUILTINS = ['round_robin', 'weighted', 'p2c', 'p2c_ewma'];

describe('decorator options, uniform across the built-in balancers', () => {
  for (const name of BUILTINS) {
    it(`${name}: takes every decorator option from the one shared definition`, () => {
      const def = getBalancer(name);
      for (const [k, spec] of Object.entries(decoratorOptions))
        assert.equal(def.options[k], spec, `${name}: option "${k}" missing or copied instead of shared`);
    });

    it(`${name}: outlier + slowStart build the decorated stack; without them none`, () => {
      const b = resolveBalancer({ name, outlier: true, slowStart: '30s' });
      assert.ok(b instanceof OutlierBalancer, `${name}: not wrapped in outlier ejection`);
      assert.ok(!(resolveBalancer(name) instanceof OutlierBalancer));
      assert.ok(!(resolveBalancer(name) instanceof SlowStartBalancer));
      assert.ok(resolveBalancer({ name, slowStart: '1s' }) instanceof SlowStartBalancer);
    });

    it(`${name}: ejects an endpoint that keeps failing, through the flat options`, () => {
      // p2c's own error penalty would keep the failing endpoint away before it fails 3 times in a row.
      const own = name.startsWith('p2c') ? { errorPenalty: 0 } : {};
      const b = resolveBalancer({ name, ...own, outlier: true, outlierConsecutiveFailures: 3 });
      const eps = makeEndpoints(4);
      const ctx = testBalancerContext(2);
      const picker = b.build(eps, ctx);
      const bad = eps[1];
      let afterEjection = 0;
      for (let i = 0; i < 400; i++) {
        const p = picker.pick() as Call;
        if ((b as OutlierBalancer).ejected(ctx.now()).length > 0 && p.endpoint === bad) afterEjection++;
        ctx.advance(1);
        p.done({ ok: p.endpoint !== bad, latencyMs: 5 });
      }
      assert.deepEqual((b as OutlierBalancer).ejected(ctx.now()), ['10.0.0.1:8001']);
      assert.equal(afterEjection, 0, 'the ejected endpoint was still picked');
    });

    it(`${name}: a bad decorator value fails naming the balancer and the field`, () => {
      assert.throws(
        () => resolveBalancer({ name, outlierFailureRate: 2 }),
        (e: unknown) =>
          e instanceof ConfigError &&
          /"outlierFailureRate"/.test((e as Error).message) &&
          (e as ConfigError & { field?: string }).field === 'outlierFailureRate',
      );
      assert.throws(() => resolveBalancer({ name, slowStrat: '1s' }), /unknown option "slowStrat"/);
    });
  }
});
