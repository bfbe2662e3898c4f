import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { isErrno } from "../common/errno.js";
import { BatchWriter } from "./batch-writer.js";
import { checkoutThread } from "./checkout-thread.js";
import { writeDataSynced } from "./data.js";
import { decodeEnvelope, type Envelope, encodeEnvelope } from "./envelope.js";
import { ioError, SpoolError, SpoolErrorCode } from "./errors.js";
import {
  createExclusive,
  DirectorySyncer,
  openIfExists,
  readIfExists,
  renameIfExists,
  setMtime,
  statIfExists,
  unlinkIfExists,
} from "./fs-ops.js";
import { isIdentityFile, readSpoolId, type SpoolIdentity, writeSpoolId } from "./identity.js";
import { Layout, TMP_TAG_SEPARATOR } from "./layout.js";
import { newLeaseToken, writeLeaseRecord } from "./lease-token.js";
import { type NameGenerator, timeSortableNames, validateName } from "./names.js";
import { closeReplicaReader } from "./replica-batch-read.js";
import type { LeasePolicy, MetadataCodec, Spoolable } from "./spoolable.js";
import { defaultThrottle, type Throttle } from "./throttle.js";

export const DEFAULT_LEASE_MS = 10 * 60_000;
export const DEFAULT_LEASE_GRACE_MS = 5_000;
export const DEFAULT_MAX_ATTEMPTS = 5;
const MAX_NAME_ATTEMPTS = 1000;
/**
 * See `isExpired`.
 * @internal
 */
export const CTIME_QUIET_MS = 1_000;

/**
 * What a checkout read from disk.
 * @internal
 */
export interface CheckoutRecord<M, Q extends string> {
  queue: Q;
  name: string;
  metadata: M;
  attempts: number;
  leaseUntil: number;
  ino: number;
  /** The holder's lease token; undefined when none is known (see lease-token.ts). */
  token?: string;
}

/**
 * `data`: the entry's data, read when asked for (`dataUpTo`) and no larger.
 * @internal
 */
export type CheckoutResult<M, Q extends string> =
  | { kind: "ok"; record: CheckoutRecord<M, Q>; data?: Buffer }
  | { kind: "not_found" };

/**
 * The engine behind Spool, Entry and CheckedOutEntry: the disk operations of the spool
 * protocol (enqueue is in enqueue.ts, the replica operations in replica.ts), each through
 * the throttle. Not part of the public API.
 * @internal
 */
export class SpoolCore<M, Q extends string> {
  readonly layout: Layout;
  readonly codec: MetadataCodec<M>;
  readonly queues: readonly Q[];
  readonly throttle: Throttle;
  readonly names: NameGenerator;
  readonly leases: LeasePolicy<Q>;
  readonly syncer = new DirectorySyncer();
  /** Writes batches of small entries (`enqueueBatch`) on a thread of its own. */
  readonly batchWriter: BatchWriter;
  /** Checkouts, each one message to a thread of the spool's own (checkout-thread.ts). */
  readonly checkouts = checkoutThread();
  private readonly dirnames = new Map<string, string>();
  /** Set by `open` (undefined for a spool opened without looking at the disk). */
  identity: SpoolIdentity | undefined;
  clock: () => number = Date.now;

  constructor(root: string, spoolable: Spoolable<M, Q>) {
    this.layout = new Layout(root);
    this.batchWriter = new BatchWriter(spoolable.filePool === false ? undefined : this.layout.pool);
    this.codec = spoolable.metadata;
    this.queues = [...spoolable.queues];
    if (this.queues.length === 0) {
      throw new SpoolError(SpoolErrorCode.InvalidArgument, "a spool needs at least one queue");
    }
    const seen = new Set<string>();
    for (const q of this.queues) {
      validateName("queue", q);
      const dirname = validateName("queue", spoolable.queueDirname ? spoolable.queueDirname(q) : q);
      if (seen.has(dirname)) {
        throw new SpoolError(SpoolErrorCode.InvalidArgument, `two queues use directory ${dirname}`);
      }
      seen.add(dirname);
      this.dirnames.set(q, dirname);
    }
    this.throttle = spoolable.throttle ?? defaultThrottle();
    this.names = spoolable.nameGenerator ?? timeSortableNames();
    const l = spoolable.leases ?? {};
    this.leases = {
      defaultLeaseMs: l.defaultLeaseMs ?? DEFAULT_LEASE_MS,
      graceMs: l.graceMs ?? DEFAULT_LEASE_GRACE_MS,
      maxAttempts: l.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      deadLetterQueue: l.deadLetterQueue,
      ...(l.holdBack === undefined ? {} : { holdBack: l.holdBack }),
    };
    if (this.leases.deadLetterQueue !== undefined) this.dirname(this.leases.deadLetterQueue);
    checkLeaseMs(this.leases.defaultLeaseMs);
  }

