import {
  type CheckedOutEntry,
  type Entry,
  jsonCodec,
  Spool,
  type Spoolable,
} from "../../src/spool/index.js";
import type { CycleOps } from "./spool-cycle.js";
import { type BenchMetadata, benchData, benchMetadata } from "./spool-payload.js";
import { type RawCheckout, RawSpool } from "./spool-raw-baseline.js";

export const QUEUE = "inbox";
export type BenchQueue = typeof QUEUE;

export function benchSpoolable(): Spoolable<BenchMetadata, BenchQueue> {
  return { metadata: jsonCodec<BenchMetadata>(), queues: [QUEUE] };
}

/** The geospool side: Spool.enqueue, spool.list, spool.checkoutIfPresent, entry.remove(). */
export async function spoolSide(
  dir: string,
): Promise<CycleOps<Entry<BenchMetadata, BenchQueue>, CheckedOutEntry<BenchMetadata, BenchQueue>>> {
  const spool = await Spool.create(dir, benchSpoolable());
  return {
    async enqueue(id) {
      await spool.enqueue(QUEUE, benchMetadata(id), benchData);
    },
    list: () => spool.list(QUEUE),
    async checkout(entry) {
      const r = await spool.checkoutIfPresent(entry);
      return r.kind === "ok" ? r.entry : undefined;
    },
    async remove(co) {
      const r = await co.remove();
      if (r.kind !== "done") throw new Error(`remove of ${co.name}: ${r.kind}`);
    },
  };
}

/**
 * The raw baseline side: the same system calls on node:fs/promises; one directory fsync per
 * operation (`each`), or group-committed like the spool (`group`, supplementary).
 */
export async function baselineSide(
  dir: string,
  dirSync: "each" | "group" = "each",
): Promise<CycleOps<string, RawCheckout>> {
  const raw = new RawSpool(dir, QUEUE, dirSync);
  await raw.create();
  return {
    async enqueue(id) {
      await raw.enqueue(benchMetadata(id), benchData);
    },
    list: () => raw.list(),
    checkout: (name) => raw.checkout(name),
    async remove(co) {
      if (!(await raw.remove(co))) throw new Error(`remove of ${co.name}: lease lost`);
    },
  };
}
