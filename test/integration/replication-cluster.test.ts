import { rm } from "node:fs/promises";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GeospoolClient } from "../../src/node/client/index.js";
import { countByOrigin } from "../../src/replication/journal-store.js";
import {
  closeCluster,
  eventually,
  placeOf,
  startTestCluster,
  type TestCluster,
} from "../helpers/cluster.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * Three nodes, three real PostgreSQL servers, a full mesh. Entries and their transitions made
 * on one node show on the others; nothing loops.
 */
describe("replication across three nodes", () => {
  let cluster: TestCluster;
  const dir = useSuiteTempDir("geospool-repl-");
  const clients: GeospoolClient[] = [];
  const client = (i: number) => clients[i] as GeospoolClient;

  beforeAll(async () => {
    cluster = await startTestCluster({ n: 3, dir: dir.path });
    for (const e of cluster.endpoints) clients.push(new GeospoolClient({ endpoints: [e] }));
  }, 120_000);

  afterAll(async () => {
    await closeCluster({ clients, cluster });
  }, 60_000);

  const where = (i: number, name: string) => placeOf(cluster, i, name);

  it("an entry enqueued on one node appears on the others with the same metadata and data", async () => {
    const { entry } = await client(0).enqueue("inbox", "hello from n1", { metadata: "m1" });
    for (const i of [1, 2]) {
      await eventually(
        `entry on ${cluster.ids[i]}`,
        async () => (await where(i, entry.name)) === "inbox/queued",
      );
      const info = await client(i).stat(entry.name);
      expect(info.entry.metadata.toString()).toBe("m1");
      const data = await cluster.node(i).spool.dataFile(entry.name).read();
      expect(data.toString()).toBe("hello from n1");
    }
  }, 60_000);

  it("small data travels in the journal row, larger data is fetched over gRPC; both arrive whole", async () => {
    const small = Buffer.alloc(1000, 7);
    const large = Buffer.alloc(200 * 1024 + 3, 9);
    const a = await client(0).enqueue("outbox", small);
    const b = await client(0).enqueue("outbox", large);
    for (const i of [1, 2]) {
      for (const [name, bytes] of [
        [a.entry.name, small],
        [b.entry.name, large],
      ] as const) {
        await eventually("replicated", async () => (await where(i, name)) === "outbox/queued");
        expect((await cluster.node(i).spool.dataFile(name).read()).equals(bytes)).toBe(true);
      }
    }
    const pool = new pg.Pool({
      connectionString: (cluster.postgres[1] as { url: string }).url,
      max: 1,
    });
    try {
      const r = await pool.query<{ entry: string; inline: boolean }>(
        "select entry, data is not null as inline from journal where op = 'enqueue' and entry = any($1)",
        [[a.entry.name, b.entry.name]],
      );
      const inline = Object.fromEntries(r.rows.map((row) => [row.entry, row.inline]));
      expect(inline).toEqual({ [a.entry.name]: true, [b.entry.name]: false });
    } finally {
      await pool.end();
    }
    // Both were consumed by nobody: take them out so later tests see only their own entries.
    for (const name of [a.entry.name, b.entry.name]) {
      const lease = await client(0).dequeue("outbox", { leaseMs: 60_000 });
      expect(lease?.entry.name).toBe(name);
      await client(0).remove(lease as NonNullable<typeof lease>);
    }
  }, 60_000);

  it("a checkout on one node hides the entry elsewhere; remove is reflected everywhere", async () => {
    const { entry } = await client(1).enqueue("inbox", "x", { metadata: "m2" });
    for (const i of [0, 2]) {
      await eventually("replicated", async () => (await where(i, entry.name)) === "inbox/queued");
    }
    const got = await client(0).dequeue("inbox", { leaseMs: 60_000 });
    expect(got).toBeDefined();
    const lease = got as NonNullable<typeof got>;
    // The first dequeue on n1 may take the older entry of the first test: finish it too.
    for (const i of [1, 2]) {
      await eventually(
        "checkout replicated",
        async () => (await where(i, lease.entry.name)) === "inbox/checked_out",
      );
    }
    await client(0).remove(lease);
    for (const i of [1, 2]) {
      await eventually(
        "remove replicated",
        async () => (await where(i, lease.entry.name)) === "absent",
      );
    }
  }, 60_000);

  it("a node whose spool directory was lost is restored from the journal, and nothing is removed elsewhere", async () => {
    const { entry } = await client(0).enqueue("inbox", "kept everywhere", { metadata: "m3" });
    const counts = () =>
      Promise.all([0, 1, 2].map(async (i) => (await client(i).list("inbox")).entries.length));
    let before: number[] = [];
    await eventually("every node holds the same entries", async () => {
      before = await counts();
      return (await where(2, entry.name)) === "inbox/queued" && new Set(before).size === 1;
    });
    await cluster.stopNode(2);
    await rm(cluster.node(0).config.spool.dir.replace(/spool-n1$/, "spool-n3"), {
      recursive: true,
      force: true,
    });
    await cluster.start(2);
    await eventually("restored on n3", async () => (await where(2, entry.name)) === "inbox/queued");
    expect((await cluster.node(2).spool.dataFile(entry.name).read()).toString()).toBe(
      "kept everywhere",
    );
    // Give a wrongly journaled remove time to replicate, then check nothing went away.
    await cluster.node(2).replication.replicator.idle();
    await new Promise((r) => setTimeout(r, 500));
    expect(await counts()).toEqual(before);
  }, 60_000);

  it("writes no replication loop: every node holds the same rows per origin", async () => {
    const pools = cluster.postgres.map((p) => new pg.Pool({ connectionString: p.url, max: 1 }));
    try {
      let last: string[] = [];
      await eventually("row counts equal", async () => {
        last = await Promise.all(
          pools.map(async (pool) =>
            (await countByOrigin(pool)).map((c) => `${c.origin}:${c.rows}:${c.maxSeq}`).join(","),
          ),
        );
        return last.every((c) => c === last[0]);
      });
      // Each origin's rows are gapless and every node has them all.
      for (const c of await countByOrigin(pools[0] as pg.Pool))
        expect(BigInt(c.rows)).toBe(c.maxSeq);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  }, 60_000);
});
