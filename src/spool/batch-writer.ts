import { GroupCommit, splitBy } from "../common/group-commit.js";
import { SpoolThread } from "./spool-thread.js";

/**
 * One entry's files, as the writer thread makes them.
 * @internal
 */
export interface WriterItem {
  /** The registry file: made with O_EXCL when `reserve`, else it must exist already. */
  registry: string;
  reserve: boolean;
  data: string;
  tmp: string;
  dataBytes: Uint8Array;
  metadataBytes: Uint8Array;
}

/**
 * What the writer thread did with one entry.
 * @internal
 */
export type WriterResult =
  | { ok: true }
  /** The name was taken (its registry file existed): nothing was made. */
  | { ok: false; taken: true }
  | { ok: false; taken?: false; step: string; errno: string; message: string };

/**
 * What reserving one registry file did.
 * @internal
 */
export type ReserveResult = "created" | "exists" | { errno: string; message: string };

type Request = (
  | { dirs: string[]; items: WriterItem[]; reserve?: undefined; dropPool?: undefined }
  | { reserve: string[]; dropPool?: undefined }
  | { dropPool: true }
) & {
  /** The spool's file pool directory (`.pool`); none: every file is made when it is needed. */
  pool?: string;
};

type Reply = { results: WriterResult[] } | { reserved: ReserveResult[] } | { dropped: true };

/**
 * Most files the batch writer keeps made ahead in its pool (see index.ts, "The file pool").
 * @internal
 */
export const POOL_MAX = 48;
/**
 * A pool directory not changed for this long is another thread's left behind (its
 * process gone): a thread starting its pool removes it.
 * @internal
 */
export const POOL_STALE_MS = 10 * 60_000;

/*
 * The thread's code, plain JavaScript run with `eval` (so it works the same from the
 * sources, the build and a bundle). Per request: every entry's registry file (O_EXCL),
 * data file (O_EXCL) and metadata in .tmp, written with synchronous calls; then one
 * durability round: every file's fdatasync and the fsync of each directory in `dirs`
 * (`syncDir`: shared with the rounds under way, group-committed), all
 * at once on the thread pool; then each data file checked still linked and its registry
 * file still there, and the files closed. An entry that failed has its files removed
 * (only those it made) before the reply. Requests overlap: the next one is written while
 * the previous one's round runs.
 */
