import { SpoolThread } from "./spool-thread.js";

/**
 * What the checkout thread is asked: a checkout (`SpoolCore.checkout`) or the removal of
 * one (`SpoolCore.removeCheckout`).
 * @internal
 */
export type CheckoutThreadRequest = CheckoutRequest | RemoveRequest;

/** @internal */
export interface CheckoutRequest {
  op: "checkout";
  /** The queue file, and where the checkout renames it. */
  src: string;
  dst: string;
  /** The registry file: gets the lease record and the checkout time. */
  registry: string;
  /** The lease deadline (ms), set as the checkout file's mtime. */
  leaseUntil: number;
  /** The checkout time (ms), set as the registry file's mtime. */
  now: number;
  token: string;
  /** The data file, read and sent back when it is at most `dataUpTo` bytes (0: never). */
  data: string;
  dataUpTo: number;
}

/** @internal */
export interface RemoveRequest {
  op: "remove";
  /** The checkout file, and the path it is taken to (`<checkout>~<random>`). */
  co: string;
  taken: string;
  /** The inode checked out: another one at `co` is not ours, and is put back. */
  ino: number;
  data: string;
  registry: string;
}

/** @internal */
export type CheckoutReply =
  | { kind: "ok"; ino: number; bytes: Uint8Array; data?: Uint8Array }
  | { kind: "removed" }
  | { kind: "not_found" }
  | {
      kind: "error";
      errno: string;
      message: string;
      syscall?: string;
      path?: string;
    };

/*
 * The thread's code: `SpoolCore.checkout`'s steps, in its order, with synchronous calls
 * (see core.ts for why each step is there). Open the queue file; rename it into .checkout
 * (ENOENT: another process won, nothing touched); through the descriptor, set the lease
 * deadline, stat and read it; stat the checkout path (another inode: taken back meanwhile,
 * not ours); write the lease record (token and inode) to the registry file and set its
 * mtime to the checkout time; then, when asked, read the data file if it is small enough
 * (a data file that cannot be read gives no data: the checkout is made by then).
 * A removal: `SpoolCore.take` (rename the checkout file aside; another inode is put back and
 * not ours), then unlink the taken file (it is what makes the entry exist), the data, and
 * the registry file last; a file already gone is no error. The caller then fsyncs their
 * directories through the spool's DirectorySyncer, shared with every other finish.
 */
const THREAD_SOURCE = `
const NOT_FOUND = { kind: "not_found" };
const checkout = (r) => {
  let fd;
  try { fd = fs.openSync(r.src, "r"); } catch (e) { if (e.code === "ENOENT") return NOT_FOUND; throw e; }
  try {
    try { fs.renameSync(r.src, r.dst); } catch (e) { if (e.code === "ENOENT") return NOT_FOUND; throw e; }
    fs.futimesSync(fd, r.leaseUntil / 1000, r.leaseUntil / 1000);
    const st = fs.fstatSync(fd);
    // A buffer of its own (readFileSync's may be a slice of a shared pool), sent by transfer.
    const bytes = Buffer.allocUnsafeSlow(st.size);
    let off = 0;
    while (off < st.size) { const n = fs.readSync(fd, bytes, off, st.size - off, off); if (n === 0) break; off += n; }
    const at = fs.statSync(r.dst, { throwIfNoEntry: false });
    if (at === undefined || at.ino !== st.ino) return NOT_FOUND;
    let rfd;
    try { rfd = fs.openSync(r.registry, C.O_WRONLY | C.O_TRUNC); }
    catch (e) { if (e.code !== "ENOENT") throw e; }
    if (rfd !== undefined) {
      try {
        fs.writeSync(rfd, r.token + " " + st.ino);
        fs.futimesSync(rfd, r.now / 1000, r.now / 1000);
      } finally { fs.closeSync(rfd); }
    }
    const reply = { kind: "ok", ino: st.ino, bytes: off === st.size ? bytes : bytes.subarray(0, off) };
    if (r.dataUpTo > 0) {
      // The checkout is made: a data file that cannot be read gives no data, not an error
      // (the entry is held now; ReadData reports what is wrong with its data).
      let got;
      try { got = readWhole(r.data, r.dataUpTo); } catch { got = undefined; }
      if (got !== undefined && got.bytes !== undefined) reply.data = got.bytes;
    }
    return reply;
  } finally { fs.closeSync(fd); }
};
const unlinkIfExists = (p) => { try { fs.unlinkSync(p); } catch (e) { if (e.code !== "ENOENT") throw e; } };
const remove = (r) => {
  try { fs.renameSync(r.co, r.taken); } catch (e) { if (e.code === "ENOENT") return NOT_FOUND; throw e; }
  if (fs.statSync(r.taken).ino !== r.ino) { fs.renameSync(r.taken, r.co); return NOT_FOUND; }
  unlinkIfExists(r.taken);
  unlinkIfExists(r.data);
  unlinkIfExists(r.registry);
  return { kind: "removed" };
};
const errorReply = (e) => {
  const reply = { kind: "error", errno: String((e && e.code) || "unknown"), message: String((e && e.message) || e) };
  if (e && e.syscall) reply.syscall = String(e.syscall);
  if (e && e.path) reply.path = String(e.path);
  return reply;
};
const send = (id, reply) => {
  const transfer = reply.kind === "ok" ? [reply.bytes.buffer] : [];
  if (reply.kind === "ok" && reply.data !== undefined && reply.data.length > 0) transfer.push(reply.data.buffer);
  parentPort.postMessage({ id, ...reply }, transfer);
};
parentPort.on("message", (m) => {
  let reply;
  try { reply = m.op === "remove" ? remove(m) : checkout(m); }
  catch (e) { reply = errorReply(e); }
  send(m.id, reply);
});
`;

/**
 * The spool's checkout thread: each checkout in one message, instead of ten round trips
 * through the thread pool (open, rename, utimes, stat, read, stat, and the registry's open,
 * write, utimes, close); each removal of a checkout in one, instead of five. One per
 * spool, started on first use; checkouts and removals go to it once it runs.
 * @internal
 */
export function checkoutThread(): SpoolThread<CheckoutThreadRequest, CheckoutReply> {
  return new SpoolThread(THREAD_SOURCE, "the spool's checkout thread");
}
