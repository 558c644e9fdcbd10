import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { tempDir, waitFor, withTimeout } from '../testkit';
import { capture } from './fixtures';
import { run } from './main';

const MAIN = path.join(__dirname, 'main.ts');

/** Runs the CLI in a child process; resolves when its stdout has a line matching `until`. */
function child(args: string[]) {
  const p = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  p.stdout.on('data', (d) => {
    out += d;
    for (const w of [...waiters])
      if (w.re.test(out)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
  });
  p.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number>((r) => p.once('exit', (code) => r(code ?? -1)));
  return {
    p,
    exited,
    output: () => out,
    errors: () => err,
    waitFor: (re: RegExp, ms = 30_000) =>
      withTimeout(
        new Promise<void>((resolve) => (re.test(out) ? resolve() : waiters.push({ re, resolve }))),
        ms,
        `CLI output ${re}; got: ${out} ${err}`,
      ),
  };
}

describe('cli', function () {
  this.timeout(30_000);
  const tmp = tempDir('wf-cli-');
  after(() => tmp.remove());
  const reg = `file://${tmp.dir}/registry.json?ttl=2s`;

  it('register keeps an instance alive until interrupted; resolve, services and watch see it', async function () {
    this.timeout(120_000); // five CLI processes, each started through tsx (10-20 s each on a loaded 2-core machine)
    const watcher = child(['watch', 'echo', '--json', '-r', reg]);
    const registrant = child(['register', 'echo', '-p', '5055', '-w', '3', '-m', 'version=2', '-z', 'z1', '-r', reg]);
    await registrant.waitFor(/registered echo 127\.0\.0\.1:5055/);
    await watcher.waitFor(/"port":5055/);
    const line = watcher
      .output()
      .split('\n')
      .find((l) => l.includes('"port":5055'))!;
    const snap = JSON.parse(line);
    assert.equal(snap.endpoints[0].weight, 3);
    assert.equal(snap.endpoints[0].zone, 'z1');
    assert.deepEqual(snap.endpoints[0].metadata, { version: '2' });

    const c = capture();
    assert.equal(await run(['resolve', 'echo', '-r', reg], c.io), 0);
    assert.match(
      c.out.join('\n'),
      /^ID\s+HOST\s+PORT\s+WEIGHT\s+ZONE\s+HEALTH\s+METADATA\n127\.0\.0\.1:5055\s+127\.0\.0\.1\s+5055\s+3\s+z1\s+-\s+version=2$/,
    );
    const s = capture();
    assert.equal(await run(['services', '--json', '-r', reg], s.io), 0);
    assert.deepEqual(JSON.parse(s.out[0]), ['echo']);

    // The live catalog: the complete first view, then a change per service.
    const catalog = child(['services', '--watch', '--json', '-r', reg]);
    await catalog.waitFor(/"initial":true.*"echo":\[\{/);
    // The second registrant runs in this process (the child-process path is the first one's): one
    // CLI process fewer to start on a loaded machine.
    const second = capture();
    const secondDone = run(['register', 'other', '-p', '5056', '-r', reg], second.io);
    await waitFor('register other', () => second.out.some((l) => /^registered other /.test(l)), {
      timeoutMs: 30_000,
      intervalMs: 20,
    });
    await catalog.waitFor(/"service":"other","endpoints":\[\{/);
    second.stop('SIGINT');
    assert.equal(await withTimeout(secondDone, 10_000, 'register to exit'), 0);
    assert.ok(
      second.out.some((l) => /^deregistered /.test(l)),
      second.out.join('\n'),
    );
    await catalog.waitFor(/"service":"other","endpoints":\[\]/);
    catalog.p.kill('SIGINT');
    assert.equal(await withTimeout(catalog.exited, 10_000, 'services --watch to exit'), 0);

    registrant.p.kill('SIGINT');
    assert.equal(await withTimeout(registrant.exited, 10_000, 'register to exit'), 0);
    assert.match(registrant.output(), /deregistered 127\.0\.0\.1:5055/);
    await watcher.waitFor(/"endpoints":\[\]/);
    watcher.p.kill('SIGINT');
    assert.equal(await withTimeout(watcher.exited, 10_000, 'watch to exit'), 0);
  });

  it('reports bad configuration in one line with exit code 2', async () => {
    const c = capture();
    assert.equal(await run(['resolve', 'echo', '-r', 'etdc://127.0.0.1:2379'], c.io), 2);
    assert.equal(c.err.length, 1);
    assert.match(c.err[0], /^wayfinder: unknown registry scheme "etdc"; known schemes: .*file.* \(UNKNOWN_SCHEME\)$/);
    const d = capture();
    assert.equal(await run(['resolve', 'echo', '-r', `file://${tmp.dir}/r.json?ttl=soon`], d.io), 2);
    assert.match(d.err[0], /^wayfinder: file: "ttl" must be a duration/);
    const u = capture();
    assert.equal(await run(['register', 'echo', '-p', 'eighty', '-r', reg], u.io), 2);
    assert.match(u.err.join('\n'), /--port must be an integer/);
  });

  it('check gives a verdict per step and fails with exit 1 on an unusable registry', async () => {
    const good = capture();
    assert.equal(await run(['check', '-r', reg], good.io), 0);
    assert.deepEqual(
      good.out.map((l) => l.split(':')[0]),
      [
        'ok    configuration',
        'ok    client',
        'ok    connect and read (resolve a service)',
        'ok    write (register, see it, deregister)',
        'verdict',
      ],
    );
    assert.match(good.out.at(-1)!, /verdict: healthy/);
    const bad = capture();
    // A registry file under a path that cannot be created: reads work (empty), writes fail.
    assert.equal(
      await run(['check', '-t', '3s', '-r', 'file:///proc/wayfinder-cannot-exist/registry.json'], bad.io),
      1,
    );
    assert.match(bad.out.join('\n'), /FAIL {2}write \(register, see it, deregister\): /);
    assert.match(bad.out.at(-1)!, /verdict: NOT healthy/);
  });

  it('prints help for every command', async () => {
    for (const cmd of [[], ['resolve'], ['watch'], ['register'], ['services'], ['check']]) {
      const c = capture();
      assert.equal(await run([...cmd, '--help'], c.io), 0);
      assert.match(c.out.join('\n'), /Usage: wayfinder/);
    }
  });
});
