import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { runnableBlocks } from './runnable-blocks';

/**
 * Runs every code block in README.md and docs/ marked runnable, so examples cannot rot:
 *
 *   <!-- runnable -->
 *   ```js
 *   ...
 *   ```
 *
 * Each runs as an ES module inside the package (so `import ... from 'wayfinder-discovery'` resolves to the
 * built dist/ through the package's own exports, as for a user), with WAYFINDER_REGISTRY pointing
 * at a file registry whose directory does not exist yet (as on a fresh machine), and must exit 0 within 30 s.
 */
const root = path.join(__dirname, '..');

function docs(): string[] {
  const out = ['README.md'];
  const walk = (dir: string) => {
    for (const e of readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = path.join(dir, e.name);
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.md')) out.push(rel);
    }
  };
  walk('docs');
  return out;
}

function runModule(file: string, env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [file], {
      cwd: path.dirname(file),
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    const t = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, out });
    });
  });
}

describe('docs: runnable examples', function () {
  this.timeout(40_000);
  const scratch = path.join(root, '.wayfinder-tmp', `docs-${process.pid}`);
  before(function () {
    if (!existsSync(path.join(root, 'dist', 'core', 'index.js')))
      throw new Error('dist/ is missing: run `npm run build` (npm test does)');
    mkdirSync(scratch, { recursive: true });
  });
  after(() => rmSync(scratch, { recursive: true, force: true }));

  const all = docs().flatMap((f) =>
    runnableBlocks(readFileSync(path.join(root, f), 'utf8')).map((b) => ({ file: f, ...b })),
  );
  it('has runnable examples to check', () => assert.ok(all.length >= 3, `only ${all.length} runnable blocks`));
  for (const b of all) {
    it(`${b.file}:${b.line} runs`, async () => {
      const dir = path.join(scratch, `${b.file.replace(/\W/g, '_')}_${b.line}`);
      mkdirSync(dir, { recursive: true });
      const file = path.join(dir, 'example.mjs');
      writeFileSync(file, b.code);
      // As on a fresh machine: the registry's directory does not exist yet.
      const registry = path.join(dir, 'fresh', 'registry', 'registry.json');
      assert.ok(!existsSync(path.dirname(registry)));
      const r = await runModule(file, { WAYFINDER_REGISTRY: `file://${registry}` });
      assert.equal(r.code, 0, `example exited with ${r.code}:\n${r.out}`);
    });
  }
});
