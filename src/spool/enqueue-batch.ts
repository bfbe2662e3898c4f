import { rename } from "node:fs/promises";
import type { WriterItem, WriterResult } from "./batch-writer.js";
import type { SpoolCore } from "./core.js";
import { enqueue } from "./enqueue.js";
import { ioError, SpoolError, SpoolErrorCode } from "./errors.js";
import { validateName } from "./names.js";

/** One entry of `Spool.enqueueBatch`: small data, whole in memory. */
export interface BatchItem<M, Q extends string> {
  queue: Q;
  metadata: M;
  data: Uint8Array | string;
  /**
   * A name reserved earlier with `reserveName`, or (with `reserve`) one from `newNames`;
   * otherwise one is reserved now.
   */
  name?: string;
  /**
   * `name` is not reserved yet (it came from `newNames`): the batch reserves it (O_EXCL)
   * as it writes the entry. If the name is taken, the entry fails (`name_exhausted`) and
   * nothing of it is made.
   */
  reserve?: boolean;
  /**
   * The entry becomes visible only once this resolves true. Its files are written and made
   * durable meanwhile, so whatever decides (an idempotency claim) runs beside the write.
   * False, or a rejection, removes its files: the entry fails (`withdrawn`), nothing left.
   */
  visibleIf?: PromiseLike<boolean>;
}

/**
 * What became of one entry of a batch: its name, or its own failure (nothing of it left).
 * @internal
 */
export type BatchItemResult =
  | { ok: true; name: string }
  | { ok: false; error: SpoolError; name?: string; visible?: true };

/**
 * Entries per durability round of the writer thread. It bounds the files open at once (two
 * per entry) and how long the first entry of a batch waits for the last.
 * @internal
 */
export const BATCH_ROUND_ENTRIES = 512;

/** One entry on its way through the batch. */
interface Item<M, Q extends string> {
  index: number;
  queue: Q;
  dirname: string;
  metadata: M;
  bytes: Buffer;
  data: Uint8Array | string;
  given?: string;
  /** `given` is ours to reserve (`BatchItem.reserve`). */
  reserveGiven: boolean;
  /** `BatchItem.visibleIf`, a rejection read as false. */
  visibleIf?: Promise<boolean>;
  name?: string;
  result?: BatchItemResult;
}

/**
 * Enqueue many small entries, made durable together (see index.ts, "Batches"). In rounds of
 * up to BATCH_ROUND_ENTRIES entries, the spool's batch writer thread makes every entry's
 * registry file, data file and metadata in .tmp, then runs one durability round (every
 * file's fdatasync and the fsync of .registry and .data, all at once), checks that repair
 * did not take the files meanwhile, and removes the files of an entry that failed. Back
 * here, each metadata file is renamed into its queue (once its `visibleIf`, if any, said
 * yes; its files are removed if it said no); after the last round, one fsync per
 * queue directory. Resolves (one result per item, in order) only after that fsync, so every
 * entry reported `ok` survives a crash; an entry that failed left nothing and did not stop
 * the others. A name taken meanwhile by another process is retried as a single enqueue
 * (one the caller gave with `reserve` fails instead: its caller chose it).
 * @internal
 */
export async function enqueueBatch<M, Q extends string>(
  core: SpoolCore<M, Q>,
  batch: readonly BatchItem<M, Q>[],
  onVisible?: (name: string, index: number) => void,
): Promise<BatchItemResult[]> {
  const results: BatchItemResult[] = new Array(batch.length);
  const items: Item<M, Q>[] = [];
  batch.forEach((b, index) => {
    try {
      const dirname = core.dirname(b.queue);
      const given = b.name === undefined ? undefined : validateName("entry", b.name);
      const bytes = core.encodeFile(b.metadata, { attempts: 0 });
      items.push({
        index,
        queue: b.queue,
        dirname,
        metadata: b.metadata,
        bytes,
        data: b.data,
        reserveGiven: given !== undefined && b.reserve === true,
        ...(given === undefined ? {} : { given }),
        // Taken at once, so a rejection is never left unhandled while the files are written.
        ...(b.visibleIf === undefined
          ? {}
          : {
              visibleIf: Promise.resolve(b.visibleIf).then(
                (v) => v === true,
                () => false,
              ),
            }),
      });
    } catch (err) {
      results[index] = { ok: false, error: ioError("enqueue of", b.name ?? "(unnamed)", err) };
    }
  });
  const rounds: Promise<void>[] = [];
  for (let at = 0; at < items.length; at += BATCH_ROUND_ENTRIES) {
    rounds.push(runRound(core, items.slice(at, at + BATCH_ROUND_ENTRIES), onVisible));
  }
  await Promise.all(rounds);
  const visible = new Map<string, Item<M, Q>[]>();
  for (const it of items) {
    if (it.result !== undefined) continue;
    const list = visible.get(it.dirname) ?? [];
    list.push(it);
    visible.set(it.dirname, list);
  }
  // One fsync per queue directory for the whole batch: then every rename is durable.
  await Promise.all(
    [...visible].map(async ([dirname, list]) => {
      let failed: SpoolError | undefined;
      await core.syncer.sync(core.layout.queue(dirname)).catch((err) => {
        failed = ioError("enqueue (fsync queue) of", dirname, err);
      });
      // Visible already, and maybe someone's: never taken back. The caller learns that the
      // last fsync failed.
      for (const it of list) {
        it.result = failed
          ? { ok: false, error: failed, name: it.name as string, visible: true }
          : { ok: true, name: it.name as string };
      }
    }),
  );
  for (const it of items) results[it.index] = it.result as BatchItemResult;
  return results;
}

