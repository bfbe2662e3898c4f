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

type Request = { dirs: string[]; items: WriterItem[]; reserve?: undefined } | { reserve: string[] };

type Reply = { results: WriterResult[] } | { reserved: ReserveResult[] };

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
const reserve = (paths) => paths.map((p) => {
  try { fs.closeSync(fs.openSync(p, C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o644)); return "created"; }
  catch (e) { return e.code === "EEXIST" ? "exists" : { errno: String(e.code || "unknown"), message: String(e.message || e) }; }
});
parentPort.on("message", async (req) => {
  if (req.reserve) { parentPort.postMessage({ id: req.id, reserved: reserve(req.reserve) }); return; }
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
        let fd;
        try { fd = fs.openSync(it.registry, C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o644); }
        catch (e) { if (e.code === "EEXIST") { out[i] = { ok: false, taken: true }; return; } throw e; }
        s.madeRegistry = true;
        fs.closeSync(fd);
      }
      s.step = "write data";
      const dfd = fs.openSync(it.data, C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o644);
      s.madeData = true;
      s.fds.push(dfd);
      writeAll(dfd, it.dataBytes);
      s.step = "write metadata";
      const mfd = fs.openSync(it.tmp, C.O_CREAT | C.O_TRUNC | C.O_WRONLY, 0o644);
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
  parentPort.postMessage({ id: req.id, results: out });
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
  /** Stop the thread once its writes are answered (a later write starts a new one). */
  close(): Promise<void> {
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
    return this.thread.call(request);
  }
}
