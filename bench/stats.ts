import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** Small helpers shared by the benchmarks: statistics (medians: the machine is noisy), tables, grpc-js internals. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** Markdown table from rows of cells. */
export function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/**
 * A module-private class of a dependency (grpc-js's pickers), loaded from the dependency's own
 * compiled source with one line appended to expose it: the code measured is exactly what the
 * dependency runs, not a re-implementation.
 */
export function loadPrivateClass(mod: string, name: string): any {
  const file = require.resolve(mod);
  const src = readFileSync(file, 'utf8');
  const exportsObj: Record<string, unknown> = {};

  new Function('exports', 'require', 'module', '__filename', '__dirname', `${src}\nexports.__private = ${name};`)(
    exportsObj,
    createRequire(file),
    { exports: exportsObj },
    file,
    file.replace(/\/[^/]*$/, ''),
  );
  return exportsObj.__private;
}
