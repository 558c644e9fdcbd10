import { randomUUID } from 'node:crypto';
import { failWith, json, methodNotAllowed, readBody, type Call } from './http';
import { keyOf, kubeTime } from './model';
import type { SliceStore } from './store';

/** Namespaces (create, get, list, delete): a name and its creation time; deleting one deletes its slices. */
export class Namespaces {
  private readonly created = new Map<string, string>([['default', kubeTime()]]);

  constructor(private readonly store: SliceStore) {}

  has(name: string): boolean {
    return this.created.has(name);
  }

  object(name: string, phase = 'Active'): Record<string, unknown> {
    return {
      kind: 'Namespace',
      apiVersion: 'v1',
      metadata: {
        name,
        uid: randomUUID(),
        creationTimestamp: this.created.get(name) ?? kubeTime(),
        labels: { 'kubernetes.io/metadata.name': name },
      },
      spec: { finalizers: ['kubernetes'] },
      status: { phase },
    };
  }

  /** /api/v1/namespaces[/name] */
  async route(call: Call, name: string | undefined): Promise<void> {
    try {
      const method = call.req.method;
      if (method === 'GET' && name === undefined) return this.list(call);
      if (method === 'GET') return this.get(call, name!);
      if (method === 'POST' && name === undefined) return await this.create(call);
      if (method === 'DELETE' && name !== undefined) return this.delete(call, name);
      return methodNotAllowed(call);
    } catch (e) {
      failWith(call, e);
    }
  }

  private list(call: Call): void {
    call.log.verb = 'list';
    const inUse = [...this.store.objects.values()].map((s) => s.metadata.namespace);
    const names = new Set([...this.created.keys(), ...inUse]);
    json(call.res, 200, {
      kind: 'NamespaceList',
      apiVersion: 'v1',
      metadata: { resourceVersion: String(this.store.rv) },
      items: [...names].sort().map((n) => this.object(n)),
    });
  }

  private get(call: Call, name: string): void {
    call.log.verb = 'get';
    if (!this.created.has(name)) return call.fail(404, 'NotFound', `namespaces "${name}" not found`);
    json(call.res, 200, this.object(name));
  }

  private async create(call: Call): Promise<void> {
    const body = await readBody(call.req);
    const n = body?.metadata?.name;
    if (typeof n !== 'string' || !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(n))
      return call.fail(422, 'Invalid', `Namespace "${n}" is invalid: metadata.name: Invalid value`);
    if (this.created.has(n)) return call.fail(409, 'AlreadyExists', `namespaces "${n}" already exists`);
    this.created.set(n, kubeTime());
    json(call.res, 201, this.object(n));
  }

  private delete(call: Call, name: string): void {
    if (!this.created.has(name)) return call.fail(404, 'NotFound', `namespaces "${name}" not found`);
    for (const s of [...this.store.objects.values()])
      if (s.metadata.namespace === name) this.store.remove(keyOf(name, s.metadata.name));
    const obj = this.object(name, 'Terminating');
    this.created.delete(name);
    json(call.res, 200, obj);
  }
}
