import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { DOC, regenerate } from '../scripts/config-docs';

describe('docs', () => {
  it('docs/configuration.md lists every option of every adapter and balancer as the code defines them', function () {
    // Loads every adapter (the Kubernetes client alone takes seconds on a loaded 2-core machine).
    this.timeout(60_000);
    const doc = readFileSync(DOC, 'utf8');
    assert.ok(doc === regenerate(doc), 'docs/configuration.md is out of date: run `npm run docs`');
  });
});

describe('docs links', () => {
  it('every relative link in README.md and docs/ points at a file that exists', () => {
    const root = path.join(__dirname, '..');
    const files = ['README.md'];
    const walk = (dir: string) => {
      for (const f of readdirSync(path.join(root, dir))) {
        const rel = path.join(dir, f);
        if (statSync(path.join(root, rel)).isDirectory()) walk(rel);
        else if (f.endsWith('.md')) files.push(rel);
      }
    };
    walk('docs');
    const broken: string[] = [];
    for (const f of files) {
      const text = readFileSync(path.join(root, f), 'utf8');
      for (const m of text.matchAll(/\]\(([^)\s#]+)(#[^)]*)?\)/g)) {
        const target = m[1];
        if (/^[a-z]+:/.test(target)) continue; // absolute URLs
        if (!existsSync(path.join(root, path.dirname(f), target))) broken.push(`${f}: ${target}`);
      }
    }
    assert.deepEqual(broken, []);
  });
});
