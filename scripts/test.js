'use strict';
// `npm test`: installs the real servers when missing (as root), type-checks, then runs every
// mocha suite. The run ends with the line "N passed, N failed, N skipped".
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { ensureSystemDeps } = require('./system-deps');

const root = path.resolve(__dirname, '..');
try {
  ensureSystemDeps();
} catch (e) {
  console.error(`[wayfinder] installing system packages failed: ${e.message}`);
  if (process.env.CI) process.exit(1);
}

// Type-check and build dist/ (the docs' runnable examples import the package as users do).
const tsc = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json'], {
  cwd: root,
  stdio: 'inherit',
});
if (tsc.status === 0) require('./copy-assets');
if (tsc.status !== 0) {
  console.error('[wayfinder] type check failed');
  console.log('0 passed, 1 failed');
  process.exit(1);
}

// Lint and format check (ESLint + Prettier) before the suites, on a full run; a finding fails the run.
if (process.argv.length <= 2) {
  const bin = (m) =>
    path.join(path.dirname(require.resolve(`${m.split('/')[0]}/package.json`)), m.split('/').slice(1).join('/'));
  const eslint = spawnSync(process.execPath, [bin('eslint/bin/eslint.js'), '.'], { cwd: root, stdio: 'inherit' });
  const prettier = spawnSync(
    process.execPath,
    [bin('prettier/bin/prettier.cjs'), '--check', '.', '--log-level', 'warn'],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
  if (eslint.status !== 0 || prettier.status !== 0) {
    console.error('[wayfinder] lint or format check failed (npm run lint; npm run format fixes most)');
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
}

// Without arguments: every suite. With arguments: just those files (e.g. npm test -- adapters/etcd/*.test.ts).
// WAYFINDER_SLOW_SUITES=skip leaves out the slow fault suites (test/reliability, test/cluster), =only runs
// just them: .ci/run (scripts/node-lines.js) runs those once, on the newest Node line, the rest on every line.
const SLOW_DIRS = ['test/reliability', 'test/cluster'];
const slow = process.env.WAYFINDER_SLOW_SUITES;
const specs =
  process.argv.length > 2
    ? process.argv.slice(2)
    : slow === 'only'
      ? SLOW_DIRS.map((d) => `${d}/**/*.test.ts`)
      : [
          '{core,adapters,balancers,grpc,testkit,cli,examples,test}/**/*.test.ts',
          ...(slow === 'skip' ? SLOW_DIRS.flatMap((d) => ['--ignore', `${d}/**`]) : []),
        ];
const args = [require.resolve('mocha/bin/mocha.js'), ...specs];
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
