import { type Narinfo, parseNarinfo } from "./narinfo.js";
import { chooseServable } from "./served-rule.js";
import type { CacheRecord } from "./spool-cache-store.js";
import { recordStamp } from "./upload-stamp.js";

/** One cache entry as stored: its record, and its data (the nar file) as the node wrote it. */
export interface StoredCacheEntry {
  readonly entry: string;
  readonly record: CacheRecord;
  /** The data's sha256 (lowercase hex) and size, recorded when it was enqueued. */
  readonly sha256: string;
  readonly size: number;
  /** Where the entry's data file is. */
  readonly dataPath: string;
}

/** What one hash part serves, and every entry that holds an upload of it. */
export interface ServedPath {
  readonly hashPart: string;
  readonly served: StoredCacheEntry;
  readonly narinfo: Narinfo;
  /** Every entry of this hash part, the served one included, in name order. */
  readonly holders: readonly StoredCacheEntry[];
}

/**
 * What a cache queue serves, worked out from its entries alone by the rule every node
 * uses (`chooseServable`): per hash part, the narinfo served and the entries holding it.
 * For tools (`geospool cache ls|show`); the node's own lookup index is derived the same way.
 */
export function servedPaths(entries: readonly StoredCacheEntry[]): Map<string, ServedPath> {
  const byHash = new Map<string, StoredCacheEntry[]>();
  for (const e of entries) {
    const list = byHash.get(e.record.hashPart) ?? [];
    list.push(e);
    byHash.set(e.record.hashPart, list);
  }
  const out = new Map<string, ServedPath>();
  for (const [hashPart, holders] of [...byHash].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const served = chooseServable(
      holders.flatMap((h) => {
        const stamp = recordStamp(h.record);
        return stamp === undefined ? [] : [{ ...h.record, entry: h.entry, stamp, stored: h }];
      }),
    )?.stored;
    if (served === undefined) continue;
    const sorted = [...holders].sort((a, b) => (a.entry < b.entry ? -1 : 1));
    out.set(hashPart, {
      hashPart,
      served,
      narinfo: parseNarinfo(Buffer.from(served.record.narinfo, "utf8")),
      holders: sorted,
    });
  }
  return out;
}

/** The names of the keys that signed a narinfo: Nix `Sig:` key names, Guix `guix:<host>`. */
export function signerNames(info: Narinfo): string[] {
  const names = info.sigs.map((s) => s.slice(0, Math.max(0, s.indexOf(":"))) || s);
  const guixHost = info.guixSignature?.split(";")[1];
  if (guixHost !== undefined) names.push(`guix:${guixHost}`);
  return names;
}
