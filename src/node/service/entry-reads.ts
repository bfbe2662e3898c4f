import { createHash } from "node:crypto";
import { validateName } from "../../spool/index.js";
import type { EntryInfo } from "../entry-info.js";
import { noEntry, readInfo, toInfo } from "./entry-lookup.js";
import { ServiceError, ServiceErrorCode } from "./errors.js";
import type { ServiceContext } from "./service-context.js";

const READ_CHUNK = 64 * 1024;

/**
 * Reading entries without taking them: List (paged, bounded by count and bytes), Stat and
 * ReadData (only within the queues the caller may read), and queue depths.
 */
export class EntryReads {
  constructor(private readonly ctx: ServiceContext) {}

  /** A page of a queue (or of its checkouts), in name order, after `pageToken`. */
  list(req: {
    queue: string;
    checkedOut?: boolean;
    pageSize?: number;
    pageToken?: string;
  }): Promise<{
    entries: EntryInfo[];
    nextPageToken: string;
  }> {
    return this.ctx.timed("list", req.queue, async () => {
      this.ctx.checkQueue(req.queue);
      const size = Math.min(Math.max(req.pageSize || 100, 1), 1000);
      let after = "";
      if (req.pageToken) {
        after = Buffer.from(req.pageToken, "base64url").toString("utf8");
        validateName("entry", after);
      }
      const names = req.checkedOut
        ? await this.ctx.spool.listCheckedOutNames(req.queue)
        : await this.ctx.spool.listNames(req.queue);
      const entries: EntryInfo[] = [];
      let last = "";
      let more = false;
      let bytes = 0;
      for (const name of names) {
        if (name <= after) continue;
        if (entries.length === size) {
          more = true;
          break;
        }
        const info = await readInfo(this.ctx.spool, req.queue, name, req.checkedOut ?? false);
        if (info) {
          // Bounded by bytes too (limits.listPageBytes), so a page fits in one message.
          const b = pageBytes(info);
          if (entries.length > 0 && bytes + b > this.ctx.limits.listPageBytes) {
            more = true;
            break;
          }
          bytes += b;
          entries.push(info);
        }
        last = name;
      }
      return { entries, nextPageToken: more ? Buffer.from(last).toString("base64url") : "" };
    });
  }

  /**
   * Where `name` is and what it holds, looking only in `queues` (the queues the caller may
   * read; default all). An entry elsewhere, an absent entry and an unknown `queue` all
   * answer the same not_found, so a caller learns nothing about queues it may not read.
   */
  stat(req: {
    name: string;
    queue?: string;
    queues?: readonly string[];
  }): Promise<{ entry: EntryInfo; state: "queued" | "checked_out" }> {
    return this.ctx.timed("stat", req.queue ?? "", async () => {
      validateName("entry", req.name);
      const queues = this.visibleQueues(req.queues, req.queue);
      const found = queues.length > 0 && (await this.ctx.spool.find(req.name, queues));
      if (!found) throw noEntry(req.name);
      const { queue, metadata, attempts, leaseUntil, state } = found;
      return { entry: toInfo(req.name, queue, metadata, attempts, leaseUntil), state };
    });
  }

  /** The queues a caller limited to `queues` may read, `first` first; none if `first` is not one. */
  private visibleQueues(queues: readonly string[] | undefined, first?: string): string[] {
    const visible = this.ctx.spool.queues.filter((q) => !queues || queues.includes(q));
    if (!first) return visible;
    return visible.includes(first) ? [first, ...visible.filter((q) => q !== first)] : [];
  }

  /**
   * Stream an entry's data from `offset` (at most `limit` bytes), if it is in one of
   * `queues` (default all; not_found otherwise, as for `stat`). When the whole data is
   * read, the last chunk carries its sha256.
   */
  async *readData(req: {
    name: string;
    offset?: number;
    limit?: number;
    queues?: readonly string[];
  }): AsyncGenerator<{
    offset: number;
    chunk: Buffer;
    sha256?: string;
  }> {
    validateName("entry", req.name);
    const offset = req.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new ServiceError(
        ServiceErrorCode.InvalidArgument,
        "offset must be a non-negative integer",
      );
    }
    if (req.limit !== undefined && !(Number.isSafeInteger(req.limit) && req.limit >= 0)) {
      throw new ServiceError(
        ServiceErrorCode.InvalidArgument,
        "limit must be a non-negative integer",
      );
    }
    const queues = this.visibleQueues(req.queues);
    if (!(await this.ctx.spool.locate(req.name, queues))) throw noEntry(req.name);
    const file = this.ctx.spool.dataFile(req.name);
    let size: number;
    try {
      size = (await file.stat()).size;
    } catch {
      throw noEntry(req.name);
    }
    if (offset > size) {
      throw new ServiceError(
        ServiceErrorCode.OutOfRange,
        `offset ${offset} is past the end (${size} bytes)`,
      );
    }
    // Absent: to the end; 0: nothing (one empty chunk at `offset`).
    const end = req.limit !== undefined ? Math.min(size, offset + req.limit) : size;
    const whole = offset === 0 && end === size;
    const hash = whole ? createHash("sha256") : undefined;
    if (end === offset) {
      yield { offset, chunk: Buffer.alloc(0), ...(hash ? { sha256: hash.digest("hex") } : {}) };
      return;
    }
    const stream = file.createReadStream({
      start: offset,
      end: end - 1,
      highWaterMark: READ_CHUNK,
    });
    let pos = offset;
    let pending: Buffer | undefined;
    try {
      for await (const c of stream) {
        const chunk = c as Buffer;
        hash?.update(chunk);
        if (pending) yield { offset: pos - pending.length, chunk: pending };
        pending = chunk;
        pos += chunk.length;
      }
    } finally {
      stream.destroy();
    }
    if (pending) {
      yield {
        offset: pos - pending.length,
        chunk: pending,
        ...(hash ? { sha256: hash.digest("hex") } : {}),
      };
    }
  }

  async queueDepths(): Promise<Array<{ queue: string; queued: number; checkedOut: number }>> {
    const out = [];
    for (const queue of this.ctx.spool.queues) {
      out.push({
        queue,
        queued: (await this.ctx.spool.listNames(queue)).length,
        checkedOut: (await this.ctx.spool.listCheckedOutNames(queue)).length,
      });
    }
    return out;
  }
}

/** What an entry adds to a List page: its variable fields and room for the fixed ones. */
function pageBytes(e: EntryInfo): number {
  return e.metadata.length + e.name.length + e.queue.length + e.dataSha256.length + 64;
}
