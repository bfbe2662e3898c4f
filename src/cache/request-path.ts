import { HASH_PART_LENGTH } from "./store-path.js";

/**
 * What a binary-cache URL path asks for. Only a strict grammar is accepted, on the raw
 * path as it came (never percent-decoded): a hash part is 32 nix32 characters, a nar's path
 * is `nar/` and one or two segments of `[A-Za-z0-9+_=.-]` (Nix's `nar/<file hash>.nar.xz`,
 * Guix's `nar/<compression>/<hash>-<name>`), with no `.`/`..` segment. So `%2e%2e`,
 * double encoding, NUL, backslashes and traversal are all `bad`, never a file name.
 */
export type CacheRequest =
  | { kind: "cache_info" }
  | { kind: "narinfo"; hashPart: string }
  | { kind: "listing"; hashPart: string }
  | { kind: "nar"; path: string }
  | { kind: "bad"; reason: string };

const HASH = `[0-9a-df-np-sv-z]{${HASH_PART_LENGTH}}`;
const NARINFO = new RegExp(`^/(${HASH})\\.narinfo$`);
const LISTING = new RegExp(`^/(${HASH})\\.ls$`);
const SEGMENT = /^[A-Za-z0-9+_=.-]{1,255}$/;

export const NAR_PATH_MAX = 512;

/** Check a nar path as a narinfo's URL names it (`nar/...`): the same grammar as requests. */
export function narPathProblem(path: string): string | undefined {
  if (path.length > NAR_PATH_MAX) return `longer than ${NAR_PATH_MAX} characters`;
  const segments = path.split("/");
  if (segments[0] !== "nar" || segments.length < 2 || segments.length > 3) {
    return "expected nar/<file> or nar/<compression>/<file>";
  }
  for (const s of segments.slice(1)) {
    if (!SEGMENT.test(s)) return `bad segment ${JSON.stringify(s.slice(0, 60))}`;
    if (s === "." || s === "..") return `segment ${JSON.stringify(s)} is not allowed`;
  }
  return undefined;
}

/** Classify a request's raw path (the part of the URL before `?`). */
export function parseCacheRequest(rawPath: string): CacheRequest {
  if (rawPath === "/nix-cache-info") return { kind: "cache_info" };
  const narinfo = NARINFO.exec(rawPath);
  if (narinfo !== null) return { kind: "narinfo", hashPart: narinfo[1]! };
  const listing = LISTING.exec(rawPath);
  if (listing !== null) return { kind: "listing", hashPart: listing[1]! };
  if (rawPath.startsWith("/nar/")) {
    const path = rawPath.slice(1);
    const problem = narPathProblem(path);
    return problem === undefined
      ? { kind: "nar", path }
      : { kind: "bad", reason: `nar path: ${problem}` };
  }
  return { kind: "bad", reason: "not a binary-cache path" };
}
