/**
 * Compares two V8 heap snapshots (.heapsnapshot, e.g. from `bench/soak.ts --heap-snapshots`) taken in
 * the same process: per constructor name, count and self size in each, the delta, and how many of the
 * later snapshot's objects are new (their node id was not in the earlier one). For the groups that
 * grew most, the shortest retainer paths from the GC roots to their new objects, tallied by path.
 *
 *   node --import tsx bench/heap-diff.ts <early.heapsnapshot> <late.heapsnapshot> [--top 20] [--paths 5]
 *
 * The format (V8's heap snapshot JSON): `nodes` is a flat array of `snapshot.meta.node_fields` per
 * node (type, name, id, self_size, edge_count, ...), `edges` a flat array of `edge_fields` per edge
 * (type, name_or_index, to_node), a node's edges following those of the nodes before it; names are
 * indexes into `strings`; `to_node` is an index into `nodes` (already multiplied by the field count).
 */
import { readFileSync } from 'node:fs';

interface RawSnapshot {
  snapshot: {
    meta: {
      node_fields: string[];
      node_types: [string[], ...unknown[]];
      edge_fields: string[];
      edge_types: [string[], ...unknown[]];
    };
  };
  nodes: number[];
  edges: number[];
  strings: string[];
}

/** One parsed snapshot, with each node's first edge index precomputed. */
export class HeapSnapshot {
  readonly count: number;
  private readonly nf: number;
  private readonly ef: number;
  private readonly f: { type: number; name: number; id: number; size: number; edges: number };
  private readonly e: { type: number; name: number; to: number };
  private readonly nodeTypes: string[];
  private readonly edgeTypes: string[];
  private readonly firstEdge: Uint32Array;

  constructor(private readonly raw: RawSnapshot) {
    const meta = raw.snapshot.meta;
    this.nf = meta.node_fields.length;
    this.ef = meta.edge_fields.length;
    const ni = (n: string) => meta.node_fields.indexOf(n);
    const ei = (n: string) => meta.edge_fields.indexOf(n);
    this.f = { type: ni('type'), name: ni('name'), id: ni('id'), size: ni('self_size'), edges: ni('edge_count') };
    this.e = { type: ei('type'), name: ei('name_or_index'), to: ei('to_node') };
    if (Object.values(this.f).some((i) => i < 0) || Object.values(this.e).some((i) => i < 0)) {
      throw new Error(
        'not a V8 heap snapshot: node_fields/edge_fields lack type, name, id, self_size, edge_count or to_node',
      );
    }
    this.nodeTypes = meta.node_types[0];
    this.edgeTypes = meta.edge_types[0];
    this.count = raw.nodes.length / this.nf;
    this.firstEdge = new Uint32Array(this.count + 1);
    for (let i = 0, at = 0; i < this.count; i++) {
      this.firstEdge[i] = at;
      at += raw.nodes[i * this.nf + this.f.edges] * this.ef;
      this.firstEdge[i + 1] = at;
    }
  }

  static read(file: string): HeapSnapshot {
    return new HeapSnapshot(JSON.parse(readFileSync(file, 'utf8')) as RawSnapshot);
  }

  type(i: number): string {
    return this.nodeTypes[this.raw.nodes[i * this.nf + this.f.type]];
  }
  name(i: number): string {
    return this.raw.strings[this.raw.nodes[i * this.nf + this.f.name]];
  }
  id(i: number): number {
    return this.raw.nodes[i * this.nf + this.f.id];
  }
  size(i: number): number {
    return this.raw.nodes[i * this.nf + this.f.size];
  }

  /** DevTools-like grouping: constructor name for objects, the kind in parentheses for the rest. */
  group(i: number): string {
    const type = this.type(i);
    const name = this.name(i);
    switch (type) {
      case 'object':
      case 'native':
      case 'synthetic':
        return name;
      case 'closure':
        return `(closure) ${name || '(anonymous)'}`;
      case 'array':
        // Internal arrays: "(object elements)", "(object properties)", "(map descriptors)", ...
        return `(array) ${name}`.trim();
      case 'code':
        // Bytecode, feedback vectors, compiled code: named "system / Foo" or by the function.
        return name.startsWith('(') || name.startsWith('system /') ? `(code) ${name}` : '(code) function';
      case 'hidden':
        return `(system) ${name.startsWith('system /') ? name : ''}`.trim();
      case 'string':
      case 'concatenated string':
      case 'sliced string':
        return '(string)';
      case 'number':
        return '(heap number)';
      default:
        return `(${type})`;
    }
  }

