import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Readable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { isRetryableStatus } from "../../common/grpc-status.js";
import { sleep } from "../../common/sleep.js";
import type { geospool } from "../../proto/generated/spool.js";
import { SpoolClient } from "../../proto/service-definition.js";
import type { EntryInfo } from "../entry-info.js";
import { durationMs, timestampMs, toDuration } from "../grpc/convert.js";
import { Backoff } from "./backoff.js";
import {
  type BulkEntry,
  type BulkResult,
  type EnqueueManyOptions,
  enqueueMany,
  toBatchEntry,
} from "./bulk.js";
import {
  isSessionCall,
  SESSION_MAX_REQUESTS,
  SessionCallError,
  SessionChannel,
} from "./session-channel.js";
import {
  type BatchRequest,
  batchBytes,
  bulkResultOf,
  ClientError,
  completeRequest,
  type DequeueOptions,
  dequeueRequest,
  EntryRefusal,
  type FinishAction,
  fromEntry,
  type Lease,
  leaseOf,
  statusOf,
  write,
} from "./wire.js";

export { ClientError, type DequeueOptions, type FinishAction, type Lease } from "./wire.js";
export type { EntryInfo };

export interface ClientTls {
  /** CA that signed the servers' certificates (PEM or path). */
  ca?: string | Buffer;
  /** Client certificate and key for mutual TLS (PEM or paths). */
  cert?: string | Buffer;
  key?: string | Buffer;
}

export interface GeospoolClientOptions {
  /** `host:port` of every node to use, in order of preference. */
  endpoints: readonly string[];
  /** Bearer token. */
  token?: string;
  tls?: ClientTls;
  /** Deadline of one call attempt (ms). Default 10 s (Dequeue adds its wait). */
  callTimeoutMs?: number;
  /** Give up after this long across attempts and endpoints (ms). Default 30 s. */
  retryForMs?: number;
  backoff?: { initialMs: number; maxMs: number };
  /** Chunk size for uploads. Default 256 KiB. */
  chunkBytes?: number;
  /**
   * Carry EnqueueBatch, Dequeue, Complete, Release and ExtendLease (and small enqueues, which
   * travel as EnqueueBatch) as messages on one Session stream per node instead of a call
   * each: the same answers and failover, at a fraction of a call's CPU (at 32 workers a
   * job costs the client half the CPU). A node without Session gets calls. Default true.
   */
  session?: boolean;
}

interface UnaryMethods {
  enqueueBatch: [geospool.v1.EnqueueBatchRequest.$Properties, geospool.v1.EnqueueBatchResponse];
  dequeue: [geospool.v1.DequeueRequest.$Properties, geospool.v1.DequeueResponse];
  complete: [geospool.v1.CompleteRequest.$Properties, geospool.v1.CompleteResponse];
  release: [geospool.v1.ReleaseRequest.$Properties, geospool.v1.ReleaseResponse];
  extendLease: [geospool.v1.ExtendLeaseRequest.$Properties, geospool.v1.ExtendLeaseResponse];
  list: [geospool.v1.ListRequest.$Properties, geospool.v1.ListResponse];
  stat: [geospool.v1.StatRequest.$Properties, geospool.v1.StatResponse];
  clusterStatus: [geospool.v1.ClusterStatusRequest.$Properties, geospool.v1.ClusterStatusResponse];
}

const MIB = 1024 * 1024;
/**
 * EnqueueBatch requests with more bytes of data and metadata than this go as calls, not on
 * the Session stream: a message over the node's grpc.maxMessageBytes ends the stream it is
 * on (and with it the answers of every call under way there), and for large bodies a
 * call's own cost does not count.
 */
const SESSION_MESSAGE_MAX = MIB;

/**
 * Entries with at most this many bytes of data and metadata, given as bytes or text, go in
 * one EnqueueBatch message instead of an Enqueue stream (header, chunks, commit): one call
 * with one message, written and made durable by the node's batch writer in one round.
 */
export const ONE_MESSAGE_ENQUEUE_MAX = 64 * 1024;

function pem(v: string | Buffer | undefined): Buffer | null {
  if (v === undefined) return null;
  if (Buffer.isBuffer(v)) return v;
  return v.includes("-----BEGIN") ? Buffer.from(v) : readFileSync(v);
}

