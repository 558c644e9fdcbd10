import { HttpError, type Slice } from './model';

export type Selector = (labels: Record<string, string>) => boolean;
export type FieldSelector = (s: Slice) => boolean;

const KEY = '([A-Za-z0-9][-A-Za-z0-9_./]*)';

/** Splits a selector at the commas outside parentheses (`a in (x,y),b` is two terms). */
function selectorTerms(sel: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of sel) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      terms.push(cur);
      cur = '';
    } else cur += ch;
  }
  terms.push(cur);
  return terms;
}

function labelTerm(raw: string): Selector {
  const t = raw.trim();
  let m: RegExpExecArray | null;
  if ((m = new RegExp(`^${KEY}\\s+(in|notin)\\s+\\(([^)]*)\\)$`).exec(t))) {
    const [, k, op, list] = m;
    const vals = list.split(',').map((v) => v.trim());
    return op === 'in' ? (l) => k in l && vals.includes(l[k]) : (l) => !(k in l) || !vals.includes(l[k]);
  }
  if ((m = new RegExp(`^${KEY}\\s*(==|=|!=)\\s*([-A-Za-z0-9_.]*)$`).exec(t))) {
    const [, k, op, v] = m;
    return op === '!=' ? (l) => l[k] !== v : (l) => l[k] === v;
  }
  if ((m = new RegExp(`^!\\s*${KEY}$`).exec(t))) {
    const k = m[1];
    return (l) => !(k in l);
  }
  if ((m = new RegExp(`^${KEY}$`).exec(t))) {
    const k = m[1];
    return (l) => k in l;
  }
  throw new HttpError(400, 'BadRequest', `unable to parse requirement: found '${t}', expected: identifier`);
}

/** Label selector syntax of the API: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`. */
export function parseLabelSelector(sel: string | undefined): Selector {
  if (!sel || sel.trim() === '') return () => true;
  const preds = selectorTerms(sel).map(labelTerm);
  return (l) => preds.every((p) => p(l));
}

export function parseFieldSelector(sel: string | undefined): FieldSelector {
  if (!sel || sel.trim() === '') return () => true;
  const preds = sel.split(',').map((raw) => {
    const m = /^\s*([a-zA-Z.]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(raw);
    if (!m) throw new HttpError(400, 'BadRequest', `invalid selector: '${sel}'; can't understand '${raw}'`);
    const [, field, op, v] = m;
    const get =
      field === 'metadata.name'
        ? (s: Slice) => s.metadata.name
        : field === 'metadata.namespace'
          ? (s: Slice) => s.metadata.namespace
          : undefined;
    if (!get)
      throw new HttpError(
        400,
        'BadRequest',
        `"${field}" is not a known field selector: only "metadata.name", "metadata.namespace"`,
      );
    return op === '!=' ? (s: Slice) => get(s) !== v : (s: Slice) => get(s) === v;
  });
  return (s) => preds.every((p) => p(s));
}
