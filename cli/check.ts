import { Discovery, isWayfinderError, normalizeConfig, resolveRegistry } from '../core';

type Step = { name: string; run: () => Promise<string> };

function describeError(e: unknown): string {
  if (isWayfinderError(e)) return `${e.code}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<never>(
      (_, rej) => (t = setTimeout(() => rej(new Error(`no answer within ${ms} ms while ${what}`)), ms)),
    ),
  ]);
}

/**
 * `wayfinder check`: one verdict per step, stopping at the first failure that makes the next
 * steps meaningless. Returns true when every step passed.
 */
export async function runCheck(
  source: string | undefined,
  timeoutMs: number,
  print: (s: string) => void,
): Promise<boolean> {
  let d: Discovery | undefined;
  const probeService = `wayfinder-check-${process.pid}`;
  let allOk = true;
  const steps: Step[] = [
    {
      name: 'configuration',
      run: async () => {
        const { def, display } = resolveRegistry(normalizeConfig(source).registry);
        return `${display} (${def.scheme} adapter)`;
      },
    },
    {
      name: 'connect',
      run: async () => {
        d = await bounded(Discovery.fromConfig(source), timeoutMs, 'connecting');
        return 'client created';
      },
    },
    {
      name: 'read (resolve a service)',
      run: async () => {
        const eps = await d!.resolver.resolve(probeService, { signal: AbortSignal.timeout(timeoutMs) });
        return `registry answered (${eps.length} endpoints for ${probeService})`;
      },
    },
    {
      name: 'write (register, see it, deregister)',
      run: async () => {
        if (!d!.capabilities.register) return 'skipped: this registry is read-only';
        const reg = await bounded(
          d!.registrar.register({
            service: probeService,
            host: '127.0.0.1',
            port: 9,
            metadata: { purpose: 'wayfinder check' },
          }),
          timeoutMs,
          'registering',
        );
        try {
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            const eps = await d!.resolver.resolve(probeService, { signal: AbortSignal.timeout(timeoutMs) });
            if (eps.some((e) => e.id === reg.id)) break;
            if (Date.now() > deadline) throw new Error('registered, but the instance never became visible');
            await new Promise((r) => setTimeout(r, 100));
          }
        } finally {
          await bounded(reg.deregister(), timeoutMs, 'deregistering');
        }
        return 'registered, resolved and deregistered a probe instance';
      },
    },
  ];
  for (const step of steps) {
    try {
      print(`ok    ${step.name}: ${await step.run()}`);
    } catch (e) {
      allOk = false;
      print(`FAIL  ${step.name}: ${describeError(e)}`);
      break;
    }
  }
  await d?.close().catch(() => {});
  print(allOk ? 'verdict: healthy' : 'verdict: NOT healthy');
  return allOk;
}
