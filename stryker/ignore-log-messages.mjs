// Stryker ignorer "log-messages": skips the string and template literals passed to a logger call
// (logger.warn/info/error/debug/trace/fatal(fields, message) and ring-hash's warn(logger, fields, message)).
// The wording of a log line is not behaviour the tests pin; the call itself, its fields and the
// condition around it are still mutated. See docs/testing.md.
import { declareValuePlugin, PluginKind } from '@stryker-mutator/api/plugin';

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);

function isLogCall(node) {
  if (!node || (node.type !== 'CallExpression' && node.type !== 'OptionalCallExpression')) return false;
  const callee = node.callee;
  if (callee.type === 'Identifier') return callee.name === 'warn';
  if (callee.type === 'MemberExpression' || callee.type === 'OptionalMemberExpression') {
    return !callee.computed && callee.property.type === 'Identifier' && LEVELS.has(callee.property.name);
  }
  return false;
}

export const strykerPlugins = [
  declareValuePlugin(PluginKind.Ignore, 'log-messages', {
    shouldIgnore(path) {
      const t = path.node.type;
      if (t !== 'StringLiteral' && t !== 'TemplateLiteral') return undefined;
      const parent = path.parent;
      if (isLogCall(parent) && parent.arguments.includes(path.node)) return 'log message text (see docs/testing.md)';
      return undefined;
    },
  }),
];
