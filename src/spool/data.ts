import { constants as C, createReadStream, type ReadStream } from "node:fs";
import { type FileHandle, open, rename, stat } from "node:fs/promises";
import type { Readable } from "node:stream";
import { ioError } from "./errors.js";
import type { Throttle } from "./throttle.js";

/** Data of an entry: bytes, text, or a stream of bytes (never buffered whole). */
export type DataSource = Uint8Array | string | AsyncIterable<Uint8Array> | Readable;

/**
 * Write `source` to `path`, fsync and close. Streams are written chunk by chunk.
 * Returns the number of bytes written.
 * @internal
 */
export async function writeDataSynced(path: string, source: DataSource): Promise<number> {
  const { fh, size } = await writeData(path, source);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  return size;
}

/**
 * Write `source` to `path` and return the still-open handle (not yet fsynced), so the
 * caller can fsync it together with other files. On failure the handle is closed.
 * @internal
 */
export async function writeData(
  path: string,
  source: DataSource,
  options: { exclusive?: boolean; throttle?: Throttle; onCreated?: () => void } = {},
): Promise<{ fh: FileHandle; size: number }> {
  // Each system call goes through the throttle on its own: a slow stream (a client
  // uploading) must not hold a throttle slot while it waits for its next chunk.
  const run = <T>(op: () => Promise<T>) => (options.throttle ? options.throttle.run(op) : op());
  const flags = C.O_CREAT | C.O_WRONLY | (options.exclusive ? C.O_EXCL : C.O_TRUNC);
  const fh = await run(() => open(path, flags, 0o644));
  options.onCreated?.();
  let size = 0;
  try {
    if (typeof source === "string" || source instanceof Uint8Array) {
      const bytes = typeof source === "string" ? Buffer.from(source) : source;
      size = await run(() => writeAll(fh, bytes));
    } else {
      for await (const chunk of source as AsyncIterable<Uint8Array | string>) {
        const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
        size += await run(() => writeAll(fh, bytes));
      }
    }
  } catch (err) {
    await fh.close().catch(() => undefined);
    throw err;
  }
  return { fh, size };
}

async function writeAll(fh: Awaited<ReturnType<typeof open>>, bytes: Uint8Array): Promise<number> {
  let off = 0;
  while (off < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, off, bytes.length - off);
    off += bytesWritten;
  }
  return bytes.length;
}

/** A handle to an entry's data file; the caller chooses when to read it. */
export class DataFile {
  constructor(
    readonly path: string,
    private readonly throttle: Throttle,
    private readonly tmpPath: string,
  ) {}

  /** Stream the data, optionally from a byte offset. */
  createReadStream(options?: { start?: number; end?: number; highWaterMark?: number }): ReadStream {
    return createReadStream(this.path, options);
  }

  /** Read the whole data into memory (for small data; prefer `createReadStream`). */
  async read(): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of this.createReadStream()) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /** Replace the data atomically (write to tmp, fsync, rename over). */
  async save(source: DataSource): Promise<number> {
    return this.throttle.run(async () => {
      try {
        const size = await writeDataSynced(this.tmpPath, source);
        await rename(this.tmpPath, this.path);
        return size;
      } catch (err) {
        throw ioError("save data", this.path, err);
      }
    });
  }

  stat() {
    return this.throttle.run(() => stat(this.path));
  }
}
