import assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawnManaged, tempDir } from '../../testkit/process';

describe('examples/http', function () {
  this.timeout(30_000);

  it('runs: fetch() by service name reaches both serveHttp() servers', async () => {
    const tmp = tempDir('wayfinder-example-http-');
    try {
      const p = spawnManaged(process.execPath, ['--require', 'tsx/cjs', path.join(__dirname, 'main.ts')], {
        env: { ...process.env, WAYFINDER_REGISTRY: `file://${path.join(tmp.dir, 'registry.json')}` },
      });
      const timer = setTimeout(() => void p.kill('SIGKILL'), 25_000);
      const exit = await p.exited;
      clearTimeout(timer);
      const out = p.output();
      assert.equal(exit.code, 0, out);
      const lines = out.trim().split('\n');
      assert.equal(lines.length, 4, out);
      for (const l of lines) assert.match(l, /^hello from [ab] \(echo\/invoices\)$/);
      assert.ok(out.includes('hello from a') && out.includes('hello from b'), 'round_robin reached both');
    } finally {
      tmp.remove();
    }
  });
});
