import type { ServerResponse } from "node:http";
import type { OpenNar } from "../../cache/cache-reader.js";

/** Bytes read from the nar per step (two such buffers per transfer, one filling, one sending). */
export const NAR_CHUNK_BYTES = 256 * 1024;

/** Buffer pairs kept for the next transfers (so a steady stream of GETs allocates nothing). */
const KEPT_PAIRS = 8;
const kept: Array<[Buffer, Buffer]> = [];

/** The response closed (the client went away) before the nar was sent. */
export class NarSendAborted extends Error {
  constructor() {
    super("the response closed before the nar was sent");
    this.name = "NarSendAborted";
  }
}

/** Resolves once `chunk` is handed to the kernel (the buffer may then be reused). */
function write(res: ServerResponse, chunk: Buffer, closed: Promise<never>): Promise<void> {
  const written = new Promise<void>((resolve, reject) => {
    res.write(chunk, (err) => (err ? reject(err) : resolve()));
  });
  // A destroyed socket never calls back: the response's close ends the wait.
  return Promise.race([written, closed]);
}

/**
 * Send bytes `start`..`end` (inclusive) of `nar` as the body of `res` and end it: positioned
 * reads into two reused buffers, the next read under way while the previous chunk is
 * written, each buffer refilled only once the socket has taken it. Memory stays at two
 * chunks per transfer, however large the nar, and the bytes are not copied through a
 * stream's queue. The nar is closed in every case; rejects when the client goes away or
 * the file fails (the response is then unusable).
 */
export async function sendNarRange(
  nar: OpenNar,
  res: ServerResponse,
  start: number,
  end: number,
): Promise<void> {
  const pair = kept.pop() ?? [
    Buffer.allocUnsafeSlow(NAR_CHUNK_BYTES),
    Buffer.allocUnsafeSlow(NAR_CHUNK_BYTES),
  ];
  let clean = false;
  const closed = new Promise<never>((_, reject) => {
    if (res.closed || res.destroyed) reject(new NarSendAborted());
    else res.once("close", () => reject(new NarSendAborted()));
  });
  closed.catch(() => undefined);
  try {
    let position = start;
    let sending: Promise<void> = Promise.resolve();
    for (let i = 0; position <= end; i++) {
      const buffer = pair[i & 1] as Buffer;
      const want = Math.min(buffer.length, end - position + 1);
      const got = await nar.readAt(buffer.subarray(0, want), position);
      if (got === 0) throw new Error(`nar ended at byte ${position}, before byte ${end}`);
      position += got;
      await sending;
      sending = write(res, buffer.subarray(0, got), closed);
      sending.catch(() => undefined); // awaited next turn; a read failing first must not leave it unhandled
    }
    await sending;
    res.end();
    clean = true;
  } finally {
    await nar.close();
    // After a failure the socket may still hold a buffer: those are left to the GC.
    if (clean && kept.length < KEPT_PAIRS) kept.push(pair);
  }
}
