import type { Endpoint, Snapshot } from '../core';

/** Plain-text table, columns padded to their widest cell. */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (c ?? '').padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function endpointRows(endpoints: Endpoint[]): string[][] {
  return endpoints.map((e) => [
    e.id,
    e.host.includes(':') ? `[${e.host}]` : e.host,
    String(e.port),
    String(e.weight ?? 1),
    e.zone ?? '-',
    e.health ?? '-',
    Object.entries(e.metadata)
      .map(([k, v]) => `${k}=${v}`)
      .join(',') || '-',
  ]);
}

export const ENDPOINT_HEADER = ['ID', 'HOST', 'PORT', 'WEIGHT', 'ZONE', 'HEALTH', 'METADATA'];

/** `changedAt`: when a set was last received from the registry (none yet: nothing is claimed). */
export function renderSnapshot(s: Snapshot, changedAt: Date | undefined): string {
  const when = changedAt ? `last change ${changedAt.toISOString()}` : 'nothing received from the registry yet';
  const head = `${s.service}: ${s.endpoints.length} endpoint${s.endpoints.length === 1 ? '' : 's'}, ${when}${s.revision ? `, revision ${s.revision}` : ''}`;
  const err = s.error ? `\n${s.stale ? 'STALE: ' : ''}${s.error.code}: ${s.error.message}` : '';
  return `${head}${err}\n${renderTable(ENDPOINT_HEADER, endpointRows(s.endpoints))}`;
}
