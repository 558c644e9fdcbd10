import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

/**
 * The layering rule (docs/architecture: core <- adapters/balancers <- grpc <- testkit/cli): core
 * imports no plugin and balancers import only core. Checked on the library sources (tests may
 * import anything).
 */
const ROOT = path.resolve(__dirname, '..');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'fixtures' && e.name !== 'node_modules') out.push(...sources(rel));
    } else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

/**
 * The relative paths a file names: every quoted './…' or '../…' string, so an import, an export,
 * a require() and a path kept in a table for a later require() all count.
 */
export function relativeImports(source: string): string[] {
  return [...source.matchAll(/['"`](\.{1,2}(?:\/[^'"`\s]*)?)['"`]/g)].map((m) => m[1]);
}

/** Repository-relative targets of a file's relative imports that fall outside the allowed top-level folders. */
function violations(dir: string, allowed: string[]): string[] {
  const bad: string[] = [];
  for (const file of sources(dir)) {
    for (const spec of relativeImports(readFileSync(path.join(ROOT, file), 'utf8'))) {
      const target = path.relative(ROOT, path.resolve(ROOT, path.dirname(file), spec));
      const top = target.split(path.sep)[0];
      if (!allowed.includes(top)) bad.push(`${file} imports ${spec} (${target})`);
    }
  }
  return bad;
}

describe('layering', () => {
  it('finds the relative imports of every form', () => {
    const src = [
      "import { a } from '../adapters/etcd';",
      "import type { B } from '../../grpc';",
      "export * from './model';",
      "import '../builtins';",
      "const m = require('../cli/main');",
      "const n = await import('../testkit');",
      "const table = { etcd: '../adapters/etcd' };",
      "import x from 'etcd3';",
    ].join('\n');
    assert.deepEqual(relativeImports(src), [
      '../adapters/etcd',
      '../../grpc',
      './model',
      '../builtins',
      '../cli/main',
      '../testkit',
      '../adapters/etcd',
    ]);
  });

  it('core/ imports nothing outside core/ (no adapters, balancers, grpc, testkit, cli, nor the entry that lists them)', () => {
    assert.ok(sources('core').length > 5, 'no core sources found');
    assert.deepEqual(violations('core', ['core']), []);
  });

  it('balancers/ import only core/ and balancers/', () => {
    assert.ok(sources('balancers').length > 5, 'no balancer sources found');
    assert.deepEqual(violations('balancers', ['core', 'balancers']), []);
  });
});
