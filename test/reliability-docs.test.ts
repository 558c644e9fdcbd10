import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { handWritten } from '../scripts/reliability-docs';

describe('npm run docs:reliability', () => {
  it('keeps the hand-written sections (from "## Clusters" on) when it rewrites the generated part', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'wf-reldocs-'));
    const doc = path.join(dir, 'reliability.md');
    writeFileSync(doc, '# Reliability\n\n| generated |\n\n## Clusters\n\nby hand\n\n### Soak\n\nalso by hand\n');
    assert.equal(handWritten(doc), '\n## Clusters\n\nby hand\n\n### Soak\n\nalso by hand\n');
    writeFileSync(doc, '# Reliability\n\n| generated only |\n');
    assert.equal(handWritten(doc), '');
    assert.equal(handWritten(path.join(dir, 'missing.md')), '');
  });
});
