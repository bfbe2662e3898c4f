import { setTimeout as sleep } from "node:timers/promises";
import { CheckedOutEntry } from "./checked-out-entry.js";
import { type ExpiredLease, SpoolCore } from "./core.js";
import type { DataFile, DataSource } from "./data.js";
import { DeferredMetadata, enqueue } from "./enqueue.js";
import { type BatchItem, enqueueBatch } from "./enqueue-batch.js";
import { Entry } from "./entry.js";
import { ioError, SpoolError, SpoolErrorCode } from "./errors.js";
import { openIfExists, statIfExists, unlinkIfExists } from "./fs-ops.js";
import type { SpoolIdentity } from "./identity.js";
import { type NameGenerator, validateName } from "./names.js";
import type { Spoolable } from "./spoolable.js";

export type CheckoutOutcome<M, Q extends string> =
  | { kind: "ok"; entry: CheckedOutEntry<M, Q> }
  | { kind: "not_found" };

/** What to do with an entry after working on it. */
export type Disposition<M, Q extends string> =
  | { kind: "save"; queue: Q; metadata?: M }
  | { kind: "remove" }
  | { kind: "release" };

export type EntryHandler<M, Q extends string, T> = (
  metadata: M,
  data: DataFile,
  entry: CheckedOutEntry<M, Q>,
) => Promise<[Disposition<M, Q>, T]>;

export interface EnqueueOptions {
  /** A name reserved earlier with `reserveName`; otherwise one is reserved now. */
  name?: string;
  /**
   * Called the moment the entry becomes visible in its queue (after the rename, before the
   * final directory fsync), so an observer can record it before any reader can take it.
   */
  onVisible?: (name: string) => void;
}

export interface CheckoutOptions {
  /** Lease length; the spool's default lease when absent. */
  leaseMs?: number;
  /**
   * Read the entry's data at checkout, in the same step, when it is at most this many
   * bytes (`CheckedOutEntry.takeData`); 0 or absent: never. For small entries a consumer
   * wants whole: no second round of file operations.
   */
  readDataUpTo?: number;
}

/** What became of one entry of `enqueueBatch`. */
export type BatchEnqueueResult<M, Q extends string> =
  | { ok: true; entry: Entry<M, Q> }
  /**
   * `visible`: the entry made it into its queue, but the last fsync failed: it may or may
   * not survive a crash, and is never taken back.
   */
  | { ok: false; error: SpoolError; name?: string; visible?: true };

export interface BatchEnqueueOptions {
  /** Called as each entry becomes visible (after its rename, before the batch's last fsync). */
  onVisible?: (name: string, index: number) => void;
}

/** Where an entry is in its queue: waiting, or checked out. */
export type EntryState = "queued" | "checked_out";

/** An entry found by `Spool.find`: where it is and what its file holds. */
export interface FoundEntry<M, Q extends string> {
  queue: Q;
  state: EntryState;
  metadata: M;
  /** Failed deliveries so far. */
  attempts: number;
  /** The lease deadline (ms since the epoch), when checked out. */
  leaseUntil?: number;
}

/**
 * How many times `locate` looks again for an entry that is reserved but in no queue.
 * @internal
 */
// Up to ~1 s (1+2+…+512 ms): the window is two renames, but under load the scan's own
// stats wait in the throttle and one pass can miss an entry hopping between queues.
export const LOCATE_RESCANS = 10;

/**
 * The spool's own modules (the expert operations, queue readers, the monitor) reach its core
 * through this; index.ts does not export it, so no other layer can.
 * @internal
 */
let coreOf!: <M, Q extends string>(spool: Spool<M, Q>) => SpoolCore<M, Q>;

/** A spool directory, opened. See index.ts for the protocol. */
export class Spool<M, Q extends string = string> {
  readonly #core: SpoolCore<M, Q>;

  static {
    coreOf = (spool) => spool.#core;
  }

  private constructor(dir: string, spoolable: Spoolable<M, Q>) {
    this.#core = new SpoolCore(dir, spoolable);
  }

