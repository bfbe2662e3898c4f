import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { geospool } from "../../proto/generated/spool.js";
import type { SpoolServiceHandlers } from "../../proto/service-definition.js";
import { type Action, Authorizer, allows, type Principal } from "../auth/authorizer.js";
import { ServiceError, ServiceErrorCode } from "../service/errors.js";
import type { SpoolService } from "../service/spool-service.js";
import type { TransitionKind } from "../service/transitions.js";
import { durationMs, toDuration, toEntry, toTimestamp } from "./convert.js";
import { type CallCancellation, type SessionCalls, sessionHandler } from "./session.js";
import { toGrpcError } from "./status.js";

export interface PeerInfo {
  nodeId: string;
  region: string;
  grpcEndpoint: string;
  connected: boolean;
  replicationLagMs: number;
  lagBytes: number;
  slotState: string;
  applyErrors: number;
  pendingFetches: number;
  /** The peer's node answers heartbeats (see cluster-status.ts). */
  reachable?: boolean;
  /** While not reachable: since when (ms since epoch). */
  unreachableSinceMs?: number | null;
}

export interface SpoolServerOptions {
  service: SpoolService;
  authorizer: Authorizer;
  logger: Logger;
  nodeId: string;
  region: string;
  /** Replication peers, for ClusterStatus (none until replication exists). */
  peers?: () => Promise<PeerInfo[]>;
  /** Called once per finished call, for metrics. */
  onCall?: (method: string, code: grpc.status) => void;
  /** An Enqueue stream with no message for this long is ended (ms; limits.uploadIdleTimeout). */
  uploadIdleTimeoutMs?: number;
}

const KIND: Record<TransitionKind, geospool.v1.WatchEventKind> = {
  enqueued: geospool.v1.WatchEventKind.WATCH_EVENT_KIND_ENQUEUED,
  checked_out: geospool.v1.WatchEventKind.WATCH_EVENT_KIND_CHECKED_OUT,
  saved: geospool.v1.WatchEventKind.WATCH_EVENT_KIND_SAVED,
  removed: geospool.v1.WatchEventKind.WATCH_EVENT_KIND_REMOVED,
  released: geospool.v1.WatchEventKind.WATCH_EVENT_KIND_RELEASED,
  lease_expired: geospool.v1.WatchEventKind.WATCH_EVENT_KIND_LEASE_EXPIRED,
};

type AnyCall = { metadata: grpc.Metadata; getPeer(): string };

/**
 * The geospool.v1.Spool handlers: authenticate and authorize each call, translate
 * messages to SpoolService calls, and map failures to statuses (in status.ts).
 */
/** The handlers, and a promise for when every call under way has finished its work. */
export interface SpoolHandlers {
  handlers: SpoolServiceHandlers;
  /** Resolves once no call is running (uploads cut by a shutdown have cleaned up). */
  idle(): Promise<void>;
}

/** Who a call's `authorization` metadata names; unauthenticated if it names no one. */
export function principalOf(authorizer: Authorizer, metadata: grpc.Metadata): Principal {
  const v = metadata.get("authorization")[0];
  return authorizer.authenticate(typeof v === "string" ? v : undefined);
}

