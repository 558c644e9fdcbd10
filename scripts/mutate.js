'use strict';
// `npm run mutate -- [area...] [stryker flags]`: mutation testing (StrykerJS) per area.
// Areas are the stryker/<area>.json files; each is merged over stryker/base.json and run in turn.
// Without an area: every area. Flags are passed to `stryker run` (e.g. --incremental, --concurrency 1,
// --force, --mutate adapters/etcd/format.ts). Reports land in reports/stryker/<area>/ (gitignored).
// `--part a,b` runs only those entries of the area's "parts" (a long area piece by piece; reports in
// reports/stryker/<area>/<part>/), e.g. `npm run mutate -- balancers --part p2c,ring-hash`.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const dir = path.join(root, 'stryker');

/** The area names: stryker/*.json except base.json and the checker's tsconfig.<area>.json. */
function areas() {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json') && f !== 'base.json' && !f.startsWith('tsconfig.'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
}

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** Line ranges ("file:start-end") of the named top-level functions/classes/constants of a TS file. */
function functionRanges(file, names) {
  const ts = require('typescript');
  const text = fs.readFileSync(path.join(root, file), 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const found = new Map();
  for (const st of sf.statements) {
    let name;
    if ((ts.isFunctionDeclaration(st) || ts.isClassDeclaration(st)) && st.name) name = st.name.text;
    else if (ts.isVariableStatement(st) && st.declarationList.declarations.length === 1) {
      const d = st.declarationList.declarations[0];
      if (ts.isIdentifier(d.name)) name = d.name.text;
    }
    if (name && names.includes(name)) {
      const start = sf.getLineAndCharacterOfPosition(st.getStart(sf)).line + 1;
      const end = sf.getLineAndCharacterOfPosition(st.getEnd()).line + 1;
      found.set(name, `${file}:${start}-${end}`);
    }
  }
  const missing = names.filter((n) => !found.has(n));
  if (missing.length) throw new Error(`${file}: no top-level ${missing.join(', ')} (stryker config "functions")`);
  return names.map((n) => found.get(n));
}

/**
 * The Stryker options for one area: base.json, then <area>.json over it; "functions" becomes mutate
 * ranges. With `part`, only the files of that entry of the area's "parts" are mutated (same tests),
 * reported under reports/stryker/<area>/<part>/ with their own incremental file, so that a long area
 * can be run piece by piece (or two pieces side by side) and the per-file scores summed.
 */
function areaOptions(area, part) {
  const base = readJson(path.join(dir, 'base.json'));
  const own = readJson(path.join(dir, `${area}.json`));
  const opts = { ...base, ...own, mochaOptions: { ...base.mochaOptions, ...own.mochaOptions } };
  const mutate = [...(own.mutate ?? [])];
  for (const [file, names] of Object.entries(own.functions ?? {})) mutate.push(...functionRanges(file, names));
  opts.mutate = mutate;
  if (part !== undefined) {
    const files = (own.parts ?? {})[part];
    if (!files) throw new Error(`area ${area} has no part ${part} (parts: ${Object.keys(own.parts ?? {}).join(', ')})`);
    opts.mutate = files;
    // Its own sandbox folder, so that two parts can run side by side.
    opts.tempDirName = `${opts.tempDirName ?? '.stryker-tmp'}-${area}-${part}`;
  }
  delete opts.functions;
  delete opts.parts;
  delete opts._comment;
  delete opts._parts;
  delete opts.$schema;
  const out = path.join('reports', 'stryker', area, ...(part === undefined ? [] : [part]));
  opts.incrementalFile = path.join(out, 'incremental.json');
  opts.htmlReporter = { fileName: path.join(out, 'mutation.html') };
  opts.jsonReporter = { fileName: path.join(out, 'mutation.json') };
  return opts;
}

module.exports = { areas, areaOptions, functionRanges };

if (require.main === module) {
  const args = process.argv.slice(2);
  // --part p1,p2 (ours, not Stryker's): run those parts of the one area given, one after the other.
  const partAt = args.indexOf('--part');
  const parts = partAt >= 0 ? (args.splice(partAt, 2)[1] ?? '').split(',').filter(Boolean) : [undefined];
  const known = areas();
  const picked = args.filter((a) => !a.startsWith('-') && known.includes(a));
  const unknown = args.filter(
    (a, i) => !a.startsWith('-') && !known.includes(a) && !(args[i - 1] ?? '').startsWith('--'),
  );
  if (unknown.length) {
    console.error(`[mutate] unknown area ${unknown.join(', ')}; areas: ${known.join(', ')}`);
    process.exit(2);
  }
  const flags = args.filter((a) => !picked.includes(a));
  if (parts[0] !== undefined && picked.length !== 1) {
    console.error('[mutate] --part needs exactly one area');
    process.exit(2);
  }
  let status = 0;
  for (const area of picked.length ? picked : known) {
    for (const part of parts) {
      const opts = areaOptions(area, part);
      const name = part === undefined ? area : `${area}/${part}`;
      const cfg = path.join(root, 'reports', 'stryker', name, 'stryker.conf.json');
      fs.mkdirSync(path.dirname(cfg), { recursive: true });
      fs.writeFileSync(cfg, JSON.stringify(opts, null, 2));
      console.log(`[mutate] ${part === undefined ? 'area' : 'part'} ${name}: ${opts.mutate.join(' ')}`);
      const stryker = path.join(root, 'node_modules', '@stryker-mutator', 'core', 'bin', 'stryker.js');
      const r = spawnSync(process.execPath, [stryker, 'run', cfg, ...flags], { cwd: root, stdio: 'inherit' });
      if (r.status !== 0) status = r.status ?? 1;
    }
  }
  process.exit(status);
}
