import { stat } from "node:fs/promises";
import {
  discoverQueues,
  jsonCodec,
  Spool,
  type Spoolable,
  SpoolError,
  SpoolErrorCode,
} from "../spool/index.js";

/**
 * The spool as the CLI (and other tools with no fixed schema) sees it: metadata is a JSON
 * object, and the queues are whatever the directory holds (`discoverQueues`); nothing else
 * is recorded, so a spool made by any program with the default queue directory names opens.
 */
export type JsonMetadata = Record<string, unknown>;
export type JsonSpool = Spool<JsonMetadata, string>;

/** The queues a new spool gets unless told otherwise; `dead` is the dead-letter queue. */
export const DEFAULT_QUEUES: readonly string[] = ["inbox", "outbox", "dead"];
export const DEAD_LETTER_QUEUE = "dead";

export function jsonSpoolable(queues: readonly string[]): Spoolable<JsonMetadata, string> {
  return {
    metadata: jsonCodec<JsonMetadata>(),
    queues,
    leases: { deadLetterQueue: queues.includes(DEAD_LETTER_QUEUE) ? DEAD_LETTER_QUEUE : undefined },
  };
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
