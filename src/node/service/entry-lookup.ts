import { Expert, SpoolError, SpoolErrorCode } from "../../spool/index.js";
import type { EntryInfo } from "../entry-info.js";
import type { NodeEntryMeta } from "./entry-meta.js";
import { ServiceError, ServiceErrorCode } from "./errors.js";
import type { NodeSpool } from "./service-context.js";

/** An entry's metadata as clients see it (EntryInfo). */
export function toInfo(
  name: string,
  queue: string,
  m: NodeEntryMeta,
  attempts: number,
  leaseUntil?: number,
): EntryInfo {
  const info: EntryInfo = {
    name,
    queue,
    metadata: m.user,
    attempts,
    dataSize: m.size,
    dataSha256: m.sha256,
    enqueuedAt: m.enqueuedAt,
  };
  if (leaseUntil !== undefined) info.leaseUntil = leaseUntil;
  return info;
}

/** The entry `name` of `queue` (queued, or checked out), or undefined once it is gone. */
export async function readInfo(
  spool: NodeSpool,
  queue: string,
  name: string,
  checkedOut: boolean,
): Promise<EntryInfo | undefined> {
  try {
    if (checkedOut) {
      const co = await Expert.checkedOutUnsafe(spool, queue, name);
      return co && toInfo(name, queue, co.contents, co.attempts, co.leaseUntil);
    }
    const { metadata, attempts } = await spool.entry(queue, name).direct.read();
    return toInfo(name, queue, metadata, attempts);
  } catch (err) {
    if (err instanceof SpoolError && err.code === SpoolErrorCode.EntryNotFound) return undefined;
    throw err;
  }
}

/** The entry `name`, wherever it is. */
export async function findInfo(spool: NodeSpool, name: string): Promise<EntryInfo | undefined> {
  const found = await spool.find(name);
  return found && toInfo(name, found.queue, found.metadata, found.attempts, found.leaseUntil);
}

export function noEntry(name: string): ServiceError {
  return new ServiceError(ServiceErrorCode.NotFound, `no entry ${name}`);
}
