import { randomBytes } from "node:crypto";
import { open, readdir, rename } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CTIME_QUIET_MS, type SpoolCore } from "./core.js";
import { writeData } from "./data.js";
import { decodeEnvelope, encodeEnvelope } from "./envelope.js";
import { ioError, SpoolError, SpoolErrorCode } from "./errors.js";
import {
  createExclusive,
  readIfExists,
  renameIfExists,
  setMtime,
  statIfExists,
  unlinkIfExists,
} from "./fs-ops.js";
import { TMP_TAG_SEPARATOR } from "./layout.js";
import { writeLeaseRecord } from "./lease-token.js";
import { validateName } from "./names.js";

/** Where the replicator wants an entry: waiting in a queue, or checked out of it until a deadline. */
export type ReplicaPlacement<Q extends string> =
  | { queue: Q; checkedOut: false }
  | {
      queue: Q;
      checkedOut: true /** ms since the epoch: the checkout file's mtime. */;
      leaseUntil: number;
    };

/** What the spool holds of an entry, read without decoding the user's metadata. */
export type ReplicaInspection<Q extends string> =
  /** No metadata file in any queue or checkout, and no registry file. */
  | { kind: "absent" }
  /**
   * A registry file but no metadata file in any queue or checkout: an enqueue or remove under
   * way, a finish under way (`<name>~<tag>` in a .checkout directory), or a crash remnant.
   */
  | { kind: "in_flux" }
  | {
      kind: "present";
      queue: Q;
      checkedOut: boolean;
      /** Only when checked out: the checkout file's mtime, rounded to the millisecond. */
      leaseUntil?: number;
      attempts: number;
      /** The codec's bytes that follow the envelope header line. */
      payload: Buffer;
    };

export type PlaceReplicaResult = { kind: "placed" } | { kind: "raced" } | { kind: "unchanged" };
export type DropReplicaResult = { kind: "dropped" } | { kind: "absent" } | { kind: "raced" };

/**
 * The data of an entry that the spool does not hold yet: a file to adopt, or the bytes
 * themselves (small data carried in a journal row), which the placement writes to the
 * entry's data file and fsyncs in the same round as the metadata.
 */
export type ReplicaData =
  | {
      /** A complete file on the spool's filesystem (e.g. in its .tmp directory). */
      adoptPath: string;
      /**
       * Whether the file is already fsynced (default true). When false, the placement fsyncs
       * it in the same round as the metadata, before the entry becomes visible.
       */
      synced?: boolean;
      bytes?: undefined;
    }
  | { bytes: Uint8Array; adoptPath?: undefined; synced?: undefined };

/** A metadata file the scan found, as read through one open handle. */
interface Found<Q extends string> {
  queue: Q;
  checkedOut: boolean;
  path: string;
  mtimeMs: number;
  ctimeMs: number;
  attempts: number;
  payload: Buffer;
}

type Scan<Q extends string> =
  | { kind: "absent" }
  | { kind: "in_flux" }
  | { kind: "present"; found: Found<Q> };

/** Full scans before the answer is taken as it is (an entry moving, a checkout settling). */
const MAX_SCANS = 5;
/** A placement counts as unchanged when its lease is within this of the one on disk. */
const LEASE_TOLERANCE_MS = 1_000;

const PLACED: PlaceReplicaResult = { kind: "placed" };
const RACED = { kind: "raced" } as const;

/** @internal */
export async function inspectReplica<M, Q extends string>(
  core: SpoolCore<M, Q>,
  name: string,
): Promise<ReplicaInspection<Q>> {
  validateName("entry", name);
  const s = await scan(core, name);
  if (s.kind !== "present") return s;
  const f = s.found;
  return f.checkedOut
    ? {
        kind: "present",
        queue: f.queue,
        checkedOut: true,
        leaseUntil: Math.round(f.mtimeMs),
        attempts: f.attempts,
        payload: f.payload,
      }
    : {
        kind: "present",
        queue: f.queue,
        checkedOut: false,
        attempts: f.attempts,
        payload: f.payload,
      };
}

/**
 * Bring one entry to `placement` with metadata `payload` and `attempts`, whatever its local
 * placement is now. See index.ts ("Replica placement").
 * @internal
 */
