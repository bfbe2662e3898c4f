import * as grpc from "@grpc/grpc-js";
import type { geospool } from "../../src/proto/generated/spool.js";
import { SpoolClient } from "../../src/proto/service-definition.js";

/** How a call ended: its answer, or its status. */
export type Outcome<T> =
  | { ok: true; value: T }
  | { ok: false; code: grpc.status; details: string; serviceCode?: string };

type Unary = "dequeue" | "complete" | "release" | "extendLease" | "list" | "stat" | "clusterStatus";

const DEADLINE_MS = 30_000;

/**
 * A plain gRPC client of one node that sends whatever it is given (no validation, any
 * message order, streams cut where asked) and reports outcomes as values, for tests that
 * feed a node bad input.
 */
export class RawSpool {
  readonly client: SpoolClient;
  /** The status of the latest call that ended (for traces and tests). */
  last = "";

  constructor(readonly address: string) {
    this.client = new SpoolClient(address, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
    });
  }

  close(): void {
    this.client.close();
  }

  private ended<T>(outcome: Outcome<T>): Outcome<T> {
    this.last = outcome.ok ? "OK" : `${statusName(outcome.code)} ${outcome.details}`;
    return outcome;
  }

  unary<T>(method: Unary, request: object): Promise<Outcome<T>> {
    return new Promise((resolve) => {
      const f = (
        this.client[method] as unknown as (
          req: object,
          md: grpc.Metadata,
          opts: grpc.CallOptions,
          cb: (err: grpc.ServiceError | null, res?: T) => void,
        ) => void
      ).bind(this.client);
      f(request, new grpc.Metadata(), { deadline: Date.now() + DEADLINE_MS }, (err, res) => {
        resolve(this.ended(err ? failure(err) : { ok: true, value: res as T }));
      });
    });
  }

  /**
   * Send `messages` on an Enqueue stream. `cutAfter`: cancel the call after that many
   * messages instead of ending it (a client that went away).
   */
  enqueue(
    messages: readonly geospool.v1.IEnqueueRequest[],
    opts: { cutAfter?: number } = {},
  ): Promise<Outcome<geospool.v1.EnqueueResponse>> {
    return new Promise((resolve) => {
      const call = this.client.enqueue(
        new grpc.Metadata(),
        { deadline: Date.now() + DEADLINE_MS },
        (err, res) => {
          resolve(this.ended(err ? failure(err) : { ok: true, value: res as never }));
        },
      );
      call.on("error", () => undefined);
      void (async () => {
        for (const [i, m] of messages.entries()) {
          if (opts.cutAfter === i) {
            call.cancel();
            return;
          }
          if (!call.write(m)) await new Promise((r) => call.once("drain", r));
        }
        if (opts.cutAfter !== undefined) call.cancel();
        else call.end();
      })();
    });
  }

  /** Read a ReadData stream to its end, or cancel it after `cutAfter` messages. */
  readData(
    request: geospool.v1.IReadDataRequest,
    opts: { cutAfter?: number } = {},
  ): Promise<Outcome<geospool.v1.ReadDataResponse[]> & { received: number }> {
    return new Promise((resolve) => {
      const parts: geospool.v1.ReadDataResponse[] = [];
      const call = this.client.readData(request, new grpc.Metadata(), {
        deadline: Date.now() + DEADLINE_MS,
      });
      let cut = false;
      call.on("data", (m: geospool.v1.ReadDataResponse) => {
        parts.push(m);
        if (opts.cutAfter !== undefined && parts.length >= opts.cutAfter && !cut) {
          cut = true;
          call.cancel();
        }
      });
      call.on("error", (err: grpc.ServiceError) => {
        resolve({ ...this.ended(failure(err)), received: parts.length });
      });
      call.on("end", () =>
        resolve({ ...this.ended({ ok: true, value: parts }), received: parts.length }),
      );
    });
  }

  /** Watch for `forMs` (or until the server ends the call), then cancel. */
  watch(
    queues: string[],
    forMs: number,
  ): Promise<{ events: geospool.v1.WatchResponse[]; end: Outcome<null> }> {
    return new Promise((resolve) => {
      const events: geospool.v1.WatchResponse[] = [];
      const call = this.client.watch({ queues }, new grpc.Metadata(), {
        deadline: Date.now() + DEADLINE_MS,
      });
      // Established once the headers arrive; a refused watch ends before that.
      let timer: NodeJS.Timeout | undefined;
      call.on("metadata", () => {
        timer = setTimeout(() => call.cancel(), forMs);
      });
      call.on("data", (m: geospool.v1.WatchResponse) => events.push(m));
      call.on("error", (err: grpc.ServiceError) => {
        clearTimeout(timer);
        resolve({ events, end: failure(err) });
      });
      call.on("end", () => {
        clearTimeout(timer);
        resolve({ events, end: { ok: true, value: null } });
      });
    });
  }
}

function failure(err: grpc.ServiceError): Outcome<never> {
  const serviceCode = err.metadata?.get("geospool-error-code")[0];
  return {
    ok: false,
    code: err.code,
    details: err.details,
    ...(typeof serviceCode === "string" ? { serviceCode } : {}),
  };
}

export const statusName = (code: grpc.status): string => grpc.status[code] ?? String(code);
