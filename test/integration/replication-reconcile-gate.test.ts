import { describe, expect, it } from "vitest";
import { eventually, placeOf, useTwoNodeCluster } from "../helpers/cluster.js";

/**
 * The periodic full reconcile (every 2 s in test nodes) walks the spool only when a queue or
 * checkout directory changed, or a record row was committed, since its last walk began
 * (Replicator.periodicReconcile): a still node's passes stop walking, and the next change
 * makes them walk again.
 */

const two = useTwoNodeCluster("geospool-reconcile-gate-");

describe("the periodic full reconcile of a still spool", () => {
  it("stops walking while nothing changes, and walks again after a change", async () => {
    const status = () => two.cluster.node(0).replication.replicator.status();
    const first = await two.clientB.enqueue("inbox", "one", { metadata: "{}" });
    await eventually(
      "the entry on A",
      async () => (await placeOf(two.cluster, 0, first.entry.name)) === "inbox/queued",
    );

    // Two passes in a row without a walk (a walk restarts the count: the first passes after
    // a change walk, stamps being trusted only once over a second old, and every tenth
    // pass walks regardless).
    let since = status();
    await eventually(
      "two passes of A's reconcile without a walk",
      () => {
        const now = status();
        if (now.reconcileWalks !== since.reconcileWalks) since = now;
        return now.reconcilePasses >= since.reconcilePasses + 2;
      },
      60_000,
    );
    const still = status();
    expect(still.reconcileWalks).toBe(since.reconcileWalks);

    const second = await two.clientB.enqueue("inbox", "two", { metadata: "{}" });
    await eventually(
      "the second entry on A",
      async () => (await placeOf(two.cluster, 0, second.entry.name)) === "inbox/queued",
    );
    await eventually(
      "a walk after the change",
      () => status().reconcileWalks > still.reconcileWalks,
      20_000,
    );
  }, 120_000);
});
