import assert from 'node:assert/strict';
import { ClosedError, type Logger } from './index';
import { checkInstanceSpec } from './endpoint';
import { RegistrarBase, RegistrationBase, type CheckedSpec } from './registration';

// RegistrationBase / RegistrarBase without a registry: a subclass whose write()/remove() record
// what they were asked to do and fail on demand, so every rule of the base class is checked alone.

class Recorded extends RegistrationBase {
  writes: CheckedSpec[] = [];
  removes = 0;
  failWrite = false;
  failRemove = false;
  protected async write(spec: CheckedSpec): Promise<void> {
    if (this.failWrite) throw new Error('write failed');
    this.writes.push(spec);
  }
  protected async remove(): Promise<void> {
    this.removes++;
    if (this.failRemove) throw new Error('remove failed');
  }
  lost(err?: Error): void {
    this.emitLost(err);
  }
  restored(): void {
    this.emitRestored();
  }
}

class Registrar extends RegistrarBase<Recorded> {
  closes = 0;
  protected async create(spec: CheckedSpec): Promise<Recorded> {
    return new Recorded(spec);
  }
  protected override async onClose(): Promise<void> {
    this.closes++;
  }
}

const spec = () =>
  checkInstanceSpec({ service: 'api', host: '127.0.0.1', port: 8080, id: 'api-1', weight: 2, metadata: { v: '1' } });

function logger() {
  const lines: { level: string; obj: unknown; msg: string }[] = [];
  const at =
    (level: string) =>
    (obj: unknown, msg = '') =>
      void lines.push({ level, obj, msg });
  return {
    lines,
    log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } as unknown as Logger,
  };
}

describe('RegistrationBase.update(): identity checks field by field', () => {
  const other = { service: 'web', host: '127.0.0.2', port: 8081, id: 'api-2' } as const;
  for (const k of ['service', 'host', 'port', 'id'] as const) {
    it(`a different "${k}" is refused with a TypeError naming it, nothing is written and the instance is unchanged`, async () => {
      const r = new Recorded(spec());
      await assert.rejects(
        r.update({ [k]: other[k] }),
        (e: Error) => e instanceof TypeError && e.message.includes(`"${k}" is part of the instance's identity`),
      );
      assert.deepEqual(r.writes, []);
      assert.deepEqual(r.instance, spec());
    });

    it(`the same "${k}" as registered is accepted (restating identity is not a change)`, async () => {
      const r = new Recorded(spec());
      await r.update({ [k]: spec()[k], weight: 3 });
      assert.equal(r.writes.length, 1);
      assert.equal(r.instance.weight, 3);
    });
  }

  it('an update of weight and zone writes the whole checked instance and keeps metadata when none is given', async () => {
    const r = new Recorded(spec());
    await r.update({ weight: 5, zone: 'z1' });
    assert.deepEqual(r.writes, [{ ...spec(), weight: 5, zone: 'z1' }]);
    assert.deepEqual(r.instance, { ...spec(), weight: 5, zone: 'z1' });
    assert.equal(r.id, 'api-1');
    assert.equal(r.service, 'api');
  });

  it('metadata given replaces the old metadata as a whole', async () => {
    const r = new Recorded(spec());
    await r.update({ metadata: { w: '2' } });
    assert.deepEqual(r.instance.metadata, { w: '2' });
  });

  it('an invalid update (weight 0) is refused by the spec check before anything is written', async () => {
    const r = new Recorded(spec());
    await assert.rejects(r.update({ weight: 0 }), TypeError);
    assert.deepEqual(r.writes, []);
    assert.equal(r.instance.weight, 2);
  });

  it('a failed write leaves the instance as it was', async () => {
    const r = new Recorded(spec());
    r.failWrite = true;
    await assert.rejects(r.update({ weight: 9 }), /write failed/);
    assert.equal(r.instance.weight, 2);
  });

  it('update() after deregister() is refused with ClosedError', async () => {
    const r = new Recorded(spec());
    await r.deregister();
    await assert.rejects(
      r.update({ weight: 3 }),
      (e: Error) => e instanceof ClosedError && e.message === 'registration api-1 is closed',
    );
    assert.deepEqual(r.writes, []);
  });
});

