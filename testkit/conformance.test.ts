import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { registrarConformance, resolverConformance } from './conformance';
import { toyOptions, type ToyVariant } from './conformance-toy';

/**
 * Tests of the conformance kit itself: it must pass a correct adapter and FAIL broken ones, saying
 * what it expected, under node:test (run in a child process, as a user of `node --test` would) as
 * well as under mocha (the suites below).
 */

const ENTRY = path.join(__dirname, 'conformance-toy.node.ts');
const ROOT = path.resolve(__dirname, '..');

interface NodeTestRun {
  code: number | null;
  out: string;
  /** Titles of failed tests with their error line. */
  failed: Map<string, string>;
  passed: number;
}

/** Runs the kit against one toy variant under `node --test` (TAP), bounded. */
function runUnderNodeTest(variant: ToyVariant): Promise<NodeTestRun> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', ENTRY], {
      cwd: ROOT,
      env: { ...process.env, WAYFINDER_TOY: variant },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`node --test (${variant}) did not finish within 60 s:\n${out.slice(-2000)}`));
    }, 60_000);
    p.on('exit', (code) => {
      clearTimeout(t);
      const failed = new Map<string, string>();
      const lines = out.split('\n');
      lines.forEach((l, i) => {
        const m = /^\s{4}not ok \d+ - (.*)$/.exec(l);
        if (!m) return;
        const err = lines.slice(i + 1, i + 12).find((x) => /^\s+error: /.test(x)) ?? '';
        failed.set(m[1], err.trim());
      });
      const passed = Number(/^# pass (\d+)/m.exec(out)?.[1] ?? -1);
      resolve({ code, out, failed, passed });
    });
  });
}

describe('conformance kit', function () {
  this.timeout(70_000);
  let runs: Record<ToyVariant, NodeTestRun>;
  before(async function () {
    const variants: ToyVariant[] = ['good', 'noop-remove', 'empty-on-error'];
    const results = await Promise.all(variants.map(runUnderNodeTest));
    runs = Object.fromEntries(variants.map((v, i) => [v, results[i]])) as typeof runs;
  });

  it('passes a correct adapter under node:test (node --test), outage tests included', () => {
    const r = runs.good;
    assert.equal(r.code, 0, `node --test failed:\n${r.out.slice(-3000)}`);
    assert.equal(r.failed.size, 0);
    assert.ok(r.passed >= 15, `only ${r.passed} tests passed`);
    assert.match(r.out, /ok \d+ - an outage keeps the last good set/);
    assert.match(r.out, /ok \d+ - re-lists after a gap/);
  });

  it('fails an adapter whose deregister() does nothing, before its TTL could hide it', () => {
    const r = runs['noop-remove'];
    assert.notEqual(r.code, 0, 'the kit passed an adapter whose remove() does nothing');
    const dereg = r.failed.get('deregister() removes the instance and is idempotent');
    assert.ok(dereg, `the deregister test did not fail; failed: ${[...r.failed.keys()].join('; ')}`);
    assert.match(dereg, /the instance gone within \d+ ms of deregister\(\)/);
    const close = r.failed.get('close() deregisters everything it registered and refuses new registrations');
    assert.ok(close, 'the close() test did not fail');
    assert.match(close, /everything gone within \d+ ms of close\(\)/);
  });

  it('fails an adapter that delivers an empty set on a transport error, saying sink.error was expected', () => {
    const r = runs['empty-on-error'];
    assert.notEqual(r.code, 0, 'the kit passed an adapter that delivers [] on an outage');
    const outage = r.failed.get(
      'an outage keeps the last good set with the error attached, never an empty set, and recovers',
    );
    assert.ok(outage, `the outage test did not fail; failed: ${[...r.failed.keys()].join('; ')}`);
    assert.match(outage, /`error` set during the outage \(sink\.error on a transport failure\); last snapshot: \[\]/);
    // Nothing else in the kit blames this adapter for a bug it does not have.
    for (const title of r.failed.keys()) assert.match(title, /outage|gap/, `unexpected failure: ${title}`);
  });
});

// The same kit under mocha, against the correct toy.
resolverConformance({ it, describe, ...toyOptions('good') });
registrarConformance({ it, describe, ...toyOptions('good') });
