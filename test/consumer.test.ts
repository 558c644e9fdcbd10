import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runnableBlocks } from './runnable-blocks';

/**
 * A newcomer's install, for real: packs the package (`npm pack`), installs the tarball and
 * @grpc/grpc-js into an empty consumer project outside the repository (from the npm cache where
 * it can), checks that the install printed no warning and stays small, then runs the README's and
 * getting-started's runnable examples there as ESM and CommonJS, JavaScript and strict TypeScript
 * (tsc `strict`, no `skipLibCheck`), each against a registry directory that does not exist yet.
 * One consumer project serves every case.
 */
const root = path.join(__dirname, '..');
const MAX_INSTALL_BYTES = 20 * 1024 * 1024;
const GRPC = `@grpc/grpc-js@${JSON.parse(readFileSync(path.join(root, 'node_modules/@grpc/grpc-js/package.json'), 'utf8')).version}`;

function run(
  cmd: string,
  args: string[],
  opts: { cwd: string; env?: Record<string, string>; timeoutMs: number },
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const t = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs);
    p.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, out, err });
    });
  });
}

function duBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += duBytes(p);
    else if (e.isFile()) total += statSync(p).size;
  }
  return total;
}

/**
 * The ESM example as CommonJS (no top-level await): the body in an async function, and require()
 * instead of import, or, for a .cts file, the imports kept (TypeScript compiles them to require()).
 */
export function toCommonJs(esm: string, opts: { keepImports?: boolean } = {}): string {
  const lines = esm.split('\n');
  const head: string[] = [];
  const body: string[] = [];
  for (const l of lines) {
    const star = /^import \* as (\w+) from '([^']+)';$/.exec(l);
    const named = /^import \{([^}]+)\} from '([^']+)';$/.exec(l);
    if ((star || named) && opts.keepImports) head.push(l);
    else if (star) head.push(`const ${star[1]} = require('${star[2]}');`);
    else if (named) head.push(`const {${named[1]}} = require('${named[2]}');`);
    else body.push(l);
  }
  return `${head.join('\n')}\n\nasync function main() {\n${body.join('\n')}\n}\nmain().catch((e) => {\n  console.error(e);\n  process.exit(1);\n});\n`;
}

describe('consumer install (npm pack -> empty project)', function () {
  this.timeout(240_000);
  let consumer: string;
  let install: { code: number | null; out: string; err: string };
  const examples: { name: string; code: string }[] = [];

  before(async function () {
    if (!existsSync(path.join(root, 'dist', 'core', 'index.js')))
      throw new Error('dist/ is missing: run `npm run build` (npm test does)');
    consumer = mkdtempSync(path.join(os.tmpdir(), 'wayfinder-consumer-'));
    const pack = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', consumer], {
      cwd: root,
      timeoutMs: 60_000,
    });
    assert.equal(pack.code, 0, `npm pack failed:\n${pack.err}`);
    const tarball = path.join(consumer, JSON.parse(pack.out)[0].filename);
    writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
    install = await run(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=warn', tarball, GRPC],
      { cwd: consumer, timeoutMs: 180_000 },
    );
    assert.equal(install.code, 0, `npm install failed:\n${install.out}\n${install.err}`);
    for (const [file, text] of [
      ['README.md', readFileSync(path.join(root, 'README.md'), 'utf8')],
      ['docs/getting-started.md', readFileSync(path.join(root, 'docs', 'getting-started.md'), 'utf8')],
    ])
      for (const b of runnableBlocks(text))
        examples.push({ name: `${file.replace(/\W/g, '_')}_${b.line}`, code: b.code });
  });
  after(() => consumer && rmSync(consumer, { recursive: true, force: true }));

  it('installs without a warning', () => {
    const warnings = `${install.out}\n${install.err}`
      .split('\n')
      .filter((l) => /\bwarn/i.test(l) && !/install-scripts/.test(l));
    assert.deepEqual(warnings, [], 'npm printed warnings');
  });

  it(`installs in under ${MAX_INSTALL_BYTES / 1024 / 1024} MB with @grpc/grpc-js, and no registry client`, () => {
    const bytes = duBytes(path.join(consumer, 'node_modules'));
    console.log(`      node_modules: ${(bytes / 1024 / 1024).toFixed(1)} MB (tarball + ${GRPC})`);
    assert.ok(bytes < MAX_INSTALL_BYTES, `${(bytes / 1024 / 1024).toFixed(1)} MB`);
    for (const client of ['etcd3', 'node-zookeeper-client', 'consul', '@kubernetes/client-node'])
      assert.ok(!existsSync(path.join(consumer, 'node_modules', client)), `${client} was installed`);
    const pkg = path.join(consumer, 'node_modules', 'wayfinder-discovery');
    assert.ok(existsSync(path.join(pkg, 'LICENSE')), 'no LICENSE in the package');
    assert.match(readFileSync(path.join(pkg, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0/);
    assert.ok(!existsSync(path.join(pkg, 'dist', 'examples')), 'dist/examples is shipped');
    const maps: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (
          e.name.endsWith('.map') ||
          (e.name.endsWith('.js') && /sourceMappingURL/.test(readFileSync(p, 'utf8')))
        )
          maps.push(path.relative(pkg, p));
      }
    };
    walk(path.join(pkg, 'dist'));
    assert.deepEqual(maps.slice(0, 5), [], 'source maps (or references to them) that cannot resolve');
  });

  it('runs the README and getting-started examples as ESM and CommonJS, against a registry not created yet', async () => {
    assert.ok(examples.length >= 2, `only ${examples.length} examples`);
    for (const ex of examples) {
      for (const [ext, code] of [
        ['mjs', ex.code],
        ['cjs', toCommonJs(ex.code)],
      ]) {
        const file = path.join(consumer, `${ex.name}.${ext}`);
        writeFileSync(file, code);
        const registry = path.join(consumer, `reg-${ex.name}-${ext}`, 'fresh', 'registry.json');
        const r = await run(process.execPath, [file], {
          cwd: consumer,
          env: { WAYFINDER_REGISTRY: `file://${registry}` },
          timeoutMs: 30_000,
        });
        assert.equal(r.code, 0, `${ex.name}.${ext} exited with ${r.code}:\n${r.out}\n${r.err}`);
      }
    }
  });

  it('type-checks the same examples as strict TypeScript (ESM and CommonJS), without skipLibCheck', async () => {
    const files: string[] = [];
    for (const ex of examples) {
      writeFileSync(path.join(consumer, `${ex.name}.mts`), `${ex.code}\nexport {};\n`);
      writeFileSync(path.join(consumer, `${ex.name}.cts`), toCommonJs(ex.code, { keepImports: true }));
      files.push(`${ex.name}.mts`, `${ex.name}.cts`);
    }
    writeFileSync(
      path.join(consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          target: 'es2022',
          // A Node project's lib (as @tsconfig/node20 has it): no DOM, so fetch's RequestInit is
          // undici's, which has `dispatcher` (docs/http.md: with the DOM lib, cast the init).
          lib: ['es2022'],
          module: 'nodenext',
          moduleResolution: 'nodenext',
          typeRoots: [path.join(root, 'node_modules', '@types')],
          types: ['node'],
        },
        files,
      }),
    );
    const r = await run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], {
      cwd: consumer,
      timeoutMs: 120_000,
    });
    assert.equal(r.code, 0, `tsc failed:\n${r.out}\n${r.err}`);
  });
});
