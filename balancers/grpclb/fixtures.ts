// Test helpers shared by the grpclb list-building suites (fixtures files stay out of the package).
import type { Endpoint } from '../../core';
import type { buildServerList } from './index';

/** An endpoint on 10.0.0.1 at `port`, with any fields overridden. */
export const ep = (port: number, extra: Partial<Endpoint> = {}): Endpoint => ({
  id: `10.0.0.1:${port}`,
  host: '10.0.0.1',
  port,
  metadata: {},
  ...extra,
});

/** A server list as port numbers and `drop:<token>` entries, in order. */
export const names = (l: ReturnType<typeof buildServerList>): string[] =>
  l.map((e) => (e.drop ? `drop:${e.token}` : String(e.endpoint.port)));
