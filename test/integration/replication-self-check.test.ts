import { rm } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { eventually, placeOf, useTwoNodeCluster } from "../helpers/cluster.js";

/**
 * The replicator's self-check (issue #12, item 1: a divergence is never silent). A node whose
 * spool and record both lack an entry its journal has placed cannot find it by comparing its
 * files with its record (the full reconcile): the self-check after each reconcile compares the
 * record with the journal's fold, and an entry found differing twice in a row is logged,
 * counted (`geospool_replication_events_total{event="diverged"}`) and synced again, which
 * places it. The lost entry is made here by hand: with A stopped, its files and its record row
 * go (what a lost peer change left behind), so nothing else would ever bring it back.
 */

const two = useTwoNodeCluster("geospool-self-check-");

describe("the self-check after a full reconcile", () => {
  it("finds an entry the journal placed and the node lost, reports it and places it", async () => {
    const { entry } = await two.clientB.enqueue("inbox", "lost on A", { metadata: "{}" });
    const kept = await two.clientB.enqueue("inbox", "kept on A", { metadata: "{}" });
    for (const name of [entry.name, kept.entry.name]) {
      await eventually(
        `${name} on A`,
        async () => (await placeOf(two.cluster, 0, name)) === "inbox/queued",
      );
    }
    const spoolA = two.cluster.node(0).config.spool.dir;
    await two.cluster.stopNode(0);

    // The entry goes from A's spool and record, as if A had never placed it.
    for (const path of [
      join(spoolA, "inbox", entry.name),
      join(spoolA, ".data", entry.name),
      join(spoolA, ".registry", entry.name),
    ]) {
      await rm(path);
    }
    const gone = await two.poolA.query("delete from replica_entries where entry = $1", [
      entry.name,
    ]);
    expect(gone.rowCount).toBe(1);

    const a = await two.cluster.start(0);
    expect(await placeOf(two.cluster, 0, entry.name)).toBe("absent");
    await eventually(
      "the lost entry back on A",
      async () => (await placeOf(two.cluster, 0, entry.name)) === "inbox/queued",
      30_000,
    );
    expect(a.replication.replicator.status().diverged).toBe(1);
    expect(await a.metrics.render()).toMatch(
      /geospool_replication_events_total\{event="diverged"[^}]*\} 1\n/,
    );
    // Nothing else was taken for a divergence, and B was not touched.
    expect(await placeOf(two.cluster, 0, kept.entry.name)).toBe("inbox/queued");
    expect(await placeOf(two.cluster, 1, entry.name)).toBe("inbox/queued");
  }, 120_000);
});
