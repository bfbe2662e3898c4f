import { EventEmitter } from "node:events";
import * as grpc from "@grpc/grpc-js";
import type { geospool } from "../../proto/generated/spool.js";
import type { Principal } from "../auth/authorizer.js";
import { ServiceError, ServiceErrorCode } from "../service/errors.js";
import { ERROR_CODE_KEY } from "./status.js";

/** What a call's handler needs of its call: whether, and when, its caller went away. */
export interface CallCancellation {
  readonly cancelled: boolean;
  once(event: "cancelled", listener: () => void): unknown;
  removeListener(event: "cancelled", listener: () => void): unknown;
}

/** The calls a Session stream carries (the keys of SessionRequest's `call`). */
export type SessionCall = "enqueueBatch" | "dequeue" | "complete" | "release" | "extendLease";

/** A request as it arrives decoded (a message instance, as a unary handler gets it). */
interface CallRequests {
  enqueueBatch: geospool.v1.EnqueueBatchRequest;
  dequeue: geospool.v1.DequeueRequest;
  complete: geospool.v1.CompleteRequest;
  release: geospool.v1.ReleaseRequest;
  extendLease: geospool.v1.ExtendLeaseRequest;
}
type CallRequest<K extends SessionCall> = CallRequests[K];
type CallResponse<K extends SessionCall> = NonNullable<geospool.v1.SessionResponse.$Properties[K]>;

/** Each call as its unary handler runs it: the same function serves both. */
export type SessionCalls = {
  [K in SessionCall]: (
    req: CallRequest<K>,
    who: Principal,
    call: CallCancellation,
  ) => Promise<CallResponse<K>>;
};

/** Requests under way on one stream at most (the proto's promise). */
export const MAX_SESSION_REQUESTS = 1024;

const METHOD: Record<SessionCall, string> = {
  enqueueBatch: "EnqueueBatch",
  dequeue: "Dequeue",
  complete: "Complete",
  release: "Release",
  extendLease: "ExtendLease",
};

export interface SessionOptions {
  calls: SessionCalls;
  /** The stream's caller, from its metadata (throws when its credentials are bad). */
  principal(stream: { metadata: grpc.Metadata }): Principal;
  /** A failure as the status its call ends with (counted for `method`). */
  fail(method: string, err: unknown): Partial<grpc.ServiceError>;
  /** A call (or the stream) ended with `code`, for metrics. */
  finish(method: string, code: grpc.status): void;
  /** Work the node waits for before it closes the spool. */
  track<T>(p: Promise<T>): Promise<T>;
  /** Aborted when the node begins to shut down. */
  stopping: AbortSignal;
}

/** One request of a session: cancelled with its stream, or by a cancel message. */
class RequestCall extends EventEmitter implements CallCancellation {
  cancelled = false;
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.emit("cancelled");
  }
}

/**
 * The Session RPC (see the proto): each request runs the same function as its unary
 * handler, with the stream's principal, and is answered when it ends, in any order. The
 * stream ends (OK) once the client has ended its side, or the node is stopping, and no
 * request is under way; a cancelled stream cancels its requests (a waiting Dequeue takes
 * nothing, or puts back what it took).
 */
export function sessionHandler(
  opts: SessionOptions,
): grpc.handleBidiStreamingCall<
  geospool.v1.SessionRequest,
  geospool.v1.SessionResponse.$Properties
> {
  return (stream) => {
    let who: Principal;
    try {
      who = opts.principal(stream);
    } catch (err) {
      stream.emit("error", opts.fail("Session", err));
      return;
    }
    const { stopping } = opts;
    const under = new Map<number, RequestCall>();
    let inputEnded = false;
    let over = false;
    let paused = false;
    const close = () => {
      over = true;
      stopping.removeEventListener("abort", maybeEnd);
    };
    function maybeEnd() {
      if (over || under.size > 0 || !(inputEnded || stopping.aborted)) return;
      close();
      opts.finish("Session", grpc.status.OK);
      stream.end();
    }
    stopping.addEventListener("abort", maybeEnd);
    stream.once("cancelled", () => {
      if (!over) opts.finish("Session", grpc.status.CANCELLED);
      close();
      for (const call of under.values()) call.cancel();
    });

    const answer = (res: geospool.v1.SessionResponse.$Properties) => {
      if (over || stream.cancelled) return;
      // Past the stream's buffer mark, read no more requests until the client reads.
      if (!stream.write(res) && !paused) {
        paused = true;
        stream.pause();
        stream.once("drain", () => {
          paused = false;
          stream.resume();
        });
      }
    };
    const refuse = (id: number, method: string, code: ServiceErrorCode, message: string) =>
      answer({ id, error: errorOf(opts.fail(method, new ServiceError(code, message))) });

    stream.on("data", (m: geospool.v1.SessionRequest) => {
      const id = Number(m.id);
      if (m.call === "cancel") {
        under.get(Number(m.cancel))?.cancel();
        return;
      }
      const kind = m.call;
      if (kind === undefined) {
        return refuse(
          id,
          "Session",
          ServiceErrorCode.InvalidArgument,
          "a Session message needs a call: enqueue_batch, dequeue, complete, release, extend_lease or cancel",
        );
      }
      const method = METHOD[kind];
      if (stopping.aborted) {
        return refuse(
          id,
          method,
          ServiceErrorCode.Unavailable,
          "the node is shutting down; call another node",
        );
      }
      if (under.has(id)) {
        return refuse(
          id,
          method,
          ServiceErrorCode.InvalidArgument,
          `request ${id} is already under way on this Session stream`,
        );
      }
      if (under.size >= MAX_SESSION_REQUESTS) {
        return refuse(
          id,
          method,
          ServiceErrorCode.ResourceExhausted,
          `${MAX_SESSION_REQUESTS} requests are under way on this Session stream, the most it takes`,
        );
      }
      const call = new RequestCall();
      under.set(id, call);
      const run = opts.calls[kind] as (
        req: unknown,
        who: Principal,
        call: CallCancellation,
      ) => Promise<unknown>;
      opts
        .track(run(m[kind], who, call))
        .then(
          (res) => {
            opts.finish(method, grpc.status.OK);
            answer({ id, [kind]: res });
          },
          (err) => answer({ id, error: errorOf(opts.fail(method, err)) }),
        )
        .finally(() => {
          under.delete(id);
          maybeEnd();
        });
    });
    stream.on("end", () => {
      inputEnded = true;
      maybeEnd();
    });
    // A stream opened after the node began to stop: its abort event has fired already.
    maybeEnd();
  };
}

/** A call's failure status as a SessionResponse's `error`. */
function errorOf(g: Partial<grpc.ServiceError>): geospool.v1.BatchError.$Properties {
  const serviceCode = g.metadata?.get(ERROR_CODE_KEY)[0];
  return {
    code: g.code ?? grpc.status.UNKNOWN,
    message: g.details ?? "",
    serviceCode: typeof serviceCode === "string" ? serviceCode : "",
  };
}
