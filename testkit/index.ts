export * from './conformance';
export * from './process';
