import type { Spool } from "../../src/spool/index.js";
import { seededRandom } from "./spool-chaos.js";
import { JournalWriter } from "./spool-journal.js";
import { makePayload, sha256 } from "./spool-payload.js";
import type { WorkerConfig } from "./spool-worker-config.js";
import type { Widget, WidgetQueue } from "./widget.js";

type BatchConfig = Extract<WorkerConfig, { role: "batch" }>;

/**
 * Batches of small self-verifying entries into "inbox" and "outbox", until the process is
 * killed. Every entry a batch reports ok is journaled (fsynced) before the next batch;
 * `ready` is called as the second batch starts, so a kill after it lands in a batch.
 */
export async function runBatches(
  spool: Spool<Widget, WidgetQueue>,
  config: BatchConfig,
  ready: () => void,
): Promise<never> {
  const journal = new JournalWriter(config.journal);
  const rand = seededRandom(config.seed);
  let id = config.seed * 1_000_000;
  for (let batch = 0; ; batch++) {
    const items = Array.from({ length: config.batchEntries }, () => ({
      queue: (rand() < 0.5 ? "inbox" : "outbox") as WidgetQueue,
      metadata: { id: id++ },
      data: makePayload(Math.floor(rand() * 400)),
    }));
    journal.note({ op: "op", what: `batch ${batch}` });
    if (batch === 1) ready();
    const results = await spool.enqueueBatch(items);
    journal.commitAll(
      results.flatMap((r, i) => {
        if (!r.ok) throw r.error;
        return [{ op: "enq" as const, name: r.entry.name, sha256: sha256(items[i]!.data) }];
      }),
    );
  }
}
