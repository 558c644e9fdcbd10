import * as grpc from '@grpc/grpc-js';

/** The pieces of grpc-js's experimental LB API that the bridge's policies use, named once. */
export const ConnectivityState = grpc.connectivityState;
export const { PickResultType, LeafLoadBalancer, QueuePicker, UnavailablePicker, createChildChannelControlHelper } =
  grpc.experimental;
export type GrpcPicker = grpc.experimental.Picker;
export type PickArgs = grpc.experimental.PickArgs;
export type PickResult = grpc.experimental.PickResult;
export type ChannelControlHelper = grpc.experimental.ChannelControlHelper;
export type GrpcEndpoint = grpc.experimental.Endpoint;
export type LeafLB = InstanceType<typeof LeafLoadBalancer>;
