import { constants as C } from "node:fs";
import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  stat,
  unlink,
  utimes,
} from "node:fs/promises";
import { join } from "node:path";
import { rawName } from "./spool-payload.js";

/**
 * The raw baseline: the spool's on-disk protocol written directly on node:fs/promises, with
 * no library in between. It issues the same system calls, in the same order, as
 * src/spool/core.ts `enqueue`, `checkout` and `removeCheckout`/`removeFiles` (as of commit
 * 43a3aed: enqueue fsyncs files and directories in one parallel round; checkout renames
 * first), with one deliberate difference: every directory fsync is its own
 * open/fsync/close, as a naive raw implementation does, where the spool group-commits
 * concurrent directory fsyncs (DirectorySyncer in src/spool/fs-ops.ts). With
 * `dirSync: "group"` it group-commits them too, with the same algorithm, written out here:
 * a supplementary baseline that isolates the library's own cost from the group-commit
 * advantage. The files it writes are the spool's format (envelope header line, then JSON),
 * so a Spool can read them.
 */
export class RawSpool {
  readonly registry: string;
  readonly tmp: string;
  readonly data: string;
  readonly queueDir: string;
  readonly checkoutDir: string;

  private readonly fsyncDir: (dir: string) => Promise<void>;

  constructor(
    readonly root: string,
    queue: string,
    dirSync: "each" | "group" = "each",
    private readonly leaseMs = 10 * 60_000,
  ) {
    this.fsyncDir = dirSync === "each" ? fsyncDir : groupFsync();
    this.registry = join(root, ".registry");
    this.tmp = join(root, ".tmp");
    this.data = join(root, ".data");
    this.queueDir = join(root, queue);
    this.checkoutDir = join(root, queue, ".checkout");
  }

  async create(): Promise<void> {
    for (const d of [this.registry, this.tmp, this.data, this.checkoutDir]) {
      await mkdir(d, { recursive: true });
    }
  }

  /**
   * core.enqueue: registry O_CREAT|O_EXCL + close; data open/write (left open); tmp metadata
   * open/write (left open); one parallel round of fsync of the data file, the metadata
   * file, .registry and .data; close both files; rename tmp into the queue; fsync the queue
   * directory.
   */
  async enqueue(metadata: unknown, data: Uint8Array): Promise<string> {
    const bytes = encodeMetadataFile(metadata, 0);
    let name: string;
    for (let attempt = 0; ; attempt++) {
      name = rawName(attempt);
      try {
        const fh = await open(join(this.registry, name), C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o644);
        await fh.close();
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 1000) throw err;
      }
    }
    const tmp = join(this.tmp, name);
    const dataFh = await writeOpen(join(this.data, name), data);
    const metaFh = await writeOpen(tmp, bytes);
    await Promise.all([
      dataFh.sync(),
      metaFh.sync(),
      this.fsyncDir(this.registry),
      this.fsyncDir(this.data),
    ]);
    await dataFh.close();
    await metaFh.close();
    await rename(tmp, join(this.queueDir, name));
    await this.fsyncDir(this.queueDir);
    return name;
  }

  /** core.listNames: readdir, drop dot files, sort. */
  async list(): Promise<string[]> {
    const names = await readdir(this.queueDir);
    return names.filter((n) => !n.startsWith(".")).sort();
  }

  /**
   * core.checkout: rename into .checkout (ENOENT: someone else won, `undefined`), utimes of
   * the checkout file to the lease deadline, utimes of the registry file to now, stat,
   * readFile, decode.
   */
  async checkout(name: string): Promise<RawCheckout | undefined> {
    const now = Date.now();
    const dst = join(this.checkoutDir, name);
    try {
      await rename(join(this.queueDir, name), dst);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    const leaseUntil = now + this.leaseMs;
    await utimes(dst, leaseUntil / 1000, leaseUntil / 1000);
    await utimes(join(this.registry, name), now / 1000, now / 1000);
    const st = await stat(dst);
    const bytes = await readFile(dst);
    const { metadata, attempts } = decodeMetadataFile(bytes);
    return { name, metadata, attempts, leaseUntil, ino: st.ino };
  }

  /**
   * core.removeCheckout: the lease check (`holds`: clock, then stat of the checkout file
   * and an inode comparison), then removeFiles: unlink checkout file, data, registry.
   */
  async remove(co: RawCheckout): Promise<boolean> {
    if (Date.now() >= co.leaseUntil) return false;
    const path = join(this.checkoutDir, co.name);
    const st = await stat(path);
    if (st.ino !== co.ino) return false;
    await unlink(path);
    await unlink(join(this.data, co.name));
    await unlink(join(this.registry, co.name));
    return true;
  }
}

export interface RawCheckout {
  name: string;
  metadata: unknown;
  attempts: number;
  leaseUntil: number;
  ino: number;
}

/** The spool's metadata file format: `{"v":1,"attempts":N}\n` then the JSON metadata. */
export function encodeMetadataFile(metadata: unknown, attempts: number): Buffer {
  return Buffer.concat([
    Buffer.from(`${JSON.stringify({ v: 1, attempts })}\n`),
    Buffer.from(JSON.stringify(metadata)),
  ]);
}

function decodeMetadataFile(bytes: Buffer): { metadata: unknown; attempts: number } {
  const nl = bytes.indexOf(0x0a);
  if (nl < 0) throw new Error("metadata file has no header line");
  const header = JSON.parse(bytes.subarray(0, nl).toString("utf8")) as { attempts: number };
  return {
    metadata: JSON.parse(bytes.subarray(nl + 1).toString("utf8")),
    attempts: header.attempts,
  };
}

/** Open (create, truncate), write everything, and return the open handle, not fsynced. */
async function writeOpen(path: string, bytes: Uint8Array): Promise<FileHandle> {
  const fh = await open(path, C.O_CREAT | C.O_TRUNC | C.O_WRONLY, 0o644);
  try {
    let off = 0;
    while (off < bytes.length) {
      const { bytesWritten } = await fh.write(bytes, off, bytes.length - off);
      off += bytesWritten;
    }
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, C.O_RDONLY | C.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Directory fsync with group commit: a caller is satisfied by any fsync of the directory
 * that starts after it asked, so callers arriving while one runs share the next one.
 */
function groupFsync(): (dir: string) => Promise<void> {
  const running = new Map<string, Promise<void>>();
  const next = new Map<string, Promise<void>>();
  const sync = (dir: string): Promise<void> => {
    const current = running.get(dir);
    if (current === undefined) {
      const p = fsyncDir(dir).finally(() => running.delete(dir));
      running.set(dir, p);
      return p;
    }
    let queued = next.get(dir);
    if (queued === undefined) {
      queued = current
        .catch(() => undefined)
        .then(() => {
          next.delete(dir);
          return sync(dir);
        });
      next.set(dir, queued);
    }
    return queued;
  };
  return sync;
}
