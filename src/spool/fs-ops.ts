import fs, { constants as C, type Stats } from "node:fs";
import { type FileHandle, open, rename, stat, unlink, utimes } from "node:fs/promises";
import { isErrno } from "../common/errno.js";

/**
 * Create `path` with O_CREAT|O_EXCL; `exists` when the name is taken.
 * @internal
 */
export async function createExclusive(path: string): Promise<"created" | "exists"> {
  let fh: FileHandle;
  try {
    fh = await open(path, C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o644);
  } catch (err) {
    if (isErrno(err, "EEXIST")) return "exists";
    throw err;
  }
  await fh.close();
  return "created";
}

/** @internal */
export async function unlinkIfExists(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    if (isErrno(err, "ENOENT")) return false;
    throw err;
  }
}

/**
 * rename(2), with ENOENT of the source reported as `not_found`.
 * @internal
 */
export async function renameIfExists(src: string, dst: string): Promise<"ok" | "not_found"> {
  try {
    await rename(src, dst);
    return "ok";
  } catch (err) {
    if (isErrno(err, "ENOENT")) return "not_found";
    throw err;
  }
}

/** @internal */
export async function setMtime(path: string, ms: number): Promise<"ok" | "not_found"> {
  try {
    await utimes(path, ms / 1000, ms / 1000);
    return "ok";
  } catch (err) {
    if (isErrno(err, "ENOENT")) return "not_found";
    throw err;
  }
}

/** A handle on `path` opened with `flags`, or undefined when there is no such file. @internal */
export async function openIfExists(
  path: string,
  flags: string | number,
): Promise<FileHandle | undefined> {
  try {
    return await open(path, flags);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
}

/**
 * The whole file at `path`, read through one descriptor, with that descriptor's stat;
 * undefined when there is no such file. Over `max` bytes, `bytes` is undefined (not read).
 * @internal
 */
export async function readIfExists(
  path: string,
  max = Number.POSITIVE_INFINITY,
): Promise<{ bytes: Buffer | undefined; st: Stats } | undefined> {
  const fh = await openIfExists(path, "r");
  if (fh === undefined) return undefined;
  try {
    const st = await fh.stat();
    return { bytes: st.size > max ? undefined : await fh.readFile(), st };
  } finally {
    await fh.close();
  }
}

/** @internal */
export async function statIfExists(path: string) {
  try {
    return await stat(path);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
}

/**
 * fsync(2) of a directory, so the names made, renamed or removed in it are durable. With
 * node:fs's callbacks and a plain descriptor: a FileHandle (node:fs/promises) costs the
 * event loop's thread about twice the CPU (measured: 22-26 against 60 us per sync), and
 * a busy spool syncs a directory several times per entry. The descriptor is closed
 * whatever the fsync did; the fsync's error is the one reported.
 * @internal
 */
export function fsyncDirectory(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.open(dir, C.O_RDONLY | C.O_DIRECTORY, (openErr, fd) => {
      if (openErr) return reject(openErr);
      fs.fsync(fd, (syncErr) => {
        fs.close(fd, (closeErr) => {
          const err = syncErr ?? closeErr;
          if (err) reject(err);
          else resolve();
        });
      });
    });
  });
}

const fsyncFd = (fd: number) =>
  new Promise<void>((resolve, reject) => fs.fsync(fd, (e) => (e ? reject(e) : resolve())));
interface DirHandle {
  fd: number;
  dev: number;
  ino: number;
  /** fsyncs under way on it: once it is no longer kept, it is closed when none is. */
  busy: number;
  closed: boolean;
}

/** At most this many directories kept open per DirectoryHandles (a spool has a few). */
const DIR_HANDLES = 32;
const closeHandle = (h: DirHandle) => {
  if (h.closed) return;
  h.closed = true;
  fs.close(h.fd, () => undefined);
};
const handlesClosed = new FinalizationRegistry<Map<string, DirHandle>>((open) => {
  for (const h of open.values()) closeHandle(h);
});

