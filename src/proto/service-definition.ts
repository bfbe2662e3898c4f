/**
 * The grpc-js service definition of `geospool.v1.Spool` (proto/geospool/v1/spool.proto),
 * built on the protobufjs static code in src/proto/generated/, with typed handlers for the
 * server and a typed client constructor.
 *
 * Messages cross the wire as follows:
 * - a server handler receives decoded message instances (`geospool.v1.StatRequest`: scalar
 *   fields always set, with their proto3 defaults; message fields `null`/absent when unset;
 *   uint64 fields are plain numbers) and answers with plain objects
 *   (`geospool.v1.StatResponse.$Properties`);
 * - a client sends plain objects and receives decoded message instances.
 *
 * Keys are the lowerCamelCase method names (`extendLease`); paths are
 * `/geospool.v1.Spool/<Rpc>` (`/geospool.v1.Spool/ExtendLease`).
 */

import * as grpc from "@grpc/grpc-js";
import { geospool } from "./generated/spool.js";

/** The fully qualified name of the service. */
export const SPOOL_SERVICE_NAME = "geospool.v1.Spool";

/** What the definition needs of a generated message class. */
interface MessageCodec<Decoded, Plain> {
  encode(message: Plain): { finish(): Uint8Array };
  decode(bytes: Uint8Array): Decoded;
}

