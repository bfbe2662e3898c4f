import { rename, stat } from "node:fs/promises";
import type { SpoolCore } from "./core.js";
import { DataFile, writeDataSynced } from "./data.js";
import { ioError, isErrno, SpoolError, SpoolErrorCode } from "./errors.js";

/**
 * An entry in a queue, by name. Nothing is checked when it is made; it may be checked out
 * or removed by another process at any moment. Use `spool.checkout` to own it.
 */
export class Entry<M, Q extends string> {
  /** @internal */
  constructor(
    readonly core: SpoolCore<M, Q>,
    readonly queue: Q,
    readonly name: string,
  ) {}

  /** stat(2) of the entry's registry file; `entry_not_found` when the entry is gone. */
  async stat() {
    const path = this.core.layout.registryFile(this.name);
    try {
      return await this.core.throttle.run(() => stat(path));
    } catch (err) {
      if (isErrno(err, "ENOENT")) {
        throw new SpoolError(SpoolErrorCode.EntryNotFound, `no entry ${this.name}`, { cause: err });
      }
      throw ioError("stat", path, err);
    }
  }

  get path(): string {
    return this.core.layout.queueFile(this.core.dirname(this.queue), this.name);
  }

  dataFile(): DataFile {
    const l = this.core.layout;
    return new DataFile(l.dataFile(this.name), this.core.throttle, l.tmpFile(this.name, "data"));
  }

  /**
   * Operations with no exclusive access: read or overwrite the queue file in place, or
   * delete the entry. Revalidate after a checkout before relying on what `contents` read.
   */
  get direct(): DirectEntryOps<M> {
    return new DirectEntryOps(this);
  }
}

export class DirectEntryOps<M> {
  constructor(private readonly entry: Entry<M, string>) {}

  async contents(): Promise<M> {
    return (await this.read()).metadata;
  }

  /** Metadata and the spool's own bookkeeping (failed delivery count). */
  async read(): Promise<{ metadata: M; attempts: number }> {
    const e = this.entry;
    const { metadata, envelope } = await e.core.readMetadataFile(e.path, e.name);
    return { metadata, attempts: envelope.attempts };
  }

  /** Atomically replace the queue file's metadata (tmp, fsync, rename over). */
  async save(metadata: M): Promise<void> {
    const e = this.entry;
    const current = await this.read().catch(() => ({ attempts: 0 }));
    const bytes = e.core.encodeFile(metadata, { attempts: current.attempts });
    const tmp = e.core.layout.tmpFile(e.name, "direct");
    try {
      await e.core.throttle.run(async () => {
        await writeDataSynced(tmp, bytes);
        await rename(tmp, e.path);
      });
    } catch (err) {
      throw ioError("save", e.path, err);
    }
  }

  /** Delete the queue file, the data and the registry file (in that order). */
  remove(): Promise<void> {
    return this.entry.core.removeFiles(this.entry.path, this.entry.name);
  }
}
