export * from './conformance';
export * from './process';
export * from './dnsmasq';