  /** The directory name of a queue; a queue the spool does not have is an error. */
  dirname(queue: Q): string {
    const d = this.dirnames.get(queue);
    if (d === undefined) {
      const shown = JSON.stringify(String(queue).slice(0, 80));
      throw new SpoolError(SpoolErrorCode.UnknownQueue, `unknown queue ${shown}`);
    }
    return d;
  }

  // ---- metadata files ----------------------------------------------------------------

  encodeFile(metadata: M, envelope: Envelope): Buffer {
    let encoded: Uint8Array | string;
    try {
      encoded = this.codec.encode(metadata);
    } catch (err) {
      throw new SpoolError(SpoolErrorCode.InvalidArgument, "metadata could not be encoded", {
        cause: err,
      });
    }
    const payload = typeof encoded === "string" ? Buffer.from(encoded) : encoded;
    return encodeEnvelope(envelope, payload);
  }

  decodeFile(name: string, bytes: Buffer): { metadata: M; envelope: Envelope } {
    const env = decodeEnvelope(bytes);
    if (!env.ok) {
      throw new SpoolError(
        SpoolErrorCode.MetadataDecode,
        `metadata of entry ${name} could not be decoded: ${env.problem}`,
      );
    }
    try {
      return { metadata: this.codec.decode(env.payload), envelope: env.envelope };
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new SpoolError(
        SpoolErrorCode.MetadataDecode,
        `metadata of entry ${name} could not be decoded: ${why}`,
        { cause: err },
      );
    }
  }

  async readMetadataFile(path: string, name: string): Promise<{ metadata: M; envelope: Envelope }> {
    let bytes: Buffer;
    try {
      bytes = await this.throttle.run(() => readFile(path));
    } catch (err) {
      if (isErrno(err, "ENOENT")) {
        throw new SpoolError(SpoolErrorCode.EntryNotFound, `no entry ${name} at ${path}`, {
          cause: err,
        });
      }
      throw ioError("read", path, err);
    }
    return this.decodeFile(name, bytes);
  }

  // ---- names -------------------------------------------------------------------------

  async reserveName(generator: NameGenerator = this.names): Promise<string> {
    for (let attempt = 0; attempt < MAX_NAME_ATTEMPTS; attempt++) {
      const name = validateName("entry", generator.next(attempt));
      const path = this.layout.registryFile(name);
      let outcome: "created" | "exists";
      try {
        outcome = await this.throttle.run(() => createExclusive(path));
      } catch (err) {
        throw ioError("reserve name", path, err);
      }
      if (outcome === "created") return name;
    }
    throw new SpoolError(
      SpoolErrorCode.NameExhausted,
      `no free entry name after ${MAX_NAME_ATTEMPTS} attempts`,
    );
  }

  // ---- listing -----------------------------------------------------------------------

  async listNames(dir: string): Promise<string[]> {
    let names: string[];
    try {
      names = await this.throttle.run(() => readdir(dir));
    } catch (err) {
      throw ioError("list", dir, err);
    }
    // Dot files are the spool's own; `name~tag` files are finishes under way.
    return names.filter((n) => !n.startsWith(".") && !n.includes(TMP_TAG_SEPARATOR)).sort();
  }

  list(queue: Q): Promise<string[]> {
    return this.listNames(this.layout.queue(this.dirname(queue)));
  }

  listCheckedOut(queue: Q): Promise<string[]> {
    return this.listNames(this.layout.checkout(this.dirname(queue)));
  }