const THREAD_SOURCE = `
const writeAll = (fd, b) => { let o = 0; while (o < b.length) o += fs.writeSync(fd, b, o, b.length - o); };
const quiet = (f) => { try { f(); } catch {} };
// The file pool (see index.ts, "The file pool"): empty files this thread made ahead, in a
// directory of its own under .pool, each linked under the name a write needs (a link fails
// with EEXIST as O_CREAT|O_EXCL does) and then unlinked from the pool. Every file the thread
// needed (from the pool or not) is made again once no request is under way, up to POOL_MAX.
const POOL_MAX = ${POOL_MAX};
const POOL_STALE_MS = ${POOL_STALE_MS};
let pool;
// Dropped (the thread is being stopped): no pool again.
let dropped = false;
let busy = 0;
let refilling = false;
const usePool = (base) => {
  if (dropped || base === undefined || (pool !== undefined && pool.base === base)) return;
  pool = { base, dir: base + "/" + require("node:crypto").randomBytes(8).toString("hex"), files: [], seq: 0, wanted: 0, made: false, off: false, swept: 0 };
};
const wantOne = () => { if (pool !== undefined && !pool.off && pool.files.length + pool.wanted < POOL_MAX) pool.wanted++; };
// Errors of link(2) that say this file system has no hard links for us: the pool goes off.
const NO_LINKS = new Set(["EXDEV", "EPERM", "ENOTSUP", "EOPNOTSUPP"]);
// Link a pool file at target, with fresh times (repair judges a file's age by its mtime, and
// a pool file may have waited long): "linked"; or "none" (no pool file: make it); or throws
// the link's EEXIST (the pool file stays for the next one).
const fromPool = (target) => {
  wantOne();
  while (pool !== undefined && !pool.off && pool.files.length > 0) {
    const f = pool.files.pop();
    try { fs.linkSync(f, target); }
    catch (e) {
      if (e.code === "EEXIST") { pool.files.push(f); throw e; }
      if (e.code === "ENOENT" && !fs.existsSync(f)) continue; // the pool directory was swept
      pool.files.push(f);
      if (NO_LINKS.has(e.code)) pool.off = true;
      return "none";
    }
    try {
      try { fs.unlinkSync(f); } catch (e) { if (e.code !== "ENOENT") throw e; }
      const now = Date.now() / 1000;
      fs.utimesSync(target, now, now);
    } catch (e) {
      // Not one name and fresh times: not a file to use. Made the usual way.
      quiet(() => fs.unlinkSync(target));
      return "none";
    }
    return "linked";
  }
  return "none";
};
// A new file at p: EEXIST if p exists.
const newFile = (p) => fs.openSync(p, C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o644);
// A linked file opened for writing; it is ours, so it goes if it cannot be opened.
const openLinked = (p) => { try { return fs.openSync(p, C.O_WRONLY); } catch (e) { quiet(() => fs.unlinkSync(p)); throw e; } };
// A new empty file at p (fails with EEXIST if p exists, as O_CREAT|O_EXCL), open or not.
const makeExcl = (p) => fromPool(p) === "linked" ? openLinked(p) : newFile(p);
const makeEmpty = (p) => { if (fromPool(p) !== "linked") fs.closeSync(newFile(p)); };
// An empty file at p, open: whatever was at p is replaced, as O_CREAT|O_TRUNC.
const makeTrunc = (p) => {
  let linked = "none";
  try { linked = fromPool(p); } catch (e) { if (e.code !== "EEXIST") throw e; }
  return linked === "linked" ? openLinked(p) : fs.openSync(p, C.O_CREAT | C.O_TRUNC | C.O_WRONLY, 0o644);
};
// Pool directories other threads left (their process gone, or idle that long): removed,
// when this thread makes its pool and then every POOL_STALE_MS. A live thread whose
// directory went makes its files the usual way, and a new directory.
const sweep = () => {
  const now = Date.now();
  pool.swept = now;
  for (const d of fs.readdirSync(pool.base)) {
    const p = pool.base + "/" + d;
    if (p === pool.dir) continue;
    quiet(() => { if (now - fs.statSync(p).mtimeMs > POOL_STALE_MS) fs.rmSync(p, { recursive: true, force: true }); });
  }
};
// Made only inside the spool as it is: never its root again (mkdir is not recursive).
const refill = () => {
  refilling = false;
  if (pool === undefined || pool.off || busy > 0) return;
  try {
    if (!pool.made) {
      try { fs.mkdirSync(pool.base); } catch (e) { if (e.code !== "EEXIST") throw e; }
      try { fs.mkdirSync(pool.dir); } catch (e) { if (e.code !== "EEXIST") throw e; }
      pool.made = true;
      sweep();
    } else if (Date.now() - pool.swept > POOL_STALE_MS) sweep();
    for (let k = 0; k < 2 && pool.wanted > 0; k++) {
      const f = pool.dir + "/" + pool.seq++;
      fs.closeSync(newFile(f));
      pool.files.push(f);
      pool.wanted--;
    }
  } catch (e) {
    // Its directory gone (swept): so are the files it listed; made again once. It cannot be
    // made (the spool removed?), or another failure (a full disk): nothing more until a
    // request needs a file.
    const swept = e.code === "ENOENT" && pool.made;
    if (e.code === "ENOENT") { pool.made = false; pool.files = []; }
    if (!swept) { pool.wanted = 0; return; }
  }
  scheduleRefill();
};
const scheduleRefill = () => {
  if (refilling || busy > 0 || pool === undefined || pool.off || pool.wanted === 0) return;
  refilling = true;
  setImmediate(refill);
};
const dropPool = () => {
  dropped = true;
  if (pool !== undefined) quiet(() => fs.rmSync(pool.dir, { recursive: true, force: true }));
  pool = undefined;
};
const reserve = (paths) => paths.map((p) => {
  try { makeEmpty(p); return "created"; }
  catch (e) { return e.code === "EEXIST" ? "exists" : { errno: String(e.code || "unknown"), message: String(e.message || e) }; }
});
const reply = (msg) => { busy--; parentPort.postMessage(msg); scheduleRefill(); };
parentPort.on("message", async (req) => {
  busy++;
  if (req.dropPool) { dropPool(); reply({ id: req.id, dropped: true }); return; }
  usePool(req.pool);
  if (req.reserve) { reply({ id: req.id, reserved: reserve(req.reserve) }); return; }
  const n = req.items.length;
  const out = new Array(n);
  const st = req.items.map(() => ({ fds: [], madeData: false, madeRegistry: false, step: "reserve name" }));
  const fail = (i, e) => {
    if (out[i] !== undefined) return;
    out[i] = { ok: false, step: st[i].step, errno: String((e && e.code) || "unknown"), message: String((e && e.message) || e) };
  };
  req.items.forEach((it, i) => {
    const s = st[i];
    try {
      if (it.reserve) {
        try { makeEmpty(it.registry); }
        catch (e) { if (e.code === "EEXIST") { out[i] = { ok: false, taken: true }; return; } throw e; }
        s.madeRegistry = true;
      }
      s.step = "write data";
      const dfd = makeExcl(it.data);
      s.madeData = true;
      s.fds.push(dfd);
      writeAll(dfd, it.dataBytes);
      s.step = "write metadata";
      const mfd = makeTrunc(it.tmp);
      s.fds.push(mfd);
      writeAll(mfd, it.metadataBytes);
    } catch (e) { fail(i, e); }
  });
  const syncs = [];
  for (let i = 0; i < n; i++) {
    if (out[i] !== undefined) continue;
    st[i].step = "fsync";
    for (const fd of st[i].fds) syncs.push(call(fs.fdatasync, fd).catch((e) => fail(i, e)));
  }
  let dirError;
  for (const d of req.dirs) syncs.push(syncDir(d).catch((e) => { dirError = dirError || e; }));
  await Promise.all(syncs);
  req.items.forEach((it, i) => {
    const s = st[i];
    if (out[i] === undefined) {
      try {
        if (dirError) throw dirError;
        s.step = "check";
        const linked = fs.fstatSync(s.fds[0]).nlink > 0;
        const reserved = fs.existsSync(it.registry);
        if (!linked || !reserved) {
          const e = new Error(!linked || s.madeRegistry
            ? "its files were removed while it was being written (a batch stalled past the tmp age limit?)"
            : "the name was not reserved in this spool");
          e.code = "ENOENT";
          throw e;
        }
      } catch (e) { fail(i, e); }
    }
    for (const fd of s.fds) quiet(() => fs.closeSync(fd));
    if (out[i] === undefined) { out[i] = { ok: true }; return; }
    if (s.madeData) { quiet(() => fs.unlinkSync(it.tmp)); quiet(() => fs.unlinkSync(it.data)); }
    if (s.madeData || s.madeRegistry) quiet(() => fs.unlinkSync(it.registry));
  });
  reply({ id: req.id, results: out });
});
`;

