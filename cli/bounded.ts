import { RegistryUnavailableError, isWayfinderError, normalizeConfig, resolveRegistry } from '../core';

/** The registry as the CLI names it in messages: its URL with secrets redacted (it names the host). */
export function registryDisplay(source: string | undefined): string | undefined {
  try {
    return resolveRegistry(normalizeConfig(source).registry).display;
  } catch {
    return undefined; // a configuration error: that error says what is wrong
  }
}

const isTimeout = (e: unknown) => e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError');

/**
 * Runs one registry operation within `ms`. A timeout (ours, or an AbortSignal.timeout the operation
 * honoured) becomes a REGISTRY_UNAVAILABLE error saying what did not answer, naming the registry.
 */
export function bounded<T>(p: Promise<T>, ms: number, what: string, registry?: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const noAnswer = () =>
    new RegistryUnavailableError(`${registry ? `${registry}: ` : ''}no answer within ${ms} ms while ${what}`);
  return Promise.race([
    p.catch((e) => {
      throw isTimeout(e) ? noAnswer() : e;
    }),
    new Promise<never>((_, rej) => {
      t = setTimeout(() => rej(noAnswer()), ms);
      t.unref();
    }),
  ]).finally(() => clearTimeout(t));
}

/** Closes without letting a registry that never answered hold the command past its bound. */
export async function closeWithin(close: () => Promise<void>, ms = 1000): Promise<void> {
  await bounded(close(), ms, 'closing').catch(() => {});
}

/**
 * The one line an error is shown as: `<message naming registry and host> (<CODE>)`, the registry
 * prefixed where the adapter's own message does not already name it. Configuration errors stand alone.
 */
export function errorLine(e: unknown, registry: string | undefined): string {
  const code = isWayfinderError(e) ? e.code : isTimeout(e) ? 'REGISTRY_UNAVAILABLE' : 'ERROR';
  let msg = e instanceof Error ? e.message : String(e);
  const config = code === 'CONFIG_INVALID' || code === 'UNKNOWN_SCHEME';
  if (registry && !config && !msg.includes(registry)) msg = `${registry}: ${msg}`;
  return `${msg} (${code})`;
}