/** One round: the writer thread's part, then the renames (see `enqueueBatch`). */
async function runRound<M, Q extends string>(
  core: SpoolCore<M, Q>,
  round: Item<M, Q>[],
  onVisible?: (name: string, index: number) => void,
): Promise<void> {
  const l = core.layout;
  const writerItems: WriterItem[] = round.map((it) => {
    const name = it.given ?? validateName("entry", core.names.next(0));
    it.name = name;
    return {
      registry: l.registryFile(name),
      reserve: it.given === undefined || it.reserveGiven,
      data: l.dataFile(name),
      tmp: l.tmpFile(name),
      dataBytes: typeof it.data === "string" ? Buffer.from(it.data) : it.data,
      metadataBytes: it.bytes,
    };
  });
  let written: WriterResult[];
  try {
    written = await core.throttle.run(() =>
      core.batchWriter.write(writerItems, [l.registry, l.data]),
    );
  } catch (err) {
    for (const it of round)
      it.result = { ok: false, error: ioError("enqueue (batch writer) of", it.name ?? "", err) };
    return;
  }
  await Promise.all(
    round.map(async (it, i) => {
      const w = written[i] as WriterResult;
      const name = it.name as string;
      if (!w.ok && w.taken && it.reserveGiven) {
        it.result = {
          ok: false,
          error: new SpoolError(
            SpoolErrorCode.NameExhausted,
            `enqueue of ${name}: the name was taken meanwhile; nothing of the entry was stored`,
          ),
        };
        return;
      }
      if (!w.ok && w.taken) {
        // Another process holds the name: this entry goes alone, under a name of its own.
        const visible = (n: string) => onVisible?.(n, it.index);
        it.result = await enqueue(core, it.queue, it.metadata, it.data, undefined, visible).then(
          (n): BatchItemResult => ({ ok: true, name: n }),
          (err) => ({ ok: false, error: ioError("enqueue of", name, err) }),
        );
        return;
      }
      if (!w.ok) {
        const code = w.step === "check" ? SpoolErrorCode.EntryNotFound : SpoolErrorCode.Io;
        const why = code === SpoolErrorCode.Io ? w.errno : w.message;
        it.result = {
          ok: false,
          error: new SpoolError(code, `enqueue (${w.step}) of ${name}: ${why}`, {
            cause: Object.assign(new Error(w.message), { code: w.errno }),
          }),
          ...(it.given === undefined ? {} : { name }),
        };
        return;
      }
      const removeFiles = () => core.discardUnpublished(name, l.tmpFile(name));
      if (it.visibleIf !== undefined) {
        if (!(await it.visibleIf)) {
          await removeFiles();
          it.result = {
            ok: false,
            error: new SpoolError(
              SpoolErrorCode.Withdrawn,
              `enqueue of ${name}: withdrawn before it became visible; nothing of it was kept`,
            ),
          };
          return;
        }
      }
      try {
        await core.throttle.run(() => rename(l.tmpFile(name), l.queueFile(it.dirname, name)));
      } catch (err) {
        // Not visible: the files are ours (the data file was made with O_EXCL).
        await removeFiles();
        it.result = { ok: false, error: ioError("enqueue (rename into queue) of", name, err) };
        return;
      }
      onVisible?.(name, it.index);
    }),
  );
}
