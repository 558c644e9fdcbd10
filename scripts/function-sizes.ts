/**
 * Function sizes and adapter line counts, measured with the TypeScript compiler API, so the
 * architecture figures in docs/architecture.md can be reproduced at any commit:
 *
 *   node --import tsx scripts/function-sizes.ts [--root DIR] [--top N] [--over LINES] [paths...]
 *
 * Paths default to the library (core, adapters, balancers, grpc, http, xds, cli, testkit and the
 * root modules); tests (*.test.ts), fixtures, bench and node_modules are left out. A function's
 * size is its line span (first to last line, nested functions included); functions, methods,
 * constructors, accessors and arrow functions count. Prints one line per adapter folder (non-test
 * .ts lines), the largest functions, and how many exceed --over lines (default 80). To measure an
 * older commit, point --root at a worktree of it (git worktree add /tmp/old <commit>).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';

interface Fn {
  file: string;
  name: string;
  line: number;
  lines: number;
}

const DEFAULT_PATHS = [
  'core',
  'adapters',
  'balancers',
  'grpc',
  'http',
  'xds',
  'cli',
  'testkit',
  'builtins.ts',
  'index.ts',
];

function parseArgs(argv: string[]): { root: string; top: number; over: number; paths: string[] } {
  const out = { root: process.cwd(), top: 15, over: 80, paths: [] as string[] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--root') out.root = path.resolve(argv[++i]);
    else if (a === '--top') out.top = Number(argv[++i]);
    else if (a === '--over') out.over = Number(argv[++i]);
    else if (a.startsWith('--')) throw new Error(`unknown option ${a}`);
    else out.paths.push(a);
  }
  if (out.paths.length === 0) out.paths = DEFAULT_PATHS;
  return out;
}

const skipped = (name: string) => name === 'node_modules' || name === 'fixtures' || name === 'dist';
const isSource = (name: string) => name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts');

/** Library .ts files under `p` (a file or a folder), relative to root. */
function sourceFiles(root: string, p: string): string[] {
  const abs = path.join(root, p);
  if (!fs.existsSync(abs)) return [];
  if (fs.statSync(abs).isFile()) return isSource(abs) ? [p] : [];
  const out: string[] = [];
  for (const e of fs.readdirSync(abs, { withFileTypes: true })) {
    if (e.isDirectory() && !skipped(e.name)) out.push(...sourceFiles(root, path.join(p, e.name)));
    else if (e.isFile() && isSource(e.name)) out.push(path.join(p, e.name));
  }
  return out.sort();
}

function nameOf(node: ts.Node, sf: ts.SourceFile): string {
  const named = node as ts.Node & { name?: ts.Node };
  if (named.name) return named.name.getText(sf);
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  const parent = node.parent;
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent))
    return parent.name.getText(sf);
  return '<anonymous>';
}

/** Every function-like node of one file with its line span; class members are named Class.member. */
function functionsOf(root: string, file: string): Fn[] {
  const text = fs.readFileSync(path.join(root, file), 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const out: Fn[] = [];
  const visit = (node: ts.Node, owner: string) => {
    let nextOwner = owner;
    if (ts.isClassLike(node) && node.name) nextOwner = node.name.text;
    if (ts.isFunctionLike(node) && (node as ts.FunctionLikeDeclaration).body) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
      const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line;
      const name = nameOf(node, sf);
      const member = ts.isClassElement(node) && owner ? `${owner}.${name}` : name;
      out.push({ file, name: member, line: start + 1, lines: end - start + 1 });
    }
    ts.forEachChild(node, (c) => visit(c, nextOwner));
  };
  visit(sf, '');
  return out;
}

const lineCount = (root: string, file: string) =>
  fs.readFileSync(path.join(root, file), 'utf8').replace(/\n$/, '').split('\n').length;

function main(): void {
  const { root, top, over, paths } = parseArgs(process.argv.slice(2));
  const files = paths.flatMap((p) => sourceFiles(root, p));
  const adapters = fs.existsSync(path.join(root, 'adapters'))
    ? fs.readdirSync(path.join(root, 'adapters'), { withFileTypes: true }).filter((e) => e.isDirectory())
    : [];
  console.log(`root ${root}`);
  console.log('\nadapter | non-test .ts lines | files');
  for (const a of adapters) {
    const own = sourceFiles(root, path.join('adapters', a.name));
    const total = own.reduce((n, f) => n + lineCount(root, f), 0);
    console.log(`${a.name} | ${total} | ${own.length}`);
  }
  const fns = files.flatMap((f) => functionsOf(root, f)).sort((a, b) => b.lines - a.lines);
  console.log(`\nlargest functions (of ${fns.length} in ${files.length} files):`);
  for (const f of fns.slice(0, top)) console.log(`${String(f.lines).padStart(5)}  ${f.file}:${f.line}  ${f.name}`);
  console.log(`\nfunctions over ${over} lines: ${fns.filter((f) => f.lines > over).length}`);
}

main();
