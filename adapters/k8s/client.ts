/*
 * VENDOR INTERNALS FENCE (@kubernetes/client-node, pinned ~1.3.x in package.json). This file uses
 * only its public API (KubeConfig, Watch, applyToHTTPSOptions, loadFromClusterAndUser); requests
 * are made with node:https and the config's TLS options, so no internals are reached.
 */
import { existsSync, readFileSync } from 'node:fs';
import { trimSecret } from '../../core/kit';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { KubeConfig, Watch, type Cluster, type User } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { ConfigError, type Logger } from '../../core';

/**
 * A thin wrapper over @kubernetes/client-node: where the config comes from (kubeconfig or in-cluster
 * service account), the bearer token (re-read from its file periodically and on demand after a 401,
 * because bound service-account tokens rotate), a raw JSON GET for lists, and client-node's Watch for
 * streams. It knows nothing of endpoints.
 */

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeClientOptions {
  kubeconfig?: string;
  context?: string;
  tokenFile?: string;
  serviceAccountDir: string;
  /** Re-read the token file when the token in use is older than this (ms). */
  tokenRefreshMs: number;
  /** Environment (KUBERNETES_SERVICE_HOST/PORT, KUBECONFIG, HOME); default process.env. */
  env?: Record<string, string | undefined>;
  logger: Logger;
  now(): number;
}

/** A failed API request: the HTTP status (0 for transport errors) and the Status reason when given. */
export class KubeRequestError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly reason?: string,
  ) {
    super(message);
    this.name = 'KubeRequestError';
  }
}

export interface WatchHandle {
  abort(): void;
}

export class KubeClient {
  readonly kc = new KubeConfig();
  /** Where the config came from, for messages: "in-cluster" or the kubeconfig path. */
  readonly source: string;
  /** The namespace of the context or service account, if it names one. */
  readonly namespace?: string;
  private tokenFile?: string;
  private tokenReadAt = -Infinity;
  private token?: string;

  constructor(private readonly o: KubeClientOptions) {
    const env = o.env ?? process.env;
    const saDir = o.serviceAccountDir;
    const inCluster = !o.kubeconfig && !!env.KUBERNETES_SERVICE_HOST && existsSync(path.join(saDir, 'token'));
    if (inCluster) {
      const host = env.KUBERNETES_SERVICE_HOST!;
      const port = env.KUBERNETES_SERVICE_PORT ?? '443';
      const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
      const cluster: Cluster = { name: 'in-cluster', server, caFile: path.join(saDir, 'ca.crt'), skipTLSVerify: false };
      this.kc.loadFromClusterAndUser(cluster, { name: 'in-cluster' });
      this.tokenFile = o.tokenFile ?? path.join(saDir, 'token');
      const nsFile = path.join(saDir, 'namespace');
      if (existsSync(nsFile)) this.namespace = readFileSync(nsFile, 'utf8').trim() || undefined;
      this.source = 'in-cluster';
    } else {
      const file =
        o.kubeconfig ??
        env.KUBECONFIG?.split(path.delimiter).find((f) => f && existsSync(f)) ??
        path.join(env.HOME ?? os.homedir(), '.kube', 'config');
      if (!existsSync(file)) {
        throw new ConfigError(
          `k8s: no Kubernetes config: not running in a cluster (KUBERNETES_SERVICE_HOST and ${path.join(saDir, 'token')}) and no kubeconfig at ${file}; set "kubeconfig"`,
          { field: 'kubeconfig' },
        );
      }
      try {
        this.kc.loadFromFile(file);
      } catch (e) {
        throw new ConfigError(`k8s: cannot load kubeconfig ${file}: ${(e as Error).message}`, {
          field: 'kubeconfig',
          cause: e,
        });
      }
      if (o.context) {
        if (!this.kc.getContextObject(o.context)) {
          throw new ConfigError(
            `k8s: "context" ${JSON.stringify(o.context)} is not in ${file}; its contexts: ${
              this.kc
                .getContexts()
                .map((c) => c.name)
                .join(', ') || '(none)'
            }`,
            { field: 'context' },
          );
        }
        this.kc.setCurrentContext(o.context);
      }
      const ctx = this.kc.getContextObject(this.kc.getCurrentContext());
      if (!ctx || !this.kc.getCurrentCluster())
        throw new ConfigError(`k8s: kubeconfig ${file} has no usable current context; set "context"`, {
          field: 'context',
        });
      this.namespace = ctx.namespace || undefined;
      this.tokenFile = o.tokenFile ?? userTokenFile(file, ctx.user);
      this.source = file;
    }
    if (this.tokenFile) this.refreshToken(true);
  }

