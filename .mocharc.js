'use strict';
module.exports = {
  require: ['tsx/cjs'],
  ignore: ['node_modules/**', 'dist/**'],
  reporter: require.resolve('./scripts/reporter.js'),
  timeout: 20000,
  exit: true,
};
