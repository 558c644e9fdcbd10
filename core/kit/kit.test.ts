import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  ConfigError,
  formatHost,
  parseHostList,
  readFileOption,
  readSecretFile,
  retry,
  retryLoop,
  Waker,
  scalarText,
  trimSecret,
} from './index';

describe('adapter kit', () => {
  it('scalarText: scalars as text, anything else (even an object whose toString is not a function) as the fallback', () => {
    assert.equal(scalarText('a'), 'a');
    assert.equal(scalarText(7), '7');
    assert.equal(scalarText(3n), '3');
    assert.equal(scalarText(false), 'false');
    assert.equal(scalarText(undefined), '?');
    assert.equal(scalarText([{ toString: [] }]), '?');
    assert.equal(scalarText({ toString: 1 }, '-'), '-');
  });

  describe('secret files', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'wf-kit-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('removes trailing line terminators and nothing else', () => {
      assert.equal(trimSecret('s3cret\n'), 's3cret');
      assert.equal(trimSecret('s3cret\r\n'), 's3cret');
      assert.equal(trimSecret('s3cret\n\n\r\n'), 's3cret');
      assert.equal(trimSecret(' pass word \t\n'), ' pass word \t');
      assert.equal(trimSecret('a\nb\n'), 'a\nb');
      assert.equal(trimSecret(''), '');
    });

    it('reads a file with the rule', () => {
      const f = path.join(dir, 'pw');
      writeFileSync(f, ' pw with spaces \r\n');
      assert.equal(readSecretFile('etcd', 'password-file', f), ' pw with spaces ');
      assert.deepEqual(readFileOption('etcd', 'ca', f), Buffer.from(' pw with spaces \r\n'));
    });

    it('an unreadable file is a ConfigError naming the field, without contents', () => {
      const missing = path.join(dir, 'missing');
      assert.throws(
        () => readSecretFile('consul', 'token-file', missing),
        (e: unknown) =>
          e instanceof ConfigError &&
          e.field === 'token-file' &&
          e.message === `consul: "token-file" file ${missing} cannot be read: ENOENT`,
      );
      assert.throws(
        () => readFileOption('etcd', 'cert', dir),
        (e: unknown) => e instanceof ConfigError && e.field === 'cert' && /EISDIR/.test(e.message),
      );
    });
  });

  describe('host lists', () => {
    it('parses names, IPv4 and bracketed IPv6, applying the default port', () => {
      assert.deepEqual(
        parseHostList('zk', ['zk1', '10.0.0.1:2182', '[::1]:2183', '[fe80::1]'], { defaultPort: 2181 }),
        [
          { host: 'zk1', port: 2181 },
          { host: '10.0.0.1', port: 2182 },
          { host: '::1', port: 2183 },
          { host: 'fe80::1', port: 2181 },
        ],
      );
    });

    it('formats IPv6 back with brackets', () => {
      assert.equal(formatHost({ host: '::1', port: 2379 }), '[::1]:2379');
      assert.equal(formatHost({ host: 'etcd', port: 2379 }), 'etcd:2379');
    });

    it('drops an http(s):// prefix only when asked', () => {
      assert.deepEqual(parseHostList('etcd', ['https://e1:2379'], { defaultPort: 2379, stripScheme: true }), [
        { host: 'e1', port: 2379 },
      ]);
      assert.throws(() => parseHostList('zk', ['http://e1:2379'], { defaultPort: 2181 }), ConfigError);
    });

    const bad = (entries: string[], field: string | undefined, re: RegExp) =>
      assert.throws(
        () => parseHostList('zk', entries, { defaultPort: 2181, field }),
        (e: unknown) => e instanceof ConfigError && e.field === (field ?? 'hosts') && re.test(e.message),
      );

    it('bad input errors name the field and the entry', () => {
      bad(['a:b'], undefined, /^zk: "hosts" entry "a:b" is not host\[:port\]$/);
      bad(['::1:2181'], undefined, /is not host\[:port\]/);
      bad(['h:0'], 'servers', /^zk: "servers" entry "h:0" has a port outside 1\.\.65535$/);
      bad(['h:65536'], undefined, /port outside/);
      bad(['a b'], undefined, /not host/);
      bad([], undefined, /^zk: "hosts" must list at least one host\[:port\]$/);
      assert.deepEqual(parseHostList('dns', [], { defaultPort: 53, required: false }), []);
    });
  });

  describe('retryLoop', () => {
    it('backs off after failures, resets after a success, waits what a round asks, ends on abort', async () => {
      const ac = new AbortController();
      const waits: number[] = [];
      const errors: string[] = [];
      const script = ['fail', 'fail', 'fail', 'ok', 'fail', 'ok-wait', 'stop'];
      let i = 0;
      await retryLoop({
        signal: ac.signal,
        backoff: { baseMs: 100, maxMs: 10_000, random: () => 0.99 },
        run: async () => {
          const step = script[i++];
          if (step === 'fail') throw new Error(`fail ${i}`);
          if (step === 'ok-wait') return 5000;
          if (step === 'stop') ac.abort();
        },
        onError: (e) => void errors.push((e as Error).message),
        sleep: async (ms) => void waits.push(ms),
      });
      assert.equal(i, script.length);
      assert.deepEqual(errors, ['fail 1', 'fail 2', 'fail 3', 'fail 5']);
      // 99 % of 100, 200, 400; then a success resets: 99 % of 100 again; then the round's own 5000.
      assert.deepEqual(waits, [99, 198, 396, 99, 5000]);
    });

    it('onError may replace the wait; an abort during a round ends the loop without reporting', async () => {
      const ac = new AbortController();
      const waits: number[] = [];
      let errors = 0;
      let round = 0;
      await retryLoop({
        signal: ac.signal,
        backoff: { baseMs: 100, maxMs: 1000, random: () => 0 },
        run: async () => {
          if (++round === 2) ac.abort();
          throw new Error('x');
        },
        onError: (_e, next) => (errors++, Math.max(1000, next())),
        sleep: async (ms) => void waits.push(ms),
      });
      assert.equal(errors, 1);
      assert.deepEqual(waits, [1000]);
    });

    it('healthy() resets the backoff mid-round; an onError returning 0 retries at once without moving it', async () => {
      const ac = new AbortController();
      const waits: number[] = [];
      const script = ['fail', 'fail', 'healthy-fail', 'relist', 'fail', 'stop'];
      let i = 0;
      await retryLoop({
        signal: ac.signal,
        backoff: { baseMs: 100, maxMs: 10_000, random: () => 0.99 },
        run: async (_s, healthy) => {
          const step = script[i++];
          if (step === 'stop') return ac.abort();
          if (step === 'healthy-fail') healthy();
          throw new Error(step);
        },
        onError: (e) => ((e as Error).message === 'relist' ? 0 : undefined),
        sleep: async (ms) => void waits.push(ms),
      });
      assert.deepEqual(waits, [99, 198, 99, 198]);
    });

    it('Waker: wake() ends the sleep in progress only; an abort ends it too', async () => {
      const w = new Waker();
      assert.equal(w.wake(), false);
      const sleeping = w.sleep(Infinity);
      assert.equal(w.wake(), true);
      await sleeping;
      const ac = new AbortController();
      const aborted = w.sleep(Infinity, ac.signal);
      ac.abort();
      await aborted;
    });

    it('the default sleep ends when the signal aborts', async () => {
      const ac = new AbortController();
      const done = retryLoop({
        signal: ac.signal,
        backoff: { baseMs: 60_000, maxMs: 60_000, random: () => 1 },
        run: async () => 60_000,
      });
      setImmediate(() => ac.abort());
      await done;
    });
  });

  describe('retry', () => {
    const noSleep = (waits: number[]) => (ms: number) => {
      waits.push(ms);
      return Promise.resolve();
    };

    it('retries until success and reports each wait', async () => {
      const waits: number[] = [];
      const seen: number[] = [];
      const v = await retry(
        async (n) => {
          seen.push(n);
          if (n < 3) throw new Error(`fail ${n}`);
          return 'ok';
        },
        { sleep: noSleep(waits), random: () => 0.5, onRetry: (_e, n) => assert.ok(n < 3) },
      );
      assert.equal(v, 'ok');
      assert.deepEqual(seen, [1, 2, 3]);
      assert.equal(waits.length, 2);
    });

    it('stops after `attempts` with the last error', async () => {
      let calls = 0;
      await assert.rejects(
        retry(
          async (n) => {
            calls++;
            throw new Error(`fail ${n}`);
          },
          { attempts: 4, sleep: noSleep([]) },
        ),
        /fail 4/,
      );
      assert.equal(calls, 4);
    });

    it('does not retry an error that is not retryable', async () => {
      let calls = 0;
      await assert.rejects(
        retry(
          async () => {
            calls++;
            throw new Error('fatal');
          },
          { retryable: (e) => (e as Error).message !== 'fatal', sleep: noSleep([]) },
        ),
        /fatal/,
      );
      assert.equal(calls, 1);
    });

    it('jitter comes from the injected random, bounded by [base/2, min(max, base*2^n)]', async () => {
      const waits: number[] = [];
      await assert.rejects(
        retry(() => Promise.reject(new Error('x')), {
          attempts: 8,
          baseMs: 100,
          maxMs: 1000,
          random: () => 0.999999,
          sleep: noSleep(waits),
        }),
      );
      assert.deepEqual(waits, [99, 199, 399, 799, 999, 999, 999]);
      const low: number[] = [];
      await assert.rejects(
        retry(() => Promise.reject(new Error('x')), { attempts: 3, baseMs: 100, random: () => 0, sleep: noSleep(low) }),
      );
      assert.deepEqual(low, [50, 50]);
    });

    it('gives up when the injected clock says the deadline would pass', async () => {
      let t = 0;
      let calls = 0;
      await assert.rejects(
        retry(
          async () => {
            calls++;
            throw new Error(`late ${calls}`);
          },
          {
            now: () => t,
            deadlineMs: 1000,
            baseMs: 100,
            maxMs: 100,
            random: () => 0.999999,
            sleep: async (ms) => {
              t += ms;
            },
          },
        ),
        /late 11/,
      );
      assert.equal(calls, 11);
    });

    it('an abort during a wait rejects with the reason at once and calls no more', async () => {
      const ac = new AbortController();
      let calls = 0;
      const p = retry(
        async () => {
          calls++;
          if (calls === 1) setImmediate(() => ac.abort(new Error('closed')));
          throw new Error('down');
        },
        { signal: ac.signal, baseMs: 60_000, maxMs: 60_000, random: () => 1 },
      );
      const t0 = performance.now();
      await assert.rejects(p, /closed/);
      assert.ok(performance.now() - t0 < 5000, 'waited out the backoff despite the abort');
      assert.equal(calls, 1);
    });

    it('an already aborted signal never calls fn; the call gets the signal', async () => {
      const ac = new AbortController();
      ac.abort(new Error('gone'));
      let called = false;
      await assert.rejects(
        retry(
          async () => {
            called = true;
          },
          { signal: ac.signal },
        ),
        /gone/,
      );
      assert.equal(called, false);
      const ac2 = new AbortController();
      assert.equal(await retry(async (_n, s) => s === ac2.signal, { signal: ac2.signal }), true);
    });
  });
});
