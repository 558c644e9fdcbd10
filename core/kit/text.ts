/**
 * A registry value as text for keys and messages, never throwing: strings as they are, finite
 * numbers, bigints and booleans through String(), anything else (objects, lists, symbols, null) as
 * `fallback`. Decoders use it instead of String() or a template literal on untrusted data, which
 * throw on an object whose toString is not a function (`{"toString":[]}`).
 */
export function scalarText(v: unknown, fallback = '?'): string {
  switch (typeof v) {
    case 'string':
      return v;
    case 'number':
    case 'bigint':
    case 'boolean':
      return String(v);
    default:
      return fallback;
  }
}