  // ---- checkout ----------------------------------------------------------------------

  /**
   * Rename the queue file into .checkout (exactly one process wins; the losers get
   * `not_found` and change nothing), then set the lease deadline (the checkout file's
   * mtime) and the checkout time (the registry file's mtime). The file is opened before the
   * rename and the deadline set and the metadata read through that handle, so a holder that
   * stalls after its rename never adopts another holder's inode: if the entry was taken back
   * meanwhile, it gets `not_found`. Until the deadline is set, the rename's fresh ctime keeps
   * reapers away (see `isExpired`). With `dataUpTo`, the entry's data is read too (after the
   * lease record, through a descriptor opened then) when it is at most that many bytes.
   */
  async checkout(
    queue: Q,
    name: string,
    leaseMs?: number,
    dataUpTo = 0,
  ): Promise<CheckoutResult<M, Q>> {
    const dirname = this.dirname(queue);
    validateName("entry", name);
    const lease = leaseMs ?? this.leases.defaultLeaseMs;
    checkLeaseMs(lease);
    const src = this.layout.queueFile(dirname, name);
    const dst = this.layout.checkoutFile(dirname, name);
    const got = await this.throttle
      .run(() => this.checkoutSteps(src, dst, name, lease, dataUpTo))
      .catch((err) => {
        throw ioError("checkout", src, err);
      });
    if (got === undefined) return { kind: "not_found" };
    // A decode failure leaves the entry checked out: its lease expires, it is retried and,
    // after maxAttempts, dead-lettered. Nothing is lost.
    const { metadata, envelope } = this.decodeFile(name, got.bytes);
    return {
      kind: "ok",
      record: {
        queue,
        name,
        metadata,
        attempts: envelope.attempts,
        leaseUntil: got.leaseUntil,
        ino: got.ino,
        token: got.token,
      },
      ...(got.data !== undefined ? { data: got.data } : {}),
    };
  }

