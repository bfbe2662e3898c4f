import type * as grpc from "@grpc/grpc-js";
import type { geospool } from "../proto/generated/spool.js";
import type { SpoolClient } from "../proto/service-definition.js";

/** How one ReadData call ended. Local write failures reject the promise instead. */
export type AttemptOutcome =
  /** The source ended the stream with OK. */
  | { kind: "ended"; bytes: number; serverSha256: string }
  /** The source sent something impossible; the call was cancelled. */
  | { kind: "rejected"; reason: "too_long" | "bad_offset"; bytes: number; message: string }
  /** The call ended with a non-OK status. */
  | { kind: "failed"; code: grpc.status; bytes: number; message: string }
  /** Nothing arrived for `chunkTimeoutMs` while waiting; the call was cancelled. */
  | { kind: "timeout"; bytes: number; message: string }
  /** The signal aborted; the call was cancelled. */
  | { kind: "aborted"; bytes: number };

export interface AttemptOptions {
  client: SpoolClient;
  metadata: grpc.Metadata;
  name: string;
  /** Ask for the data from this byte on. */
  offset: number;
  /** The expected total size: a chunk reaching past it is rejected, not written. */
  size: number;
  chunkTimeoutMs: number;
  signal: AbortSignal;
  /** Store one chunk; the stream stays paused until the returned promise settles. */
  write: (chunk: Buffer) => Promise<void>;
}

/**
 * One ReadData call from `offset` to the end, handing each chunk to `write` in order.
 *
 * Flow control: the call's stream is paused while a chunk is being written, so grpc-js
 * stops reading, the HTTP/2 window fills and the source's writes wait for `drain`. Memory
 * is bounded by the stream's buffer and the transport window, never by the data size.
 * The chunk timer runs only while the fetcher waits for the source, not while it writes.
 */
export function readDataAttempt(o: AttemptOptions): Promise<AttemptOutcome> {
  return new Promise<AttemptOutcome>((resolve, reject) => {
    let pos = o.offset;
    let bytes = 0;
    let serverSha256 = "";
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    // Every event is handled in arrival order, after the chunk being written (if any).
    let work: Promise<void> = Promise.resolve();

    const call = o.client.readData({ name: o.name, offset: o.offset }, o.metadata, {});

    const settle = (outcome: AttemptOutcome | { error: unknown }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      o.signal.removeEventListener("abort", onAbort);
      call.cancel();
      if ("error" in outcome) reject(outcome.error);
      else resolve(outcome);
    };
    const later = (step: () => void | Promise<void>) => {
      work = work.then(async () => {
        if (settled) return;
        try {
          await step();
        } catch (error) {
          settle({ error });
        }
      });
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(
        () =>
          later(() =>
            settle({
              kind: "timeout",
              bytes,
              message: `no data for ${o.chunkTimeoutMs} ms at offset ${pos}`,
            }),
          ),
        o.chunkTimeoutMs,
      );
    };
    const onAbort = () => later(() => settle({ kind: "aborted", bytes }));

    call.on("data", (msg: geospool.v1.ReadDataResponse) => {
      clearTimeout(timer);
      call.pause();
      later(async () => {
        const chunk = Buffer.from(msg.chunk.buffer, msg.chunk.byteOffset, msg.chunk.byteLength);
        if (msg.sha256) serverSha256 = msg.sha256;
        const at = Number(msg.offset);
        if (at !== pos) {
          settle({
            kind: "rejected",
            reason: "bad_offset",
            bytes,
            message: `chunk at offset ${at}, expected ${pos}`,
          });
          return;
        }
        if (pos + chunk.length > o.size) {
          settle({
            kind: "rejected",
            reason: "too_long",
            bytes,
            message: `chunk ${at}+${chunk.length} goes past the expected size ${o.size}`,
          });
          return;
        }
        if (chunk.length > 0) await o.write(chunk);
        pos += chunk.length;
        bytes += chunk.length;
        if (settled) return;
        arm();
        call.resume();
      });
    });
    call.on("error", (err: grpc.ServiceError) => {
      later(() =>
        settle({ kind: "failed", code: err.code, bytes, message: err.details || err.message }),
      );
    });
    call.on("end", () => later(() => settle({ kind: "ended", bytes, serverSha256 })));

    if (o.signal.aborted) {
      settle({ kind: "aborted", bytes });
      return;
    }
    o.signal.addEventListener("abort", onAbort, { once: true });
    arm();
  });
}
