import { randomBytes, timingSafeEqual } from "node:crypto";
import { constants as C } from "node:fs";
import { readFile } from "node:fs/promises";
import { isErrno } from "../common/errno.js";
import { openIfExists } from "./fs-ops.js";

/** Bytes of randomness in a lease token (128 bits). */
const TOKEN_BYTES = 16;
/** Longest registry file read back as a lease record; anything longer is not one of ours. */
const MAX_RECORD_LENGTH = 128;

/**
 * A fresh lease token: 128 random bits, hex (32 characters). Not base64url: a token that
 * began with "-" (1 in 64) was read as an option by the CLI (`--lease-token -x…`).
 * @internal
 */
export function newLeaseToken(): string {
  return randomBytes(TOKEN_BYTES).toString("hex");
}

/**
 * Whether `given` is the token `held`, compared in constant time (for equal lengths), so a
 * caller cannot find a token a byte at a time. An empty or absent token matches nothing.
 */
export function leaseTokensEqual(held: string | undefined, given: string): boolean {
  if (held === undefined || held === "") return false;
  const a = Buffer.from(held);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * What a registry file holds while its entry is checked out: the holder's token and the
 * inode of the checkout file it was made for. A token counts only for that inode, so one
 * left behind by an earlier checkout (the entry finished, or placed by the replicator,
 * and checked out again) never matches a later one, even in the moment between a new
 * checkout's rename and its own token being written.
 * @internal
 */
export interface LeaseRecord {
  token: string;
  ino: number;
}

/**
 * Replace the registry file's contents with `record` (none: no holder knows the checkout)
 * and set its mtime to `mtimeMs`, through one handle. Never creates the file: a registry
 * file that is gone (a damaged spool) is `not_found`.
 * @internal
 */
export async function writeLeaseRecord(
  registryFile: string,
  record: LeaseRecord | undefined,
  mtimeMs: number,
): Promise<"ok" | "not_found"> {
  const fh = await openIfExists(registryFile, C.O_WRONLY | C.O_TRUNC);
  if (fh === undefined) return "not_found";
  try {
    if (record !== undefined) await fh.write(`${record.token} ${record.ino}`);
    await fh.utimes(mtimeMs / 1000, mtimeMs / 1000);
  } finally {
    await fh.close();
  }
  return "ok";
}

/**
 * The token kept in a registry file for the checkout file with inode `ino`, if any.
 * @internal
 */
export async function readLeaseToken(
  registryFile: string,
  ino: number,
): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(registryFile, "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
  if (text.length > MAX_RECORD_LENGTH) return undefined;
  const [token, recordedIno, ...rest] = text.split(" ");
  if (token === undefined || token === "" || rest.length > 0) return undefined;
  return recordedIno === String(ino) ? token : undefined;
}
