import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors';

/**
 * The one trimming rule for secret files (passwords, tokens): trailing line terminators (`\n`,
 * `\r\n`, any number of them) are removed, nothing else. A file written by `echo`, an editor or a
 * Kubernetes secret mount reads as the secret itself; spaces or tabs are kept, because they can be
 * part of a password.
 */
export function trimSecret(text: string): string {
  return text.replace(/[\r\n]+$/, '');
}

/** A read failure as a ConfigError naming the field; never includes the file's contents. */
export function secretFileError(owner: string, field: string, file: string, e: unknown): ConfigError {
  const reason = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  return new ConfigError(`${owner}: "${field}" file ${file} cannot be read: ${reason}`, { field });
}

/**
 * Reads a secret file (password-file, token-file) with {@link trimSecret}. Throws ConfigError naming
 * `field` when the file cannot be read: `etcd: "password-file" file /x cannot be read: ENOENT`.
 */
export function readSecretFile(owner: string, field: string, file: string): string {
  try {
    return trimSecret(readFileSync(file, 'utf8'));
  } catch (e) {
    throw secretFileError(owner, field, file, e);
  }
}

/** Reads a non-secret file option (a CA, certificate or key in PEM) as bytes; same errors as readSecretFile. */
export function readFileOption(owner: string, field: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw secretFileError(owner, field, file, e);
  }
}