  /** Each edge of node i: [type, name, target node index]. */
  *edges(i: number): Generator<[string, string, number]> {
    const { edges, strings } = this.raw;
    for (let at = this.firstEdge[i]; at < this.firstEdge[i + 1]; at += this.ef) {
      const type = this.edgeTypes[edges[at + this.e.type]];
      const n = edges[at + this.e.name];
      const name = type === 'element' || type === 'hidden' ? `[${n}]` : String(strings[n]);
      yield [type, name, edges[at + this.e.to] / this.nf];
    }
  }

  /** Node ids, for telling new objects from old ones across snapshots of one process. */
  ids(): Set<number> {
    const s = new Set<number>();
    for (let i = 0; i < this.count; i++) s.add(this.id(i));
    return s;
  }

  /**
   * Shortest retainer (parent node, edge name) of every node reachable from the root (node 0),
   * breadth first, over strong edges (weak edges do not retain). Paths from the global objects (what
   * user code holds) are preferred: the VM's own roots ("(GC roots)": handle scopes, stack, compiler
   * tables) are searched only for what the global objects do not reach, as DevTools does.
   */
  retainers(): { parent: Int32Array; edge: string[] } {
    const parent = new Int32Array(this.count).fill(-1);
    const edge: string[] = new Array<string>(this.count);
    const queue = new Uint32Array(this.count);
    let head = 0;
    let tail = 0;
    parent[0] = 0;
    const vmRoots: [string, number][] = [];
    for (const [, name, to] of this.edges(0)) {
      if (this.name(to) === '(GC roots)') vmRoots.push([name, to]);
      else if (parent[to] === -1) {
        parent[to] = 0;
        edge[to] = name;
        queue[tail++] = to;
      }
    }
    const drain = () => {
      while (head < tail) {
        const i = queue[head++];
        for (const [type, name, to] of this.edges(i)) {
          if (type === 'weak' || parent[to] !== -1) continue;
          parent[to] = i;
          edge[to] = name;
          queue[tail++] = to;
        }
      }
    };
    drain();
    for (const [name, to] of vmRoots) {
      if (parent[to] !== -1) continue;
      parent[to] = 0;
      edge[to] = name;
      queue[tail++] = to;
    }
    drain();
    return { parent, edge };
  }
}

export interface GroupDelta {
  group: string;
  countBefore: number;
  countAfter: number;
  sizeBefore: number;
  sizeAfter: number;
  /** Objects of the later snapshot whose id the earlier one did not have. */
  added: number;
  addedSize: number;
}

interface Tally {
  count: number;
  size: number;
}

function tally(s: HeapSnapshot): Map<string, Tally> {
  const m = new Map<string, Tally>();
  for (let i = 0; i < s.count; i++) {
    const g = s.group(i);
    const t = m.get(g) ?? { count: 0, size: 0 };
    t.count++;
    t.size += s.size(i);
    m.set(g, t);
  }
  return m;
}

/** Per group, before vs after; sorted by self size growth, then count growth. */
export function diff(before: HeapSnapshot, after: HeapSnapshot): GroupDelta[] {
  const a = tally(before);
  const b = tally(after);
  const oldIds = before.ids();
  const added = new Map<string, Tally>();
  for (let i = 0; i < after.count; i++) {
    if (oldIds.has(after.id(i))) continue;
    const g = after.group(i);
    const t = added.get(g) ?? { count: 0, size: 0 };
    t.count++;
    t.size += after.size(i);
    added.set(g, t);
  }
  const groups = new Set([...a.keys(), ...b.keys()]);
  return [...groups]
    .map((group) => ({
      group,
      countBefore: a.get(group)?.count ?? 0,
      countAfter: b.get(group)?.count ?? 0,
      sizeBefore: a.get(group)?.size ?? 0,
      sizeAfter: b.get(group)?.size ?? 0,
      added: added.get(group)?.count ?? 0,
      addedSize: added.get(group)?.size ?? 0,
    }))
    .sort(
      (x, y) =>
        y.sizeAfter - y.sizeBefore - (x.sizeAfter - x.sizeBefore) ||
        y.countAfter - y.countBefore - (x.countAfter - x.countBefore),
    );
}

