import { CacheError, CacheErrorCode } from "./errors.js";
import { checkStoreDir } from "./store-path.js";

/** `/nix-cache-info`: what a client learns about a cache before asking for narinfos. */
export interface NixCacheInfo {
  storeDir: string;
  /** Whether clients may query many paths at once (Nix: `WantMassQuery: 1`). */
  wantMassQuery: boolean;
  /** Lower is preferred among substituters (cache.nixos.org is 40). */
  priority: number | undefined;
}

export function buildNixCacheInfo(info: NixCacheInfo): string {
  const lines = [
    `StoreDir: ${checkStoreDir(info.storeDir)}`,
    `WantMassQuery: ${info.wantMassQuery ? 1 : 0}`,
  ];
  if (info.priority !== undefined) lines.push(`Priority: ${info.priority}`);
  return lines.map((l) => `${l}\n`).join("");
}

function bad(line: number, why: string): CacheError {
  return new CacheError(CacheErrorCode.InvalidCacheInfo, `nix-cache-info line ${line}: ${why}`);
}

/** Parse a nix-cache-info (unknown keys are ignored, as Nix does). */
export function parseNixCacheInfo(text: string): NixCacheInfo {
  const info: NixCacheInfo = { storeDir: "", wantMassQuery: false, priority: undefined };
  text.split("\n").forEach((content, i) => {
    if (content.trim() === "") return;
    const m = /^([A-Za-z]+):\s*(.*?)\s*$/.exec(content);
    if (m === null)
      throw bad(i + 1, `expected "Key: value", got ${JSON.stringify(content.slice(0, 60))}`);
    const [, key, value] = m as unknown as [string, string, string];
    if (key === "StoreDir") {
      try {
        info.storeDir = checkStoreDir(value);
      } catch (err) {
        throw bad(i + 1, (err as Error).message);
      }
    } else if (key === "WantMassQuery") {
      if (value !== "0" && value !== "1")
        throw bad(i + 1, `WantMassQuery must be 0 or 1, not ${JSON.stringify(value)}`);
      info.wantMassQuery = value === "1";
    } else if (key === "Priority") {
      if (!/^[0-9]{1,9}$/.test(value))
        throw bad(i + 1, `Priority must be a non-negative integer, not ${JSON.stringify(value)}`);
      info.priority = Number(value);
    }
  });
  if (info.storeDir === "")
    throw new CacheError(CacheErrorCode.InvalidCacheInfo, "nix-cache-info: missing StoreDir");
  return info;
}
