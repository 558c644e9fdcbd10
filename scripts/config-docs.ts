/**
 * Generates the option tables of docs/configuration.md from the adapters' and balancers' option
 * schemas, so the reference cannot drift from the code. `npm run docs` rewrites the file; a test
 * fails when it is out of date.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { getAdapter, getBalancer, listBuiltins, type OptionSpec, type OptionsSchema } from '../index';

export const DOC = path.join(__dirname, '..', 'docs', 'configuration.md');
const START = '<!-- generated: option tables (npm run docs) -->';
const END = '<!-- end of generated option tables -->';

function fmtDefault(o: OptionSpec): string {
  if (o.default === undefined) return o.required ? '*(required)*' : '—';
  if (o.type === 'duration') return `\`${o.default}ms\``;
  return `\`${Array.isArray(o.default) ? o.default.join(',') : String(o.default)}\``;
}

function fmtType(o: OptionSpec): string {
  if (o.type === 'enum') return o.values!.map((v) => `\`${v}\``).join(' \\| ');
  const range =
    o.min !== undefined || o.max !== undefined
      ? ` (${o.min ?? ''}..${o.max ?? ''}${o.type === 'duration' ? ' ms' : ''})`
      : '';
  return `${o.type}${range}${o.secret ? ', secret' : ''}`;
}

function optionTable(schema: OptionsSchema): string {
  const rows = Object.entries(schema).map(
    ([k, o]) => `| \`${k}\` | ${fmtType(o)} | ${fmtDefault(o)} | ${o.doc.replace(/\|/g, '\\|')} |`,
  );
  if (!rows.length) return '_No options._';
  return ['| option | type | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

export function renderOptionTables(): string {
  const out: string[] = [];
  const seen = new Set<string>();
  const builtins = listBuiltins();
  for (const scheme of builtins.schemes) {
    const def = getAdapter(scheme);
    if (seen.has(def.scheme)) continue;
    seen.add(def.scheme);
    out.push(
      `### \`${def.scheme}://\`${def.aliases?.length ? ` (also ${def.aliases.map((a) => `\`${a}://\``).join(', ')})` : ''}`,
      '',
      def.description,
      '',
    );
    if (def.examples?.length) out.push(...def.examples.map((e) => `- \`${e}\``), '');
    const c = def.capabilities;
    out.push(
      `Capabilities: watch by ${c.watch}; ${c.register ? 'registers instances' : 'read-only (no registrar)'}; ${c.ttl ? 'dead instances expire (TTL)' : 'no TTL'}; weights ${c.weights ? 'yes' : 'no'}; zones ${c.zones ? 'yes' : 'no'}; metadata ${c.metadata ? 'yes' : 'no'}; lists services ${c.listServices ? 'yes' : 'no'}.`,
      '',
    );
    out.push(def.parse ? "_Options are parsed by the adapter's own `parse(url)`._" : optionTable(def.options), '');
  }
  out.push('### Balancers', '');
  for (const name of builtins.balancers) {
    const def = getBalancer(name);
    if (seen.has(`balancer:${def.name}`)) continue;
    seen.add(`balancer:${def.name}`);
    out.push(
      `#### \`${def.name}\` (gRPC policy \`wayfinder_${def.name}\`)`,
      '',
      def.description,
      '',
      optionTable(def.options),
      '',
    );
  }
  return out.join('\n').trimEnd();
}

/** The doc with its generated part replaced by the current tables. */
export function regenerate(doc: string): string {
  const a = doc.indexOf(START);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`${DOC} lacks the generated-section markers`);
  return `${doc.slice(0, a + START.length)}\n\n${renderOptionTables()}\n\n${doc.slice(b)}`;
}

if (require.main === module) {
  const doc = readFileSync(DOC, 'utf8');
  writeFileSync(DOC, regenerate(doc));
  console.log(`updated ${path.relative(process.cwd(), DOC)}`);
}
