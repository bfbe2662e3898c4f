import { Expert, type Spool } from "../../src/spool/index.js";
import { seededRandom } from "./spool-chaos.js";
import { JournalWriter } from "./spool-journal.js";
import { makePayload, sha256 } from "./spool-payload.js";
import type { WorkerConfig } from "./spool-worker-config.js";
import type { Widget, WidgetQueue } from "./widget.js";

type ReplicaBatchConfig = Extract<WorkerConfig, { role: "replica-batch" }>;

/**
 * As a replicator placing a burst of peers' new entries: batches of small self-verifying
 * entries through the replica view's `placeNew` (into "inbox" and "outbox", names of its
 * own), until the process is killed. Every entry placed is journaled (`enq`, one fsync per
 * batch) before the next batch; `ready` is called as the second batch starts.
 */
export async function runReplicaBatches(
  spool: Spool<Widget, WidgetQueue>,
  config: ReplicaBatchConfig,
  ready: () => void,
): Promise<never> {
  const journal = new JournalWriter(config.journal);
  const replica = Expert.replicaSpool(spool);
  const rand = seededRandom(config.seed);
  let id = 0;
  for (let batch = 0; ; batch++) {
    const items = Array.from({ length: config.batchEntries }, () => {
      const n = id++;
      return {
        name: `r${config.seed}-${String(n).padStart(7, "0")}`,
        placement: { queue: rand() < 0.5 ? "inbox" : "outbox", checkedOut: false as const },
        payload: Buffer.from(JSON.stringify({ id: n })),
        attempts: 0,
        bytes: makePayload(Math.floor(rand() * 400)),
      };
    });
    journal.note({ op: "op", what: `batch ${batch}` });
    if (batch === 1) ready();
    const results = await replica.placeNew(items);
    journal.commitAll(
      results.map((r, i) => {
        if (r.kind !== "placed") throw new Error(`placeNew: ${JSON.stringify(r)}`);
        const it = items[i] as (typeof items)[number];
        return { op: "enq" as const, name: it.name, sha256: sha256(it.bytes) };
      }),
    );
  }
}
