import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { walkDir } from "./dir-walk.js";
import { unlinkIfExists } from "./fs-ops.js";
import type { SpoolIdentity } from "./identity.js";
import { TMP_TAG_SEPARATOR } from "./layout.js";
import {
  type DropReplicaResult,
  dropReplica,
  inspectReplica,
  type PlaceReplicaResult,
  placeReplica,
  type ReplicaData,
  type ReplicaInspection,
  type ReplicaPlacement,
} from "./replica.js";
import {
  type NewReplica,
  type NewReplicaResult,
  type PlaceNewOptions,
  placeNewReplicas,
} from "./replica-batch.js";
import { inspectReplicas, type ReplicaLook } from "./replica-batch-read.js";
import { coreOf, type Spool } from "./spool.js";

/**
 * The spool as the replicator sees it: any queue by its name, metadata as the codec's bytes,
 * and the replica placements (see index.ts). Made by `Expert.replicaSpool`.
 */
export interface ReplicaSpool {
  /** Directories whose file events mean an entry may have moved (queues and their .checkout). */
  readonly watchDirs: readonly string[];
  /** A directory on the spool's filesystem for files a placement adopts (its .tmp). */
  readonly stagingDir: string;
  /** Which spool directory this is: tells a lost spool from an empty one. */
  readonly identity: SpoolIdentity;
  hasQueue(queue: string): boolean;
  inspect(name: string): Promise<ReplicaInspection<string>>;
  /**
   * `inspect` of many entries, their first look made together off the event loop, with the
   * data of those `dataMax` asks for (per name, the largest data to read).
   */
  inspectMany(
    names: readonly string[],
    dataMax?: (name: string) => number | undefined,
  ): Promise<ReplicaLook<string>[]>;
  /** `seen`: the entry's inspection just before, if any (spares a second one). */
  place(
    name: string,
    placement: ReplicaPlacement<string>,
    payload: Buffer,
    attempts: number,
    data?: ReplicaData,
    seen?: ReplicaInspection<string>,
  ): Promise<PlaceReplicaResult>;
  /**
   * Place many entries seen absent, their data in memory, made durable together (one
   * result per entry, in order; see index.ts, "the batch"). None becomes visible before
   * `opts.beforeVisible` settles (its outcome is not looked at): the caller's own work that
   * must precede visibility runs beside the writing and the durability round.
   */
  placeNew(
    items: readonly NewReplica<string>[],
    opts?: PlaceNewOptions,
  ): Promise<NewReplicaResult[]>;
  drop(name: string, seen?: ReplicaInspection<string>): Promise<DropReplicaResult>;
  /** An entry's data (for the inline copy of a small entry). */
  readData(name: string): Promise<Buffer>;
  /**
   * Delete data staged for a placement and never adopted (`.tmp/<name>~inline`, left by a
   * process of an earlier version, which staged inline data there; placements now take the
   * bytes themselves).
   */
  removeStaged(): Promise<void>;
  /**
   * Every entry name in the spool's queues and checkouts, handed to `visit` a slice at a
   * time with its queue and whether it is checked out (each directory read as by
   * dir-walk.ts, never whole: a walk is no snapshot, and an entry that moves meanwhile may
   * be visited twice or not at all; the names of finishes under way are left out).
   */
  walk(
    visit: (queue: string, checkedOut: boolean, names: readonly string[]) => void,
  ): Promise<void>;
}

/** The tag of a staged file: `.tmp/<name>~inline`. */
const STAGED_TAG = "inline";

/** The replicator's view of `spool`, which must have been opened with `load` or `create`. */
export function replicaSpool<M, Q extends string>(spool: Spool<M, Q>): ReplicaSpool {
  const core = coreOf(spool);
  const { identity, layout } = core;
  if (identity === undefined) {
    throw new Error("replication needs a spool opened with load or create");
  }
  const queues = new Set<string>(core.queues);
  return {
    identity,
    watchDirs: core.queues.flatMap((q) => {
      const dirname = core.dirname(q);
      return [layout.queue(dirname), layout.checkout(dirname)];
    }),
    stagingDir: layout.tmp,
    hasQueue: (q) => queues.has(q),
    inspect: (name) => inspectReplica(core, name),
    inspectMany: (names, dataMax) => inspectReplicas(core, names, dataMax),
    // A queue the spool does not have is refused there (`unknown_queue`).
    place: (name, placement, payload, attempts, data, seen) =>
      placeReplica(
        core,
        name,
        placement as ReplicaPlacement<Q>,
        payload,
        attempts,
        data,
        seen as ReplicaInspection<Q> | undefined,
      ),
    placeNew: (items, opts) => placeNewReplicas(core, items as readonly NewReplica<Q>[], opts),
    drop: (name, seen) => dropReplica(core, name, seen as ReplicaInspection<Q> | undefined),
    // One readFile (open, fstat, read, close), not a read stream: the data is small.
    readData: (name) => core.throttle.run(() => readFile(layout.dataFile(name))),
    async removeStaged() {
      const names = await core.throttle.run(() => readdir(layout.tmp));
      const staged = names.filter((n) => n.endsWith(`${TMP_TAG_SEPARATOR}${STAGED_TAG}`));
      for (const n of staged) {
        await core.throttle.run(() => unlinkIfExists(join(layout.tmp, n))).catch(() => false);
      }
    },
    async walk(visit) {
      // Dot files are the spool's own; `name~tag` files are finishes under way.
      const entries = (names: readonly string[]) =>
        names.filter((n) => !n.startsWith(".") && !n.includes(TMP_TAG_SEPARATOR));
      for (const q of core.queues) {
        const dirname = core.dirname(q);
        await walkDir(core.throttle, layout.queue(dirname), (names) =>
          visit(q, false, entries(names)),
        );
        await walkDir(core.throttle, layout.checkout(dirname), (names) =>
          visit(q, true, entries(names)),
        );
      }
    },
  };
}
