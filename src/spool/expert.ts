/**
 * The operations fenced off from the safe API, as Multispool fences its `Expert` module:
 * each one breaks a rule the rest of the spool keeps. The `*Unsafe` reads hand out checkouts
 * that another holder owns; the replica operations move and remove entries whatever their
 * placement, overriding a local holder (see "Replica placement" in index.ts).
 */
import { readFile } from "node:fs/promises";
import { isErrno } from "../common/errno.js";
import { CheckedOutEntry } from "./checked-out-entry.js";
import { statIfExists } from "./fs-ops.js";
import { readLeaseToken } from "./lease-token.js";
import { validateName } from "./names.js";
import type {
  DropReplicaResult,
  PlaceReplicaResult,
  ReplicaData,
  ReplicaInspection,
  ReplicaPlacement,
} from "./replica.js";
import * as replica from "./replica.js";
import { coreOf, type Spool } from "./spool.js";

export { type ReplicaSpool, replicaSpool } from "./replica-spool.js";

/**
 * Every checked-out entry of `queue`, built from the disk. UNSAFE: this breaks the rule
 * that each checkout has one owner; use it only where you know which processes use the
 * spool (tools, tests, a CLI finishing a checkout made by an earlier command).
 */
export async function listCheckoutsUnsafe<M, Q extends string>(
  spool: Spool<M, Q>,
  queue: Q,
): Promise<CheckedOutEntry<M, Q>[]> {
  const out: CheckedOutEntry<M, Q>[] = [];
  for (const name of await spool.listCheckedOutNames(queue)) {
    const co = await checkedOutUnsafe(spool, queue, name);
    if (co) out.push(co);
  }
  return out;
}

/** One checked-out entry by name, built from the disk (UNSAFE, as above). */
export async function checkedOutUnsafe<M, Q extends string>(
  spool: Spool<M, Q>,
  queue: Q,
  name: string,
): Promise<CheckedOutEntry<M, Q> | undefined> {
  const core = coreOf(spool);
  const path = core.layout.checkoutFile(core.dirname(queue), validateName("entry", name));
  const got = await core.throttle.run(async () => {
    const st = await statIfExists(path);
    if (st === undefined) return undefined;
    // The checkout may finish between the stat and the read: that is "gone", not an error.
    const bytes = await readFile(path).catch((err) => {
      if (isErrno(err, "ENOENT")) return undefined;
      throw err;
    });
    // Read after the stat: a token is taken only if it was made for the inode seen.
    const token = bytes && (await readLeaseToken(core.layout.registryFile(name), st.ino));
    return bytes && { st, bytes, token };
  });
  if (got === undefined) return undefined;
  const { st, bytes, token } = got;
  const { metadata, envelope } = core.decodeFile(name, bytes);
  return new CheckedOutEntry(core, {
    queue,
    name,
    metadata,
    attempts: envelope.attempts,
    leaseUntil: Math.round(st.mtimeMs),
    ino: st.ino,
    token,
  });
}

/**
 * Replica placement (for the replicator): where the entry is, with its raw metadata
 * payload (the codec's bytes, not decoded) and failed-delivery count.
 */
export function inspectReplica<M, Q extends string>(
  spool: Spool<M, Q>,
  name: string,
): Promise<ReplicaInspection<Q>> {
  return replica.inspectReplica(coreOf(spool), name);
}

/**
 * Replica placement: bring the entry to `placement` with `payload` and `attempts`, from
 * wherever it is now, overriding a local holder. An entry the spool does not hold needs
 * its data: `data.adoptPath` (a file to adopt) or `data.bytes`. `seen`, the caller's
 * inspection of the entry just before, spares a second one (see index.ts). `raced` means a
 * local operation got there first: inspect again.
 */
export function placeReplica<M, Q extends string>(
  spool: Spool<M, Q>,
  name: string,
  placement: ReplicaPlacement<Q>,
  payload: Uint8Array,
  attempts: number,
  data?: ReplicaData,
  seen?: ReplicaInspection<Q>,
): Promise<PlaceReplicaResult> {
  return replica.placeReplica(coreOf(spool), name, placement, payload, attempts, data, seen);
}

/**
 * Replica placement: remove the entry wherever it is, overriding a local holder (`seen` as
 * for `placeReplica`).
 */
export function dropReplica<M, Q extends string>(
  spool: Spool<M, Q>,
  name: string,
  seen?: ReplicaInspection<Q>,
): Promise<DropReplicaResult> {
  return replica.dropReplica(coreOf(spool), name, seen);
}
