/**
 * Turns the figures measured by the reliability suite (test/reliability/reliability.test.ts) into
 * docs/reliability.md. The suite never writes committed files: it writes its results to
 * RESULTS_FILE (under the OS temp dir); `npm run docs:reliability` renders them here.
 *
 *   npm test -- test/reliability/reliability.test.ts && npm run docs:reliability
 *
 * A partial run (some registries missing) is refused unless `--partial` is given, in which case
 * the report goes to the temp dir beside the results, not to docs/.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const DOC = path.join(__dirname, '..', 'docs', 'reliability.md');
/** Where the suite writes its measurements; RELIABILITY_RESULTS overrides it. */
export const RESULTS_FILE = process.env.RELIABILITY_RESULTS ?? path.join(os.tmpdir(), 'wayfinder-reliability.json');

/** The registries a complete run covers, in report order. */
export const REGISTRIES = [
  'etcd',
  'ZooKeeper',
  'Consul (fake agent)',
  'DNS (dnsmasq)',
  'Kubernetes (fake API server)',
  'file',
];

export interface ReliabilityResult {
  registry: string;
  scenario: string;
  calls: number;
  failed: number;
  /** ms, or undefined when not applicable. */
  convergenceMs?: number;
  boundMs?: number;
  notes: string;
}

/** What one run of the suite measured, and on what. */
export interface ReliabilityRun {
  date: string;
  node: string;
  cpus: number;
  blackholeMs: number;
  callGapMs: number;
  results: ReliabilityResult[];
}

export function isComplete(run: ReliabilityRun): boolean {
  return REGISTRIES.every((r) => run.results.some((x) => x.registry === r));
}

export function renderReport(run: ReliabilityRun): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  const rows = run.results.map(
    (r) =>
      `| ${r.registry} | ${r.scenario} | ${r.calls} | ${r.failed} | ${r.convergenceMs === undefined ? '-' : `${(r.convergenceMs / 1000).toFixed(2)} s`} | ${r.boundMs === undefined ? '-' : `${(r.boundMs / 1000).toFixed(1)} s`} | ${cell(r.notes)} |`,
  );
  return `# Reliability report

Measured by \`test/reliability/reliability.test.ts\` (part of \`npm test\`) and written by
\`npm run docs:reliability\` from that run's results; do not edit by hand.
Last run: ${run.date.slice(0, 10)}, Node ${run.node}, ${run.cpus} CPU(s).

Each row is one fault injected while a gRPC client makes one unary call at a time (${run.callGapMs} ms
apart, 3 s deadline, round robin) through a registry target such as \`etcd://<proxy>/echo\`.
Backends are echo servers registered directly in the registry; the client reaches the registry
through \`testkit/fault-proxy.ts\` (TCP registries) or the registry process itself is paused (dnsmasq).

- **calls / failed**: calls made from the start of the fault until convergence, and how many failed.
  Zero failed calls means the last known good set kept serving throughout.
- **convergence**: from the end of the fault (or from the change made after it, see notes) until the
  calls reach exactly the registry's current set. For "registrant SIGSTOP" it is the time from
  SIGSTOP until the instance is gone from the registry's view (TTL expiry).
- **bound**: what the test asserts. The bounds follow from the client settings used, which are
  shortened where the defaults are minutes: Consul \`wait=5s\` (default 5 min), Kubernetes
  \`idle-timeout=5s&backoff-max=2s\` (default 3 min; after an outage of some seconds the retry
  backoff alone can add ~10 s with the default backoff-max), etcd \`progress-interval=2s&request-timeout=2s\` (defaults
  10 s and 5 s). With defaults, detection of a silent connection takes up to: etcd
  progress-interval + request-timeout (15 s), Consul wait + wait/16 + 1 s (5 min 20 s), Kubernetes
  idle-timeout (3 min), ZooKeeper the session timeout (15 s), DNS max-refresh (30 s).

Blackholes last ${run.blackholeMs / 1000} s, as the issue asks; the file registry's outage (a corrupt file) lasts 10 s.

| registry | scenario | calls | failed | convergence | bound | notes |
|---|---|---:|---:|---:|---:|---|
${rows.join('\n')}

See [operations.md](operations.md) for what Wayfinder does in each of these cases.
`;
}

/**
 * The hand-written sections of docs/reliability.md (from `## Clusters` on: the cluster suite and the
 * soak, measured by their own commands), kept as they are when the generated part is rewritten.
 */
export function handWritten(doc = DOC): string {
  let text: string;
  try {
    text = readFileSync(doc, 'utf8');
  } catch {
    return '';
  }
  const at = text.indexOf('\n## Clusters');
  return at < 0 ? '' : text.slice(at);
}

function main(argv: string[]): void {
  const partial = argv.includes('--partial');
  let run: ReliabilityRun;
  try {
    run = JSON.parse(readFileSync(RESULTS_FILE, 'utf8')) as ReliabilityRun;
  } catch (e) {
    throw new Error(
      `no reliability results at ${RESULTS_FILE} (${(e as Error).message}): run \`npm test -- test/reliability/reliability.test.ts\` first`,
      { cause: e },
    );
  }
  const complete = isComplete(run);
  if (!complete && !partial) {
    const missing = REGISTRIES.filter((r) => !run.results.some((x) => x.registry === r));
    throw new Error(
      `the results at ${RESULTS_FILE} lack ${missing.join(', ')} (a partial run): docs/reliability.md is written only from a full run; pass --partial to render it to the temp dir`,
    );
  }
  const out = complete ? DOC : path.join(path.dirname(RESULTS_FILE), 'wayfinder-reliability.md');
  writeFileSync(out, renderReport(run) + handWritten());
  console.log(`reliability report written to ${out}`);
}

if (require.main === module) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    console.error((e as Error).message);
    process.exitCode = 1;
  }
}
