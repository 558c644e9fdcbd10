/**
 * grpclb lookaside load balancing: the `wayfinder_grpclb` client policy (registered by
 * installGrpc()) and a balancer server fed by any Wayfinder registry. See docs/grpclb.md.
 */
import '../../builtins';

export {
  GRPCLB_POLICY,
  grpclbPolicyOptions,
  parseGrpclbConfig,
  registerGrpclbPolicy,
  type GrpclbPolicyConfig,
} from './policy';
export { startBalancerServer, serviceOfName, type BalancerServer, type BalancerServerOptions } from './server';
export {
  BALANCE_LOAD_PATH,
  GRPCLB_PROTO_PATH,
  LB_TOKEN_METADATA,
  loadBalancerService,
  packIp,
  unpackIp,
} from './protocol';
export {
  buildServerList,
  lbTokenFor,
  LoadReportAggregator,
  type LoadReport,
  type LoadTotals,
  type ServerListEntry,
  type ServerListOptions,
} from '../../balancers/grpclb';
