import { Discovery, isWayfinderError, normalizeConfig, resolveRegistry } from '../core';
import { bounded, closeWithin, registryDisplay } from './bounded';

type Step = { name: string; run: () => Promise<string> };

function describeError(e: unknown): string {
  if (isWayfinderError(e)) return `${e.code}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
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
  let probeService = `wayfinder-check-${process.pid}`;
  let allOk = true;
  const registry = registryDisplay(source);
  const steps: Step[] = [
    {
      name: 'configuration',
      run: async () => {
        const { def, display } = resolveRegistry(normalizeConfig(source).registry);
        // DNS names carry their port (name:port); the probe name does not exist either way.
        if (def.scheme === 'dns') probeService = `${probeService}.invalid:53`;
        return `${display} (${def.scheme} adapter)`;
      },
    },
    {
      // Creating a client proves nothing about the network (most connect lazily): the read says.
      name: 'client',
      run: async () => {
        d = await bounded(Discovery.fromConfig(source), timeoutMs, 'creating the client', registry);
        return `created for ${registry} (not yet connected)`;
      },
    },
    {
      name: 'connect and read (resolve a service)',
      run: async () => {
        const eps = await bounded(
          d!.resolver.resolve(probeService, { signal: AbortSignal.timeout(timeoutMs) }),
          timeoutMs,
          `resolving ${probeService}`,
          registry,
        );
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
          registry,
        );
        try {
          // The CLI's own deadline for a real registry round trip: real time (no injected clock in the CLI).
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            const eps = await d!.resolver.resolve(probeService, { signal: AbortSignal.timeout(timeoutMs) });
            if (eps.some((e) => e.id === reg.id)) break;
            if (Date.now() > deadline) throw new Error('registered, but the instance never became visible');
            await new Promise((r) => setTimeout(r, 100));
          }
        } finally {
          await bounded(reg.deregister(), timeoutMs, 'deregistering', registry);
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
  if (d) await closeWithin(() => d!.close());
  print(allOk ? 'verdict: healthy' : 'verdict: NOT healthy');
  return allOk;
}
