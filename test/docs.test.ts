import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { DOC, regenerate } from '../scripts/config-docs';

describe('docs', () => {
  it('docs/configuration.md lists every option of every adapter and balancer as the code defines them', () => {
    const doc = readFileSync(DOC, 'utf8');
    assert.ok(doc === regenerate(doc), 'docs/configuration.md is out of date: run `npm run docs`');
  });
});
