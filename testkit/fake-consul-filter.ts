/**
 * The basics of Consul's filter expression language (api-docs/features/filtering), enough for the
 * fake agent: `==`, `!=`, `is [not] empty`, `[not] in`, `[not] contains`, `[not] matches`, `and`,
 * `or`, `not`, parentheses, selectors `A.B.C` and `A["key"]`, values "double", `raw`, numbers and
 * bare words. A selector that walks through an array matches when any element does, as in go-bexpr.
 */

export class FilterError extends Error {}

type Selector = string[];
type Node =
  | { op: 'and' | 'or'; a: Node; b: Node }
  | { op: 'not'; a: Node }
  | { op: 'eq' | 'ne'; sel: Selector; value: string }
  | { op: 'empty'; sel: Selector; negate: boolean }
  | { op: 'in'; sel: Selector; value: string; negate: boolean }
  | { op: 'matches'; sel: Selector; re: RegExp; negate: boolean };

type Tok = { t: 'word' | 'str' | 'op' | 'lp' | 'rp' | 'lb' | 'rb' | 'dot'; v: string };

function lex(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) {
      i++;
    } else if (c === '(' || c === ')' || c === '[' || c === ']' || c === '.') {
      out.push({ t: c === '(' ? 'lp' : c === ')' ? 'rp' : c === '[' ? 'lb' : c === ']' ? 'rb' : 'dot', v: c });
      i++;
    } else if (src.startsWith('==', i) || src.startsWith('!=', i)) {
      out.push({ t: 'op', v: src.slice(i, i + 2) });
      i += 2;
    } else if (c === '"') {
      let s = '';
      i++;
      while (i < src.length && src[i] !== '"') {
        if (src[i] === '\\' && i + 1 < src.length) {
          const n = src[i + 1];
          s += n === 'n' ? '\n' : n === 't' ? '\t' : n;
          i += 2;
        } else s += src[i++];
      }
      if (src[i] !== '"') throw new FilterError('unterminated string');
      i++;
      out.push({ t: 'str', v: s });
    } else if (c === '`') {
      const end = src.indexOf('`', i + 1);
      if (end < 0) throw new FilterError('unterminated raw string');
      out.push({ t: 'str', v: src.slice(i + 1, end) });
      i = end + 1;
    } else {
      const m = /^[A-Za-z0-9_\-+:/]+/.exec(src.slice(i));
      if (!m) throw new FilterError(`unexpected character ${JSON.stringify(c)} at ${i}`);
      out.push({ t: 'word', v: m[0] });
      i += m[0].length;
    }
  }
  return out;
}