  /** The API server URL (no credentials in it). */
  get server(): string {
    return this.kc.getCurrentCluster()?.server ?? '';
  }

  /**
   * Re-reads the token file when forced or when the token is older than tokenRefreshMs.
   * Returns true when the token changed. A read failure keeps the old token (logged).
   */
  refreshToken(force = false): boolean {
    if (!this.tokenFile) return false;
    if (!force && this.o.now() - this.tokenReadAt < this.o.tokenRefreshMs) return false;
    let next: string;
    try {
      next = trimSecret(readFileSync(this.tokenFile, 'utf8'));
    } catch (e) {
      this.o.logger.warn(
        { file: this.tokenFile, err: (e as Error).message },
        'k8s: cannot read the token file; keeping the current token',
      );
      return false;
    }
    this.tokenReadAt = this.o.now();
    if (next === this.token || next === '') return false;
    this.token = next;
    const name = this.kc.getCurrentUser()?.name;
    const users = this.kc.users.map((u): User => (u.name === name ? { ...u, token: next } : u));
    this.kc.loadFromOptions({
      clusters: this.kc.clusters,
      users,
      contexts: this.kc.contexts,
      currentContext: this.kc.getCurrentContext(),
    });
    return true;
  }

  /** True when a token file backs the credentials (so a 401 may be cured by re-reading it). */
  get hasTokenFile(): boolean {
    return !!this.tokenFile;
  }

  /** GET a JSON document. Rejects with KubeRequestError (status 0 for transport errors). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untrusted API JSON, every field is checked where it is read
  async getJson(apiPath: string, signal: AbortSignal, timeoutMs = 30_000): Promise<any> {
    this.refreshToken();
    const url = new URL(this.server + apiPath);
    const opts: https.RequestOptions = { method: 'GET', headers: { Accept: 'application/json' } };
    await this.kc.applyToHTTPSOptions(opts);
    const mod = url.protocol === 'http:' ? http : https;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { ...opts, signal, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => reject(new KubeRequestError(0, e.message)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untrusted API JSON, every field is checked where it is read
          let body: any;
          try {
            body = JSON.parse(text);
          } catch {
            body = undefined;
          }
          if (res.statusCode === 200 && body && typeof body === 'object') return resolve(body);
          const code = res.statusCode ?? 0;
          const msg =
            body?.kind === 'Status' && typeof body.message === 'string'
              ? body.message
              : `HTTP ${code}${res.statusMessage ? ` ${res.statusMessage}` : ''}`;
          reject(
            new KubeRequestError(
              code === 200 ? 0 : code,
              code === 200 ? 'the API server sent a response that is not JSON' : msg,
              body?.reason,
            ),
          );
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no response within ${timeoutMs} ms`)));
      req.on('error', (e) => reject(new KubeRequestError(0, e.message)));
      req.end();
    });
  }

  /**
   * Starts a watch with client-node's Watch. `onEvent` gets each decoded event; `onDone` is called
   * once when the stream ends: with null for a clean end, else the error (statusCode set for HTTP
   * failures). Neither is called after abort().
   */
  watch(
    apiPath: string,
    query: Record<string, string | number | boolean>,
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untrusted API JSON, every field is checked where it is read
    onEvent: (type: string, obj: any) => void,
    onDone: (err: (Error & { statusCode?: number }) | null) => void,
  ): WatchHandle {
    this.refreshToken();
    let aborted = false;
    let controller: AbortController | undefined;
    new Watch(this.kc)
      .watch(
        apiPath,
        query,
        (type, obj) => {
          if (!aborted) onEvent(type, obj);
        },
        (err) => {
          if (!aborted) {
            aborted = true;
            onDone(err ?? null);
          }
        },
      )
      .then((c) => {
        controller = c;
        if (aborted) c.abort();
      })
      .catch((err) => {
        if (!aborted) {
          aborted = true;
          onDone(err);
        }
      });
    return {
      abort: () => {
        aborted = true;
        controller?.abort();
      },
    };
  }
}

/** The kubeconfig user's `tokenFile` (client-go's name; `token-file` also accepted), made absolute. */
function userTokenFile(kubeconfig: string, userName: string): string | undefined {
  try {
    const doc = parseYaml(readFileSync(kubeconfig, 'utf8')) as {
      users?: { name?: string; user?: Record<string, unknown> }[];
    };
    const u = doc?.users?.find((x) => x?.name === userName)?.user;
    const f = u?.tokenFile ?? u?.['token-file'];
    if (typeof f !== 'string' || f === '') return undefined;
    return path.isAbsolute(f) ? f : path.join(path.dirname(kubeconfig), f);
  } catch {
    return undefined;
  }
}
