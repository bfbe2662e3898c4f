import { Expert, type Spool, SpoolError, SpoolErrorCode } from "../spool/index.js";

/**
 * The GC handshake's marks (gc-handshake.ts): entries of the GC's queue (the roots queue),
 * so they replicate through the journal like the roots beside them.
 *
 * - A **condemnation**, written by the node about to collect: the entries it means to remove
 *   and their hash parts. While it is in a node's queue, that node does not accept, after
 *   acknowledging it, an upload that references (or is) one of those paths unless its
 *   acknowledgement revived it.
 * - An **acknowledgement**, written by every node (the collector too) once it has seen a
 *   condemnation: the condemned hash parts that are live in its own view (its roots, its
 *   young uploads, the closures of both, and the uploads it is accepting right now), which
 *   the collector must keep.
 *
 * Neither changes: the collector removes its condemnation when the round is over, and each
 * node removes its own acknowledgements of condemnations that are gone.
 */
export interface Condemnation {
  readonly v: 1;
  readonly kind: "condemn";
  /** The collecting node. */
  readonly by: string;
  /** ms since the epoch (collector's clock), for people reading it. */
  readonly at: number;
  /** The entries to remove, each with its hash part. */
  readonly entries: readonly (readonly [entry: string, hashPart: string])[];
}

export interface Acknowledgement {
  readonly v: 1;
  readonly kind: "ack";
  /** The condemnation's entry name. */
  readonly condemn: string;
  /** The acknowledging node. */
  readonly by: string;
  /** Condemned hash parts live on that node: the collector keeps them. */
  readonly revived: readonly string[];
}

export type GcMark = Condemnation | Acknowledgement;

/** How a mark sits in the spool's metadata type (the node wraps it in its header). */
export interface GcMarkCodec<M> {
  wrap(mark: GcMark): M;
  /** undefined for an entry that is not a mark (a root, say). */
  unwrap(metadata: M): GcMark | undefined;
}

const strings = (x: unknown): x is string[] =>
  Array.isArray(x) && x.every((s) => typeof s === "string");

/** Whether `m` is a well-formed mark (a peer's mark is input like any). */
export function isGcMark(m: unknown): m is GcMark {
  if (typeof m !== "object" || m === null) return false;
  const x = m as Record<string, unknown>;
  if (x.v !== 1 || typeof x.by !== "string") return false;
  if (x.kind === "condemn") {
    return (
      Number.isSafeInteger(x.at) &&
      Array.isArray(x.entries) &&
      x.entries.every((e: unknown) => strings(e) && e.length === 2)
    );
  }
  return x.kind === "ack" && typeof x.condemn === "string" && strings(x.revived);
}

/** The marks a queue holds, by entry name (checked-out ones too: they are not gone yet). */
export async function listGcMarks<M, Q extends string>(
  spool: Spool<M, Q>,
  queue: Q,
  codec: GcMarkCodec<M>,
  known: Map<string, GcMark | null>,
): Promise<Map<string, GcMark>> {
  const names = new Set<string>();
  const read = async (name: string, contents: () => Promise<M>) => {
    names.add(name);
    if (known.has(name)) return;
    let meta: M;
    try {
      meta = await contents();
    } catch (err) {
      if (err instanceof SpoolError && err.code === SpoolErrorCode.EntryNotFound) {
        names.delete(name);
        return;
      }
      throw err;
    }
    const mark = codec.unwrap(meta);
    known.set(name, mark !== undefined && isGcMark(mark) ? mark : null);
  };
  for (const e of await spool.list(queue)) await read(e.name, () => e.direct.contents());
  for (const held of await Expert.listCheckoutsUnsafe(spool, queue)) {
    if (!names.has(held.name)) await read(held.name, async () => held.contents);
  }
  for (const name of known.keys()) if (!names.has(name)) known.delete(name);
  const out = new Map<string, GcMark>();
  for (const name of [...names].sort()) {
    const mark = known.get(name);
    if (mark) out.set(name, mark);
  }
  return out;
}