export function spoolHandlers(opts: SpoolServerOptions): SpoolHandlers {
  const running = new Set<Promise<unknown>>();
  function track<T>(p: Promise<T>): Promise<T> {
    running.add(p);
    p.then(
      () => running.delete(p),
      () => running.delete(p),
    );
    return p;
  }
  const { service, authorizer } = opts;
  const log = opts.logger;

  function principal(call: AnyCall): Principal {
    return principalOf(authorizer, call.metadata);
  }
  function need(who: Principal, action: Action, queue?: string) {
    authorizer.authorize(who, action, queue);
  }
  /** The queues `who` may read (Stat, ReadData): dequeue rights. */
  function readable(who: Principal): string[] {
    return service.queues.filter((q) => allows(who, "dequeue", q));
  }
  /** `p`, or deadline_exceeded if the client sends nothing for uploadIdleTimeoutMs. */
  function idle<T>(p: Promise<T>): Promise<T> {
    const ms = opts.uploadIdleTimeoutMs;
    if (ms === undefined) return p;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new ServiceError(
              ServiceErrorCode.DeadlineExceeded,
              `the Enqueue stream sent nothing for ${ms} ms (limits.uploadIdleTimeout); nothing was stored`,
            ),
          ),
        ms,
      );
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }
  function finish(method: string, code: grpc.status) {
    opts.onCall?.(method, code);
  }
  function fail(method: string, err: unknown) {
    const g = toGrpcError(err);
    if (g.code === grpc.status.INTERNAL) log.error({ err, method }, "call failed");
    finish(method, g.code ?? grpc.status.UNKNOWN);
    return g;
  }
  function unary<Req, Res>(
    method: string,
    f: (req: Req, who: Principal, call: CallCancellation) => Promise<Res>,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      let who: Principal;
      try {
        who = principal(call);
      } catch (err) {
        callback(fail(method, err));
        return;
      }
      track(f(call.request, who, call)).then(
        (res) => {
          finish(method, grpc.status.OK);
          callback(null, res);
        },
        (err) => callback(fail(method, err)),
      );
    };
  }

  /** A Dequeue's fields as the service takes them. */
  function dequeueArgs(req: geospool.v1.IDequeueRequest) {
    const leaseMs = durationMs(req.lease);
    const waitMs = durationMs(req.wait);
    const inlineDataMax = req.inlineDataMax ?? 0;
    return {
      queue: req.queue ?? "",
      ...(leaseMs !== undefined ? { leaseMs } : {}),
      ...(waitMs !== undefined ? { waitMs } : {}),
      ...(inlineDataMax > 0 ? { inlineDataMax } : {}),
    };
  }

  /** Check out the next entry for `call`'s caller; put it back if the caller went away. */
  async function takeNext(
    args: ReturnType<typeof dequeueArgs>,
    call: CallCancellation,
  ): Promise<geospool.v1.IDequeueResponse> {
    // Gone already (a Complete's caller may leave while the finish runs): take nothing.
    if (call.cancelled) return { leaseToken: "" };
    const ac = new AbortController();
    const onCancel = () => ac.abort();
    call.once("cancelled", onCancel);
    try {
      const got = await service.dequeue({ ...args, signal: ac.signal });
      if (!got) return { leaseToken: "" };
      if (call.cancelled) {
        // Nobody will receive it: put it back at once, without counting an attempt.
        await service.putBack(args.queue, got.entry.name, got.leaseToken).catch(() => undefined);
        return { leaseToken: "" };
      }
      const res = { entry: toEntry(got.entry), leaseToken: got.leaseToken };
      return got.data === undefined ? res : { ...res, data: got.data };
    } finally {
      call.removeListener("cancelled", onCancel);
    }
  }

  /**
   * Complete's `then_dequeue`, once the finish is done. A failure here does not undo the
   * finish: the answer leaves `next` out, as a node that does not know then_dequeue would,
   * so the client makes a Dequeue call of its own, which says what is wrong.
   */
  async function thenDequeue(
    args: ReturnType<typeof dequeueArgs> | undefined,
    call: CallCancellation,
  ): Promise<{ next?: geospool.v1.IDequeueResponse }> {
    if (args === undefined) return {};
    try {
      return { next: await takeNext(args, call) };
    } catch (err) {
      log.warn({ err, queue: args.queue }, "the dequeue after a Complete failed");
      return {};
    }
  }

  /** The calls a Session stream also carries: one function serves the RPC and the message. */
  const calls: SessionCalls = {
    enqueueBatch: async (req: geospool.v1.EnqueueBatchRequest, who) => {
      const outcomes = await service.enqueueBatch(
        who.name,
        req.entries.map((e) => ({
          queue: e.queue ?? "",
          metadata: asBuffer(e.metadata),
          data: asBuffer(e.data),
          ...(e.idempotencyKey ? { idempotencyKey: e.idempotencyKey } : {}),
        })),
        (queue) => need(who, "enqueue", queue),
      );
      return {
        results: outcomes.map((o) => {
          if (o.error === undefined) {
            return { entry: toEntry(o.entry), deduplicated: o.deduplicated };
          }
          const g = toGrpcError(o.error);
          if (g.code === grpc.status.INTERNAL) {
            log.error({ err: o.error, method: "EnqueueBatch" }, "batch entry failed");
          }
          return {
            error: {
              code: g.code ?? grpc.status.UNKNOWN,
              message: g.details ?? "",
              serviceCode: o.error.code,
            },
          };
        }),
      };
    },

    dequeue: async (req: geospool.v1.DequeueRequest, who, call) => {
      need(who, "dequeue", req.queue);
      return takeNext(dequeueArgs(req), call);
    },

    complete: async (req: geospool.v1.CompleteRequest, who, call) => {
      need(who, "dequeue", req.queue);
      // The next checkout is checked before anything is finished.
      const next = req.thenDequeue ? dequeueArgs(req.thenDequeue) : undefined;
      if (next !== undefined) {
        need(who, "dequeue", next.queue);
        service.checkDequeue(next);
      }
      if (req.action === "save" && req.save) {
        const to = req.save.queue ?? "";
        need(who, "enqueue", to);
        const meta = req.save.metadata;
        const saved = await service.complete({
          queue: req.queue,
          name: req.name,
          leaseToken: req.leaseToken,
          action: {
            kind: "save",
            queue: to,
            ...(meta !== null && meta !== undefined ? { metadata: Buffer.from(meta) } : {}),
          },
        });
        return { ...(saved ? { entry: toEntry(saved) } : {}), ...(await thenDequeue(next, call)) };
      }
      if (req.action === "remove") {
        await service.complete({
          queue: req.queue,
          name: req.name,
          leaseToken: req.leaseToken,
          action: { kind: "remove" },
        });
        return thenDequeue(next, call);
      }
      throw new ServiceError(ServiceErrorCode.InvalidArgument, "Complete needs save or remove");
    },

    release: async (req: geospool.v1.ReleaseRequest, who) => {
      need(who, "dequeue", req.queue);
      return service.release({ queue: req.queue, name: req.name, leaseToken: req.leaseToken });
    },

    extendLease: async (req: geospool.v1.ExtendLeaseRequest, who) => {
      need(who, "dequeue", req.queue);
      const until = await service.extendLease({
        queue: req.queue,
        name: req.name,
        leaseToken: req.leaseToken,
        leaseMs: durationMs(req.lease) ?? 0,
      });
      return { leaseUntil: toTimestamp(until) };
    },
  };

  const handlers: SpoolServiceHandlers = {
    enqueue(call, callback) {
      const method = "Enqueue";
      let who: Principal;
      try {
        who = principal(call);
      } catch (err) {
        callback(fail(method, err));
        return;
      }
      const iterator = call[Symbol.asyncIterator]() as AsyncIterator<geospool.v1.EnqueueRequest>;
      // A client that goes away mid-upload does not always end the request stream: race
      // every read against the cancellation, so the half-written entry is cleaned up.
      const cancelled = new Promise<never>((_, reject) => {
        call.once("cancelled", () =>
          reject(new ServiceError(ServiceErrorCode.Cancelled, "client cancelled the upload")),
        );
      });
      cancelled.catch(() => undefined);
      const next = () => idle(Promise.race([iterator.next(), cancelled]));
      track(
        (async () => {
          const first = await next();
          if (first.done || first.value.message !== "header" || !first.value.header) {
            throw new ServiceError(
              ServiceErrorCode.InvalidArgument,
              "the first Enqueue message must be a header",
            );
          }
          const h = first.value.header;
          const queue = h.queue ?? "";
          need(who, "enqueue", queue);
          async function* chunks(): AsyncGenerator<Uint8Array> {
            for (;;) {
              const msg = await next();
              if (msg.done) {
                // A reset stream ends like a finished one: only a commit proves the data whole.
                throw new ServiceError(
                  ServiceErrorCode.InvalidArgument,
                  "the Enqueue stream ended without a commit message; nothing was stored",
                );
              }
              if (msg.value.message === "commit") break;
              if (msg.value.message !== "chunk" || !msg.value.chunk) {
                throw new ServiceError(
                  ServiceErrorCode.InvalidArgument,
                  "after the header, Enqueue messages must be data chunks and then one commit",
                );
              }
              yield msg.value.chunk;
            }
            const after = await next();
            if (!after.done) {
              throw new ServiceError(
                ServiceErrorCode.InvalidArgument,
                "a message followed the Enqueue commit",
              );
            }
          }
          const header = {
            queue,
            metadata: Buffer.from(h.metadata ?? new Uint8Array()),
            principal: who.name,
            ...(h.idempotencyKey ? { idempotencyKey: h.idempotencyKey } : {}),
            ...(h.dataSize !== null && h.dataSize !== undefined
              ? { dataSize: Number(h.dataSize) }
              : {}),
            // Present but empty is a malformed digest, not an absent one.
            ...(h.dataSha256 !== null && h.dataSha256 !== undefined
              ? { dataSha256: h.dataSha256 }
              : {}),
          };
          return service.enqueue(header, chunks());
        })(),
      ).then(
        ({ entry, deduplicated }) => {
          finish(method, grpc.status.OK);
          callback(null, { entry: toEntry(entry), deduplicated });
        },
        (err) => callback(fail(method, err)),
      );
    },

    enqueueBatch: unary("EnqueueBatch", calls.enqueueBatch),
    dequeue: unary("Dequeue", calls.dequeue),
    complete: unary("Complete", calls.complete),
    release: unary("Release", calls.release),
    extendLease: unary("ExtendLease", calls.extendLease),
    list: unary("List", async (req: geospool.v1.ListRequest, who) => {
      need(who, "dequeue", req.queue);
      const page = await service.list({
        queue: req.queue,
        checkedOut: req.checkedOut,
        pageSize: req.pageSize,
        pageToken: req.pageToken,
      });
      return { entries: page.entries.map(toEntry), nextPageToken: page.nextPageToken };
    }),

    stat: unary("Stat", async (req: geospool.v1.StatRequest, who) => {
      // Authorised first: only the queues the caller may read are looked at.
      const r = await service.stat({
        name: req.name,
        queues: readable(who),
        ...(req.queue ? { queue: req.queue } : {}),
      });
      return {
        entry: toEntry(r.entry),
        state:
          r.state === "queued"
            ? geospool.v1.EntryState.ENTRY_STATE_QUEUED
            : geospool.v1.EntryState.ENTRY_STATE_CHECKED_OUT,
      };
    }),

    readData(call) {
      const method = "ReadData";
      track(
        (async () => {
          const who = principal(call);
          const req = call.request;
          const limit =
            req.limit !== null && req.limit !== undefined ? Number(req.limit) : undefined;
          const source = service.readData({
            name: req.name,
            offset: Number(req.offset),
            queues: readable(who),
            ...(limit !== undefined ? { limit } : {}),
          });
          for await (const part of source) {
            if (call.cancelled) break;
            const ok = call.write({
              offset: part.offset,
              chunk: part.chunk,
              sha256: part.sha256 ?? "",
            });
            // Flow control: wait for the transport to drain rather than buffer the whole file.
            if (!ok) await drained(call);
          }
        })(),
      ).then(
        () => {
          finish(method, grpc.status.OK);
          call.end();
        },
        // grpc-js ends a server stream with a status when the call emits "error".
        (err) => call.emit("error", fail(method, err)),
      );
    },

    watch(call) {
      const method = "Watch";
      const ac = new AbortController();
      call.once("cancelled", () => ac.abort());
      track(
        (async () => {
          const who = principal(call);
          const queues = call.request.queues;
          // Every queue: dequeue (or admin) on "*".
          if (queues.length === 0) need(who, "dequeue");
          for (const q of queues) need(who, "dequeue", q);
          // Validates the queues before anything is sent.
          const transitions = service.watch(queues, ac.signal);
          // Send headers now so the client knows the watch is established: the loop below
          // registers with the bus in this same tick (a generator runs up to its first
          // wait on its first next()), before the headers leave.
          call.sendMetadata(new grpc.Metadata());
          for await (const t of transitions) {
            const ok = call.write({
              kind: KIND[t.kind],
              entry: { name: t.name, queue: t.queue },
              fromQueue: t.fromQueue ?? "",
              at: toTimestamp(t.at),
            });
            // Backpressure: a slow watcher's events wait in the bus (bounded), not in gRPC.
            if (!ok) await drained(call);
            if (call.cancelled) break;
          }
        })(),
      ).then(
        () => {
          finish(method, grpc.status.OK);
          call.end();
        },
        // grpc-js ends a server stream with a status when the call emits "error".
        (err) => call.emit("error", fail(method, err)),
      );
    },

    session: sessionHandler({ calls, principal, fail, finish, track, stopping: service.stopping }),

    clusterStatus: unary("ClusterStatus", async (_req, who) => {
      need(who, "admin");
      const depths = await service.queueDepths();
      const peers = (await opts.peers?.()) ?? [];
      return {
        nodeId: opts.nodeId,
        region: opts.region,
        queues: depths.map((d) => ({ queue: d.queue, queued: d.queued, checkedOut: d.checkedOut })),
        peers: peers.map((p) => ({
          nodeId: p.nodeId,
          region: p.region,
          grpcEndpoint: p.grpcEndpoint,
          connected: p.connected,
          replicationLag: toDuration(p.replicationLagMs),
          lagBytes: p.lagBytes,
          slotState: p.slotState,
          applyErrors: p.applyErrors,
          pendingFetches: p.pendingFetches,
          unreachable: p.reachable === false,
          ...(p.reachable === false && p.unreachableSinceMs != null
            ? { unreachableSince: toTimestamp(p.unreachableSinceMs) }
            : {}),
        })),
      };
    }),
  };
  return {
    handlers,
    async idle() {
      while (running.size > 0) await Promise.allSettled([...running]);
    },
  };
}

/**
 * Wait until a server stream can take more, or is gone: a cancelled call never emits
 * "drain", and waiting for it alone would hang the handler (and the shutdown behind it).
 */
function drained(call: grpc.ServerWritableStream<unknown, unknown>): Promise<void> {
  if (call.cancelled || call.destroyed) return Promise.resolve();
  const events = ["drain", "close", "error", "cancelled", "finish"];
  return new Promise((resolve) => {
    const done = () => {
      for (const ev of events) call.off(ev, done);
      resolve();
    };
    for (const ev of events) call.once(ev, done);
  });
}

export { Authorizer };

/** Decoded bytes as a Buffer, without a copy when they are one already. */
function asBuffer(b: Uint8Array | null | undefined): Buffer {
  if (!b) return Buffer.alloc(0);
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
