'use strict';
module.exports = {
  require: ['tsx/cjs'],
  spec: ['{core,adapters,balancers,grpc,testkit,cli,examples,test}/**/*.test.ts'],
  ignore: ['node_modules/**', 'dist/**'],
  reporter: require.resolve('./scripts/reporter.js'),
  timeout: 20000,
  exit: true,
};
