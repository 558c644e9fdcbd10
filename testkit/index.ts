export * from './conformance';
export * from './process';
export * from './dnsmasq';
export * from './echo';
export * from './etcd';
export * from './fake-consul';
export * from './fake-kube-api';
export * from './zookeeper';