export function parseFilter(src: string, topLevel: readonly string[]): (obj: unknown) => boolean {
  const toks = lex(src);
  let p = 0;
  const peek = (k = 0) => toks[p + k];
  const isWord = (v: string, k = 0) => peek(k)?.t === 'word' && peek(k)!.v.toLowerCase() === v;
  const expect = (t: Tok['t'], what: string) => {
    const tok = toks[p++];
    if (!tok || tok.t !== t) throw new FilterError(`expected ${what}`);
    return tok;
  };

  const selector = (): Selector => {
    const first = expect('word', 'a selector');
    if (!topLevel.includes(first.v)) throw new FilterError(`Selector "${first.v}" is not valid`);
    const sel = [first.v];
    for (;;) {
      if (peek()?.t === 'dot') {
        p++;
        sel.push(expect('word', 'a selector name').v);
      } else if (peek()?.t === 'lb') {
        p++;
        sel.push(expect('str', 'a quoted map key').v);
        expect('rb', '"]"');
      } else return sel;
    }
  };
  const value = (): string => {
    const tok = toks[p++];
    if (!tok || (tok.t !== 'str' && tok.t !== 'word')) throw new FilterError('expected a value');
    return tok.v;
  };

  const match = (): Node => {
    // "<value>" [not] in <Selector>
    if (peek()?.t === 'str' || (peek()?.t === 'word' && (isWord('in', 1) || (isWord('not', 1) && isWord('in', 2))))) {
      const v = value();
      const negate = isWord('not');
      if (negate) p++;
      if (!isWord('in')) throw new FilterError('expected "in" after a value');
      p++;
      return { op: 'in', sel: selector(), value: v, negate };
    }
    const sel = selector();
    const tok = peek();
    if (tok?.t === 'op') {
      p++;
      return { op: tok.v === '==' ? 'eq' : 'ne', sel, value: value() };
    }
    if (isWord('is')) {
      p++;
      const negate = isWord('not');
      if (negate) p++;
      if (!isWord('empty')) throw new FilterError('expected "empty"');
      p++;
      return { op: 'empty', sel, negate };
    }
    const negate = isWord('not');
    if (negate) p++;
    if (isWord('contains')) {
      p++;
      return { op: 'in', sel, value: value(), negate };
    }
    if (isWord('matches')) {
      p++;
      const v = value();
      let re: RegExp;
      try {
        re = new RegExp(v);
      } catch (e) {
        throw new FilterError(`invalid regular expression: ${(e as Error).message}`);
      }
      return { op: 'matches', sel, re, negate };
    }
    throw new FilterError('expected a matching operator');
  };
  const unary = (): Node => {
    if (isWord('not')) {
      p++;
      return { op: 'not', a: unary() };
    }
    if (peek()?.t === 'lp') {
      p++;
      const e = or();
      expect('rp', '")"');
      return e;
    }
    return match();
  };
  const and = (): Node => {
    let a = unary();
    while (isWord('and')) {
      p++;
      a = { op: 'and', a, b: unary() };
    }
    return a;
  };
  const or = (): Node => {
    let a = and();
    while (isWord('or')) {
      p++;
      a = { op: 'or', a, b: and() };
    }
    return a;
  };

  const ast = or();
  if (p !== toks.length) throw new FilterError(`unexpected ${JSON.stringify(toks[p].v)}`);
  return (obj) => evaluate(ast, obj);
}

/** Every value the selector reaches (arrays fan out). `undefined` marks a missing field. */
function resolve(obj: unknown, sel: Selector): unknown[] {
  let cur: unknown[] = [obj];
  for (const name of sel) {
    const next: unknown[] = [];
    for (const c of cur) {
      const items = Array.isArray(c) ? c : [c];
      for (const it of items)
        next.push(it !== null && typeof it === 'object' ? (it as Record<string, unknown>)[name] : undefined);
    }
    cur = next;
  }
  return cur;
}

const str = (v: unknown) => (v === null || v === undefined ? undefined : typeof v === 'object' ? undefined : String(v));

function evaluate(n: Node, obj: unknown): boolean {
  switch (n.op) {
    case 'and':
      return evaluate(n.a, obj) && evaluate(n.b, obj);
    case 'or':
      return evaluate(n.a, obj) || evaluate(n.b, obj);
    case 'not':
      return !evaluate(n.a, obj);
    case 'eq':
      return resolve(obj, n.sel).some((v) => str(v) === n.value);
    case 'ne':
      return !resolve(obj, n.sel).some((v) => str(v) === n.value);
    case 'empty': {
      const empty = resolve(obj, n.sel).every(
        (v) =>
          v === undefined ||
          v === null ||
          v === '' ||
          (Array.isArray(v) && v.length === 0) ||
          (typeof v === 'object' && Object.keys(v as object).length === 0),
      );
      return n.negate ? !empty : empty;
    }
    case 'in': {
      const hit = resolve(obj, n.sel).some((v) => {
        if (Array.isArray(v)) return v.some((x) => str(x) === n.value);
        if (v && typeof v === 'object') return Object.prototype.hasOwnProperty.call(v, n.value);
        return typeof v === 'string' && v.includes(n.value);
      });
      return n.negate ? !hit : hit;
    }
    case 'matches': {
      const hit = resolve(obj, n.sel).some((v) => str(v) !== undefined && n.re.test(str(v)!));
      return n.negate ? !hit : hit;
    }
  }
}