  /** Create the spool (and any missing directory); refuses a non-empty non-spool. */
  static create<M, Q extends string>(
    dir: string,
    spoolable: Spoolable<M, Q>,
  ): Promise<Spool<M, Q>> {
    return Spool.load(dir, spoolable, { createIfMissing: true });
  }

  /**
   * Open an existing spool, checking it has every directory it needs. With
   * `createIfMissing`, create what is missing; a non-empty directory that is not a spool
   * is refused either way.
   */
  static async load<M, Q extends string>(
    dir: string,
    spoolable: Spoolable<M, Q>,
    options: { createIfMissing?: boolean } = {},
  ): Promise<Spool<M, Q>> {
    const spool = new Spool(dir, spoolable);
    await spool.#core.open(options.createIfMissing ?? false);
    return spool;
  }

  /** Open without looking at the disk. */
  static loadUnsafe<M, Q extends string>(dir: string, spoolable: Spoolable<M, Q>): Spool<M, Q> {
    return new Spool(dir, spoolable);
  }

  get dir(): string {
    return this.#core.layout.root;
  }

  /**
   * Let go of what the spool holds open between calls: the directories it keeps open for
   * their fsyncs (an open descriptor keeps a filesystem from being unmounted) and its
   * threads, each stopped once its requests are answered. Call it when no call of this
   * spool is under way (one still running may open what it needs again). Nothing on disk
   * changes, and the spool may still be used: it then opens what it needs again, for
   * another `close` to let go of. A process that exits needs none of this.
   */
  close(): Promise<void> {
    return this.#core.close();
  }
  /**
   * Which spool directory this is (see `SpoolIdentity`): read or written by `create` and
   * `load`; undefined after `loadUnsafe`.
   */
  get identity(): SpoolIdentity | undefined {
    return this.#core.identity;
  }
  get queues(): readonly Q[] {
    return this.#core.queues;
  }

  /** Reserve a unique entry name (an empty file in .registry made with O_EXCL). */
  reserveName(generator?: NameGenerator): Promise<string> {
    return this.#core.reserveName(generator);
  }

  /**
   * `count` fresh entry names, not reserved: for `enqueueBatch` items with `reserve`, which
   * reserve them as they are written (no round trip to the disk here). A name that turns
   * out taken fails its entry; with the default generator that is vanishingly rare.
   */
  newNames(count: number, generator: NameGenerator = this.#core.names): string[] {
    return Array.from({ length: count }, () => validateName("entry", generator.next(0)));
  }

  /**
   * Reserve `count` names at once (as many `reserveName` calls, made by the spool's batch
   * writer thread in one go). On failure, those reserved are given back.
   */
  async reserveNames(
    count: number,
    generator: NameGenerator = this.#core.names,
  ): Promise<string[]> {
    const core = this.#core;
    if (count === 0) return [];
    const names = Array.from({ length: count }, () => validateName("entry", generator.next(0)));
    const got = await core.throttle
      .run(() => core.batchWriter.reserve(names.map((n) => core.layout.registryFile(n))))
      .catch((err) => {
        throw ioError("reserve names in", core.layout.registry, err);
      });
    let failure: SpoolError | undefined;
    const out = await Promise.all(
      names.map(async (name, i) => {
        const r = got[i];
        if (r === "created") return name;
        if (r === "exists")
          return core.reserveName(generator).catch((err) => {
            failure ??= ioError("reserve name in", core.layout.registry, err);
            return undefined;
          });
        failure ??= new SpoolError(
          SpoolErrorCode.Io,
          `reserve name ${core.layout.registryFile(name)}: ${r?.errno ?? "no answer"}`,
          { cause: Object.assign(new Error(r?.message ?? "no answer"), { code: r?.errno }) },
        );
        return undefined;
      }),
    );
    if (failure === undefined) return out as string[];
    await core.throttle.run(async () => {
      for (const n of out)
        if (n !== undefined) await unlinkIfExists(core.layout.registryFile(n)).catch(() => false);
    });
    throw failure;
  }

