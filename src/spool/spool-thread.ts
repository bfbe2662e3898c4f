import { Worker } from "node:worker_threads";

/**
 * What every spool thread's code starts with (plain JavaScript, prepended to its source):
 * `fs`, `parentPort`, `C` (fs.constants); `call(f, ...args)`, a callback call as a promise
 * (on the process's thread pool, so the thread serves other messages meanwhile); and
 * `syncDir(dir)`, a directory's fsync group-committed as fs-ops.ts's DirectorySyncer does
 * it: a sync asked for while one of the same directory runs waits for the next, which
 * starts after it was asked.
 * @internal
 */
export const THREAD_PRELUDE = `
const fs = require("node:fs");
const { parentPort } = require("node:worker_threads");
const C = fs.constants;
const call = (f, ...args) => new Promise((res, rej) => f(...args, (e, v) => (e ? rej(e) : res(v))));
// A whole file, read through one descriptor, with its stat: undefined when there is no such
// file; bytes undefined when it is over max. A buffer of its own (not a slice of the shared
// pool), so a reply can transfer it.
const readWhole = (p, max) => {
  let fd;
  try { fd = fs.openSync(p, "r"); } catch (e) { if (e.code === "ENOENT") return undefined; throw e; }
  try {
    const st = fs.fstatSync(fd);
    if (max !== undefined && st.size > max) return { st, bytes: undefined };
    const bytes = Buffer.allocUnsafeSlow(st.size);
    let off = 0;
    while (off < st.size) {
      const n = fs.readSync(fd, bytes, off, st.size - off, off);
      if (n === 0) break;
      off += n;
    }
    return { st, bytes: off === st.size ? bytes : bytes.subarray(0, off) };
  } finally { fs.closeSync(fd); }
};
const syncs = new Map();
const syncDir = (dir) => {
  let s = syncs.get(dir);
  if (s === undefined) { s = { running: false, queued: [] }; syncs.set(dir, s); }
  const done = new Promise((resolve, reject) => s.queued.push({ resolve, reject }));
  if (!s.running) runSyncs(dir, s);
  return done;
};
// Directories stay open between their fsyncs (one thread-pool round trip per sync instead
// of three: open, fsync, close), as fs-ops.ts's DirectoryHandles keeps them: a kept
// descriptor is used only while the path still names the same directory (a stat in this
// thread after the fsync: an open directory cannot be freed, so its inode number cannot
// name another); else the sync is made again on a fresh descriptor. A failed fsync is
// reported, never retried on a fresh descriptor, which might not see the error. At most
// DIR_HANDLES stay open, the least recently synced let go first; a descriptor is closed
// once no fsync uses it. The thread's exit closes them (SpoolThread.close).
const DIR_HANDLES = 32;
const dirFds = new Map();
const closeDir = (h) => { if (!h.closed) { h.closed = true; fs.close(h.fd, () => {}); } };
const dropDir = (dir, h) => {
  if (dirFds.get(dir) === h) dirFds.delete(dir);
  if (h.busy === 0) closeDir(h);
};
const fsyncDirOnce = async (dir) => {
  const kept = dirFds.get(dir);
  if (kept !== undefined) {
    dirFds.delete(dir);
    dirFds.set(dir, kept);
    kept.busy++;
    let err;
    try { await call(fs.fsync, kept.fd); } catch (e) { err = e; }
    kept.busy--;
    let same = false;
    if (err === undefined) {
      try { const st = fs.statSync(dir); same = st.ino === kept.ino && st.dev === kept.dev; } catch {}
    }
    if (!same) dropDir(dir, kept);
    else if (dirFds.get(dir) !== kept && kept.busy === 0) closeDir(kept);
    if (err !== undefined) throw err;
    if (same) return;
  }
  const fd = await call(fs.open, dir, C.O_RDONLY | C.O_DIRECTORY);
  const h = { fd, dev: 0, ino: 0, busy: 1, closed: false };
  try {
    const st = fs.fstatSync(fd);
    h.dev = st.dev;
    h.ino = st.ino;
    await call(fs.fsync, fd);
  } catch (e) { h.busy--; closeDir(h); throw e; }
  h.busy--;
  if (dirFds.has(dir)) { closeDir(h); return; }
  dirFds.set(dir, h);
  const [oldest, old] = dirFds.entries().next().value;
  if (dirFds.size > DIR_HANDLES) dropDir(oldest, old);
};
const runSyncs = async (dir, s) => {
  s.running = true;
  while (s.queued.length > 0) {
    const round = s.queued.splice(0);
    try {
      await fsyncDirOnce(dir);
      for (const w of round) w.resolve();
    } catch (e) { for (const w of round) w.reject(e); }
  }
  s.running = false;
};
`;

