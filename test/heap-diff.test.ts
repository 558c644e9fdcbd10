import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HeapSnapshot, diff, retainerPaths } from '../bench/heap-diff';

describe('bench/heap-diff', function () {
  this.timeout(60_000);
  let dir: string;
  let early: HeapSnapshot;
  let late: HeapSnapshot;

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'wf-heapdiff-'));
    // A small plain-JS process (fast to snapshot): 100 probes held in a Map, snapshot, 2,000 more, snapshot.
    const script = `
      const v8 = require('node:v8');
      class HeapDiffProbe { constructor(n) { this.n = n; } }
      globalThis.probeHolder = { pending: new Map() };
      const add = (from, to) => { for (let i = from; i < to; i++) globalThis.probeHolder.pending.set(i, new HeapDiffProbe(i)); };
      add(0, 100);
      v8.writeHeapSnapshot(process.argv[1]);
      add(100, 2100);
      v8.writeHeapSnapshot(process.argv[2]);
    `;
    const [a, b] = ['a', 'b'].map((n) => path.join(dir, `${n}.heapsnapshot`));
    execFileSync(process.execPath, ['-e', script, a, b], { timeout: 50_000 });
    early = HeapSnapshot.read(a);
    late = HeapSnapshot.read(b);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('counts a constructor’s growth, its self size and its new objects between two snapshots', () => {
    const row = diff(early, late).find((r) => r.group === 'HeapDiffProbe');
    assert.ok(row, 'HeapDiffProbe is grouped by its constructor name');
    assert.equal(row.countBefore, 100);
    assert.equal(row.countAfter, 2100);
    assert.equal(row.added, 2000, 'the 2,000 later probes are new (ids absent from the first snapshot)');
    assert.ok(row.sizeAfter - row.sizeBefore >= 2000 * 12, `self size grew ${row.sizeAfter - row.sizeBefore} B`);
    const rows = diff(early, late);
    assert.ok(
      rows.findIndex((r) => r.group === 'HeapDiffProbe') < 5,
      'the growing constructor is among the top growing groups',
    );
  });

  it('names the retainer path of the new objects: the holder, its Map, the Map’s table', () => {
    const [top] = retainerPaths(early, late, 'HeapDiffProbe');
    assert.ok(top.count >= 1990, `most new probes share one path (${top.count})`);
    assert.match(top.path, /\.probeHolder -> Object\.pending -> Map\.table -> \(array\)\.\[n\] -> HeapDiffProbe$/);
  });
});