  /**
   * Give back a name reserved with `reserveName` and not used: an enqueue with it never ran,
   * or failed before it made the data file (see `enqueue`). A name that an entry in some
   * queue holds is left alone. Do not call it while an enqueue with the name is under way.
   */
  async unreserveName(name: string): Promise<void> {
    validateName("entry", name);
    const registry = this.#core.layout.registryFile(name);
    const data = this.#core.layout.dataFile(name);
    // Without a data file no entry holds the name: an entry's data is made before it is
    // visible and removed after it is not. Otherwise `locate`, which looks again for a
    // while (about a second) for an entry moving between files before it answers "nowhere",
    // decides: that wait is for entries, and an unused name would pay it every time.
    const hasData = (await this.#core.throttle.run(() => statIfExists(data))) !== undefined;
    if (hasData && (await this.locate(name))) return;
    try {
      await this.#core.throttle.run(() => unlinkIfExists(registry));
    } catch (err) {
      throw ioError("unlink", registry, err);
    }
  }

  /**
   * True while `name` is reserved: an entry holds it (waiting, checked out, or being
   * enqueued, finished or removed), or it was reserved and not yet used or given back.
   */
  async isReserved(name: string): Promise<boolean> {
    const registry = this.#core.layout.registryFile(validateName("entry", name));
    return (await this.#core.throttle.run(() => statIfExists(registry))) !== undefined;
  }

  /**
   * Add an entry to `queue`. When this returns, the entry (metadata and data) survives a
   * crash. On failure nothing of it is left behind: no queue file, data or registry file.
   */
  async enqueue(
    queue: Q,
    metadata: M,
    data: DataSource,
    options: EnqueueOptions = {},
  ): Promise<Entry<M, Q>> {
    const name = await enqueue(this.#core, queue, metadata, data, options.name, options.onVisible);
    return new Entry(this.#core, queue, name);
  }

  /**
   * Like `enqueue`, but the metadata is made by `makeMetadata` after the data has been
   * written in full (so it can record the size, or a digest computed while streaming).
   */
  async enqueueDeferred(
    queue: Q,
    data: DataSource,
    makeMetadata: (written: { size: number }) => M | Promise<M>,
    options: EnqueueOptions = {},
  ): Promise<Entry<M, Q>> {
    const name = await enqueue(
      this.#core,
      queue,
      new DeferredMetadata(makeMetadata),
      data,
      options.name,
      options.onVisible,
    );
    return new Entry(this.#core, queue, name);
  }

  /**
   * Add many small entries at once, made durable together (group commit, see index.ts):
   * one result per item, in order. When it resolves, every entry reported `ok` survives a
   * crash; each entry that failed left nothing behind, and did not stop the others.
   */
  async enqueueBatch(
    items: readonly BatchItem<M, Q>[],
    options: BatchEnqueueOptions = {},
  ): Promise<BatchEnqueueResult<M, Q>[]> {
    const results = await enqueueBatch(this.#core, items, options.onVisible);
    return results.map((r, i) =>
      r.ok
        ? { ok: true, entry: new Entry(this.#core, (items[i] as BatchItem<M, Q>).queue, r.name) }
        : r,
    );
  }

  /** The entries in `queue`, sorted by name (and so, with the default names, by age). */
  async list(queue: Q): Promise<Entry<M, Q>[]> {
    const names = await this.#core.list(queue);
    return names.map((n) => new Entry(this.#core, queue, n));
  }

  /** Names of the entries waiting in `queue`, sorted, as `list` orders them. */
  listNames(queue: Q): Promise<string[]> {
    return this.#core.list(queue);
  }

  /** An entry handle by name; nothing is checked until it is used. */
  entry(queue: Q, name: string): Entry<M, Q> {
    this.#core.dirname(queue);
    return new Entry(this.#core, queue, validateName("entry", name));
  }

  /** Check out an entry; if another process got it first (or it is gone), `not_found`. */
  async checkoutIfPresent(
    entry: Entry<M, Q>,
    options: CheckoutOptions = {},
  ): Promise<CheckoutOutcome<M, Q>> {
    const r = await this.#core.checkout(
      entry.queue,
      entry.name,
      options.leaseMs,
      options.readDataUpTo,
    );
    if (r.kind === "not_found") return r;
    return { kind: "ok", entry: new CheckedOutEntry(this.#core, r.record, r.data) };
  }

  /** Check out an entry you expect to own; its absence is an error. */
  async checkout(
    entry: Entry<M, Q>,
    options: CheckoutOptions = {},
  ): Promise<CheckedOutEntry<M, Q>> {
    const r = await this.checkoutIfPresent(entry, options);
    if (r.kind === "not_found") {
      throw new SpoolError(
        SpoolErrorCode.EntryNotFound,
        `entry ${entry.name} disappeared from queue ${entry.queue} before checkout`,
      );
    }
    return r.entry;
  }

  /** Check out, run `f`, and save, remove or release as it says. */
  async withEntry<T>(
    entry: Entry<M, Q>,
    f: EntryHandler<M, Q, T>,
    options: CheckoutOptions = {},
  ): Promise<T> {
    return runHandler(await this.checkout(entry, options), f);
  }

  /** Like `withEntry`, but another process taking the entry first is `not_found`. */
  async withEntryIfPresent<T>(
    entry: Entry<M, Q>,
    f: EntryHandler<M, Q, T>,
    options: CheckoutOptions = {},
  ): Promise<{ kind: "ok"; value: T } | { kind: "not_found" }> {
    const r = await this.checkoutIfPresent(entry, options);
    if (r.kind === "not_found") return r;
    return { kind: "ok", value: await runHandler(r.entry, f) };
  }

  /** Names of the entries checked out of `queue`, sorted (no metadata is read). */
  listCheckedOutNames(queue: Q): Promise<string[]> {
    return this.#core.listCheckedOut(queue);
  }

  /**
   * Return every checkout whose lease has ended (past the grace period) to its queue, or
   * to the dead-letter queue after `maxAttempts` failed deliveries. Safe to run from
   * several processes at once.
   */
  expireLeases(queues?: readonly Q[]): Promise<ExpiredLease<Q>[]> {
    return this.#core.expireLeases(queues);
  }

  /** Run `expireLeases` every `intervalMs` until the signal aborts. */
  startLeaseReaper(
    intervalMs: number,
    options: {
      signal?: AbortSignal;
      onExpired?: (e: ExpiredLease<Q>) => void;
      onError?: (err: unknown) => void;
    } = {},
  ): { stop(): void } {
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      this.expireLeases()
        .then((list) => {
          for (const e of list) options.onExpired?.(e);
        })
        .catch((err) => options.onError?.(err))
        .finally(() => {
          running = false;
        });
    }, intervalMs);
    timer.unref();
    const stop = () => clearInterval(timer);
    options.signal?.addEventListener("abort", stop, { once: true });
    return { stop };
  }

  /**
   * Where an entry is now: which queue (among `queues`), waiting or checked out; undefined
   * if nowhere. An entry that moves while it is looked for (a finish, lease extension or
   * expiry takes its checkout file aside for a moment; a save moves it between queues) can
   * slip past one scan: while its reservation exists and it is in no queue at all, it is
   * looked for again, a few times, before the answer is "nowhere".
   */
  locate(
    name: string,
    queues: readonly Q[] = this.#core.queues,
  ): Promise<{ queue: Q; state: EntryState; path: string } | undefined> {
    return this.search(name, queues, this.statProbe);
  }

  private readonly statProbe = async (queue: Q, state: EntryState, path: string) =>
    (await this.#core.throttle.run(() => statIfExists(path))) ? { queue, state, path } : undefined;

  /**
   * An entry's metadata wherever it is (among `queues`), read from the file where it was
   * found, looked for as `locate` does: an entry that moves between the look and the read
   * is looked for again rather than reported gone. Undefined if it is nowhere.
   */
  find(
    name: string,
    queues: readonly Q[] = this.#core.queues,
  ): Promise<FoundEntry<M, Q> | undefined> {
    return this.search(name, queues, (queue, state, path) =>
      this.#core.throttle.run(async () => {
        const fh = await openIfExists(path, "r").catch((err) => {
          throw ioError("read", path, err);
        });
        if (fh === undefined) return undefined;
        try {
          // One handle: the deadline (mtime) and metadata are of the same checkout.
          const st = await fh.stat();
          const { metadata, envelope } = this.#core.decodeFile(name, await fh.readFile());
          const found: FoundEntry<M, Q> = { queue, state, metadata, attempts: envelope.attempts };
          if (state === "checked_out") found.leaseUntil = Math.round(st.mtimeMs);
          return found;
        } finally {
          await fh.close();
        }
      }),
    );
  }

  /** Look for `name` with `probe` (which answers undefined for a file that is not there). */
  private async search<T>(
    name: string,
    queues: readonly Q[],
    probe: (queue: Q, state: EntryState, path: string) => Promise<T | undefined>,
  ): Promise<T | undefined> {
    validateName("entry", name);
    for (let pass = 1; ; pass++) {
      const found = await this.scan(name, queues, probe);
      if (found !== undefined || pass > LOCATE_RESCANS) return found;
      const registry = this.#core.layout.registryFile(name);
      if (!(await this.#core.throttle.run(() => statIfExists(registry)))) return undefined;
      if (queues.length < this.#core.queues.length) {
        // Where the caller did not look: then it is not moving, and not theirs to see.
        const anywhere = await this.scan(name, this.#core.queues, this.statProbe);
        if (anywhere && !queues.includes(anywhere.queue)) return undefined;
        if (anywhere) continue;
      }
      await sleep(2 ** (pass - 1));
    }
  }

  /** One pass over `queues`: in each, the queue file, then the checkout file. */
  private async scan<T>(
    name: string,
    queues: readonly Q[],
    probe: (queue: Q, state: EntryState, path: string) => Promise<T | undefined>,
  ): Promise<T | undefined> {
    const l = this.#core.layout;
    for (const queue of queues) {
      const dirname = this.#core.dirname(queue);
      const found =
        (await probe(queue, "queued", l.queueFile(dirname, name))) ??
        (await probe(queue, "checked_out", l.checkoutFile(dirname, name)));
      if (found !== undefined) return found;
    }
    return undefined;
  }

  /** The data file of an entry, by name (whatever its queue). */
  dataFile(name: string): DataFile {
    return new Entry(this.#core, this.#core.queues[0] as Q, validateName("entry", name)).dataFile();
  }
}

/** @internal */
export async function runHandler<M, Q extends string, T>(
  co: CheckedOutEntry<M, Q>,
  f: EntryHandler<M, Q, T>,
): Promise<T> {
  let disposition: Disposition<M, Q>;
  let value: T;
  try {
    [disposition, value] = await f(co.contents, co.dataFile(), co);
  } catch (err) {
    // The handler failed: count a failed delivery and give the entry back now rather
    // than leaving it to its lease.
    await co.release().catch(() => undefined);
    throw err;
  }
  let r: { kind: string };
  switch (disposition.kind) {
    case "remove":
      r = await co.remove();
      break;
    case "release":
      r = await co.release();
      break;
    case "save": {
      const { metadata } = disposition;
      if (metadata !== undefined) co.update(() => metadata);
      r = await co.save(disposition.queue);
      break;
    }
  }
  if (r.kind === "lease_lost") {
    throw new SpoolError(
      SpoolErrorCode.LeaseLost,
      `lease on entry ${co.name} ended before it was finished; another holder may have it`,
    );
  }
  return value;
}

/** @internal */
export { coreOf };