export async function placeReplica<M, Q extends string>(
  core: SpoolCore<M, Q>,
  name: string,
  placement: ReplicaPlacement<Q>,
  payload: Uint8Array,
  attempts: number,
  data?: ReplicaData,
  seen?: ReplicaInspection<Q>,
): Promise<PlaceReplicaResult> {
  validateName("entry", name);
  const destDirname = core.dirname(placement.queue);
  if (!Number.isInteger(attempts) || attempts < 0) {
    throw invalid(`attempts must be a non-negative integer, got ${attempts}`);
  }
  if (!(payload instanceof Uint8Array)) throw invalid("payload must be bytes");
  const leaseUntil = placement.checkedOut ? placement.leaseUntil : undefined;
  if (leaseUntil !== undefined && !(Number.isFinite(leaseUntil) && leaseUntil > 0)) {
    throw invalid(`leaseUntil must be a positive number of ms since the epoch, got ${leaseUntil}`);
  }
  if (
    data !== undefined &&
    !(data.bytes instanceof Uint8Array) &&
    (typeof data.adoptPath !== "string" || data.adoptPath === "")
  ) {
    throw invalid("data.adoptPath must be a path, or data.bytes bytes");
  }
  const l = core.layout;
  const dest = placement.checkedOut
    ? l.checkoutFile(destDirname, name)
    : l.queueFile(destDirname, name);
  const destDir = placement.checkedOut ? l.checkout(destDirname) : l.queue(destDirname);
  const bytes = encodeEnvelope({ attempts }, payload);
  const reg = l.registryFile(name);

  // A new entry (the common case with data): reserving its name first tells at once that it
  // was absent, since enqueue makes the registry file first and a removal deletes it last.
  // Otherwise (a remnant, or an entry that is here) the scan says what there is.
  // An entry the caller just saw present is taken where it was seen (gone since: raced).
  const reserved =
    data !== undefined &&
    seen?.kind !== "present" &&
    (await core.throttle.run(() => createExclusive(reg))) === "created";
  const s: Scan<Q> = reserved ? { kind: "absent" } : await scanUnlessSeen(core, name, seen);
  if (s.kind === "present") {
    const f = s.found;
    if (
      f.queue === placement.queue &&
      f.checkedOut === placement.checkedOut &&
      f.attempts === attempts &&
      f.payload.equals(payload) &&
      (leaseUntil === undefined || Math.abs(f.mtimeMs - leaseUntil) < LEASE_TOLERANCE_MS)
    ) {
      return { kind: "unchanged" };
    }
    // Touch the registry before moving, as every move does: a repair scanning meanwhile
    // then leaves the entry alone. Its lease record goes too: no local holder's token
    // may count for what this places.
    await touchRegistry(core, name, { clearLease: true });
    // The new file is written before the take, as a finish does: the entry is out of every
    // queue only for the two renames.
    const tmp = l.tmpFile(name, `place-${randomBytes(4).toString("hex")}`);
    try {
      await core.throttle.run(() => writeMetadataSynced(tmp, bytes, leaseUntil));
    } catch (err) {
      await unlinkIfExists(tmp).catch(() => false);
      throw ioError("place replica", name, err);
    }
    const taken = await take(core, name, f);
    if (taken === undefined) {
      await unlinkIfExists(tmp).catch(() => false);
      return RACED;
    }
    try {
      await core.throttle.run(async () => {
        await rename(tmp, taken);
        await rename(taken, dest);
      });
      // Durable before it resolves: in its new place, and gone from the old one.
      await core.syncer.syncAll([destDir, dirname(f.path), dirname(taken)]);
    } catch (err) {
      await core.throttle.run(async () => {
        await unlinkIfExists(tmp).catch(() => false);
        await renameIfExists(taken, f.path).catch(() => "not_found");
      });
      throw ioError("place replica", name, err);
    }
    return PLACED;
  }

  // Nothing of the entry is visible. A finish under way (or an entry that moved while we
  // looked) is a race: the caller inspects again.
  if (s.kind === "in_flux" && (await heldElsewhere(core, name))) return RACED;
  if (data === undefined) {
    throw invalid(`entry ${name} is not in this spool: placing it needs its data (adoptPath)`);
  }
  const adoptPath = data.adoptPath;
  const inline = data.bytes;
  const dataPath = l.dataFile(name);
  const tmp = l.tmpFile(name, `place-${randomBytes(4).toString("hex")}`);
  let createdRegistry = reserved;
  let adopted = false;
  let wroteData = false;
  let visible = false;
  let step = "reserve name";
  try {
    if (!reserved) {
      // Not O_EXCL as a failure: the remnant of an earlier placement that died is resumed.
      createdRegistry = (await core.throttle.run(() => createExclusive(reg))) === "created";
      // A registry file just made is as fresh as a touch would make it.
      if (!createdRegistry) await touchRegistry(core, name);
    }
    if (adoptPath !== undefined) {
      step = "adopt data";
      await core.throttle.run(() => rename(adoptPath, dataPath));
      adopted = true;
    }
    // One round: the metadata written and fsynced, the data written (inline bytes) or
    // fsynced if it was not, and the registry and data directory entries made durable, all
    // at once.
    step = "write metadata and fsync";
    wroteData = inline !== undefined;
    await Promise.all([
      core.throttle.run(() => writeMetadataSynced(tmp, bytes, leaseUntil)),
      inline !== undefined
        ? core.throttle.run(() => writeMetadataSynced(dataPath, inline, undefined))
        : data.synced === false
          ? core.throttle.run(() => fsyncFile(dataPath))
          : undefined,
      core.syncer.sync(l.registry),
      core.syncer.sync(l.data),
    ]);
    // A repair that judged the remnant abandoned may have removed it under us.
    const [regStat, dataStat] = await Promise.all([
      core.throttle.run(() => statIfExists(reg)),
      core.throttle.run(() => statIfExists(dataPath)),
    ]);
    if (regStat === undefined || dataStat === undefined) {
      throw new SpoolError(
        SpoolErrorCode.EntryNotFound,
        `entry ${name} was removed while it was being placed`,
      );
    }
    step = "rename into place";
    await core.throttle.run(() => rename(tmp, dest));
    visible = true;
    step = "fsync destination";
    await core.syncer.sync(destDir);
    return PLACED;
  } catch (err) {
    // Once visible, the entry may already be someone's: never take it back.
    if (!visible) {
      await core.throttle.run(async () => {
        await unlinkIfExists(tmp).catch(() => false);
        if (adopted && adoptPath !== undefined) {
          await renameIfExists(dataPath, adoptPath).catch(() => "not_found");
        }
        // Data written here goes with the reservation made here; a remnant's stays with it.
        if (wroteData && createdRegistry) await unlinkIfExists(dataPath).catch(() => false);
        if (createdRegistry) await unlinkIfExists(reg).catch(() => false);
      });
    }
    throw ioError(`place replica (${step}) of`, name, err);
  }
}

