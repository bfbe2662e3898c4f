import * as grpc from "@grpc/grpc-js";
import type { geospool } from "../../proto/generated/spool.js";
import type { EntryInfo } from "../entry-info.js";
import { timestampMs, toDuration } from "../grpc/convert.js";
import type { BulkResult } from "./bulk.js";

/*
 * The client's messages: what GeospoolClient's calls send and how their answers are read
 * (requests, leases, entries, refusals and errors), apart from the calls themselves.
 */

/** How a checkout is finished: removed, or saved into a queue (with new metadata). */
export type FinishAction =
  | { remove: true }
  | { save: string; metadata?: Buffer | string | undefined };

/** A checkout held through a node: complete, release and extend go back to that node. */
export interface Lease {
  entry: EntryInfo;
  token: string;
  /**
   * The entry's data, when the dequeue asked for it (`inlineDataMax`) and it was no
   * larger; otherwise read it with `readData`.
   */
  data?: Buffer;
  /** The node that holds the checkout. */
  endpoint: string;
}

export class ClientError extends Error {
  readonly code: grpc.status;
  readonly endpoint: string | undefined;
  constructor(
    message: string,
    code: grpc.status,
    endpoint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "ClientError";
    this.code = code;
    this.endpoint = endpoint;
  }
}

export type BatchRequest = geospool.v1.EnqueueBatchRequest.$Properties;

/** Bytes of data and metadata of an EnqueueBatch request. */
export function batchBytes(req: BatchRequest): number {
  let n = 0;
  for (const e of req.entries ?? []) n += (e.data?.length ?? 0) + (e.metadata?.length ?? 0);
  return n;
}
/**
 * One entry's refusal in an EnqueueBatch answer, shaped as a gRPC call error (code,
 * details, metadata with the service's error code) so it is retried and reported as the
 * Enqueue stream's call-level status would be.
 */
export class EntryRefusal extends Error {
  readonly metadata = new grpc.Metadata();
  constructor(
    readonly code: grpc.status,
    readonly details: string,
    serviceCode: string,
  ) {
    super(`${code} ${grpc.status[code] ?? code}: ${details}`);
    // src/node/grpc/status.ts ERROR_CODE_KEY (not imported: it would bring the server's
    // error types, and the spool's, into the client).
    if (serviceCode) this.metadata.set("geospool-error-code", serviceCode);
  }
}

/** One entry's result in an EnqueueBatch answer (undefined: the node sent none for it). */
export function bulkResultOf(r: geospool.v1.IBatchResult | undefined): BulkResult {
  if (r?.entry)
    return { ok: true, entry: fromEntry(r.entry), deduplicated: r.deduplicated === true };
  return {
    ok: false,
    code: r?.error?.code ?? grpc.status.UNKNOWN,
    message: r?.error?.message ?? "no result",
    serviceCode: r?.error?.serviceCode ?? "",
  };
}

export function statusOf(err: unknown): grpc.status {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "number" ? code : grpc.status.UNKNOWN;
}

export function write(
  call: grpc.ClientWritableStream<geospool.v1.EnqueueRequest.$Properties>,
  msg: geospool.v1.EnqueueRequest.$Properties,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const ok = call.write(msg, (err?: Error | null) => (err ? reject(err) : undefined));
    if (ok) resolve();
    else call.once("drain", () => resolve());
  });
}

export function fromEntry(e: geospool.v1.Entry.$Properties | null | undefined): EntryInfo {
  if (!e) throw new ClientError("reply without an entry", grpc.status.INTERNAL);
  const out: EntryInfo = {
    name: e.name ?? "",
    queue: e.queue ?? "",
    metadata: Buffer.from(e.metadata ?? new Uint8Array()),
    attempts: e.attempts ?? 0,
    dataSize: Number(e.dataSize ?? 0),
    dataSha256: e.dataSha256 ?? "",
    enqueuedAt: timestampMs(e.enqueuedAt) ?? 0,
  };
  const until = timestampMs(e.leaseUntil);
  if (until !== undefined) out.leaseUntil = until;
  return out;
}

/** A dequeue's options, as GeospoolClient takes them. */
export interface DequeueOptions {
  leaseMs?: number;
  waitMs?: number;
  /**
   * Have the node return the entry's data with it (`Lease.data`) when it is at most this
   * many bytes (the node counts more than 256 KiB, or than its gRPC message size leaves
   * room for, as that): a small job in one round trip. `Infinity`: as much as the node sends.
   */
  inlineDataMax?: number;
}

export function dequeueRequest(
  queue: string,
  options: DequeueOptions,
): geospool.v1.DequeueRequest.$Properties {
  const req: geospool.v1.DequeueRequest.$Properties = { queue };
  // Sent as given: the node refuses a zero or negative lease and a negative wait.
  if (options.leaseMs !== undefined) req.lease = toDuration(options.leaseMs);
  if (options.waitMs) req.wait = toDuration(options.waitMs);
  const inline = options.inlineDataMax;
  if (inline !== undefined && inline !== 0) {
    if (!(inline > 0) || !(Number.isInteger(inline) || inline === Number.POSITIVE_INFINITY)) {
      throw new ClientError(
        `inlineDataMax must be a whole number of bytes (0: no data inline), got ${inline}`,
        grpc.status.INVALID_ARGUMENT,
      );
    }
    // The node caps it (at 256 KiB or what its message size leaves room for).
    req.inlineDataMax = Math.min(inline, 0xffffffff);
  }
  return req;
}

export function leaseOf(res: geospool.v1.IDequeueResponse, endpoint: string): Lease | undefined {
  if (!res.entry) return undefined;
  const lease: Lease = { entry: fromEntry(res.entry), token: res.leaseToken ?? "", endpoint };
  if (res.data !== null && res.data !== undefined) lease.data = Buffer.from(res.data);
  return lease;
}

export function completeRequest(
  lease: Lease,
  action: FinishAction,
): geospool.v1.CompleteRequest.$Properties {
  const req = { queue: lease.entry.queue, name: lease.entry.name, leaseToken: lease.token };
  if ("remove" in action) return { ...req, remove: {} };
  const save: geospool.v1.SaveAction.$Properties = { queue: action.save };
  const { metadata } = action;
  if (metadata !== undefined)
    save.metadata = typeof metadata === "string" ? Buffer.from(metadata) : metadata;
  return { ...req, save };
}