/**
 * A thread of the spool's own that answers requests with synchronous system calls: a few
 * microseconds of the kernel's time per call instead of a round trip through the thread
 * pool and the event loop each. `source` is the thread's code, plain JavaScript run with
 * `eval` after THREAD_PRELUDE (so it works the same from the sources, the build and a
 * bundle): it gets
 * `{ id, ...request }` and answers `{ id, ...reply }`. Made on first use; it keeps the
 * process alive only while a request is under way. If it dies, the requests it had fail
 * and the next request starts a new thread.
 * @internal
 */
export class SpoolThread<Request extends object, Reply> {
  private worker: Worker | undefined;
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve: (r: Reply) => void; reject: (e: Error) => void; worker: Worker }
  >();
  /** Per thread, its requests not answered yet (it keeps the process alive while any). */
  private readonly outstanding = new Map<Worker, number>();
  /** Threads still starting (until they run, or fail to). */
  private readonly starting = new Set<Worker>();
  /** Per thread being closed, told when its last request is answered (or it is gone). */
  private readonly drained = new Map<Worker, () => void>();
  /** The last `close`'s stop, for a second `close` to wait on. */
  private closing: Promise<void> | undefined;

  constructor(
    private readonly source: string,
    /** What the thread is, for the error when it exits ("the spool's checkout thread"). */
    private readonly what: string,
  ) {}

  /** Requests sent to a thread so far. */
  calls = 0;

  /** Whether a thread runs now (started, and not gone): `call` answers without its start. */
  get running(): boolean {
    return this.worker !== undefined && !this.starting.has(this.worker);
  }

  /** Whether a thread runs or is starting: `call` goes to it. */
  get alive(): boolean {
    return this.worker !== undefined;
  }

  /** Start the thread if none runs or is starting, without waiting for it. */
  start(): void {
    this.thread();
  }

  call(request: Request): Promise<Reply> {
    const worker = this.thread();
    const id = this.nextId++;
    this.calls++;
    const done = new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker });
    });
    const n = this.outstanding.get(worker) ?? 0;
    this.outstanding.set(worker, n + 1);
    if (n === 0) worker.ref();
    try {
      worker.postMessage({ id, ...request });
    } catch (err) {
      // Not sent (a request that cannot be cloned): as if answered, then the error.
      this.pending.delete(id);
      this.answered(worker);
      return Promise.reject(err);
    }
    return done;
  }

  /**
   * Stop the thread once the requests sent to it are answered; what it held open (its
   * kept directory descriptors) is closed as it exits. A later call starts a new one. A
   * second `close` meanwhile waits for the same stop.
   */
  close(): Promise<void> {
    const worker = this.worker;
    if (worker === undefined) return this.closing ?? Promise.resolve();
    this.worker = undefined;
    const closing = (async () => {
      if ((this.outstanding.get(worker) ?? 0) > 0) {
        await new Promise<void>((resolve) => this.drained.set(worker, resolve));
      }
      await worker.terminate();
    })();
    this.closing = closing;
    return closing;
  }

  /** One request of `worker` answered (or never sent). */
  private answered(worker: Worker): void {
    const left = (this.outstanding.get(worker) ?? 1) - 1;
    this.outstanding.set(worker, left);
    if (left === 0) {
      worker.unref();
      this.drained.get(worker)?.();
      this.drained.delete(worker);
    }
  }

  private thread(): Worker {
    if (this.worker !== undefined) return this.worker;
    const worker = new Worker(THREAD_PRELUDE + this.source, { eval: true });
    this.starting.add(worker);
    const started = () => this.starting.delete(worker);
    worker.once("online", started);
    worker.once("exit", started);
    worker.on("message", ({ id, ...reply }: { id: number }) => {
      const p = this.pending.get(id);
      if (p === undefined) return;
      this.pending.delete(id);
      this.answered(worker);
      p.resolve(reply as Reply);
    });
    // Only this thread's requests fail: those sent meanwhile to a new thread are that one's.
    const fail = (err: Error) => {
      if (this.worker === worker) this.worker = undefined;
      for (const [id, p] of this.pending) {
        if (p.worker !== worker) continue;
        this.pending.delete(id);
        p.reject(err);
      }
      this.outstanding.delete(worker);
      this.drained.get(worker)?.();
      this.drained.delete(worker);
      worker.unref();
    };
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`${this.what} exited (${code})`)));
    // After the listeners: adding a "message" listener to a Worker refs it again, so a
    // thread unref'd before that kept its process alive for good when no request came (a
    // short-lived process whose checkouts all ran before the thread was up never exited).
    worker.unref();
    this.worker = worker;
    return worker;
  }
}