/**
 * Remove an entry wherever it is, overriding any local holder. See index.ts.
 * @internal
 */
export async function dropReplica<M, Q extends string>(
  core: SpoolCore<M, Q>,
  name: string,
  seen?: ReplicaInspection<Q>,
): Promise<DropReplicaResult> {
  validateName("entry", name);
  const s = await scanUnlessSeen(core, name, seen);
  if (s.kind === "absent") return s;
  if (s.kind === "present") {
    const taken = await take(core, name, s.found);
    if (taken === undefined) return RACED;
    await core.removeFiles(taken, name, [dirname(s.found.path)]);
    return { kind: "dropped" };
  }
  if (await heldElsewhere(core, name)) return RACED;
  const l = core.layout;
  try {
    await core.throttle.run(async () => {
      await unlinkIfExists(l.dataFile(name));
      await unlinkIfExists(l.registryFile(name));
    });
    await core.syncer.syncAll([l.data, l.registry]);
  } catch (err) {
    throw ioError("drop replica", name, err);
  }
  return { kind: "dropped" };
}

// ---- helpers ---------------------------------------------------------------------------

function invalid(message: string): SpoolError {
  return new SpoolError(SpoolErrorCode.InvalidArgument, message);
}

async function touchRegistry<M, Q extends string>(
  core: SpoolCore<M, Q>,
  name: string,
  options: { clearLease?: boolean } = {},
): Promise<void> {
  const reg = core.layout.registryFile(name);
  try {
    await core.throttle.run(() =>
      options.clearLease
        ? writeLeaseRecord(reg, undefined, core.clock())
        : setMtime(reg, core.clock()),
    );
  } catch (err) {
    throw ioError("touch", reg, err);
  }
}

/**
 * The entry as `seen` present by the caller's inspection a moment ago (its metadata file
 * where the inspection found it), or else as a scan finds it now. Taking a file that has
 * moved since fails, which is a race the caller retries, as when it moves after a scan.
 */
async function scanUnlessSeen<M, Q extends string>(
  core: SpoolCore<M, Q>,
  name: string,
  seen: ReplicaInspection<Q> | undefined,
): Promise<Scan<Q>> {
  if (seen?.kind !== "present") return scan(core, name);
  const l = core.layout;
  const dirname = core.dirname(seen.queue);
  return {
    kind: "present",
    found: {
      queue: seen.queue,
      checkedOut: seen.checkedOut,
      path: seen.checkedOut ? l.checkoutFile(dirname, name) : l.queueFile(dirname, name),
      mtimeMs: seen.leaseUntil ?? 0,
      ctimeMs: 0,
      attempts: seen.attempts,
      payload: seen.payload,
    },
  };
}

/**
 * Look for the entry's metadata file in every queue and checkout, then decide. The scan is
 * not atomic: an entry that moves from a directory not yet looked at to one already looked
 * at is missed. Every such move touches the registry file first, so a registry file that
 * changed during a scan that found nothing means: scan again. A checkout whose deadline is
 * not set yet (renamed a moment ago, mtime not above ctime) is read again after a moment.
 */
