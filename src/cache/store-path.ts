import { CacheError, CacheErrorCode } from "./errors.js";
import { isNix32 } from "./nix32.js";

/** Nix's default store directory; Guix uses `/gnu/store`. */
export const NIX_STORE_DIR = "/nix/store";
export const GUIX_STORE_DIR = "/gnu/store";

/** A store path's hash part: 20 bytes of nix32, the key a narinfo is looked up by. */
export const HASH_PART_LENGTH = 32;
/** Longest name Nix accepts (a store path's base name is at most 32 + 1 + 211 = 244). */
export const MAX_NAME_LENGTH = 211;

/** The characters a store path name may hold. */
export const STORE_NAME_CHARS =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-._?=";

/** `<storeDir>/<hashPart>-<name>`, held without its store directory. */
export interface StorePath {
  readonly hashPart: string;
  readonly name: string;
}

function bad(text: string, why: string): CacheError {
  return new CacheError(
    CacheErrorCode.InvalidStorePath,
    `store path ${JSON.stringify(text)}: ${why}`,
  );
}

/** A store directory: absolute, no trailing slash, no `.`/`..` or empty segments. */
export function checkStoreDir(dir: string): string {
  const segments = dir.split("/").slice(1);
  if (
    !dir.startsWith("/") ||
    dir.length === 1 ||
    segments.some((s) => s === "" || s === "." || s === ".." || s.includes("\0"))
  ) {
    throw new CacheError(
      CacheErrorCode.InvalidStorePath,
      `store directory ${JSON.stringify(dir)}: must be an absolute path like /nix/store, without a trailing slash`,
    );
  }
  return dir;
}

/** Why `name` is not a valid store path name, or undefined when it is. */
export function storeNameProblem(name: string): string | undefined {
  if (name.length === 0) return "empty name";
  if (name.length > MAX_NAME_LENGTH) {
    return `name is ${name.length} characters, more than ${MAX_NAME_LENGTH}`;
  }
  if (name === "." || name === "..") return `name ${JSON.stringify(name)} is not allowed`;
  const badChar = /[^A-Za-z0-9+\-._?=]/.exec(name);
  if (badChar !== null) {
    return `name has ${JSON.stringify(badChar[0])}; allowed are letters, digits and + - . _ ? =`;
  }
  return undefined;
}

/** A hash part as found in a URL (`/<hashPart>.narinfo`): 32 nix32 characters. */
export function parseHashPart(text: string): string {
  if (text.length !== HASH_PART_LENGTH || !isNix32(text)) {
    throw new CacheError(
      CacheErrorCode.InvalidStorePath,
      `hash part ${JSON.stringify(text)}: expected ${HASH_PART_LENGTH} nix32 characters`,
    );
  }
  return text;
}

/** `<hashPart>-<name>`, a store path without its directory (as narinfo References list them). */
export function parseStorePathBaseName(text: string): StorePath {
  const hashPart = text.slice(0, HASH_PART_LENGTH);
  if (hashPart.length !== HASH_PART_LENGTH || !isNix32(hashPart)) {
    throw bad(text, `expected ${HASH_PART_LENGTH} nix32 characters before the name`);
  }
  if (text[HASH_PART_LENGTH] !== "-") throw bad(text, "expected '-' after the hash part");
  const name = text.slice(HASH_PART_LENGTH + 1);
  const problem = storeNameProblem(name);
  if (problem !== undefined) throw bad(text, problem);
  return { hashPart, name };
}

/** A full store path under `storeDir`. */
export function parseStorePath(text: string, storeDir: string = NIX_STORE_DIR): StorePath {
  const prefix = `${storeDir}/`;
  if (!text.startsWith(prefix)) throw bad(text, `not in the store directory ${storeDir}`);
  return parseStorePathBaseName(text.slice(prefix.length));
}

export function storePathBaseName(path: StorePath): string {
  return `${path.hashPart}-${path.name}`;
}

export function formatStorePath(path: StorePath, storeDir: string = NIX_STORE_DIR): string {
  return `${storeDir}/${storePathBaseName(path)}`;
}

/**
 * Split a full store path into its directory and its parsed base name, for any store
 * directory: the directory ends where the first segment starting `<hash part>-` begins, so
 * a name holding a slash is reported as a bad name, not read as a deeper directory.
 */
export function splitStorePath(text: string): { storeDir: string; path: StorePath } {
  const m = /^(.+?)\/([0-9a-df-np-sv-z]{32}-.*)$/s.exec(text);
  const slash = text.lastIndexOf("/");
  const [storeDir, base] =
    m !== null ? [m[1]!, m[2]!] : [text.slice(0, slash), text.slice(slash + 1)];
  if (slash <= 0) throw bad(text, "not an absolute store path");
  try {
    checkStoreDir(storeDir);
  } catch {
    throw bad(text, `bad store directory ${JSON.stringify(storeDir)}`);
  }
  return { storeDir, path: parseStorePathBaseName(base) };
}