/**
 * Most items the writer thread is sent at once when writes that waited are grouped (as
 * enqueueBatch's rounds: it bounds the files open at once, two per item). A single write
 * larger than this still goes alone, whole.
 * @internal
 */
export const WRITE_GROUP_ITEMS = 512;
/** Writes sent to the thread at once (see `BatchWriter.write`). @internal */
export const WRITES_IN_FLIGHT = 4;

/**
 * A thread that writes batches of small entries with synchronous system calls: per entry a
 * few microseconds of the kernel's time, instead of a dozen round trips through the thread
 * pool and the event loop. One per spool, made on first use; it keeps the process alive
 * only while a request is under way. If it dies, the requests under way fail (their files
 * may remain, as after a crash, for repair) and the next request starts a new one.
 * @internal
 */
export class BatchWriter {
  /** `pool`: the spool's pool directory (`.pool`); without one, files are made as needed. */
  constructor(private readonly pool?: string) {}

  private readonly thread = new SpoolThread<Request, Reply>(
    THREAD_SOURCE,
    "the spool's batch writer thread",
  );
  /** Writes asked for while WRITES_IN_FLIGHT are under way go together (group commit). */
  private readonly writes = new GroupCommit<{ items: WriterItem[]; dirs: string[] }, WriterResult>(
    (calls) => this.writeGroup(calls),
    (call) => call.items.length,
    { maxItems: WRITE_GROUP_ITEMS, inFlight: WRITES_IN_FLIGHT },
  );
  /**
   * Stop the thread once its writes are answered (a later write starts a new one), its
   * pool's files removed first.
   */
  async close(): Promise<void> {
    if (this.thread.alive && this.pool !== undefined) {
      await this.send({ dropPool: true }).catch(() => undefined);
    }
    return this.thread.close();
  }

  /** Write requests sent to the thread so far (grouped writes count once). */
  requests = 0;

  /**
   * Write `items`, then make them and `dirs` durable; one result per item. Up to
   * WRITES_IN_FLIGHT writes go to the thread at once (it writes the next while the last
   * one's fsyncs run); writes asked for beyond that wait and then go together, in the order
   * asked, up to WRITE_GROUP_ITEMS items: one request, one fsync round for all (each item is
   * still whole or absent, and none is answered before the round that made it durable).
   */
  write(items: WriterItem[], dirs: string[]): Promise<WriterResult[]> {
    return this.writes.submit({ items, dirs });
  }

  private async writeGroup(
    calls: { items: WriterItem[]; dirs: string[] }[],
  ): Promise<WriterResult[][]> {
    this.requests++;
    const items = calls.flatMap((c) => c.items);
    const dirs = [...new Set(calls.flatMap((c) => c.dirs))];
    // No thread could be made, or the message not posted: this group fails, the next
    // write tries again.
    const reply = await this.send({ dirs, items });
    const results = "results" in reply ? reply.results : [];
    return splitBy(
      results,
      calls.map((c) => c.items.length),
    );
  }

  /** Make each registry file of `paths` with O_EXCL (not fsynced, as `reserveName`). */
  async reserve(paths: string[]): Promise<ReserveResult[]> {
    const reply = await this.send({ reserve: paths });
    return "reserved" in reply ? reply.reserved : [];
  }

  private send(request: Request): Promise<Reply> {
    return this.thread.call(this.pool === undefined ? request : { ...request, pool: this.pool });
  }
}
