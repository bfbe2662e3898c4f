import { rename } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { eventually, placeOf, useTwoNodeCluster } from "../helpers/cluster.js";

/**
 * A remove is final (issue #12, item 1): a node whose lease reaper is taking back its replica
 * of a checkout at the moment the holder's remove arrives must not keep the entry. The drop
 * races the reaper (the checkout file is in flux: renamed to `<name>~<tag>`) and waits for a
 * retry; the reaper then puts the entry back in its queue and the service announces it. That
 * transition used to be journaled without reading the fold, which settled the entry and
 * forgot the pending drop: the node kept the entry queued while every journal said removed.
 * The reaper's steps are done here by hand, as the spool's lease expiry does them.
 */

const two = useTwoNodeCluster("geospool-remove-final-");

describe("a remove that arrives while a lease reaper holds the entry", () => {
  it("is applied once the reaper is done, not forgotten", async () => {
    const a = two.cluster.node(0);
    const { entry } = await two.clientB.enqueue("inbox", "reaped", { metadata: "{}" });
    await eventually(
      "on A",
      async () => (await placeOf(two.cluster, 0, entry.name)) === "inbox/queued",
    );
    const lease = await two.clientB.dequeue("inbox", { leaseMs: 60_000 });
    expect(lease?.entry.name).toBe(entry.name);
    await eventually(
      "checked out on A",
      async () => (await placeOf(two.cluster, 0, entry.name)) === "inbox/checked_out",
    );

    // A's reaper takes its replica of the checkout (the spool's lease expiry, first step).
    const checkout = join(a.config.spool.dir, "inbox", ".checkout", entry.name);
    const taken = `${checkout}~reap`;
    await rename(checkout, taken);
    // The holder removes it; A's drop finds the entry in flux and waits for a retry.
    await two.clientB.remove(lease as NonNullable<typeof lease>);
    await eventually("A's drop retried", async () => {
      const r = await two.poolA.query<{ failures: number }>(
        "select failures from replica_pending where entry = $1",
        [entry.name],
      );
      // From the second failure the next retry is at least 0.5 s away: the reaper (a few
      // ms) finishes first.
      return (r.rows[0]?.failures ?? 0) >= 2;
    });
    // The reaper puts it back in its queue and the service announces it (last step).
    await rename(taken, join(a.config.spool.dir, "inbox", entry.name));
    a.service.leaseExpired(entry.name, "inbox", "inbox");

    // The remove is applied: the entry goes, and nothing waits for it any more.
    await eventually(
      "the entry gone from A",
      async () => (await placeOf(two.cluster, 0, entry.name)) === "absent",
      15_000,
    );
    await eventually("nothing pending on A", async () => {
      const r = await two.poolA.query("select 1 from replica_pending where entry = $1", [
        entry.name,
      ]);
      return r.rowCount === 0;
    });
    expect(await placeOf(two.cluster, 1, entry.name)).toBe("absent");
  }, 60_000);
});