/**
 * For the objects of `group` that are new in `after`, their shortest retainer paths from the roots,
 * tallied by path (root side first; at most `depth` steps nearest the object), most frequent first.
 */
export function retainerPaths(
  before: HeapSnapshot,
  after: HeapSnapshot,
  group: string,
  opts: { depth?: number; top?: number; retainers?: ReturnType<HeapSnapshot['retainers']>; oldIds?: Set<number> } = {},
): { path: string; count: number }[] {
  const depth = opts.depth ?? 8;
  const { parent, edge } = opts.retainers ?? after.retainers();
  const oldIds = opts.oldIds ?? before.ids();
  const paths = new Map<string, number>();
  for (let i = 0; i < after.count; i++) {
    if (after.group(i) !== group || oldIds.has(after.id(i))) continue;
    const steps: string[] = [];
    let at = i;
    if (parent[at] === -1) {
      const key = '(unreachable from the roots: garbage not yet collected)';
      paths.set(key, (paths.get(key) ?? 0) + 1);
      continue;
    }
    while (at !== 0 && steps.length < depth) {
      const p = parent[at];
      // Element indexes vary per object: keep the shape of the path, not the index.
      const e = /^(\[\d+\]|\d+)$/.test(edge[at]) ? '[n]' : edge[at];
      steps.unshift(`${p === 0 ? '(root)' : after.group(p)}.${e}`);
      at = p;
    }
    if (at !== 0) steps.unshift('...');
    const key = `${steps.join(' -> ')} -> ${group}`;
    paths.set(key, (paths.get(key) ?? 0) + 1);
  }
  return [...paths]
    .map(([path, count]) => ({ path, count }))
    .sort((x, y) => y.count - x.count)
    .slice(0, opts.top ?? 3);
}

function main(argv: string[]): void {
  const files = argv.filter((a, i) => !a.startsWith('--') && !argv[i - 1]?.startsWith('--'));
  const opt = (n: string, def: number) => {
    const i = argv.indexOf(`--${n}`);
    return i >= 0 ? Number(argv[i + 1]) : def;
  };
  if (files.length !== 2) {
    console.error(
      'usage: node --import tsx bench/heap-diff.ts <early.heapsnapshot> <late.heapsnapshot> [--top 20] [--paths 5]',
    );
    process.exitCode = 2;
    return;
  }
  const [before, after] = files.map((f) => HeapSnapshot.read(f));
  const rows = diff(before, after);
  const top = rows.slice(0, opt('top', 20));
  const kb = (n: number) => (n / 1024).toFixed(1);
  const total = (s: HeapSnapshot) => {
    let n = 0;
    for (let i = 0; i < s.count; i++) n += s.size(i);
    return n;
  };
  console.log(
    `${files[0]}: ${before.count} objects, ${kb(total(before))} KiB\n${files[1]}: ${after.count} objects, ${kb(total(after))} KiB\n`,
  );
  console.log(
    '| group | count before | count after | delta | self KiB before | after | delta KiB | new objects (alive) |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of top) {
    console.log(
      `| ${r.group.replace(/\|/g, '\\|')} | ${r.countBefore} | ${r.countAfter} | ${r.countAfter - r.countBefore} | ${kb(r.sizeBefore)} | ${kb(r.sizeAfter)} | ${kb(r.sizeAfter - r.sizeBefore)} | ${r.added} |`,
    );
  }
  const retainers = after.retainers();
  const oldIds = before.ids();
  for (const r of top.slice(0, opt('paths', 5))) {
    if (r.added === 0) continue;
    console.log(`\nretainer paths of new ${r.group} (${r.added} new, ${kb(r.addedSize)} KiB):`);
    for (const p of retainerPaths(before, after, r.group, { retainers, oldIds }))
      console.log(`  ${p.count} x ${p.path}`);
  }
}

if (require.main === module) main(process.argv.slice(2));