function serializer<Plain>(codec: MessageCodec<unknown, Plain>): (message: Plain) => Buffer {
  return (message) => {
    const bytes = codec.encode(message).finish();
    return Buffer.isBuffer(bytes)
      ? bytes
      : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function method<Req, ReqPlain, Res, ResPlain>(
  rpc: string,
  requestStream: boolean,
  responseStream: boolean,
  request: MessageCodec<Req, ReqPlain>,
  response: MessageCodec<Res, ResPlain>,
): grpc.MethodDefinition<ReqPlain, ResPlain> {
  return {
    path: `/${SPOOL_SERVICE_NAME}/${rpc}`,
    requestStream,
    responseStream,
    requestSerialize: serializer(request),
    // Decoded instances are valid plain objects of their own type.
    requestDeserialize: (bytes) => request.decode(bytes) as unknown as ReqPlain,
    responseSerialize: serializer(response),
    responseDeserialize: (bytes) => response.decode(bytes) as unknown as ResPlain,
  };
}

const v1 = geospool.v1;

/** Handlers of every Spool RPC, for `server.addService(spoolServiceDefinition, handlers)`. */
export interface SpoolServiceHandlers extends grpc.UntypedServiceImplementation {
  enqueue: grpc.handleClientStreamingCall<
    geospool.v1.EnqueueRequest,
    geospool.v1.EnqueueResponse.$Properties
  >;
  enqueueBatch: grpc.handleUnaryCall<
    geospool.v1.EnqueueBatchRequest,
    geospool.v1.EnqueueBatchResponse.$Properties
  >;
  dequeue: grpc.handleUnaryCall<
    geospool.v1.DequeueRequest,
    geospool.v1.DequeueResponse.$Properties
  >;
  complete: grpc.handleUnaryCall<
    geospool.v1.CompleteRequest,
    geospool.v1.CompleteResponse.$Properties
  >;
  release: grpc.handleUnaryCall<
    geospool.v1.ReleaseRequest,
    geospool.v1.ReleaseResponse.$Properties
  >;
  extendLease: grpc.handleUnaryCall<
    geospool.v1.ExtendLeaseRequest,
    geospool.v1.ExtendLeaseResponse.$Properties
  >;
  list: grpc.handleUnaryCall<geospool.v1.ListRequest, geospool.v1.ListResponse.$Properties>;
  stat: grpc.handleUnaryCall<geospool.v1.StatRequest, geospool.v1.StatResponse.$Properties>;
  readData: grpc.handleServerStreamingCall<
    geospool.v1.ReadDataRequest,
    geospool.v1.ReadDataResponse.$Properties
  >;
  watch: grpc.handleServerStreamingCall<
    geospool.v1.WatchRequest,
    geospool.v1.WatchResponse.$Properties
  >;
  clusterStatus: grpc.handleUnaryCall<
    geospool.v1.ClusterStatusRequest,
    geospool.v1.ClusterStatusResponse.$Properties
  >;
  session: grpc.handleBidiStreamingCall<
    geospool.v1.SessionRequest,
    geospool.v1.SessionResponse.$Properties
  >;
}

/** The method names of the service (the keys of `SpoolServiceHandlers`). */
export type SpoolMethodName =
  | "enqueue"
  | "enqueueBatch"
  | "dequeue"
  | "complete"
  | "release"
  | "extendLease"
  | "list"
  | "stat"
  | "readData"
  | "watch"
  | "clusterStatus"
  | "session";

/** The grpc-js service definition of geospool.v1.Spool. */
export const spoolServiceDefinition = {
  enqueue: method("Enqueue", true, false, v1.EnqueueRequest, v1.EnqueueResponse),
  enqueueBatch: method(
    "EnqueueBatch",
    false,
    false,
    v1.EnqueueBatchRequest,
    v1.EnqueueBatchResponse,
  ),
  dequeue: method("Dequeue", false, false, v1.DequeueRequest, v1.DequeueResponse),
  complete: method("Complete", false, false, v1.CompleteRequest, v1.CompleteResponse),
  release: method("Release", false, false, v1.ReleaseRequest, v1.ReleaseResponse),
  extendLease: method("ExtendLease", false, false, v1.ExtendLeaseRequest, v1.ExtendLeaseResponse),
  list: method("List", false, false, v1.ListRequest, v1.ListResponse),
  stat: method("Stat", false, false, v1.StatRequest, v1.StatResponse),
  readData: method("ReadData", false, true, v1.ReadDataRequest, v1.ReadDataResponse),
  watch: method("Watch", false, true, v1.WatchRequest, v1.WatchResponse),
  clusterStatus: method(
    "ClusterStatus",
    false,
    false,
    v1.ClusterStatusRequest,
    v1.ClusterStatusResponse,
  ),
  session: method("Session", true, true, v1.SessionRequest, v1.SessionResponse),
} as const satisfies grpc.ServiceDefinition<Record<SpoolMethodName, unknown>>;

/** A unary client method, with grpc-js's overloads. */
export interface UnaryClientMethod<Req, Res> {
  (
    request: Req,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<Res>,
  ): grpc.ClientUnaryCall;
  (
    request: Req,
    metadata: grpc.Metadata,
    callback: grpc.requestCallback<Res>,
  ): grpc.ClientUnaryCall;
  (
    request: Req,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<Res>,
  ): grpc.ClientUnaryCall;
  (request: Req, callback: grpc.requestCallback<Res>): grpc.ClientUnaryCall;
}

/** A client-streaming client method: write requests, end, then the callback gets the answer. */
export interface ClientStreamingClientMethod<Req, Res> {
  (
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<Res>,
  ): grpc.ClientWritableStream<Req>;
  (metadata: grpc.Metadata, callback: grpc.requestCallback<Res>): grpc.ClientWritableStream<Req>;
  (options: grpc.CallOptions, callback: grpc.requestCallback<Res>): grpc.ClientWritableStream<Req>;
  (callback: grpc.requestCallback<Res>): grpc.ClientWritableStream<Req>;
}

/** A server-streaming client method: read the answers from the returned stream. */
export interface ServerStreamingClientMethod<Req, Res> {
  (
    request: Req,
    metadata?: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<Res>;
  (request: Req, options?: grpc.CallOptions): grpc.ClientReadableStream<Res>;
}

/** A bidirectional-streaming client method: write requests and read answers on one stream. */
export interface BidiStreamingClientMethod<Req, Res> {
  (metadata?: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<Req, Res>;
  (options?: grpc.CallOptions): grpc.ClientDuplexStream<Req, Res>;
}

/** A client of geospool.v1.Spool: send plain objects, receive decoded messages. */
export interface SpoolClient extends grpc.Client {
  enqueue: ClientStreamingClientMethod<
    geospool.v1.EnqueueRequest.$Properties,
    geospool.v1.EnqueueResponse
  >;
  enqueueBatch: UnaryClientMethod<
    geospool.v1.EnqueueBatchRequest.$Properties,
    geospool.v1.EnqueueBatchResponse
  >;
  dequeue: UnaryClientMethod<geospool.v1.DequeueRequest.$Properties, geospool.v1.DequeueResponse>;
  complete: UnaryClientMethod<
    geospool.v1.CompleteRequest.$Properties,
    geospool.v1.CompleteResponse
  >;
  release: UnaryClientMethod<geospool.v1.ReleaseRequest.$Properties, geospool.v1.ReleaseResponse>;
  extendLease: UnaryClientMethod<
    geospool.v1.ExtendLeaseRequest.$Properties,
    geospool.v1.ExtendLeaseResponse
  >;
  list: UnaryClientMethod<geospool.v1.ListRequest.$Properties, geospool.v1.ListResponse>;
  stat: UnaryClientMethod<geospool.v1.StatRequest.$Properties, geospool.v1.StatResponse>;
  readData: ServerStreamingClientMethod<
    geospool.v1.ReadDataRequest.$Properties,
    geospool.v1.ReadDataResponse
  >;
  watch: ServerStreamingClientMethod<
    geospool.v1.WatchRequest.$Properties,
    geospool.v1.WatchResponse
  >;
  clusterStatus: UnaryClientMethod<
    geospool.v1.ClusterStatusRequest.$Properties,
    geospool.v1.ClusterStatusResponse
  >;
  session: BidiStreamingClientMethod<
    geospool.v1.SessionRequest.$Properties,
    geospool.v1.SessionResponse
  >;
}

/** The constructor of `SpoolClient` (a grpc-js generic client). */
export interface SpoolClientConstructor {
  new (
    address: string,
    credentials: grpc.ChannelCredentials,
    options?: grpc.ClientOptions,
  ): SpoolClient;
  readonly service: typeof spoolServiceDefinition;
  readonly serviceName: string;
}

/** `new SpoolClient("127.0.0.1:7401", grpc.credentials.createInsecure())`. */
export const SpoolClient = grpc.makeGenericClientConstructor(
  spoolServiceDefinition,
  "Spool",
) as unknown as SpoolClientConstructor;