/**
 * A geospool client over several nodes. Calls go to the first endpoint that answers; on
 * UNAVAILABLE, DEADLINE_EXCEEDED or ABORTED the call moves to the next endpoint, with
 * capped exponential backoff after each full round. Enqueue carries an idempotency key
 * (made up when not given), so a retry after a lost reply never makes a second entry.
 * Calls on a checkout (complete, release, extend) go to the node that holds it.
 */
export class GeospoolClient {
  private readonly clients = new Map<string, SpoolClient>();
  private readonly creds: grpc.ChannelCredentials;
  private current = 0;
  /** Endpoints that answered EnqueueBatch with UNIMPLEMENTED (an older node). */
  private readonly noBatch = new Set<string>();
  /** A Session stream per endpoint (with `session`). */
  private readonly sessions = new Map<string, SessionChannel>();
  /** Endpoints that answered Session with UNIMPLEMENTED (an older node). */
  private readonly noSession = new Set<string>();
  private readonly callTimeoutMs: number;
  private readonly retryForMs: number;
  private readonly chunkBytes: number;

  constructor(private readonly opts: GeospoolClientOptions) {
    if (opts.endpoints.length === 0) throw new Error("GeospoolClient needs at least one endpoint");
    this.creds = opts.tls
      ? grpc.credentials.createSsl(pem(opts.tls.ca), pem(opts.tls.key), pem(opts.tls.cert))
      : grpc.credentials.createInsecure();
    this.callTimeoutMs = opts.callTimeoutMs ?? 10_000;
    this.retryForMs = opts.retryForMs ?? 30_000;
    this.chunkBytes = opts.chunkBytes ?? 256 * 1024;
  }

