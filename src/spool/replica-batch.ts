import { randomBytes } from "node:crypto";
import { rename } from "node:fs/promises";
import type { WriterItem, WriterResult } from "./batch-writer.js";
import type { SpoolCore } from "./core.js";
import { BATCH_ROUND_ENTRIES } from "./enqueue-batch.js";
import { encodeEnvelope } from "./envelope.js";
import { ioError, SpoolError, SpoolErrorCode } from "./errors.js";
import { validateName } from "./names.js";
import { type PlaceReplicaResult, placeReplica, type ReplicaPlacement } from "./replica.js";

/** A peer's entry this spool does not hold, to be placed with its data (in memory). */
export interface NewReplica<Q extends string> {
  name: string;
  placement: ReplicaPlacement<Q>;
  /** The codec's bytes of its metadata. */
  payload: Uint8Array;
  attempts: number;
  /** Its data, whole. */
  bytes: Uint8Array;
}

/** Options of `placeNewReplicas`. */
export interface PlaceNewOptions {
  /**
   * No entry is renamed into its queue (or placed alone) before this settles, whatever its
   * outcome: work of the caller that must come before any entry is visible (the node
   * records the entries' idempotency keys) runs beside the writing and durability round.
   */
  beforeVisible?: PromiseLike<unknown>;
}

/** What became of one entry of `placeNewReplicas`. */
export type NewReplicaResult = PlaceReplicaResult | { kind: "failed"; error: Error };

/** One entry of a batch on its way: where its files go. */
interface Pending<Q extends string> {
  index: number;
  item: NewReplica<Q>;
  dest: string;
  destDir: string;
  tmp: string;
}

/**
 * Place many new entries, made durable together (see index.ts, "Replica placement": the
 * batch). In rounds of up to BATCH_ROUND_ENTRIES, the spool's batch writer thread reserves
 * each entry's registry file (O_EXCL: made, it also says the entry was absent), writes its
 * data file (O_EXCL) and its metadata in .tmp, then runs one durability round (every file's
 * fdatasync and the fsync of .registry and .data, all at once) and checks that nothing was
 * removed meanwhile. Back here each metadata file is renamed into its queue, then each
 * queue directory touched is fsynced once. An entry whose name was reserved already (a
 * remnant, a local enqueue or an entry placed since the caller looked), one that the thread
 * could not write, and one to be placed checked out (its metadata file's mtime is the
 * lease deadline) go through `placeReplica` alone. One result per entry, in order; an
 * entry that failed left nothing of itself behind unless it became visible (then only its
 * queue directory's fsync failed) and did not stop the others.
 * @internal
 */
