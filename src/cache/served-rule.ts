/**
 * Which of several uploads of one store path a node serves. Two regions may accept the same
 * path at once (or with different compressions); each upload stays its own spool entry and
 * replicates, so every node ends up holding the same set of candidates, and this rule, a
 * total order on facts that travel with each entry, makes every node serve the same one:
 *
 * 1. the best trust: a narinfo signed by a trusted key as uploaded, over one signed by a
 *    node on the fly, over one served unsigned;
 * 2. then the first upload: the lowest stamp (upload-stamp.ts: the cluster's hybrid logical
 *    clock, so an upload accepted by a node that already held another one of the path is
 *    stamped after it, whatever the wall clocks say), then origin node, then entry name; a
 *    later upload of a path already served does not replace it (clients that cached the
 *    narinfo keep finding its nar);
 * 3. ties cannot remain: entry names are unique.
 *
 * Before that, a candidate must be complete (`servable`): an upload whose narinfo lists
 * several nars (Guix) is stored as one entry per nar, and those arrive one by one; none is
 * served until the node holds every nar the upload was accepted with, so a client never gets
 * a narinfo whose nar is not there yet.
 *
 * Nothing here depends on arrival order; a node that has seen the same candidates serves
 * the same narinfo.
 */
export type CandidateTrust = "trusted" | "node_signed" | "unsigned";

export interface ServedCandidate {
  /** The spool entry holding this upload (unique across the cluster). */
  readonly entry: string;
  /** The node that accepted the upload. */
  readonly origin: string;
  /** The stamp of its acceptance (upload-stamp.ts: a hybrid logical clock value). */
  readonly stamp: bigint;
  readonly trust: CandidateTrust;
}

const TRUST_RANK: Record<CandidateTrust, number> = { trusted: 0, node_signed: 1, unsigned: 2 };

/** Negative when `a` is to be served rather than `b`. */
export function compareCandidates(a: ServedCandidate, b: ServedCandidate): number {
  return (
    TRUST_RANK[a.trust] - TRUST_RANK[b.trust] ||
    compareStamps(a.stamp, b.stamp) ||
    compareText(a.origin, b.origin) ||
    compareText(a.entry, b.entry)
  );
}

function compareStamps(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The candidate to serve, or undefined when there is none. */
export function chooseServed<T extends ServedCandidate>(candidates: Iterable<T>): T | undefined {
  let best: T | undefined;
  for (const c of candidates) if (best === undefined || compareCandidates(c, best) < 0) best = c;
  return best;
}

/** Which nars a candidate holds and needs (see `servable`). */
export interface NarHolding {
  /** The nar path this candidate's entry holds. */
  readonly url: string;
  /** Every nar path accepted with its narinfo, `url` included; absent: `url` alone. */
  readonly files?: readonly string[];
}

/** The candidates of one hash part whose every accepted nar is held by one of them. */
export function servable<T extends NarHolding>(candidates: Iterable<T>): T[] {
  const all = [...candidates];
  const held = new Set(all.map((c) => c.url));
  return all.filter((c) => (c.files ?? [c.url]).every((u) => held.has(u)));
}

/** `chooseServed` among the `servable` candidates of one hash part. */
export function chooseServable<T extends ServedCandidate & NarHolding>(
  candidates: Iterable<T>,
): T | undefined {
  return chooseServed(servable(candidates));
}