/**
 * fsync(2) of directories kept open between syncs: one thread-pool round trip per sync
 * (the fsync, with a stat of the path beside it) instead of three (open, fsync, close). The
 * spool threads do the same (spool-thread.ts). A kept descriptor counts only while its path
 * still names the same directory (the stat, made after the caller's change: an open
 * directory cannot be freed, so its inode number cannot name another one); otherwise the
 * sync is made again on a fresh descriptor. A failed fsync is reported, never retried on a
 * fresh descriptor (which might not see the error), and its descriptor is dropped. At most
 * DIR_HANDLES stay open, the least recently synced let go first; `close` lets go of all
 * (a kept descriptor holds its filesystem busy: no unmount while it is open).
 * @internal
 */
export class DirectoryHandles {
  private readonly open = new Map<string, DirHandle>();
  /** Raised by `close`: a descriptor opened before it is not kept. */
  private generation = 0;

  constructor() {
    handlesClosed.register(this, this.open);
  }

  async fsync(dir: string): Promise<void> {
    const generation = this.generation;
    const kept = this.open.get(dir);
    if (kept !== undefined) {
      // Most recently used last: the first one is the one to let go.
      this.open.delete(dir);
      this.open.set(dir, kept);
      kept.busy++;
      const [err, st] = await Promise.all([
        fsyncFd(kept.fd).then(
          () => undefined,
          (e: unknown) => e,
        ),
        statIfExists(dir).catch(() => undefined),
      ]);
      kept.busy--;
      const same = err === undefined && st?.ino === kept.ino && st.dev === kept.dev;
      if (!same) this.drop(dir, kept);
      else if (this.open.get(dir) !== kept && kept.busy === 0) closeHandle(kept); // let go meanwhile
      if (err !== undefined) throw err;
      if (same) return;
    }
    const fd = await new Promise<number>((resolve, reject) =>
      fs.open(dir, C.O_RDONLY | C.O_DIRECTORY, (e, fd) => (e ? reject(e) : resolve(fd))),
    );
    const h: DirHandle = { fd, dev: 0, ino: 0, busy: 1, closed: false };
    try {
      const st = await new Promise<Stats>((resolve, reject) =>
        fs.fstat(fd, (e, st) => (e ? reject(e) : resolve(st))),
      );
      h.dev = st.dev;
      h.ino = st.ino;
      await fsyncFd(fd);
    } catch (err) {
      h.busy--;
      closeHandle(h);
      throw err;
    }
    h.busy--;
    if (generation !== this.generation || this.open.has(dir)) {
      closeHandle(h);
      return;
    }
    this.open.set(dir, h);
    const [oldest, old] = this.open.entries().next().value as [string, DirHandle];
    if (this.open.size > DIR_HANDLES) this.drop(oldest, old);
  }

  /** Let go of every kept descriptor (later syncs keep theirs again). */
  close(): void {
    this.generation++;
    for (const [dir, h] of [...this.open]) this.drop(dir, h);
  }

  private drop(dir: string, h: DirHandle): void {
    if (this.open.get(dir) === h) this.open.delete(dir);
    if (h.busy === 0) closeHandle(h);
  }
}

/**
 * fsync(2) of directories with group commit: a caller is satisfied by any fsync of the
 * directory that *started* after it asked. While one fsync runs, every caller that arrives
 * waits for the single next one, so N concurrent operations cost about two fsyncs, not N.
 * Directories are kept open between syncs (DirectoryHandles).
 * @internal
 */
export class DirectorySyncer {
  private readonly running = new Map<string, Promise<void>>();
  private readonly next = new Map<string, Promise<void>>();
  private readonly handles = new DirectoryHandles();
  /** The fsync of one directory (a test wraps it to watch each fsync start and complete). */
  fsync: (dir: string) => Promise<void> = (dir) => this.handles.fsync(dir);

  /** Let go of the directories kept open (later syncs keep theirs again). */
  close(): void {
    this.handles.close();
  }

  /** fsync every directory of `dirs` (each once), at the same time. */
  async syncAll(dirs: Iterable<string>): Promise<void> {
    await Promise.all([...new Set(dirs)].map((d) => this.sync(d)));
  }

  sync(dir: string): Promise<void> {
    const current = this.running.get(dir);
    if (current === undefined) {
      const p = this.fsync(dir).finally(() => this.running.delete(dir));
      this.running.set(dir, p);
      return p;
    }
    let queued = this.next.get(dir);
    if (queued === undefined) {
      queued = current
        .catch(() => undefined)
        .then(() => {
          this.next.delete(dir);
          return this.sync(dir);
        });
      this.next.set(dir, queued);
    }
    return queued;
  }
}
