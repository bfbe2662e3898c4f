import { createHash, type Hash } from "node:crypto";
import { constants as FS } from "node:fs";
import { type FileHandle, open, stat, unlink } from "node:fs/promises";

const PREFIX_READ_BYTES = 1024 * 1024;

/**
 * The tmp file a fetch writes into, with the sha256 of its contents kept up to date as bytes
 * are appended (so resuming a broken stream never re-reads the file). A file left by an
 * earlier fetch (a crash, or every source failing) is reused: its prefix is hashed once, in
 * bounded memory, and the fetch continues after it.
 */
export class FetchFile {
  private hash: Hash = createHash("sha256");
  private written = 0;
  private reused = 0;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  /** Open (or create) `path`; a file longer than `maxSize` is emptied. */
  static async open(path: string, maxSize: number): Promise<FetchFile> {
    const fh = await open(path, FS.O_CREAT | FS.O_RDWR, 0o644);
    const file = new FetchFile(path, fh);
    try {
      const { size } = await fh.stat();
      if (size > maxSize) await fh.truncate(0);
      else if (size > 0) await file.hashPrefix(size);
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
    return file;
  }

  private async hashPrefix(size: number): Promise<void> {
    const buf = Buffer.allocUnsafe(Math.min(PREFIX_READ_BYTES, size));
    let pos = 0;
    while (pos < size) {
      const { bytesRead } = await this.fh.read(buf, 0, Math.min(buf.length, size - pos), pos);
      if (bytesRead === 0) break;
      this.hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    this.written = pos;
    this.reused = pos;
  }

  /** Bytes in the file (and in the hash). */
  get bytes(): number {
    return this.written;
  }

  /** Bytes of the current contents that were found on disk rather than received now. */
  get reusedBytes(): number {
    return this.reused;
  }

  /** Write `chunk` after the current end and add it to the hash. */
  async append(chunk: Uint8Array): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      const { bytesWritten } = await this.fh.write(
        chunk,
        off,
        chunk.length - off,
        this.written + off,
      );
      off += bytesWritten;
    }
    this.hash.update(chunk);
    this.written += chunk.length;
  }

  /** Throw the contents away and start again from byte 0. */
  async reset(): Promise<void> {
    await this.fh.truncate(0);
    this.hash = createHash("sha256");
    this.written = 0;
    this.reused = 0;
  }

  /** sha256 hex of the contents so far (the running hash is left usable). */
  digest(): string {
    return this.hash.copy().digest("hex");
  }

  /**
   * fsync and close. Fails if `path` no longer names this file (something unlinked or
   * replaced it while it was being written), so the caller never returns a stale path.
   */
  async finish(): Promise<void> {
    try {
      await this.fh.sync();
      const mine = await this.fh.stat();
      const there = await stat(this.path).catch(() => undefined);
      if (!there || there.ino !== mine.ino || there.dev !== mine.dev) {
        const err = new Error(`${this.path} was removed or replaced while being written`);
        (err as NodeJS.ErrnoException).code = "ENOENT";
        throw err;
      }
    } finally {
      await this.close();
    }
  }

  /** Close, keeping the file (for a later fetch to resume). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }

  /** Close and delete the file. Idempotent; never throws for a file already gone. */
  async discard(): Promise<void> {
    await this.close().catch(() => {});
    await unlink(this.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
  }
}
