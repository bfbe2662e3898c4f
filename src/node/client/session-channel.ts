import * as grpc from "@grpc/grpc-js";
import type { geospool } from "../../proto/generated/spool.js";
import type { SpoolClient } from "../../proto/service-definition.js";

/** The calls a Session stream carries, with their request and answer types. */
export interface SessionMethods {
  enqueueBatch: [geospool.v1.EnqueueBatchRequest.$Properties, geospool.v1.EnqueueBatchResponse];
  dequeue: [geospool.v1.DequeueRequest.$Properties, geospool.v1.DequeueResponse];
  complete: [geospool.v1.CompleteRequest.$Properties, geospool.v1.CompleteResponse];
  release: [geospool.v1.ReleaseRequest.$Properties, geospool.v1.ReleaseResponse];
  extendLease: [geospool.v1.ExtendLeaseRequest.$Properties, geospool.v1.ExtendLeaseResponse];
}

const SESSION_CALLS: ReadonlySet<string> = new Set<keyof SessionMethods>([
  "enqueueBatch",
  "dequeue",
  "complete",
  "release",
  "extendLease",
]);

export function isSessionCall(name: string): name is keyof SessionMethods {
  return SESSION_CALLS.has(name);
}

/**
 * A call's failure as grpc-js reports a unary call's: `code`, `details`, and the node's
 * own error code in `metadata` (the geospool-error-code trailer), so failover and error
 * reports treat both alike.
 */
export class SessionCallError extends Error {
  readonly metadata = new grpc.Metadata();
  constructor(
    readonly code: grpc.status,
    readonly details: string,
    serviceCode = "",
    /** The stream failed, not the request (UNIMPLEMENTED here: a node without Session). */
    readonly ofStream = false,
  ) {
    super(`${code} ${grpc.status[code] ?? code}: ${details}`);
    this.name = "SessionCallError";
    // src/node/grpc/status.ts ERROR_CODE_KEY (not imported: it would bring the server's
    // error types into the client).
    if (serviceCode) this.metadata.set("geospool-error-code", serviceCode);
  }
}

/** How long a stream with no call under way stays open (ms). */
export const SESSION_IDLE_MS = 2_000;
/** Requests a node takes under way on one stream (the proto's limit): more go as calls. */
export const SESSION_MAX_REQUESTS = 1024;
/** Longest timer setTimeout keeps (a longer one fires at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Stream = grpc.ClientDuplexStream<
  geospool.v1.SessionRequest.$Properties,
  geospool.v1.SessionResponse
>;

interface Waiting {
  stream: Stream;
  answer(res: geospool.v1.SessionResponse): void;
  fail(err: Error): void;
}

/**
 * One Session stream to one node (see the proto), carrying unary calls as messages. Opened
 * by the first call. A stream that breaks fails the calls under way as a broken connection
 * fails unary calls: UNAVAILABLE (retried, under each call's own rules) once the stream
 * had answered anything; its own status (UNIMPLEMENTED, UNAUTHENTICATED, ...) when it
 * failed before any answer. The next call opens a new stream. A call that gets no answer
 * within its timeout fails with DEADLINE_EXCEEDED and is cancelled on the node. The stream
 * is ended once no call has been under way for SESSION_IDLE_MS, so an idle client does not
 * keep its process alive; `close` ends it too, after the calls under way are answered.
 */
export class SessionChannel {
  private stream: Stream | undefined;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: SpoolClient,
    private readonly metadata: () => grpc.Metadata,
  ) {}

  /** Streams opened so far. */
  opened = 0;

  /** Calls waiting for their answer. */
  get inFlight(): number {
    return this.waiting.size;
  }

  call<K extends keyof SessionMethods>(
    name: K,
    req: SessionMethods[K][0],
    timeoutMs: number,
  ): Promise<SessionMethods[K][1]> {
    const stream = this.open();
    const id = this.nextId++;
    return new Promise<SessionMethods[K][1]>((resolve, reject) => {
      const timer = setTimeout(
        () => {
          if (!this.waiting.delete(id)) return;
          this.settled();
          if (this.stream === stream) stream.write({ id: this.nextId++, cancel: id });
          reject(
            new SessionCallError(
              grpc.status.DEADLINE_EXCEEDED,
              `no answer to ${name} within ${timeoutMs} ms`,
            ),
          );
        },
        Math.min(timeoutMs, MAX_TIMER_MS),
      );
      this.waiting.set(id, {
        stream,
        answer: (res) => {
          clearTimeout(timer);
          if (res.result === "error" && res.error) {
            const e = res.error;
            reject(
              new SessionCallError(
                e.code ?? grpc.status.UNKNOWN,
                e.message ?? "",
                e.serviceCode ?? "",
              ),
            );
            return;
          }
          const got = res.result === name ? res[name] : undefined;
          if (got) resolve(got as SessionMethods[K][1]);
          else
            reject(new SessionCallError(grpc.status.INTERNAL, `an answer to ${name} without it`));
        },
        fail: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      stream.write({ id, [name]: req });
    });
  }

  /**
   * End the stream: calls under way still get their answers (the node ends the stream
   * once it has sent them), as unary calls under way outlive grpc-js's `Client.close`.
   */
  close(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const stream = this.stream;
    this.stream = undefined;
    stream?.end();
  }

  private open(): Stream {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (this.stream !== undefined) return this.stream;
    const stream = this.client.session(this.metadata());
    this.stream = stream;
    this.opened++;
    stream.on("data", (res: geospool.v1.SessionResponse) => {
      const id = Number(res.id);
      const w = this.waiting.get(id);
      // Not waited for: a call past its deadline, or a cancel's own answer.
      if (w === undefined) return;
      this.waiting.delete(id);
      w.answer(res);
      this.settled();
    });
    let answered = false;
    stream.on("data", () => {
      answered = true;
    });
    const broken = (code: grpc.status, details: string) => {
      if (this.stream === stream) this.stream = undefined;
      // Once the stream worked, what broke it is no answer to the calls under way (one
      // oversized message ends the stream for all): they are retried, as after a lost
      // connection. Before any answer, the stream's status is the node's answer to all.
      const err = answered
        ? new SessionCallError(
            grpc.status.UNAVAILABLE,
            `the Session stream broke: ${details}`,
            "",
            true,
          )
        : new SessionCallError(code, `the Session stream failed: ${details}`, "", true);
      for (const [id, w] of this.waiting) {
        if (w.stream !== stream) continue;
        this.waiting.delete(id);
        w.fail(err);
      }
    };
    stream.on("error", (err: Partial<grpc.ServiceError>) => {
      const code = typeof err.code === "number" ? err.code : grpc.status.UNAVAILABLE;
      broken(code, err.details ?? err.message ?? "");
    });
    stream.on("end", () => broken(grpc.status.UNAVAILABLE, "the node ended it"));
    return stream;
  }

  /** A call ended: with none left, end the stream after SESSION_IDLE_MS. */
  private settled(): void {
    if (this.waiting.size > 0 || this.stream === undefined || this.idleTimer !== undefined) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      const stream = this.stream;
      if (this.waiting.size > 0 || stream === undefined) return;
      this.stream = undefined;
      stream.end();
    }, SESSION_IDLE_MS);
    this.idleTimer.unref();
  }
}
