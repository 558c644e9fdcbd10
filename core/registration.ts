import { EventEmitter } from 'node:events';
import { checkInstanceSpec } from './endpoint';
import { ClosedError } from './errors';
import type { InstanceSpec, Logger, Registrar, Registration, RegistrationEvent } from './model';
import { telemetry } from './telemetry';
import { silentLogger } from './util';

export type CheckedSpec = ReturnType<typeof checkInstanceSpec>;

/**
 * Common behaviour of registrations: identity checks on update, idempotent deregister, and the
 * lost/restored events (a listener that throws is logged, never propagated into the keep-alive loop).
 * Adapters implement write() (create or overwrite the entry) and remove().
 */
export abstract class RegistrationBase implements Registration {
  private readonly events = new EventEmitter();
  private removed?: Promise<void>;
  protected spec: CheckedSpec;
  /** True while the registry has lost this instance and the adapter is restoring it. */
  protected isLost = false;

  constructor(
    spec: CheckedSpec,
    protected readonly logger: Logger = silentLogger,
  ) {
    this.spec = spec;
  }
  get id(): string {
    return this.spec.id;
  }
  get service(): string {
    return this.spec.service;
  }
  get deregistered(): boolean {
    return this.removed !== undefined;
  }
  /** The instance as registered now. */
  get instance(): CheckedSpec {
    return this.spec;
  }

  on(event: RegistrationEvent, fn: (err?: Error) => void): void {
    this.events.on(event, fn);
  }
  off(event: RegistrationEvent, fn: (err?: Error) => void): void {
    this.events.off(event, fn);
  }

  async update(p: Partial<InstanceSpec>): Promise<void> {
    if (this.removed) throw new ClosedError(`registration ${this.id}`);
    for (const k of ['service', 'host', 'port', 'id'] as const) {
      if (p[k] !== undefined && p[k] !== this.spec[k])
        throw new TypeError(
          `update(): "${k}" is part of the instance's identity and cannot change; deregister and register again`,
        );
    }
    const next = checkInstanceSpec({ ...this.spec, ...p, metadata: p.metadata ?? this.spec.metadata });
    await this.write(next);
    this.spec = next;
  }

  /** Idempotent while it succeeds or runs; after a failure (registry unreachable) it can be retried. */
  deregister(): Promise<void> {
    this.removed ??= this.remove().catch((e) => {
      this.removed = undefined;
      throw e;
    });
    return this.removed;
  }

  protected emitLost(err?: Error): void {
    if (this.isLost || this.removed) return;
    this.isLost = true;
    this.logger.warn({ service: this.service, id: this.id, err: err?.message }, 'registration lost; restoring');
    telemetry.registrationLost(this.service);
    this.emit('lost', err);
  }
  protected emitRestored(): void {
    if (!this.isLost || this.removed) return;
    this.isLost = false;
    this.logger.info({ service: this.service, id: this.id }, 'registration restored');
    telemetry.registrationRestored(this.service);
    this.emit('restored');
  }
  private emit(event: RegistrationEvent, err?: Error): void {
    for (const fn of this.events.listeners(event)) {
      try {
        (fn as (e?: Error) => void)(err);
      } catch (e) {
        this.logger.error({ err: e }, `a "${event}" listener threw; ignored`);
      }
    }
  }

  protected abstract write(spec: CheckedSpec): Promise<void>;
  protected abstract remove(): Promise<void>;
}

/** Tracks registrations so close() deregisters everything this registrar registered. */
export abstract class RegistrarBase<R extends RegistrationBase = RegistrationBase> implements Registrar {
  protected readonly live = new Set<R>();
  protected closed = false;

  constructor(protected readonly name: string) {}

  async register(instance: InstanceSpec): Promise<R> {
    if (this.closed) throw new ClosedError(`${this.name} registrar`);
    const spec = checkInstanceSpec(instance);
    const reg = await this.create(spec);
    this.live.add(reg);
    const dereg = reg.deregister.bind(reg);
    reg.deregister = () => {
      this.live.delete(reg);
      return dereg().catch((e) => {
        this.live.add(reg); // failed: still ours to deregister (retry, or close())
        throw e;
      });
    };
    return reg;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.live].map((r) => r.deregister()));
    await this.onClose();
  }

  protected abstract create(spec: CheckedSpec): Promise<R>;
  protected async onClose(): Promise<void> {}
}