  /**
   * The checkout's steps (see `checkout`): on the spool's checkout thread, one message with
   * synchronous calls (checkout-thread.ts makes the same steps in the same order), once
   * that thread runs; until then (its start takes tens of milliseconds, which a short-lived
   * process should not wait for) or when it is gone, here, through the thread pool.
   */
  private async checkoutSteps(
    src: string,
    dst: string,
    name: string,
    lease: number,
    dataUpTo: number,
  ): Promise<
    { leaseUntil: number; ino: number; bytes: Buffer; token: string; data?: Buffer } | undefined
  > {
    const now = this.clock();
    const leaseUntil = now + lease;
    // The token goes to the registry file (its mtime the checkout time), not fsynced:
    // see index.ts ("Lease tokens") for why that is enough.
    const token = newLeaseToken();
    const registry = this.layout.registryFile(name);
    const data = this.layout.dataFile(name);
    if (this.checkouts.running) {
      const r = await this.checkouts.call({
        op: "checkout",
        src,
        dst,
        registry,
        leaseUntil,
        now,
        token,
        data,
        dataUpTo,
      });
      if (r.kind === "error") throw threadError(r);
      if (r.kind !== "ok") return undefined;
      const bytes = Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.length);
      const got = { leaseUntil, ino: r.ino, bytes, token };
      if (r.data === undefined) return got;
      return { ...got, data: Buffer.from(r.data.buffer, r.data.byteOffset, r.data.length) };
    }
    this.startCheckoutThread();
    const fh = await openIfExists(src, "r");
    if (fh === undefined) return undefined;
    try {
      // The rename decides the winner; a loser touches nothing.
      if ((await renameIfExists(src, dst)) === "not_found") return undefined;
      await fh.utimes(leaseUntil / 1000, leaseUntil / 1000);
      const st = await fh.stat();
      const bytes = await fh.readFile();
      const at = await statIfExists(dst);
      if (at?.ino !== st.ino) return undefined; // taken back while we were slow
      await writeLeaseRecord(registry, { token, ino: st.ino }, now);
      const got = { leaseUntil, ino: st.ino, bytes, token };
      if (dataUpTo <= 0) return got;
      // The checkout is made: a data file that cannot be read gives no data, not an error.
      const small = (await readIfExists(data, dataUpTo).catch(() => undefined))?.bytes;
      return small === undefined ? got : { ...got, data: small };
    } finally {
      await fh.close();
    }
  }

  /** Start the checkout thread for the next calls; a failure to start it fails nothing. */
  private startCheckoutThread(): void {
    try {
      this.checkouts.start();
    } catch {
      // The thread pool path serves meanwhile; the next call tries again.
    }
  }

  /** Still ours: before the deadline, and the checkout file is the inode we checked out. */
  async holds(rec: CheckoutRecord<M, Q>): Promise<boolean> {
    if (this.clock() >= rec.leaseUntil) return false;
    const st = await this.throttle.run(() =>
      statIfExists(this.layout.checkoutFile(this.dirname(rec.queue), rec.name)),
    );
    return st !== undefined && st.ino === rec.ino;
  }

  async extendLease(rec: CheckoutRecord<M, Q>, leaseMs: number): Promise<boolean> {
    checkLeaseMs(leaseMs);
    if (this.clock() >= rec.leaseUntil) return false;
    const until = this.clock() + leaseMs;
    const co = this.layout.checkoutFile(this.dirname(rec.queue), rec.name);
    const done = await this.throttle.run(async () => {
      const taken = await this.take(rec.queue, rec.name, rec.ino);
      if (taken === undefined) return false;
      await setMtime(taken, until);
      await rename(taken, co);
      return true;
    });
    if (done) rec.leaseUntil = until;
    return done;
  }

  /**
   * Finish a checkout by saving it into `to`: write the new metadata to .tmp and fsync it,
   * take the checkout (see `take`), rename the new file over the taken one and that into
   * the destination queue, fsync both directories. The file is written before the take, so
   * the entry is in no queue only for the two renames (`locate` looks again for that long).
   */
  async saveCheckout(
    rec: CheckoutRecord<M, Q>,
    to: Q,
    metadata: M,
    attempts: number,
  ): Promise<boolean> {
    const toDir = this.dirname(to);
    if (this.clock() >= rec.leaseUntil) return false;
    const bytes = this.encodeFile(metadata, { attempts });
    // Touch the registry *before* moving: repair, which may be scanning the queues while the
    // entry moves, then sees a fresh registry file and leaves it alone.
    await this.throttle.run(() => setMtime(this.layout.registryFile(rec.name), this.clock()));
    const tmp = await this.stageMove(rec.name, bytes);
    const taken = await this.throttle.run(() => this.take(rec.queue, rec.name, rec.ino));
    if (taken === undefined) {
      await unlinkIfExists(tmp).catch(() => false);
      return false;
    }
    await this.moveTaken(rec.queue, rec.name, taken, tmp, toDir);
    return true;
  }

  /** Write an entry's next file (`bytes`) to .tmp, fsynced, for `moveTaken`. */
  private async stageMove(name: string, bytes: Buffer): Promise<string> {
    const tmp = this.layout.tmpFile(name, `move-${randomBytes(4).toString("hex")}`);
    try {
      await this.throttle.run(() => writeDataSynced(tmp, bytes));
    } catch (err) {
      await unlinkIfExists(tmp).catch(() => false);
      throw ioError("move", name, err);
    }
    return tmp;
  }

  /**
   * Put a taken checkout into the queue `toDir` as the staged file `tmp` (its new
   * metadata). On failure the taken file goes back to its checkout path (its lease then
   * runs out as usual).
   */
  private async moveTaken(
    queue: Q,
    name: string,
    taken: string,
    tmp: string,
    toDir: string,
  ): Promise<void> {
    try {
      await this.throttle.run(async () => {
        await rename(tmp, taken);
        await rename(taken, this.layout.queueFile(toDir, name));
      });
      // Durable before it resolves: the entry is in its new queue and gone from .checkout.
      await this.syncer.syncAll([this.layout.queue(toDir), dirname(taken)]);
    } catch (err) {
      await unlinkIfExists(tmp).catch(() => false);
      await renameIfExists(taken, this.layout.checkoutFile(this.dirname(queue), name)).catch(
        () => "not_found",
      );
      throw ioError("move", name, err);
    }
  }

  /**
   * Take a checkout for finishing: rename `<queue>/.checkout/<name>` to
   * `<queue>/.checkout/<name>~<random>`. The rename is atomic, so of every process that
   * tries to finish the same checkout (its holder, a retry of the holder, a reaper) exactly
   * one gets it; the others see it gone. If the file taken is not the inode `ino` (the
   * checkout passed to someone else), or a `deadline` is given and the file's is another
   * (the lease was extended), it is put back untouched and the take fails. An
   * interrupted finish leaves `<name>~<random>`, which repair returns to the checkout.
   */
  private async take(
    queue: Q,
    name: string,
    ino: number,
    deadline?: number,
  ): Promise<string | undefined> {
    const dirname = this.dirname(queue);
    const co = this.layout.checkoutFile(dirname, name);
    const taken = `${co}${TMP_TAG_SEPARATOR}${randomBytes(6).toString("hex")}`;
    if ((await renameIfExists(co, taken)) === "not_found") return undefined;
    const st = await stat(taken);
    if (st.ino !== ino || (deadline !== undefined && st.mtimeMs !== deadline)) {
      await rename(taken, co);
      return undefined;
    }
    return taken;
  }

  /**
   * Remove a checkout: take it (see `take`), unlink it (it is what makes the entry exist),
   * data, registry last (one message to the checkout thread once it runs, the same steps;
   * until then here, as `checkoutSteps` does), then fsync their directories through the
   * syncer before resolving, as `removeFiles` does.
   */
  async removeCheckout(rec: CheckoutRecord<M, Q>): Promise<boolean> {
    if (this.clock() >= rec.leaseUntil) return false;
    if (!this.checkouts.running) {
      this.startCheckoutThread();
      const taken = await this.throttle
        .run(() => this.take(rec.queue, rec.name, rec.ino))
        .catch((err) => {
          throw ioError("remove", rec.name, err);
        });
      if (taken === undefined) return false;
      await this.removeFiles(taken, rec.name);
      return true;
    }
    const co = this.layout.checkoutFile(this.dirname(rec.queue), rec.name);
    const taken = `${co}${TMP_TAG_SEPARATOR}${randomBytes(6).toString("hex")}`;
    const r = await this.checkouts
      .call({
        op: "remove",
        co,
        taken,
        ino: rec.ino,
        data: this.layout.dataFile(rec.name),
        registry: this.layout.registryFile(rec.name),
      })
      .catch((err) => {
        throw ioError("remove", rec.name, err);
      });
    if (r.kind === "error") throw ioError("remove", rec.name, threadError(r));
    if (r.kind !== "removed") return false;
    // The directory fsyncs go through the syncer every finish shares (as `removeFiles`).
    try {
      await this.syncer.syncAll([dirname(taken), this.layout.data, this.layout.registry]);
    } catch (err) {
      throw ioError("remove", rec.name, err);
    }
    return true;
  }

  /**
   * Unlink the metadata file, the data, then the registry file, and fsync their directories
   * (and `alsoSync`, where the metadata file was before it was taken) before resolving.
   */
  async removeFiles(
    metadataFile: string,
    name: string,
    alsoSync: readonly string[] = [],
  ): Promise<void> {
    try {
      await this.throttle.run(async () => {
        await unlinkIfExists(metadataFile);
        await unlinkIfExists(this.layout.dataFile(name));
        await unlinkIfExists(this.layout.registryFile(name));
      });
      await this.syncer.syncAll([
        dirname(metadataFile),
        this.layout.data,
        this.layout.registry,
        ...alsoSync,
      ]);
    } catch (err) {
      throw ioError("remove", name, err);
    }
  }

  /**
   * Remove what a batch wrote for an entry that never became visible (its metadata in .tmp
   * at `tmp`, its data and registry file): all ours, made with O_EXCL. Best effort: what
   * remains, repair removes as after a crash.
   */
  async discardUnpublished(name: string, tmp: string): Promise<void> {
    await this.throttle.run(async () => {
      for (const f of [tmp, this.layout.dataFile(name), this.layout.registryFile(name)]) {
        await unlinkIfExists(f).catch(() => false);
      }
    });
  }

  /** Where a failed delivery goes: back to its queue, or dead-lettered after maxAttempts. */
  failedDeliveryTarget(queue: Q, attempts: number): Q {
    const dlq = this.leases.deadLetterQueue;
    return dlq !== undefined && attempts >= this.leases.maxAttempts ? dlq : queue;
  }

  // ---- lease expiry ------------------------------------------------------------------

  /**
   * Take back one expired checkout: read it (a checkout inode's contents never change),
   * write its next file (attempts + 1), take it (an atomic rename: of two reapers, or a
   * reaper and a late holder, one acts) and move it to its queue or the dead-letter queue.
   */
  async expireOne(
    queue: Q,
    name: string,
    now = this.clock(),
  ): Promise<ExpiredLease<Q> | undefined> {
    const co = this.layout.checkoutFile(this.dirname(queue), name);
    const before = await this.throttle.run(() => statIfExists(co));
    if (before === undefined || !this.isExpired(before.mtimeMs, before.ctimeMs, now)) {
      return undefined;
    }
    const more = (await this.leases.holdBack?.(name, queue)) ?? 0;
    if (more > 0 && !this.isExpired(before.mtimeMs + more, before.ctimeMs, now)) return undefined;
    const bytes = await this.readInode(co, before.ino, name);
    if (bytes === undefined) return undefined;
    const env = decodeEnvelope(bytes);
    const payload = env.ok ? env.payload : bytes;
    const attempts = env.ok ? env.envelope.attempts + 1 : this.leases.maxAttempts;
    const to = this.failedDeliveryTarget(queue, attempts);
    await this.throttle.run(() => setMtime(this.layout.registryFile(name), this.clock()));
    const tmp = await this.stageMove(name, encodeEnvelope({ attempts }, payload));
    // A holder may have extended the lease since `before`: the taken file's deadline decides.
    const taken = await this.throttle.run(() => this.take(queue, name, before.ino, before.mtimeMs));
    if (taken === undefined) {
      await unlinkIfExists(tmp).catch(() => false);
      return undefined;
    }
    await this.moveTaken(queue, name, taken, tmp, this.dirname(to));
    return { name, queue, to, attempts, leaseUntil: Math.round(before.mtimeMs) };
  }

  /** The contents of `path` if it is still the inode `ino`, else undefined. */
  private readInode(path: string, ino: number, name: string): Promise<Buffer | undefined> {
    const read = async () => {
      const fh = await open(path, "r").catch((err) => {
        if (isErrno(err, "ENOENT")) return undefined;
        throw err;
      });
      try {
        return (await fh?.stat())?.ino === ino ? await fh?.readFile() : undefined;
      } finally {
        await fh?.close();
      }
    };
    return this.throttle.run(read).catch((err) => {
      throw ioError("expire", name, err);
    });
  }

  /**
   * Whether a checkout may be taken back. Setting the deadline (utimes) also sets the
   * file's ctime to the moment it was set, which comes before the deadline: so a settled
   * checkout has mtime > ctime, and is expired once the deadline plus the grace has passed.
   * A checkout whose deadline is not set yet (the instant between its rename and the
   * utimes, or a holder that died there) still has its old, smaller mtime; the rename just
   * set its ctime, which no process can set back. Such a checkout is taken back only once
   * its ctime is CTIME_QUIET_MS old.
   */
  isExpired(leaseUntilMs: number, ctimeMs: number, now: number): boolean {
    const settled = leaseUntilMs > ctimeMs;
    const quiet = Math.max(CTIME_QUIET_MS, this.leases.graceMs);
    return settled
      ? now > leaseUntilMs + this.leases.graceMs
      : now > Math.max(leaseUntilMs + this.leases.graceMs, ctimeMs + quiet);
  }

  async expireLeases(queues: readonly Q[] = this.queues): Promise<ExpiredLease<Q>[]> {
    const out: ExpiredLease<Q>[] = [];
    for (const q of queues) {
      for (const name of await this.listCheckedOut(q)) {
        const r = await this.expireOne(q, name);
        if (r) out.push(r);
      }
    }
    return out;
  }

  // ---- directories -------------------------------------------------------------------

  spoolDirs(): string[] {
    const dirs = [this.layout.registry, this.layout.tmp, this.layout.data];
    for (const q of this.queues) {
      dirs.push(this.layout.queue(this.dirname(q)), this.layout.checkout(this.dirname(q)));
    }
    return dirs;
  }

  /**
   * Let go of what the spool holds between calls: its threads (each stopped once its
   * requests are answered), then the directories kept open for their fsyncs. For a spool
   * no call is using: a call still under way may open what it needs again. Usable again
   * afterwards: later calls open what they need anew.
   */
  async close(): Promise<void> {
    await Promise.all([this.batchWriter.close(), this.checkouts.close(), closeReplicaReader(this)]);
    this.syncer.close();
  }

  /** Refuse a non-empty non-spool; check (or create) every directory. */
  async open(createIfMissing: boolean): Promise<void> {
    const root = this.layout.root;
    const rootStat = await statIfExists(root);
    if (rootStat === undefined) {
      if (!createIfMissing) {
        throw new SpoolError(
          SpoolErrorCode.MissingDirectory,
          `spool directory ${root} does not exist`,
        );
      }
      await mkdir(root, { recursive: true });
    } else if (!rootStat.isDirectory()) {
      throw new SpoolError(SpoolErrorCode.NotASpool, `${root} is not a directory`);
    }
    const looksLikeSpool = (await isDir(this.layout.registry)) && (await isDir(this.layout.tmp));
    const fresh = !looksLikeSpool;
    if (fresh) {
      const contents = (await readdir(root)).filter((n) => !isIdentityFile(n));
      if (contents.length > 0) {
        throw new SpoolError(
          SpoolErrorCode.NotASpool,
          `${root} is not empty and is not a spool (no .registry and .tmp); refusing to adopt it`,
        );
      }
    }
    // A new spool gets its identity before its directories: a crash in between leaves a
    // spool that is still new, never one that looks made before identities existed.
    if (fresh && createIfMissing) this.identity = await loadIdentity(root, "created");
    for (const dir of this.spoolDirs()) {
      if (await isDir(dir)) continue;
      if (!createIfMissing) {
        throw new SpoolError(SpoolErrorCode.MissingDirectory, `spool directory ${dir} is missing`);
      }
      try {
        await mkdir(dir, { recursive: true });
      } catch (err) {
        throw ioError("create", dir, err);
      }
    }
    this.identity ??= await loadIdentity(root, "adopted");
  }
}

