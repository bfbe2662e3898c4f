import type { MetadataCodec } from "../../spool/index.js";

/**
 * What a node keeps about each entry, as the spool's metadata: one JSON header line (data
 * digest and size, enqueue time, idempotency key and who used it) and then the client's
 * metadata bytes, untouched. The digest makes data content-addressed for replication; the
 * key travels with its principal so that every node scopes it the same way.
 */
export interface NodeEntryMeta {
  /** The client's metadata, opaque to the node. */
  user: Buffer;
  /** sha256 of the data, lowercase hex. */
  sha256: string;
  size: number;
  /** ms since the epoch. */
  enqueuedAt: number;
  idempotencyKey?: string;
  /** The principal that enqueued with `idempotencyKey` (header field `by`). */
  principal?: string;
}

const NL = 0x0a;

export const nodeEntryCodec: MetadataCodec<NodeEntryMeta> = {
  encode(m) {
    const header: Record<string, unknown> = { sha256: m.sha256, size: m.size, at: m.enqueuedAt };
    if (m.idempotencyKey !== undefined) header.key = m.idempotencyKey;
    if (m.principal !== undefined) header.by = m.principal;
    return Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), m.user]);
  },
  decode(bytes) {
    const nl = bytes.indexOf(NL);
    if (nl < 0) throw new Error("node entry header missing");
    const h = JSON.parse(bytes.subarray(0, nl).toString("utf8")) as Record<string, unknown>;
    if (typeof h.sha256 !== "string" || typeof h.size !== "number" || typeof h.at !== "number") {
      throw new Error("node entry header lacks sha256, size or at");
    }
    const meta: NodeEntryMeta = {
      user: Buffer.from(bytes.subarray(nl + 1)),
      sha256: h.sha256,
      size: h.size,
      enqueuedAt: h.at,
    };
    if (typeof h.key === "string") meta.idempotencyKey = h.key;
    if (typeof h.by === "string") meta.principal = h.by;
    return meta;
  },
};
