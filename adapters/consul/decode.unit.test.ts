import assert from 'node:assert/strict';
import { ConfigError } from '../../core';
import type { HealthEntry } from './client';
import { buildFilter, entryToRaw, parseMeta } from './index';

// Consul's /v1/health/service entries and the tag/meta filters, value by value: the filter
// expression sent to the agent, the meta pairs the option parses to, and the raw endpoint (or the
// bad entry, or the deliberate exclusion) each health entry maps to. No agent: pure functions.

/** A health entry of node n1 for instance web-1, with the parts a test changes. */
const entry = (service: Record<string, unknown> = {}, checks: unknown = [], node: unknown = {}): HealthEntry =>
  ({
    Node: { Node: 'n1', Address: '10.0.0.9', ...(node as object) },
    Service: { ID: 'web-1', Service: 'web', Address: '10.0.0.1', Port: 8080, ...service },
    Checks: checks,
  }) as HealthEntry;
const st = (...statuses: (string | null)[]) => statuses.map((s) => (s === null ? null : { CheckID: 'c', Status: s }));
/** The raw value of an entry that maps to one (fails the test on an exclusion). */
const valueOf = (e: HealthEntry, zoneKey = 'zone') => {
  const r = entryToRaw(e, zoneKey);
  assert.ok(r !== null, 'entry excluded');
  return r.value as Record<string, unknown>;
};
const metaError = (item: string) =>
  assert.throws(
    () => parseMeta([item]),
    (e: Error) =>
      e instanceof ConfigError &&
      e.field === 'meta' &&
      e.message ===
        `consul: "meta" entries must be key:value with a key of [A-Za-z0-9_-] (got ${JSON.stringify(item)})`,
    `expected ${JSON.stringify(item)} to be refused`,
  );

