import { rename, stat } from "node:fs/promises";
import { isErrno } from "../common/errno.js";
import type { SpoolCore } from "./core.js";
import { DataFile, writeDataSynced } from "./data.js";
import { ioError, SpoolError, SpoolErrorCode } from "./errors.js";

/**
 * An entry in a queue, by name. Nothing is checked when it is made; it may be checked out
 * or removed by another process at any moment. Use `spool.checkout` to own it.
 */
export class Entry<M, Q extends string> {
  readonly #core: SpoolCore<M, Q>;

  /** @internal */
  constructor(
    core: SpoolCore<M, Q>,
    readonly queue: Q,
    readonly name: string,
  ) {
    this.#core = core;
  }

  /** stat(2) of the entry's registry file; `entry_not_found` when the entry is gone. */
  async stat() {
    const path = this.#core.layout.registryFile(this.name);
    try {
      return await this.#core.throttle.run(() => stat(path));
    } catch (err) {
      if (isErrno(err, "ENOENT")) {
        throw new SpoolError(SpoolErrorCode.EntryNotFound, `no entry ${this.name}`, { cause: err });
      }
      throw ioError("stat", path, err);
    }
  }

  get path(): string {
    return this.#core.layout.queueFile(this.#core.dirname(this.queue), this.name);
  }

  dataFile(): DataFile {
    const l = this.#core.layout;
    return new DataFile(l.dataFile(this.name), this.#core.throttle, l.tmpFile(this.name, "data"));
  }

  /**
   * Operations with no exclusive access: read or overwrite the queue file in place, or
   * delete the entry. Revalidate after a checkout before relying on what `contents` read.
   */
  get direct(): DirectEntryOps<M> {
    return new DirectEntryOps(this.#core, this.path, this.name);
  }
}

export class DirectEntryOps<M> {
  readonly #core: SpoolCore<M, string>;
  readonly #path: string;
  readonly #name: string;

  /** @internal */
  constructor(core: SpoolCore<M, string>, path: string, name: string) {
    this.#core = core;
    this.#path = path;
    this.#name = name;
  }

  async contents(): Promise<M> {
    return (await this.read()).metadata;
  }

  /** Metadata and the spool's own bookkeeping (failed delivery count). */
  async read(): Promise<{ metadata: M; attempts: number }> {
    const { metadata, envelope } = await this.#core.readMetadataFile(this.#path, this.#name);
    return { metadata, attempts: envelope.attempts };
  }

  /** Atomically replace the queue file's metadata (tmp, fsync, rename over). */
  async save(metadata: M): Promise<void> {
    const current = await this.read().catch(() => ({ attempts: 0 }));
    const bytes = this.#core.encodeFile(metadata, { attempts: current.attempts });
    const tmp = this.#core.layout.tmpFile(this.#name, "direct");
    try {
      await this.#core.throttle.run(async () => {
        await writeDataSynced(tmp, bytes);
        await rename(tmp, this.#path);
      });
    } catch (err) {
      throw ioError("save", this.#path, err);
    }
  }

  /** Delete the queue file, the data and the registry file (in that order). */
  remove(): Promise<void> {
    return this.#core.removeFiles(this.#path, this.#name);
  }
}
