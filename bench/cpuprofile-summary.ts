/**
 * Summarizes a V8 .cpuprofile (node --cpu-prof): top frames by self time and by total (inclusive)
 * time, optionally within a window of the process's monotonic clock. Not a test.
 *
 *   node --import tsx bench/cpuprofile-summary.ts <file.cpuprofile> [--top 25] [--from µs] [--to µs]
 *        [--match substring]   (inclusive time of frames whose function or file contains it)
 *        [--callers substring] (who calls the frames matching it, by time)
 *
 * bench/many-services.ts --phases prints each phase's start on the same clock (process.hrtime).
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const argv = process.argv.slice(2);
const opt = (n: string, d?: string) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? argv[i + 1] : d;
};
const p = JSON.parse(readFileSync(argv[0], 'utf8')) as Profile;
const top = Number(opt('top', '25'));
const from = Number(opt('from', '0'));
const to = Number(opt('to', String(Number.MAX_SAFE_INTEGER)));

const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const short = (url: string) =>
  url
    .replace(/^file:\/\//, '')
    .replace(/^.*\/node_modules\//, 'nm:')
    .replace(/^.*\/catperf\//, '');
const label = (n: Node) =>
  `${n.callFrame.functionName || '(anon)'} ${short(n.callFrame.url)}${n.callFrame.url ? ':' + (n.callFrame.lineNumber + 1) : ''}`;

const callersOf = opt('callers');
const callers = new Map<string, number>();
const self = new Map<string, number>();
const total = new Map<string, number>();
let t = p.startTime;
let all = 0;
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i];
  const dt = p.timeDeltas[i + 1] ?? 0;
  if (t < from || t > to) continue;
  all += dt;
  let n = byId.get(p.samples[i])!;
  self.set(label(n), (self.get(label(n)) ?? 0) + dt);
  const seen = new Set<string>();
  for (;;) {
    const l = label(n);
    if (callersOf && l.includes(callersOf)) {
      const up = parent.get(n.id);
      const c = up === undefined ? '(none)' : label(byId.get(up)!);
      callers.set(c, (callers.get(c) ?? 0) + dt);
    }
    if (!seen.has(l)) {
      seen.add(l);
      total.set(l, (total.get(l) ?? 0) + dt);
    }
    const up = parent.get(n.id);
    if (up === undefined) break;
    n = byId.get(up)!;
  }
}
const ms = (us: number) => (us / 1000).toFixed(1).padStart(9);
const pc = (us: number) => ((100 * us) / all).toFixed(1).padStart(5);
console.log(
  `window ${from ? from : p.startTime} .. ${Math.min(to, p.endTime)} µs: ${(all / 1000).toFixed(0)} ms sampled`,
);
console.log(`\ntop ${top} by self time (ms, %):`);
for (const [l, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${ms(v)} ${pc(v)}%  ${l}`);
const match = opt('match');
console.log(`\ntop ${top} by total time${match ? ` matching "${match}"` : ''} (ms, %):`);
for (const [l, v] of [...total]
  .filter(([l]) => !match || l.includes(match))
  .sort((a, b) => b[1] - a[1])
  .slice(0, top))
  console.log(`${ms(v)} ${pc(v)}%  ${l}`);
if (callersOf) {
  console.log(`\ncallers of "${callersOf}" (ms):`);
  for (const [l, v] of [...callers].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${ms(v)} ${pc(v)}%  ${l}`);
}
