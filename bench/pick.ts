/**
 * ns per pick: Wayfinder's round-robin picker next to grpc-js's own round_robin picker, in the same
 * process and run, at 10, 100 and 10,000 endpoints. Rounds alternate between the two so drift on a
 * noisy machine hits both; the figure reported is the median over rounds.
 *
 *   npm run bench:pick     (compiled by tsc, as users run it; ROUNDS=21 PICKS=2000000 to change the sample)
 */
import * as os from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { RoundRobinPicker } from '../balancers/round-robin';
import { BridgePicker } from '../grpc/picker';
import { makeEndpoints } from '../testkit/conformance';
import { loadPrivateClass, median, table } from './stats';

// grpc-js's round_robin policy builds a RoundRobinPicker over one pick_first child picker per
// endpoint. That class is module-private, so we load grpc-js's own compiled module source and
// expose the class: the code measured is exactly what grpc-js runs, not a re-implementation.
const GrpcRoundRobinPicker = loadPrivateClass('@grpc/grpc-js/build/src/load-balancer-round-robin', 'RoundRobinPicker');
const GrpcPickFirstPicker = loadPrivateClass('@grpc/grpc-js/build/src/load-balancer-pick-first', 'PickFirstPicker');

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

function bench(n: number): { ours: number; bridge: number; grpc: number } {
  const eps = makeEndpoints(n).map((e, i) => ({ ...e, port: 1 + (i % 60000) }));
  const ours = new RoundRobinPicker(eps, Math.random);
  const children = eps.map((e) => ({
    endpoint: { addresses: [{ host: e.host, port: e.port }] },
    picker: new GrpcPickFirstPicker({ port: e.port }),
  }));
  const theirs = new GrpcRoundRobinPicker(children, 0);
  // What a channel runs with wayfinder_round_robin: the bridge's picker over our picker, with one
  // grpc-js pick_first leaf picker per endpoint (exactly as the policy builds it).
  const leaves = new Map<unknown, unknown>(eps.map((e, i) => [e, children[i].picker]));
  const bridge = new BridgePicker(
    new RoundRobinPicker(eps, Math.random),
    leaves as never,
    'wayfinder_round_robin',
    false,
  );
  const args = { metadata: new grpc.Metadata(), extraPickInfo: {} };
  const oursPick = () => ours.pick().endpoint!.port;
  const bridgePick = () => (bridge.pick(args as never).subchannel as unknown as { port: number }).port;
  const theirsPick = () => (theirs.pick(args).subchannel as { port: number }).port;
  const loops = [oursPick, bridgePick, theirsPick];
  for (let w = 0; w < 3; w++) for (const l of loops) timeLoop(l);
  const samples: number[][] = [[], [], []];
  for (let r = 0; r < ROUNDS; r++) {
    // Rotate the order each round so drift on a noisy machine hits every variant alike.
    for (let k = 0; k < 3; k++) {
      const i = (r + k) % 3;
      samples[i].push(timeLoop(loops[i]));
    }
  }
  return { ours: median(samples[0]), bridge: median(samples[1]), grpc: median(samples[2]) };
}

const rows: (string | number)[][] = [];
for (const n of [10, 100, 10_000]) {
  const { ours, bridge, grpc: theirs } = bench(n);
  rows.push([
    n.toLocaleString('en'),
    ours.toFixed(1),
    bridge.toFixed(1),
    theirs.toFixed(1),
    (ours / theirs).toFixed(2),
    (bridge / theirs).toFixed(2),
  ]);
}
console.log(
  `node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, ${ROUNDS} rounds x ${PICKS.toLocaleString('en')} picks, medians`,
);
console.log(
  table(
    [
      'endpoints',
      'Wayfinder picker ns/pick',
      'wayfinder_round_robin in grpc-js (bridge) ns/pick',
      'grpc-js round_robin ns/pick',
      'picker / grpc-js',
      'bridge / grpc-js',
    ],
    rows,
  ),
);
if (sink === 42) console.log('');
