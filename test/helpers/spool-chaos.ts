import { Readable } from "node:stream";
import { type CheckedOutEntry, QueueReader, type Spool } from "../../src/spool/index.js";
import { JournalWriter } from "./spool-journal.js";
import { makePayload, payloadIsWhole, sha256 } from "./spool-payload.js";
import type { WorkerConfig } from "./spool-worker-config.js";
import type { Widget, WidgetQueue } from "./widget.js";

type ChaosConfig = Extract<WorkerConfig, { role: "chaos" }>;

/** The queues the chaos child uses ("dead" is the dead-letter queue; it drains it too). */
export const CHAOS_QUEUES: readonly WidgetQueue[] = ["inbox", "outbox", "dead"];

/** mulberry32: a small seeded generator, so a child's sequence of choices is reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Random spool operations, one at a time, until the process is killed. For each enqueue
 * that returned, the name and data digest are journaled (with fsync) before anything else;
 * a remove is journaled before it starts (`rm-begin`) and after it ends (`rm` or `rm-lost`).
 * `firstRemoved` is called once, after the first remove that completed was journaled.
 * The data is self-verifying (spool-payload.ts), so every checkout checks what it got.
 */
export async function runChaos(
  spool: Spool<Widget, WidgetQueue>,
  config: ChaosConfig,
  ready: () => void,
  firstRemoved: () => void,
): Promise<never> {
  const journal = new JournalWriter(config.journal);
  const rand = seededRandom(config.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const readers = CHAOS_QUEUES.map((q) => new QueueReader(spool, q));
  const held: CheckedOutEntry<Widget, WidgetQueue>[] = [];
  let id = config.seed * 1000;
  const op = (what: string) => journal.note({ op: "op", what });
  const takeHeld = () => held.splice(Math.floor(rand() * held.length), 1)[0]!;
  let removedOne = false;
  ready();
  for (;;) {
    const r = rand();
    if (r < config.enqueueShare) {
      const size = rand() < 0.1 ? 64 * 1024 + Math.floor(rand() * 1000) : Math.floor(rand() * 4096);
      const data = makePayload(size);
      const streamed = rand() < 0.3;
      const reserve = rand() < 0.3;
      op(reserve ? "enqueue-reserved" : streamed ? "enqueue-stream" : "enqueue");
      const name = reserve ? await spool.reserveName() : undefined;
      const source = streamed
        ? Readable.from([data.subarray(0, data.length >> 1), data.subarray(data.length >> 1)])
        : data;
      const e = await spool.enqueue(pick(["inbox", "outbox"] as const), { id: id++ }, source, {
        ...(name !== undefined ? { name } : {}),
      });
      journal.commit({ op: "enq", name: e.name, sha256: sha256(data) });
      continue;
    }
    if (held.length === 0 || (r < config.enqueueShare + 0.3 && held.length < 6)) {
      op("checkout");
      // Long leases (outlive the child) and short ones (expire while it runs: lease_lost, reaping).
      const leaseMs = rand() < 0.7 ? 60_000 : 25;
      const got = await pick(readers).dequeueAvailable({ leaseMs });
      if (got.kind === "checked_out") {
        const co = got.entry;
        const bytes = await co.dataFile().read();
        if (!payloadIsWhole(bytes)) throw new Error(`checked out ${co.name} with torn data`);
        held.push(co);
      }
      continue;
    }
    const s = rand();
    if (s < 0.3) {
      op("save");
      const co = takeHeld();
      co.update((m) => ({ ...m, note: `saved ${Date.now()}` }));
      await co.save(pick(["inbox", "outbox"] as const));
    } else if (s < 0.65) {
      const co = takeHeld();
      journal.commit({ op: "rm-begin", name: co.name });
      op("remove");
      const done = await co.remove();
      journal.commit({ op: done.kind === "done" ? "rm" : "rm-lost", name: co.name });
      if (done.kind === "done" && !removedOne) {
        removedOne = true;
        firstRemoved();
      }
    } else if (s < 0.8) {
      op("release");
      await takeHeld().release();
    } else if (s < 0.9) {
      op("extend");
      const co = held[held.length - 1]!;
      if ((await co.extendLease(30_000)).kind === "lease_lost") held.pop();
    } else {
      op("expire");
      await spool.expireLeases();
    }
  }
}
