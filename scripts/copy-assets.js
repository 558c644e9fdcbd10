'use strict';
// Copies the non-TypeScript files the compiled package needs at run time (.proto, and the LICENSE
// files of vendored protos) into dist/.
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const dirs = ['core', 'adapters', 'balancers', 'grpc', 'testkit', 'xds', 'cli'];
function walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.proto') || (e.name === 'LICENSE' && p.includes(`${path.sep}proto${path.sep}`))) {
      const out = path.join(root, 'dist', path.relative(root, p));
      fs.mkdirSync(path.dirname(out), { recursive: true });
      fs.copyFileSync(p, out);
    }
  }
}
for (const d of dirs) if (fs.existsSync(path.join(root, d))) walk(path.join(root, d));