describe('RegistrationBase: deregister and the lost/restored guards', () => {
  it('deregister() removes once however often it is called, and says deregistered', async () => {
    const r = new Recorded(spec());
    assert.equal(r.deregistered, false);
    await Promise.all([r.deregister(), r.deregister()]);
    await r.deregister();
    assert.equal(r.removes, 1);
    assert.equal(r.deregistered, true);
  });

  it('a failed deregister() can be retried and is not deregistered meanwhile', async () => {
    const r = new Recorded(spec());
    r.failRemove = true;
    await assert.rejects(r.deregister(), /remove failed/);
    assert.equal(r.deregistered, false);
    r.failRemove = false;
    await r.deregister();
    assert.equal(r.removes, 2);
    assert.equal(r.deregistered, true);
  });

  it('lost is emitted once per loss, restored only after a loss, and each with the logger told', async () => {
    const { lines, log } = logger();
    const r = new Recorded(spec(), log);
    const events: string[] = [];
    r.on('lost', (e) => events.push(`lost:${e?.message}`));
    r.on('restored', () => events.push('restored'));
    r.restored();
    assert.deepEqual(events, [], 'restored without a loss says nothing');
    r.lost(new Error('lease expired'));
    r.lost(new Error('again'));
    assert.deepEqual(events, ['lost:lease expired']);
    r.restored();
    r.restored();
    assert.deepEqual(events, ['lost:lease expired', 'restored']);
    r.lost(new Error('second'));
    assert.deepEqual(events, ['lost:lease expired', 'restored', 'lost:second']);
    assert.deepEqual(
      lines.map((l) => [l.level, l.obj]),
      [
        ['warn', { service: 'api', id: 'api-1', err: 'lease expired' }],
        ['info', { service: 'api', id: 'api-1' }],
        ['warn', { service: 'api', id: 'api-1', err: 'second' }],
      ],
    );
  });

  it('after deregister() neither lost nor restored is emitted', async () => {
    const r = new Recorded(spec());
    const events: string[] = [];
    r.on('lost', () => events.push('lost'));
    r.on('restored', () => events.push('restored'));
    r.lost();
    await r.deregister();
    r.restored();
    r.lost();
    assert.deepEqual(events, ['lost']);
  });

  it('a listener that throws is logged and the next listener still runs; off() removes a listener', () => {
    const { lines, log } = logger();
    const r = new Recorded(spec(), log);
    const seen: string[] = [];
    const bad = () => {
      throw new Error('boom');
    };
    const second = () => seen.push('second');
    r.on('lost', bad);
    r.on('lost', second);
    assert.doesNotThrow(() => r.lost());
    assert.deepEqual(seen, ['second']);
    const errors = lines.filter((l) => l.level === 'error');
    assert.equal(errors.length, 1);
    assert.equal(((errors[0].obj as { err: Error }).err as Error).message, 'boom');
    r.off('lost', second);
    r.restored();
    r.lost();
    assert.deepEqual(seen, ['second']);
  });
});

describe('RegistrarBase: what close() deregisters', () => {
  it('register() checks the spec, close() deregisters every live registration once and calls onClose once', async () => {
    const g = new Registrar('test');
    const a = await g.register({ service: 'api', host: '127.0.0.1', port: 1 });
    const b = await g.register({ service: 'api', host: '127.0.0.1', port: 2 });
    assert.equal(a.id, '127.0.0.1:1');
    assert.equal(a.instance.weight, 1);
    await b.deregister();
    await g.close();
    await g.close();
    assert.equal(a.removes, 1);
    assert.equal(b.removes, 1, 'deregistered before close: not again');
    assert.equal(g.closes, 1);
    await assert.rejects(
      g.register({ service: 'api', host: '127.0.0.1', port: 3 }),
      (e: Error) => e instanceof ClosedError && e.message === 'test registrar is closed',
    );
    await assert.rejects(g.register({ service: 'bad name', host: 'h', port: 3 }), ClosedError);
  });

  it('a registration whose deregister() failed stays live, so close() tries it again', async () => {
    const g = new Registrar('test');
    const a = await g.register({ service: 'api', host: '127.0.0.1', port: 1 });
    a.failRemove = true;
    await assert.rejects(a.deregister(), /remove failed/);
    a.failRemove = false;
    await g.close();
    assert.equal(a.removes, 2);
    assert.equal(a.deregistered, true);
  });

  it('register() refuses an invalid spec with the spec check error', async () => {
    const g = new Registrar('test');
    await assert.rejects(g.register({ service: 'api', host: '', port: 1 }), /"host" must be a non-empty string/);
  });
});
