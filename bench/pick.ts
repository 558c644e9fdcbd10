/**
 * ns per pick: Wayfinder's round-robin picker next to grpc-js's own round_robin picker, in the same
 * process and run, at 10, 100 and 10,000 endpoints. Rounds alternate between the two so drift on a
 * noisy machine hits both; the figure reported is the median over rounds.
 *
 *   npm run bench:pick            (ROUNDS=21 PICKS=2000000 to change the sample)
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import { RoundRobinPicker } from '../balancers/round-robin';
import { makeEndpoints } from '../testkit/conformance';
import { median, table } from './stats';

// grpc-js's round_robin policy builds a RoundRobinPicker over one pick_first child picker per
// endpoint. That class is module-private, so we load grpc-js's own compiled module source and
// expose the class: the code measured is exactly what grpc-js runs, not a re-implementation.
const GrpcRoundRobinPicker = loadPrivateClass('@grpc/grpc-js/build/src/load-balancer-round-robin', 'RoundRobinPicker');
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { PickResultType } = require('@grpc/grpc-js/build/src/picker');

class GrpcPickFirstPicker {
  constructor(private readonly subchannel: unknown) {}
  pick() {
    return { pickResultType: PickResultType.COMPLETE, subchannel: this.subchannel, status: null, onCallStarted: null, onCallEnded: null };
  }
}

function loadPrivateClass(mod: string, name: string): any {
  const file = require.resolve(mod);
  const src = readFileSync(file, 'utf8');
  const exportsObj: Record<string, unknown> = {};
  // eslint-disable-next-line no-new-func
  new Function('exports', 'require', 'module', '__filename', '__dirname', `${src}\nexports.__private = ${name};`)(exportsObj, createRequire(file), { exports: exportsObj }, file, file.replace(/\/[^/]*$/, ''));
  return exportsObj.__private;
}

const ROUNDS = Number(process.env.ROUNDS ?? 21);
const PICKS = Number(process.env.PICKS ?? 2_000_000);
let sink = 0;

function timeLoop(pick: () => number): number {
  const t0 = process.hrtime.bigint();
  let acc = 0;
  for (let i = 0; i < PICKS; i++) acc += pick();
  const ns = Number(process.hrtime.bigint() - t0);
  sink += acc;
  return ns / PICKS;
}

function bench(n: number): { ours: number; grpc: number } {
  const eps = makeEndpoints(n).map((e, i) => ({ ...e, port: 1 + (i % 60000) }));
  const ours = new RoundRobinPicker(eps, Math.random);
  const children = eps.map((e) => ({ endpoint: { addresses: [{ host: e.host, port: e.port }] }, picker: new GrpcPickFirstPicker({ port: e.port }) }));
  const theirs = new GrpcRoundRobinPicker(children, 0);
  const oursPick = () => ours.pick().endpoint!.port;
  const theirsPick = () => (theirs.pick({}).subchannel as { port: number }).port;
  for (let w = 0; w < 3; w++) {
    timeLoop(oursPick);
    timeLoop(theirsPick);
  }
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    if (r % 2) {
      a.push(timeLoop(oursPick));
      b.push(timeLoop(theirsPick));
    } else {
      b.push(timeLoop(theirsPick));
      a.push(timeLoop(oursPick));
    }
  }
  return { ours: median(a), grpc: median(b) };
}

const rows: (string | number)[][] = [];
for (const n of [10, 100, 10_000]) {
  const { ours, grpc } = bench(n);
  rows.push([n.toLocaleString('en'), ours.toFixed(1), grpc.toFixed(1), (ours / grpc).toFixed(2)]);
}
console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, ${ROUNDS} rounds x ${PICKS.toLocaleString('en')} picks, medians`);
console.log(table(['endpoints', 'wayfinder round_robin ns/pick', 'grpc-js round_robin ns/pick', 'ratio (ours / grpc-js)'], rows));
if (sink === 42) console.log('');