/** Read the spool's id, or write one (the spool is then `made` as given). */
async function loadIdentity(root: string, made: "created" | "adopted"): Promise<SpoolIdentity> {
  const id = await readSpoolId(root);
  if (id !== undefined) return { id, made: made === "created" ? "created" : "loaded" };
  return { id: await writeSpoolId(root), made };
}

export interface ExpiredLease<Q extends string> {
  name: string;
  /** The queue it was checked out of. */
  queue: Q;
  /** Where it went: the same queue, or the dead-letter queue. */
  to: Q;
  /** Failed deliveries so far, this one included. */
  attempts: number;
  leaseUntil: number;
}

async function isDir(path: string): Promise<boolean> {
  const st = await statIfExists(path);
  return st?.isDirectory() ?? false;
}

/** The longest lease a checkout may have: a year. */
export const MAX_LEASE_MS = 365 * 24 * 3600_000;

/** @internal */
export function checkLeaseMs(ms: number): void {
  if (!Number.isFinite(ms) || ms <= 0 || ms > MAX_LEASE_MS) {
    throw new SpoolError(
      SpoolErrorCode.InvalidArgument,
      `lease must be a positive number of milliseconds up to a year, got ${ms}`,
    );
  }
}

/** A system call's failure reported by a spool thread, as the error it was there. */
function threadError(r: { errno: string; message: string; syscall?: string; path?: string }) {
  const err = Object.assign(new Error(r.message), { code: r.errno });
  if (r.syscall !== undefined) Object.assign(err, { syscall: r.syscall });
  if (r.path !== undefined) Object.assign(err, { path: r.path });
  return err;
}
