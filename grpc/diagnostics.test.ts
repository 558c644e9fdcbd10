import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

/**
 * The two gRPC mistakes grpc-js reports obscurely get a message naming the fix. Run in a fresh
 * process: installGrpc() must not have been called yet (other suites call it in this one).
 */
const ROOT = path.join(__dirname, '..');
const SCRIPT = `
const { EchoClient } = require('./testkit');
const { installGrpc, checkServiceConfig } = require('./grpc');
const out = {};
try { new EchoClient('wayfinder:///echo'); out.before = 'no error'; } catch (e) { out.before = e.message; }
try { checkServiceConfig(JSON.stringify({ loadBalancingConfig: [{ wayfinder_round_robin: {} }] })); out.policyBefore = 'no error'; } catch (e) { out.policyBefore = e.message; }
installGrpc();
new EchoClient('wayfinder:///echo').close();
new EchoClient('127.0.0.1:1').close();
const sc = (name) => ({ 'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ [name]: {} }] }) });
try { new EchoClient('wayfinder:///echo', undefined, sc('wayfinder_nope')); out.typo = 'no error'; } catch (e) { out.typo = e.message; }
new EchoClient('wayfinder:///echo', undefined, sc('wayfinder_p2c')).close();
new EchoClient('wayfinder:///echo', undefined, sc('round_robin')).close();
console.log(JSON.stringify(out));
`;

describe('grpc: diagnostics of common mistakes', function () {
  this.timeout(30_000);
  it('a wayfinder: target before installGrpc() and a mistyped wayfinder_* policy fail naming the fix', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', SCRIPT], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 25_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    assert.match(
      out.before,
      /needs Wayfinder's "wayfinder:" resolver, which is not installed: call installGrpc\(\{ discovery \}\)/,
    );
    assert.match(
      out.policyBefore,
      /unknown load-balancing policy "wayfinder_round_robin" \(installGrpc\(\) was not called/,
    );
    assert.match(out.typo, /unknown load-balancing policy "wayfinder_nope"; known: .*wayfinder_round_robin/);
  });
});