export async function placeNewReplicas<M, Q extends string>(
  core: SpoolCore<M, Q>,
  items: readonly NewReplica<Q>[],
  opts: PlaceNewOptions = {},
): Promise<NewReplicaResult[]> {
  const gate =
    opts.beforeVisible === undefined
      ? undefined
      : Promise.resolve(opts.beforeVisible).then(
          () => undefined,
          () => undefined,
        );
  const results: NewReplicaResult[] = new Array(items.length);
  const batched: Pending<Q>[] = [];
  const alone: number[] = [];
  const l = core.layout;
  // One tag for the batch: each name is reserved (O_EXCL) before its tmp file is written.
  const tag = `place-${randomBytes(4).toString("hex")}`;
  items.forEach((item, index) => {
    try {
      validateName("entry", item.name);
      const dirname = core.dirname(item.placement.queue);
      if (!Number.isInteger(item.attempts) || item.attempts < 0) {
        throw invalid(`attempts must be a non-negative integer, got ${item.attempts}`);
      }
      if (!(item.payload instanceof Uint8Array)) throw invalid("payload must be bytes");
      if (!(item.bytes instanceof Uint8Array)) throw invalid("bytes must be bytes");
      if (item.placement.checkedOut) {
        alone.push(index);
        return;
      }
      batched.push({
        index,
        item,
        dest: l.queueFile(dirname, item.name),
        destDir: l.queue(dirname),
        tmp: l.tmpFile(item.name, tag),
      });
    } catch (err) {
      results[index] = { kind: "failed", error: asError(err) };
    }
  });
  const rounds: Promise<void>[] = [];
  for (let at = 0; at < batched.length; at += BATCH_ROUND_ENTRIES) {
    rounds.push(runRound(core, batched.slice(at, at + BATCH_ROUND_ENTRIES), results, alone, gate));
  }
  await Promise.all(rounds);
  // Entries placed alone become visible too (and there may have been no round to wait).
  await gate;
  // The renames of every round made durable: one fsync per queue directory.
  const byDir = new Map<string, Pending<Q>[]>();
  for (const p of batched) {
    if (results[p.index] !== undefined) continue;
    const list = byDir.get(p.destDir) ?? [];
    list.push(p);
    byDir.set(p.destDir, list);
  }
  await Promise.all([
    ...[...byDir].map(async ([dir, list]) => {
      let failed: Error | undefined;
      await core.syncer.sync(dir).catch((err) => {
        failed = ioError("place replica (fsync destination) of", dir, err);
      });
      // Visible already, and maybe someone's: never taken back.
      for (const p of list) results[p.index] = failed ? { kind: "failed", error: failed } : PLACED;
    }),
    ...alone.map(async (index) => {
      const it = items[index] as NewReplica<Q>;
      results[index] = await placeReplica(core, it.name, it.placement, it.payload, it.attempts, {
        bytes: it.bytes,
      }).catch((err): NewReplicaResult => ({ kind: "failed", error: asError(err) }));
    }),
  ]);
  return results;
}

const PLACED: PlaceReplicaResult = { kind: "placed" };

/**
 * One round: the writer thread's part, then the renames. Entries the thread did not make
 * are added to `alone`; results are set only for entries that failed here.
 */
async function runRound<M, Q extends string>(
  core: SpoolCore<M, Q>,
  round: Pending<Q>[],
  results: NewReplicaResult[],
  alone: number[],
  gate: Promise<void> | undefined,
): Promise<void> {
  const l = core.layout;
  const writerItems: WriterItem[] = round.map((p) => ({
    registry: l.registryFile(p.item.name),
    reserve: true,
    data: l.dataFile(p.item.name),
    tmp: p.tmp,
    dataBytes: p.item.bytes,
    metadataBytes: encodeEnvelope({ attempts: p.item.attempts }, p.item.payload),
  }));
  let written: WriterResult[];
  try {
    written = await core.throttle.run(() =>
      core.batchWriter.write(writerItems, [l.registry, l.data]),
    );
  } catch (err) {
    // The thread died: its files may remain, as after a crash; the next sync resumes them.
    const error = ioError("place replica (batch writer) of", round[0]?.item.name ?? "", err);
    for (const p of round) results[p.index] = { kind: "failed", error };
    return;
  }
  await gate;
  await Promise.all(
    round.map(async (p, i) => {
      const w = written[i] as WriterResult;
      if (!w.ok) {
        // Its name is reserved already (a remnant, or an entry here since the caller looked),
        // or its files could not be made (the thread removed what it made): the placement
        // of one entry at a time looks at what there is and resumes it, or reports why not.
        alone.push(p.index);
        return;
      }
      try {
        await core.throttle.run(() => rename(p.tmp, p.dest));
      } catch (err) {
        // Not visible: the files are ours (registry and data made with O_EXCL).
        await core.discardUnpublished(p.item.name, p.tmp);
        results[p.index] = {
          kind: "failed",
          error: ioError("place replica (rename into place) of", p.item.name, err),
        };
      }
    }),
  );
}

function invalid(message: string): SpoolError {
  return new SpoolError(SpoolErrorCode.InvalidArgument, message);
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
