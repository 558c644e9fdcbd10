'use strict';
// Installs the real servers the adapter tests run against, from Debian's packages, when they are
// missing and we are root. Without root it only reports what is missing (tests that need a
// missing server fail under CI=true and are skipped with a reason otherwise).
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');

const PACKAGES = [
  { pkg: 'etcd-server', has: () => onPath('etcd') },
  { pkg: 'etcd-client', has: () => onPath('etcdctl') },
  {
    pkg: 'zookeeper',
    has: () => fs.existsSync('/usr/share/zookeeper') || fs.existsSync('/usr/share/java/zookeeper.jar'),
  },
  { pkg: 'dnsmasq-base', has: () => onPath('dnsmasq') || fs.existsSync('/usr/sbin/dnsmasq') },
  { pkg: 'openssl', has: () => onPath('openssl') },
  { pkg: 'kubernetes-client', has: () => onPath('kubectl') },
  // Apache Curator x-discovery 5.4 (and its jars: curator-framework/-client, zookeeper, jackson,
  // slf4j, guava) for the Java peer of test/interop/curator.test.ts; javac/java from the JDK.
  { pkg: 'libcurator-discovery-java', has: () => fs.existsSync('/usr/share/java/curator-x-discovery.jar') },
  { pkg: 'default-jdk-headless', has: () => onPath('javac') },
  // C-core (1.51), the xDS client of the xds/ tests and the grpclb client of test/interop (run with /usr/bin/python3, not a pyenv shim).
  {
    pkg: 'python3-grpcio',
    has: () =>
      spawnSync('/usr/bin/python3', ['-I', '-c', 'import grpc; grpc.insecure_channel'], { stdio: 'ignore' }).status ===
      0,
  },
];

function onPath(bin) {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;
}

function ensureSystemDeps({ log = console.log } = {}) {
  const missing = PACKAGES.filter((p) => !p.has()).map((p) => p.pkg);
  if (missing.length === 0) return [];
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    log(`[wayfinder] missing system packages (not root, not installing): ${missing.join(' ')}`);
    return missing;
  }
  log(`[wayfinder] installing system packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
  return PACKAGES.filter((p) => !p.has()).map((p) => p.pkg);
}

module.exports = { ensureSystemDeps, PACKAGES };
if (require.main === module) {
  const left = ensureSystemDeps();
  if (left.length) process.exitCode = 1;
}
