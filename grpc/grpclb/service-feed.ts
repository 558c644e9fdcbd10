import { endpointKey, type Endpoint, type Logger, type Snapshot, type Watch } from '../../core';
import { buildServerList, type ServerListOptions } from '../../balancers/grpclb';
import { ipAddresses, type EndpointFeed } from '../control-plane';
import { packIp, type ServerMsg } from './protocol';

export type Subscriber = (servers: ServerMsg[]) => void;

/**
 * One service's server list, shared by every stream asking for it: one feed watch (the catalog, or
 * a resolver watch), one list
 * build per change (hostnames resolved to IPs, since the protocol carries packed addresses),
 * fanned out to the streams. Closed with its last stream.
 */
export class ServiceFeed {
  private readonly subscribers = new Set<Subscriber>();
  private watch?: Watch;
  private endpoints?: Endpoint[];
  private current?: ServerMsg[];
  private currentKey = '';
  private seq = 0;

  constructor(
    readonly service: string,
    private readonly feed: EndpointFeed,
    private readonly listOptions: () => ServerListOptions,
    private readonly logger: Logger,
    private readonly onClose: () => void,
  ) {}

  add(sub: Subscriber): void {
    this.subscribers.add(sub);
    if (this.current) sub(this.current);
    this.watch ??= this.feed.watch(this.service, (s) => this.onSnapshot(s));
  }

  remove(sub: Subscriber): void {
    this.subscribers.delete(sub);
    if (this.subscribers.size > 0) return;
    this.watch?.close();
    this.watch = undefined;
    this.onClose();
  }

  private onSnapshot(s: Snapshot): void {
    if (s.error) this.logger.warn({ service: this.service, code: s.error.code }, `grpclb balancer: ${s.error.message}`);
    // A registry outage before any good set sends nothing (clients keep their fallback or last list).
    if (s.error && s.error.code !== 'BAD_ENTRY' && s.endpoints.length === 0 && !this.endpoints) return;
    this.endpoints = s.endpoints;
    void this.rebuild();
  }

  /** Builds and sends the list again (drop rate changed, or a new snapshot). Later builds win. */
  async rebuild(): Promise<void> {
    const endpoints = this.endpoints;
    if (!endpoints) return;
    const seq = ++this.seq;
    const entries = buildServerList(endpoints, this.listOptions());
    const ips = await ipAddresses(
      entries.flatMap((e) => (e.drop ? [] : [e.endpoint.host])),
      (host, err) =>
        this.logger.warn(
          { service: this.service, host, err: err.message },
          'grpclb balancer: cannot resolve an endpoint host; left out of the list',
        ),
    );
    if (seq !== this.seq) return;
    const servers: ServerMsg[] = [];
    for (const e of entries) {
      if (e.drop) {
        servers.push({ drop: true, loadBalanceToken: e.token });
        continue;
      }
      const ip = ips.get(e.endpoint.host);
      const packed = ip !== undefined ? packIp(ip) : undefined;
      if (!packed) continue;
      servers.push({ ipAddress: packed, port: e.endpoint.port, loadBalanceToken: e.token });
    }
    const key = JSON.stringify(
      servers.map((s) => [
        s.drop ? 'drop' : endpointKey({ host: [...(s.ipAddress ?? [])].join('.'), port: s.port ?? 0 }),
        s.loadBalanceToken,
      ]),
    );
    if (this.current && key === this.currentKey) return;
    this.current = servers;
    this.currentKey = key;
    for (const sub of this.subscribers) sub(servers);
  }
}
