import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { errnoOf, isErrno } from "../common/errno.js";
import {
  jsonCodec,
  nameProblem,
  Spool,
  type Spoolable,
  SpoolError,
  SpoolErrorCode,
} from "../spool/index.js";

/**
 * The spool as the CLI (and other tools with no fixed schema) sees it: metadata is a JSON
 * object, and the queues are whatever the directory holds. A queue is a directory at the
 * spool's root, not starting with a dot, that has a `.checkout` directory; nothing else is
 * recorded, so a spool made by any program with the default queue directory names opens.
 */
export type JsonMetadata = Record<string, unknown>;
export type JsonSpool = Spool<JsonMetadata, string>;

/** The queues a new spool gets unless told otherwise; `dead` is the dead-letter queue. */
export const DEFAULT_QUEUES: readonly string[] = ["inbox", "outbox", "dead"];
export const DEAD_LETTER_QUEUE = "dead";

const CHECKOUT_DIR = ".checkout";

export function jsonSpoolable(queues: readonly string[]): Spoolable<JsonMetadata, string> {
  return {
    metadata: jsonCodec<JsonMetadata>(),
    queues,
    leases: { deadLetterQueue: queues.includes(DEAD_LETTER_QUEUE) ? DEAD_LETTER_QUEUE : undefined },
  };
}

/** The queues found in `dir`, sorted; none when `dir` does not exist. */
export async function discoverQueues(dir: string): Promise<string[]> {
  let children: string[];
  try {
    children = await readdir(dir);
  } catch (err) {
    if (isErrno(err, "ENOENT", "ENOTDIR")) return [];
    throw new SpoolError(SpoolErrorCode.Io, `list ${dir}: ${errnoOf(err) ?? "unknown"}`, {
      cause: err,
    });
  }
  const queues: string[] = [];
  for (const child of children) {
    if (nameProblem(child) !== undefined) continue;
    const st = await stat(join(dir, child, CHECKOUT_DIR)).catch(() => undefined);
    if (st?.isDirectory()) queues.push(child);
  }
  return queues.sort();
}

/**
 * Open the spool in `dir` with the queues it has. With `create`, make the spool (or the
 * queues it lacks) first: `queues` are added to those already there; a new spool with no
 * `queues` given gets DEFAULT_QUEUES. A non-empty directory that is not a spool is refused
 * either way, untouched.
 */
export async function openJsonSpool(
  dir: string,
  options: { create?: boolean; queues?: readonly string[] } = {},
): Promise<JsonSpool> {
  const found = await discoverQueues(dir);
  if (options.create) {
    const wanted = options.queues ?? (found.length === 0 ? DEFAULT_QUEUES : []);
    const queues = [...new Set([...found, ...wanted])].sort();
    return Spool.load(dir, jsonSpoolable(queues), { createIfMissing: true });
  }
  if (found.length === 0) {
    const st = await stat(dir).catch(() => undefined);
    if (st === undefined) {
      throw new SpoolError(
        SpoolErrorCode.MissingDirectory,
        `spool directory ${dir} does not exist`,
      );
    }
    throw new SpoolError(
      SpoolErrorCode.NotASpool,
      `${dir} is not a spool (it has no queue directories)`,
    );
  }
  return Spool.load(dir, jsonSpoolable(found));
}
