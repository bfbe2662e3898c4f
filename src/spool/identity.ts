import { randomBytes } from "node:crypto";
import { constants as C } from "node:fs";
import { open, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { isErrno } from "../common/errno.js";
import { ioError, SpoolError, SpoolErrorCode } from "./errors.js";
import { fsyncDirectory, unlinkIfExists } from "./fs-ops.js";

/** The spool's identity file, in its root directory. */
export const SPOOL_ID_FILE = ".spool-id";
const SPOOL_ID_TMP = `${SPOOL_ID_FILE}~tmp`;
const ID_PATTERN = /^[0-9a-f]{32}$/;

/**
 * Which spool directory this is: a random id written (and fsynced) once, when the spool is
 * made, and read at every load. A spool that is wiped and made again gets a new id, so
 * whoever remembers the id (the replicator) tells a lost spool from one that is merely
 * empty.
 */
export interface SpoolIdentity {
  /** 128 random bits, hex. */
  readonly id: string;
  /**
   * How this open found it: `created` (the spool was made now, or its directory was empty),
   * `loaded` (the file was there) or `adopted` (a spool made before identities existed: it
   * got its id now).
   */
  readonly made: "created" | "loaded" | "adopted";
}

/**
 * Names the identity file uses in the root (an empty directory holding only these is new).
 * @internal
 */
export function isIdentityFile(name: string): boolean {
  return name === SPOOL_ID_FILE || name === SPOOL_ID_TMP;
}

/**
 * The spool's id; undefined when the file does not exist. A malformed file is an error.
 * @internal
 */
export async function readSpoolId(root: string): Promise<string | undefined> {
  const path = join(root, SPOOL_ID_FILE);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw ioError("read", path, err);
  }
  const id = text.trim();
  if (!ID_PATTERN.test(id)) {
    throw new SpoolError(
      SpoolErrorCode.NotASpool,
      `${path} does not hold a spool id (32 hex digits); refusing to guess which spool this is`,
    );
  }
  return id;
}

/**
 * Write a new id: to a tmp file, fsync, rename into place, fsync the root.
 * @internal
 */
export async function writeSpoolId(root: string): Promise<string> {
  const id = randomBytes(16).toString("hex");
  const tmp = join(root, SPOOL_ID_TMP);
  try {
    await unlinkIfExists(tmp);
    const fh = await open(tmp, C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o644);
    try {
      await fh.writeFile(`${id}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(root, SPOOL_ID_FILE));
    await fsyncDirectory(root);
  } catch (err) {
    throw ioError("write", join(root, SPOOL_ID_FILE), err);
  }
  return id;
}