async function scan<M, Q extends string>(core: SpoolCore<M, Q>, name: string): Promise<Scan<Q>> {
  const reg = core.layout.registryFile(name);
  const statReg = () =>
    core.throttle
      .run(() => statIfExists(reg))
      .catch((err) => {
        throw ioError("stat", reg, err);
      });
  for (let i = 1; ; i++) {
    const last = i >= MAX_SCANS;
    const before = await statReg();
    // No reservation, no entry: enqueue makes the registry file first and remove deletes it
    // last, so only a damaged spool has metadata without one (fsck reports it orphaned).
    // This spares the replicator a read in every queue for each entry it has not yet placed.
    if (before === undefined && i === 1) return { kind: "absent" };
    const found = await findMetadata(core, name);
    if (found !== undefined) {
      const settling =
        found.checkedOut &&
        found.mtimeMs <= found.ctimeMs &&
        core.clock() - found.ctimeMs < CTIME_QUIET_MS;
      if (settling && !last) {
        await sleep(2 ** i);
        continue;
      }
      return { kind: "present", found };
    }
    const after = await statReg();
    if (before === undefined && after === undefined) return { kind: "absent" };
    const still =
      before !== undefined &&
      after !== undefined &&
      before.ino === after.ino &&
      before.mtimeMs === after.mtimeMs &&
      before.ctimeMs === after.ctimeMs;
    if (still) return { kind: "in_flux" };
    if (last) return after === undefined ? { kind: "absent" } : { kind: "in_flux" };
  }
}

async function findMetadata<M, Q extends string>(
  core: SpoolCore<M, Q>,
  name: string,
): Promise<Found<Q> | undefined> {
  const l = core.layout;
  for (const queue of core.queues) {
    const dirname = core.dirname(queue);
    for (const checkedOut of [false, true]) {
      const path = checkedOut ? l.checkoutFile(dirname, name) : l.queueFile(dirname, name);
      const got = await core.throttle
        .run(() => readIfExists(path))
        .catch((err) => {
          throw ioError("read", path, err);
        });
      // No bytes only for a file over a limit, and none is given here.
      if (got?.bytes === undefined) continue;
      const env = decodeEnvelope(got.bytes);
      if (!env.ok) {
        throw new SpoolError(
          SpoolErrorCode.MetadataDecode,
          `metadata envelope of entry ${name} at ${path} could not be decoded: ${env.problem}`,
        );
      }
      return {
        queue,
        checkedOut,
        path,
        mtimeMs: got.st.mtimeMs,
        ctimeMs: got.st.ctimeMs,
        attempts: env.envelope.attempts,
        payload: env.payload,
      };
    }
  }
  return undefined;
}

/**
 * Whether the entry, which the scan found in no queue or checkout, is held somewhere after
 * all: by a finish under way (`<name>~<tag>` in a .checkout directory), or by a metadata
 * file that has appeared since. Looked at in that order, so an entry passing through a
 * `~` file during the scan is seen in one place or the other.
 */
async function heldElsewhere<M, Q extends string>(
  core: SpoolCore<M, Q>,
  name: string,
): Promise<boolean> {
  const prefix = `${name}${TMP_TAG_SEPARATOR}`;
  for (const queue of core.queues) {
    const dir = core.layout.checkout(core.dirname(queue));
    const names = await core.throttle
      .run(() => readdir(dir))
      .catch((err) => {
        throw ioError("list", dir, err);
      });
    if (names.some((n) => n.startsWith(prefix))) return true;
  }
  return (await findMetadata(core, name)) !== undefined;
}

/**
 * Take the entry's metadata file for a placement or a drop, as core's `take` does for a
 * finish: rename it to `<queue>/.checkout/<name>~<random>`. Unlike a finish, whoever holds
 * the entry locally is overridden (no inode check): its holder's next finish finds another
 * inode, or none, and reports `lease_lost`. Undefined when the file is gone (taken by a
 * local reader or finish since the scan).
 */
async function take<M, Q extends string>(
  core: SpoolCore<M, Q>,
  name: string,
  f: Found<Q>,
): Promise<string | undefined> {
  const co = core.layout.checkoutFile(core.dirname(f.queue), name);
  const taken = `${co}${TMP_TAG_SEPARATOR}${randomBytes(6).toString("hex")}`;
  const r = await core.throttle
    .run(() => renameIfExists(f.path, taken))
    .catch((err) => {
      throw ioError("take", f.path, err);
    });
  return r === "ok" ? taken : undefined;
}

/**
 * Write a file (metadata, or inline data), set its mtime (a checkout's deadline) if asked,
 * fsync, close.
 */
async function writeMetadataSynced(
  path: string,
  bytes: Uint8Array,
  mtimeMs: number | undefined,
): Promise<void> {
  const { fh } = await writeData(path, bytes);
  try {
    if (mtimeMs !== undefined) await fh.utimes(mtimeMs / 1000, mtimeMs / 1000);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
