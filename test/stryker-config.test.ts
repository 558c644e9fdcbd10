import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

// The mutation-testing configuration (stryker/*.json, run by `npm run mutate`) stays runnable as the
// code moves: every file it names exists, every function it names is found. The mutation run itself
// is too slow for CI (docs/testing.md).
const root = path.resolve(__dirname, '..');
const mutate = require('../scripts/mutate.js') as {
  areas(): string[];
  areaOptions(area: string): Record<string, unknown> & {
    mutate: string[];
    mochaOptions: { spec: string[]; config: string };
    tsconfigFile: string;
    plugins: string[];
  };
};

/** The fixed part of a glob (up to the first wildcard). */
const base = (glob: string) => glob.split(/[*{[]/)[0].replace(/\/[^/]*$/, '') || '.';

describe('stryker configuration (npm run mutate)', function () {
  // areaOptions() resolves function names to line ranges with the TypeScript compiler: 17 s seen on a loaded machine.
  this.timeout(60_000);
  it('has the areas the docs promise: balancers, core, decoders, grpc', () => {
    assert.deepEqual(mutate.areas(), ['balancers', 'core', 'decoders', 'grpc']);
  });

  for (const area of ['balancers', 'core', 'decoders', 'grpc']) {
    it(`${area}: parses, and every file, folder and function it names exists`, () => {
      const o = mutate.areaOptions(area);
      assert.equal(o.testRunner, 'mocha');
      assert.equal(o.coverageAnalysis, 'perTest');
      assert.ok(o.mutate.length > 0);
      for (const m of o.mutate) {
        if (m.startsWith('!')) continue;
        const file = m.replace(/:\d+-\d+$/, '');
        if (/[*{[]/.test(file)) assert.ok(existsSync(path.join(root, base(file))), `${area}: mutate ${m}`);
        else assert.ok(existsSync(path.join(root, file)), `${area}: mutate ${m}`);
        const range = /:(\d+)-(\d+)$/.exec(m);
        if (range) {
          const lines = readFileSync(path.join(root, file), 'utf8').split('\n').length;
          assert.ok(Number(range[1]) <= Number(range[2]) && Number(range[2]) <= lines, `${area}: range ${m}`);
        }
      }
      for (const s of o.mochaOptions.spec) assert.ok(existsSync(path.join(root, base(s))), `${area}: spec ${s}`);
      assert.ok(existsSync(path.join(root, o.mochaOptions.config)));
      assert.ok(existsSync(path.join(root, o.tsconfigFile)), `${area}: ${o.tsconfigFile}`);
      for (const p of o.plugins.filter((x) => x.startsWith('.'))) assert.ok(existsSync(path.join(root, p)), p);
    });
  }

  it('names a top-level function by its line range, and refuses a name that is not there', () => {
    const fns = mutate as unknown as { functionRanges(file: string, names: string[]): string[] };
    const [r] = fns.functionRanges('adapters/etcd/format.ts', ['decodeValue']);
    const [, from, to] = /:(\d+)-(\d+)$/.exec(r)!.map(Number);
    const lines = readFileSync(path.join(root, 'adapters/etcd/format.ts'), 'utf8').split('\n');
    assert.match(lines[from - 1], /export function decodeValue/);
    assert.equal(lines[to - 1], '}');
    assert.throws(() => fns.functionRanges('adapters/etcd/format.ts', ['noSuchFunction']), /noSuchFunction/);
  });
});