  private client(endpoint: string): SpoolClient {
    let c = this.clients.get(endpoint);
    if (!c) {
      c = new SpoolClient(endpoint, this.creds, {
        "grpc.keepalive_time_ms": 30_000,
        "grpc.keepalive_timeout_ms": 10_000,
        "grpc.max_receive_message_length": 16 * 1024 * 1024,
      });
      this.clients.set(endpoint, c);
    }
    return c;
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.opts.token) md.set("authorization", `Bearer ${this.opts.token}`);
    return md;
  }

  /**
   * Run `f` against endpoints until it succeeds, fails with a status that another try
   * cannot fix, or `retryForMs` runs out. `pin` keeps every try on one endpoint.
   */
  private async withFailover<T>(
    f: (c: SpoolClient, endpoint: string) => Promise<T>,
    pin?: string,
  ): Promise<T> {
    const endpoints = pin ? [pin] : this.opts.endpoints;
    const backoff = new Backoff(
      this.opts.backoff?.initialMs ?? 50,
      this.opts.backoff?.maxMs ?? 2_000,
    );
    const giveUpAt = Date.now() + this.retryForMs;
    let tried = 0;
    for (;;) {
      const index = pin ? 0 : this.current % endpoints.length;
      const endpoint = endpoints[index] as string;
      try {
        return await f(this.client(endpoint), endpoint);
      } catch (err) {
        const code = statusOf(err);
        // Every endpoint gets one try, however short retryForMs is.
        const outOfTime = Date.now() >= giveUpAt && tried + 1 >= endpoints.length;
        if (!isRetryableStatus(code) || outOfTime) {
          const msg = (err as { details?: string }).details || (err as Error).message;
          throw new ClientError(
            `${endpoint}: ${grpc.status[code] ?? code}: ${msg}`,
            code,
            endpoint,
            { cause: err },
          );
        }
        tried++;
        if (!pin) this.current = (index + 1) % endpoints.length;
        if (tried % endpoints.length === 0)
          await sleep(Math.min(backoff.next(), Math.max(0, giveUpAt - Date.now())));
      }
    }
  }

  private unary<K extends keyof UnaryMethods>(
    name: K,
    req: UnaryMethods[K][0],
    extraMs = 0,
    pin?: string,
  ): Promise<{ res: UnaryMethods[K][1]; endpoint: string }> {
    return this.withFailover(
      (c, endpoint) =>
        this.callOnce(c, endpoint, name, req, extraMs).then((res) => ({ res, endpoint })),
      pin,
    );
  }

  /**
   * One call on `c` (at `endpoint`), with the token and a deadline of the call timeout +
   * `extraMs`: a message on the endpoint's Session stream (with `session`), else a call.
   */
  private async callOnce<K extends keyof UnaryMethods>(
    c: SpoolClient,
    endpoint: string,
    name: K,
    req: UnaryMethods[K][0],
    extraMs: number,
  ): Promise<UnaryMethods[K][1]> {
    if (
      (this.opts.session ?? true) &&
      isSessionCall(name) &&
      !this.noSession.has(endpoint) &&
      (name !== "enqueueBatch" || batchBytes(req as BatchRequest) <= SESSION_MESSAGE_MAX)
    ) {
      let channel = this.sessions.get(endpoint);
      if (channel === undefined) {
        channel = new SessionChannel(c, () => this.metadata());
        this.sessions.set(endpoint, channel);
      }
      // Past the node's limit of requests under way on a stream, calls.
      if (channel.inFlight < SESSION_MAX_REQUESTS) {
        try {
          return (await channel.call(name, req as never, this.callTimeoutMs + extraMs)) as never;
        } catch (err) {
          const oldNode =
            err instanceof SessionCallError &&
            err.ofStream &&
            err.code === grpc.status.UNIMPLEMENTED;
          if (!oldNode) throw err;
          // A node without Session: calls from now on.
          this.noSession.add(endpoint);
          this.sessions.delete(endpoint);
        }
      }
    }
    return this.unaryCall(c, name, req, extraMs);
  }

  /** One unary call on `c`, with the token and a deadline of the call timeout + `extraMs`. */
  private unaryCall<K extends keyof UnaryMethods>(
    c: SpoolClient,
    name: K,
    req: UnaryMethods[K][0],
    extraMs: number,
  ): Promise<UnaryMethods[K][1]> {
    type Res = UnaryMethods[K][1];
    return new Promise<Res>((resolve, reject) => {
      const method = c[name] as unknown as (
        req: UnaryMethods[K][0],
        md: grpc.Metadata,
        o: grpc.CallOptions,
        cb: grpc.requestCallback<Res>,
      ) => grpc.ClientUnaryCall;
      method.call(
        c,
        req,
        this.metadata(),
        { deadline: Date.now() + this.callTimeoutMs + extraMs },
        (err, res) => (err || !res ? reject(err) : resolve(res)),
      );
    });
  }

  /**
   * Enqueue `data` (bytes, text, or a stream) into `queue`. Bytes and text are retried on
   * another node on failure, under the same idempotency key; a stream is sent once. Bytes
   * or text of at most ONE_MESSAGE_ENQUEUE_MAX with their metadata (and no `dataSha256`)
   * travel as one EnqueueBatch message; the answers are Enqueue's.
   */
  async enqueue(
    queue: string,
    data: Buffer | string | Readable | AsyncIterable<Uint8Array>,
    options: { metadata?: Buffer | string; idempotencyKey?: string; dataSha256?: string } = {},
  ): Promise<{ entry: EntryInfo; deduplicated: boolean; endpoint: string }> {
    const key = options.idempotencyKey ?? randomUUID();
    const bytes =
      typeof data === "string" ? Buffer.from(data) : Buffer.isBuffer(data) ? data : undefined;
    const header: geospool.v1.EnqueueHeader.$Properties = {
      queue,
      metadata:
        typeof options.metadata === "string"
          ? Buffer.from(options.metadata)
          : (options.metadata ?? Buffer.alloc(0)),
      idempotencyKey: key,
      ...(bytes ? { dataSize: bytes.length } : {}),
      ...(options.dataSha256 ? { dataSha256: options.dataSha256 } : {}),
    };
    const metadataBytes = header.metadata as Uint8Array;
    if (
      bytes &&
      !options.dataSha256 &&
      bytes.length + metadataBytes.length <= ONE_MESSAGE_ENQUEUE_MAX
    ) {
      const one = await this.enqueueOne({ queue, data: bytes, metadata: metadataBytes, key });
      if (one !== undefined) return one;
    }
    const attempt = (c: SpoolClient, endpoint: string) =>
      new Promise<{ entry: EntryInfo; deduplicated: boolean; endpoint: string }>(
        (resolve, reject) => {
          // A deadline that grows with the data (1 s per MiB on top of the call timeout) for
          // bytes; none for a stream of unknown length (keepalive catches a dead peer).
          const perMiB = bytes ? Math.ceil(bytes.length / MIB) * 1000 : undefined;
          const call = c.enqueue(
            this.metadata(),
            perMiB === undefined ? {} : { deadline: Date.now() + this.callTimeoutMs + perMiB },
            (err, res) =>
              err || !res
                ? reject(err)
                : resolve({
                    entry: fromEntry(res.entry),
                    deduplicated: res.deduplicated,
                    endpoint,
                  }),
          );
          (async () => {
            await write(call, { header });
            if (bytes) {
              for (let off = 0; off < bytes.length; off += this.chunkBytes) {
                await write(call, { chunk: bytes.subarray(off, off + this.chunkBytes) });
              }
            } else {
              for await (const chunk of data as AsyncIterable<Uint8Array>)
                await write(call, { chunk });
            }
            await write(call, { commit: {} });
            call.end();
          })().catch((err) => {
            call.cancel();
            reject(err);
          });
        },
      );
    if (bytes) return this.withFailover(attempt);
    // A stream can be read only once: one attempt, on the current endpoint. (A retry would
    // send what is left of a half-read stream.) For failover, pass bytes, or reopen the
    // source and call again with the same idempotency key.
    const endpoint = this.opts.endpoints[this.current % this.opts.endpoints.length] as string;
    try {
      return await attempt(this.client(endpoint), endpoint);
    } catch (err) {
      const code = statusOf(err);
      const msg = (err as { details?: string }).details || (err as Error).message;
      throw new ClientError(`${endpoint}: ${grpc.status[code] ?? code}: ${msg}`, code, endpoint, {
        cause: err,
      });
    }
  }

  /**
   * A small entry as a batch of one (see ONE_MESSAGE_ENQUEUE_MAX), with Enqueue's answers: the
   * entry, or a ClientError with the entry's own status. Undefined when the node cannot take
   * it that way (no EnqueueBatch): then the stream is used, under the same idempotency key
   * (nothing was made). A RESOURCE_EXHAUSTED refusal of the call is the caller's: the node
   * holds a batch of one to the entry's own limits, as Enqueue does, so the stream would
   * only be refused too (out of upload slots, most often: a node under more load than it
   * takes, which a second attempt per refusal would only add to).
   */
  private async enqueueOne(e: {
    queue: string;
    data: Buffer;
    metadata: Uint8Array;
    key: string;
  }): Promise<{ entry: EntryInfo; deduplicated: boolean; endpoint: string } | undefined> {
    const current = this.opts.endpoints[this.current % this.opts.endpoints.length] as string;
    if (this.noBatch.has(current)) return undefined;
    const req: geospool.v1.EnqueueBatchRequest.$Properties = {
      entries: [{ queue: e.queue, data: e.data, metadata: e.metadata, idempotencyKey: e.key }],
    };
    const extraMs = Math.ceil(e.data.length / MIB) * 1000;
    // The entry's own refusal is thrown inside the attempt, so a retryable one (ABORTED: the
    // key is being enqueued right now; UNAVAILABLE) is retried and fails over under the same
    // key, as the stream's call-level status would be.
    const attempt = async (c: SpoolClient, endpoint: string) => {
      const res = await this.callOnce(c, endpoint, "enqueueBatch", req, extraMs);
      const r = bulkResultOf(res.results[0]);
      if (!r.ok) throw new EntryRefusal(r.code, r.message, r.serviceCode);
      return { entry: r.entry, deduplicated: r.deduplicated, endpoint };
    };
    try {
      return await this.withFailover(attempt);
    } catch (err) {
      if (err instanceof ClientError && err.cause instanceof EntryRefusal) throw err;
      // Refused as a call (nothing was made) by a node without EnqueueBatch: the stream,
      // under the same key, from now on.
      const code = statusOf(err);
      if (code === grpc.status.UNIMPLEMENTED && err instanceof ClientError && err.endpoint) {
        this.noBatch.add(err.endpoint);
        return undefined;
      }
      throw err;
    }
  }

  /**
   * Enqueue many small entries in one EnqueueBatch call: one result per entry, in order
   * (an entry refused alone does not fail the others). Retried on another node like
   * `enqueue`, under each entry's idempotency key (made up when absent).
   */
  async enqueueBatch(entries: readonly BulkEntry[]): Promise<BulkResult[]> {
    return this.sendBatch(entries.map(toBatchEntry));
  }

  /**
   * Enqueue any number of small entries (an array, a generator, a stream) in EnqueueBatch
   * calls, a few under way at once; yields one result per entry, in order.
   */
  enqueueMany(
    entries: Iterable<BulkEntry> | AsyncIterable<BulkEntry>,
    options: EnqueueManyOptions = {},
  ): AsyncGenerator<BulkResult> {
    return enqueueMany(entries, (batch) => this.sendBatch(batch), options);
  }

  private async sendBatch(entries: geospool.v1.BatchEntry.$Properties[]): Promise<BulkResult[]> {
    const bytes = entries.reduce((n, e) => n + (e.data?.length ?? 0), 0);
    const { res } = await this.unary("enqueueBatch", { entries }, Math.ceil(bytes / MIB) * 1000);
    return res.results.map(bulkResultOf);
  }

  /** Check out the next entry of `queue`, waiting up to `waitMs`; undefined when none came. */
  async dequeue(queue: string, options: DequeueOptions = {}): Promise<Lease | undefined> {
    const { res, endpoint } = await this.unary(
      "dequeue",
      dequeueRequest(queue, options),
      Math.max(options.waitMs ?? 0, 0),
    );
    return leaseOf(res, endpoint);
  }

  /** Save the checkout into `queue` (optionally with new metadata). */
  async save(lease: Lease, queue: string, metadata?: Buffer | string): Promise<EntryInfo> {
    const { res } = await this.unary(
      "complete",
      completeRequest(lease, { save: queue, metadata }),
      0,
      lease.endpoint,
    );
    return fromEntry(res.entry);
  }

  /** Remove the checked-out entry. */
  async remove(lease: Lease): Promise<void> {
    await this.unary("complete", completeRequest(lease, { remove: true }), 0, lease.endpoint);
  }

  /**
   * Finish the checkout (remove it, or save it into a queue) and check out the next entry
   * in the same call: a worker's two round trips in one. `next.queue` defaults to the
   * lease's queue; the next checkout is held by the same node as `lease`. `next` in the
   * answer is undefined when no entry came within `next.waitMs`. Against a node that does
   * not know the option, a plain `dequeue` follows.
   */
  async completeThenDequeue(
    lease: Lease,
    action: FinishAction,
    next: DequeueOptions & { queue?: string } = {},
  ): Promise<{ saved?: EntryInfo; next?: Lease }> {
    const queue = next.queue ?? lease.entry.queue;
    const req = { ...completeRequest(lease, action), thenDequeue: dequeueRequest(queue, next) };
    const wait = Math.max(next.waitMs ?? 0, 0);
    const { res, endpoint } = await this.unary("complete", req, wait, lease.endpoint);
    const saved = res.entry ? { saved: fromEntry(res.entry) } : {};
    if (!res.next) return { ...saved, next: await this.dequeue(queue, next) };
    const got = leaseOf(res.next, endpoint);
    return got ? { ...saved, next: got } : saved;
  }

  /** Give the entry back (a failed delivery). Returns where it went. */
  async release(lease: Lease): Promise<{ queue: string; attempts: number }> {
    const { res } = await this.unary(
      "release",
      { queue: lease.entry.queue, name: lease.entry.name, leaseToken: lease.token },
      0,
      lease.endpoint,
    );
    return { queue: res.queue, attempts: res.attempts };
  }

  async extendLease(lease: Lease, leaseMs: number): Promise<number> {
    const { res } = await this.unary(
      "extendLease",
      {
        queue: lease.entry.queue,
        name: lease.entry.name,
        leaseToken: lease.token,
        lease: toDuration(leaseMs),
      },
      0,
      lease.endpoint,
    );
    return timestampMs(res.leaseUntil) ?? 0;
  }

  async list(
    queue: string,
    options: { checkedOut?: boolean; pageSize?: number; pageToken?: string } = {},
  ) {
    const { res } = await this.unary("list", { queue, ...options });
    return { entries: res.entries.map(fromEntry), nextPageToken: res.nextPageToken };
  }

  async stat(name: string, queue?: string) {
    const { res } = await this.unary("stat", { name, ...(queue ? { queue } : {}) });
    return {
      entry: fromEntry(res.entry),
      state: res.state === 2 ? "checked_out" : "queued",
    } as const;
  }

  /**
   * Stream an entry's data from one node, chunk by chunk, with gRPC flow control (memory
   * stays bounded whatever the size). The last chunk carries the sha256 when the whole data
   * was read.
   */
  async *readDataStream(
    name: string,
    options: { offset?: number; limit?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<{ offset: number; chunk: Buffer; sha256: string }> {
    const endpoint = this.opts.endpoints[this.current % this.opts.endpoints.length] as string;
    const call = this.client(endpoint).readData(
      {
        name,
        offset: options.offset ?? 0,
        ...(options.limit !== undefined ? { limit: options.limit } : {}),
      },
      this.metadata(),
    );
    const cancel = () => call.cancel();
    options.signal?.addEventListener("abort", cancel, { once: true });
    try {
      for await (const m of call as AsyncIterable<geospool.v1.ReadDataResponse>) {
        yield { offset: Number(m.offset), chunk: Buffer.from(m.chunk), sha256: m.sha256 };
      }
    } catch (err) {
      const code = statusOf(err);
      const msg = (err as { details?: string }).details || (err as Error).message;
      throw new ClientError(`${endpoint}: ${grpc.status[code] ?? code}: ${msg}`, code, endpoint, {
        cause: err,
      });
    } finally {
      options.signal?.removeEventListener("abort", cancel);
    }
  }

  /** Read an entry's data (whole, into memory) from any node that has it. */
  async readData(
    name: string,
    options: { offset?: number; limit?: number } = {},
  ): Promise<{ data: Buffer; sha256: string }> {
    return this.withFailover(
      (c) =>
        new Promise((resolve, reject) => {
          const parts: Buffer[] = [];
          let sha256 = "";
          const call = c.readData(
            {
              name,
              offset: options.offset ?? 0,
              ...(options.limit !== undefined ? { limit: options.limit } : {}),
            },
            this.metadata(),
          );
          // An idle deadline, not a total one: a large read may take long, a stalled one not.
          let idle = setTimeout(onIdle, this.callTimeoutMs);
          function onIdle() {
            call.cancel();
          }
          call.on("data", (m: geospool.v1.ReadDataResponse) => {
            clearTimeout(idle);
            idle = setTimeout(onIdle, this.callTimeoutMs);
            parts.push(Buffer.from(m.chunk));
            if (m.sha256) sha256 = m.sha256;
          });
          call.on("error", (err: grpc.ServiceError) => {
            clearTimeout(idle);
            // A read cut for idleness is a deadline, which another node may well beat.
            reject(
              err.code === grpc.status.CANCELLED
                ? Object.assign(err, { code: grpc.status.DEADLINE_EXCEEDED })
                : err,
            );
          });
          call.on("end", () => {
            clearTimeout(idle);
            resolve({ data: Buffer.concat(parts), sha256 });
          });
        }),
    );
  }

  /**
   * Stream transitions of `queues` (all when empty) from one node until the signal aborts.
   * `onEstablished` is called once the node has registered the watch: every transition after
   * that is streamed.
   */
  async *watch(
    queues: string[],
    signal: AbortSignal,
    options: { onEstablished?: () => void } = {},
  ): AsyncGenerator<{ kind: number; name: string; queue: string; fromQueue: string; at: number }> {
    const endpoint = this.opts.endpoints[this.current % this.opts.endpoints.length] as string;
    const call = this.client(endpoint).watch({ queues }, this.metadata());
    const { onEstablished } = options;
    if (onEstablished) call.once("metadata", () => onEstablished());
    const cancel = () => call.cancel();
    signal.addEventListener("abort", cancel, { once: true });
    try {
      for await (const m of call as AsyncIterable<geospool.v1.WatchResponse>) {
        yield {
          kind: m.kind,
          name: m.entry?.name ?? "",
          queue: m.entry?.queue ?? "",
          fromQueue: m.fromQueue,
          at: timestampMs(m.at) ?? 0,
        };
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    } finally {
      signal.removeEventListener("abort", cancel);
    }
  }

  async clusterStatus() {
    const { res, endpoint } = await this.unary("clusterStatus", {});
    return {
      endpoint,
      nodeId: res.nodeId,
      region: res.region,
      queues: res.queues.map((q) => ({
        queue: q.queue,
        queued: Number(q.queued),
        checkedOut: Number(q.checkedOut),
      })),
      // Decoded messages leave fields at their default value unset: spell every one out.
      peers: res.peers.map((p) => ({
        nodeId: p.nodeId ?? "",
        region: p.region ?? "",
        grpcEndpoint: p.grpcEndpoint ?? "",
        connected: p.connected ?? false,
        replicationLagMs: Math.max(durationMs(p.replicationLag) ?? 0, 0),
        lagBytes: Number(p.lagBytes ?? 0),
        slotState: p.slotState ?? "",
        applyErrors: Number(p.applyErrors ?? 0),
        pendingFetches: Number(p.pendingFetches ?? 0),
        unreachable: p.unreachable ?? false,
        /** ms since epoch while unreachable, else null. */
        unreachableSinceMs: p.unreachable ? (timestampMs(p.unreachableSince) ?? null) : null,
      })),
    };
  }

  close(): void {
    for (const s of this.sessions.values()) s.close();
    this.sessions.clear();
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
