/**
 * Which of several uploads of one store path a node serves. Two regions may accept the same
 * path at once (or with different compressions); each upload stays its own spool entry and
 * replicates, so every node ends up holding the same set of candidates, and this rule, a
 * total order on facts that travel with each entry, makes every node serve the same one:
 *
 * 1. the best trust: a narinfo signed by a trusted key as uploaded, over one signed by a
 *    node on the fly, over one served unsigned;
 * 2. then the first upload: the lowest hybrid-logical-clock stamp (then origin node, then
 *    entry name), so a later upload of a path already served does not replace it (clients
 *    that cached the narinfo keep finding its nar);
 * 3. ties cannot remain: entry names are unique.
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
  /** The hybrid logical clock stamp of its acceptance (ms). */
  readonly hlc: number;
  readonly trust: CandidateTrust;
}

const TRUST_RANK: Record<CandidateTrust, number> = { trusted: 0, node_signed: 1, unsigned: 2 };

/** Negative when `a` is to be served rather than `b`. */
export function compareCandidates(a: ServedCandidate, b: ServedCandidate): number {
  return (
    TRUST_RANK[a.trust] - TRUST_RANK[b.trust] ||
    a.hlc - b.hlc ||
    compareText(a.origin, b.origin) ||
    compareText(a.entry, b.entry)
  );
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