describe('Consul decoding (exact filters and entries)', () => {
  it('filter: none without tags and meta; each tag and meta pair quoted as JSON, joined by "and"', () => {
    assert.equal(buildFilter([], []), undefined);
    assert.equal(buildFilter(['blue'], []), '"blue" in Service.Tags');
    assert.equal(buildFilter([], [['env', 'prod']]), 'Service.Meta["env"] == "prod"');
    assert.equal(
      buildFilter(
        ['blue', 'v"2'],
        [
          ['env', 'prod'],
          ['dc', ''],
        ],
      ),
      '"blue" in Service.Tags and "v\\"2" in Service.Tags and Service.Meta["env"] == "prod" and Service.Meta["dc"] == ""',
    );
  });

  it('meta option: key:value or key=value, split at the first separator; the value may be empty', () => {
    assert.deepEqual(parseMeta([]), []);
    assert.deepEqual(parseMeta(['env:prod', 'tier=web']), [
      ['env', 'prod'],
      ['tier', 'web'],
    ]);
    assert.deepEqual(parseMeta(['k:v:w', 'a=b=c', 'x=y:z', 'e:']), [
      ['k', 'v:w'],
      ['a', 'b=c'],
      ['x', 'y:z'],
      ['e', ''],
    ]);
    assert.deepEqual(parseMeta(['A-b_9:some value']), [['A-b_9', 'some value']]);
    assert.deepEqual(parseMeta([`${'k'.repeat(128)}:v`]), [['k'.repeat(128), 'v']]);
  });

  it('meta option: no separator, an empty or invalid key, or a line break is a ConfigError naming "meta"', () => {
    for (const item of [
      'env',
      '',
      ':v',
      '=v',
      '=k:v',
      ':k=v',
      'bad key:v',
      'ke.y:v',
      `${'k'.repeat(129)}:v`,
      'k:v\nw',
    ]) {
      metaError(item);
    }
    // One bad item among good ones fails the whole option.
    assert.throws(() => parseMeta(['env:prod', 'nope']), ConfigError);
  });

  it('a passing instance: id, its own address, port, Weights.Passing, zone taken out of the metadata', () => {
    const e = entry(
      { Meta: { zone: 'z1', version: '2' }, Weights: { Passing: 3, Warning: 1 } },
      st('passing', 'passing'),
    );
    assert.deepEqual(entryToRaw(e, 'zone'), {
      key: 'n1/web-1',
      value: {
        id: 'web-1',
        host: '10.0.0.1',
        port: 8080,
        weight: 3,
        zone: 'z1',
        metadata: { version: '2' },
        health: 'passing',
      },
    });
    // The response's own Meta is left as it was (the zone is removed from a copy).
    assert.deepEqual(e.Service!.Meta, { zone: 'z1', version: '2' });
  });

  it('the zone comes from the configured meta key; other keys stay metadata', () => {
    const v = valueOf(entry({ Meta: { az: 'a', zone: 'b' } }), 'az');
    assert.equal(v.zone, 'a');
    assert.deepEqual(v.metadata, { zone: 'b' });
    const none = valueOf(entry({ Meta: null }));
    assert.equal(none.zone, undefined);
    assert.deepEqual(none.metadata, {});
    assert.deepEqual(valueOf(entry({ Meta: undefined })).metadata, {});
  });

  it('health is the worst check: critical and maintenance beat warning, warning beats passing', () => {
    const health = (checks: unknown) => valueOf(entry({}, checks)).health;
    assert.equal(health([]), 'passing');
    assert.equal(health(null), 'passing');
    assert.equal(health(undefined), 'passing');
    assert.equal(health(st('passing')), 'passing');
    assert.equal(health(st('passing', 'warning', 'passing')), 'warning');
    assert.equal(health(st('critical')), 'critical');
    assert.equal(health(st('maintenance')), 'critical');
    assert.equal(health(st('warning', 'critical')), 'critical');
    assert.equal(health(st('critical', 'warning')), 'critical');
    assert.equal(health(st('warning', 'maintenance', 'passing')), 'critical');
    // Unknown statuses and null checks are neither warning nor critical.
    assert.equal(health(st('unknown', null)), 'passing');
    assert.equal(health(st(null, 'warning')), 'warning');
  });

  it('weight: Weights.Passing for passing and critical, Weights.Warning for warning, 1 when not given', () => {
    const weight = (w: unknown, ...checks: string[]) => valueOf(entry({ Weights: w }, st(...checks))).weight;
    assert.equal(weight({ Passing: 5, Warning: 2 }, 'passing'), 5);
    assert.equal(weight({ Passing: 5, Warning: 2 }, 'warning'), 2);
    assert.equal(weight({ Passing: 5, Warning: 2 }, 'critical'), 5);
    assert.equal(weight({ Passing: 5 }, 'warning'), 1);
    assert.equal(weight({ Warning: 2 }, 'passing'), 1);
    assert.equal(weight(undefined, 'passing'), 1);
    assert.equal(weight(null, 'warning'), 1);
  });

  it('a weight of 0 excludes the instance (null), not a bad entry', () => {
    assert.equal(entryToRaw(entry({ Weights: { Passing: 1, Warning: 0 } }, st('warning')), 'zone'), null);
    assert.equal(entryToRaw(entry({ Weights: { Passing: 0, Warning: 1 } }, st('passing')), 'zone'), null);
    assert.notEqual(entryToRaw(entry({ Weights: { Passing: 1, Warning: 0 } }, st('passing')), 'zone'), null);
  });

  it("the host: the service's Address, else the node's Address, else empty (then refused by the core)", () => {
    assert.equal(valueOf(entry({ Address: '' })).host, '10.0.0.9');
    assert.equal(valueOf(entry({ Address: undefined })).host, '10.0.0.9');
    assert.equal(valueOf(entry({ Address: '' }, [], { Address: '' })).host, '');
    assert.equal(valueOf(entry({ Address: '' }, [], { Address: undefined })).host, '');
  });

  it('a missing or non-object Service, or Checks that is not a list, is a bad entry (value null) under its key', () => {
    assert.deepEqual(entryToRaw({ Node: { Node: 'n1' }, Service: null } as HealthEntry, 'zone'), {
      key: 'n1/?',
      value: null,
    });
    assert.deepEqual(entryToRaw({ Node: { Node: 'n1' } } as HealthEntry, 'zone'), { key: 'n1/?', value: null });
    assert.deepEqual(entryToRaw({ Node: { Node: 'n1' }, Service: 'web' } as unknown as HealthEntry, 'zone'), {
      key: 'n1/?',
      value: null,
    });
    assert.deepEqual(entryToRaw(entry({}, { CheckID: 'c', Status: 'passing' }), 'zone'), {
      key: 'n1/web-1',
      value: null,
    });
    assert.deepEqual(entryToRaw(entry({}, 'critical'), 'zone'), { key: 'n1/web-1', value: null });
    // Key parts that are not text are "?"; a number is written out.
    assert.equal(entryToRaw({ Service: { ID: 7 } } as unknown as HealthEntry, 'zone')?.key, '?/7');
    assert.equal(entryToRaw(null as unknown as HealthEntry, 'zone')?.key, '?/?');
  });
});
