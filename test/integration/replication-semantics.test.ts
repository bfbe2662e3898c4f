import { createHash, randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GeospoolClient } from "../../src/node/client/index.js";
import { nodeEntryCodec } from "../../src/node/service/entry-meta.js";
import { makeHlc } from "../../src/replication/hlc.js";
import { appendLocal, countByOrigin } from "../../src/replication/journal-store.js";
import { Expert } from "../../src/spool/index.js";
import {
  closeCluster,
  eventually,
  placeOf,
  startTestCluster,
  type TestCluster,
} from "../helpers/cluster.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * Replication semantics on three nodes (n1 = A, n2 = B, n3 = C), each with its own real
 * PostgreSQL server: lease expiry, save, release, idempotent enqueue across nodes, and the
 * quarantine of journal rows a node cannot apply. Each test uses queues of its own, so an
 * entry left by one test is never dequeued by another.
 */
const QUEUES = ["inbox", "dead", "leases", "saves", "saved", "releases", "idem", "after"];

/** A node's metadata payload for `data` (for journal rows written by hand), and its digest. */
function entryMetadata(user: string, data: Buffer): { sha256: string; metadata: Buffer } {
  const sha256 = createHash("sha256").update(data).digest("hex");
  const metadata = Buffer.from(
    nodeEntryCodec.encode({
      user: Buffer.from(user),
      sha256,
      size: data.length,
      enqueuedAt: Date.now(),
    }),
  );
  return { sha256, metadata };
}

describe("replication semantics across three nodes", () => {
  let cluster: TestCluster;
  const dir = useSuiteTempDir("geospool-repl-semantics-");
  const clients: GeospoolClient[] = [];
  const pools: pg.Pool[] = [];
  const client = (i: number) => clients[i] as GeospoolClient;
  const pool = (i: number) => pools[i] as pg.Pool;
  const A = 0;
  const B = 1;
  const C = 2;

  beforeAll(async () => {
    cluster = await startTestCluster({
      n: 3,
      dir: dir.path,
      config: { spool: { queues: QUEUES } },
    });
    for (const e of cluster.endpoints) {
      clients.push(new GeospoolClient({ endpoints: [e], retryForMs: 5_000 }));
    }
    for (const p of cluster.postgres) pools.push(new pg.Pool({ connectionString: p.url, max: 2 }));
  }, 120_000);

  afterAll(async () => {
    await closeCluster({ clients, pools, cluster });
  }, 60_000);

  const where = (i: number, name: string) => placeOf(cluster, i, name);

  const everywhere = async (name: string, expected: string, nodes = [A, B, C]) => {
    for (const i of nodes) {
      await eventually(
        `${name} to be ${expected} on ${cluster.ids[i]}`,
        async () => (await where(i, name)) === expected,
      );
    }
  };

  /** Every node holds every row of every origin, and no replicator has anything to do. */
  const quiet = async () => {
    let last: string[] = [];
    await eventually(
      "journals equal and replicators idle",
      async () => {
        last = await Promise.all(
          pools.map(async (p) =>
            (await countByOrigin(p)).map((c) => `${c.origin}:${c.rows}`).join(","),
          ),
        );
        const idle = [A, B, C].every((i) => {
          const s = cluster.node(i).replication.replicator.status();
          return s.dirty === 0 && s.retrying === 0;
        });
        return idle && last.every((c) => c === last[0]);
      },
      30_000,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}; journal rows per origin: ${last.join(" | ")}`);
    });
  };

  it("a checkout whose lease expires without save or remove is available again on every node", async () => {
    const { entry } = await client(A).enqueue("leases", "lease data", { metadata: "lease" });
    await everywhere(entry.name, "leases/queued");
    const lease = await client(A).dequeue("leases", { leaseMs: 1_500 });
    expect(lease?.entry.name).toBe(entry.name);
    expect(lease?.entry.attempts).toBe(0);
    // Neither saved nor removed: the lease ends, each node's reaper returns the entry.
    await everywhere(entry.name, "leases/queued");
    await quiet();
    for (const i of [A, B, C]) {
      const info = await client(i).stat(entry.name);
      expect(info.state).toBe("queued");
      expect(info.entry.queue).toBe("leases");
      expect(info.entry.attempts).toBeGreaterThanOrEqual(1);
      expect(info.entry.metadata.toString()).toBe("lease");
    }
    const again = await client(C).dequeue("leases", { leaseMs: 60_000, waitMs: 5_000 });
    expect(again?.entry.name).toBe(entry.name);
    expect(again?.entry.attempts).toBeGreaterThanOrEqual(1);
    await client(C).remove(again as NonNullable<typeof again>);
    await everywhere(entry.name, "absent");
  }, 60_000);

  it("a save on one node into another queue with new metadata shows on the others", async () => {
    const { entry } = await client(A).enqueue("saves", "save data", { metadata: "before" });
    await everywhere(entry.name, "saves/queued");
    const lease = await client(A).dequeue("saves", { leaseMs: 60_000 });
    expect(lease?.entry.name).toBe(entry.name);
    await client(A).save(lease as NonNullable<typeof lease>, "saved", "after the save");
    await everywhere(entry.name, "saved/queued");
    for (const i of [B, C]) {
      const info = await client(i).stat(entry.name);
      expect(info.state).toBe("queued");
      expect(info.entry.queue).toBe("saved");
      expect(info.entry.metadata.toString()).toBe("after the save");
      expect(info.entry.attempts).toBe(0);
      // The data did not change with the save.
      const data = await cluster.node(i).spool.dataFile(entry.name).read();
      expect(data.toString()).toBe("save data");
    }
  }, 60_000);

  it("a checkout hides the entry elsewhere; a release puts it back everywhere with attempts + 1", async () => {
    const { entry } = await client(A).enqueue("releases", "release data", { metadata: "rel" });
    await everywhere(entry.name, "releases/queued");
    const lease = await client(A).dequeue("releases", { leaseMs: 60_000 });
    expect(lease?.entry.name).toBe(entry.name);
    await everywhere(entry.name, "releases/checked_out");
    // Checked out on A (for a minute): nothing to dequeue from that queue on C.
    expect(await client(C).dequeue("releases", { leaseMs: 60_000 })).toBeUndefined();
    const back = await client(A).release(lease as NonNullable<typeof lease>);
    expect(back).toEqual({ queue: "releases", attempts: 1 });
    await everywhere(entry.name, "releases/queued");
    for (const i of [A, B, C]) {
      await eventually(
        `attempts 1 on ${cluster.ids[i]}`,
        async () => (await client(i).stat(entry.name)).entry.attempts === 1,
      );
      const info = await client(i).stat(entry.name);
      expect(info.state).toBe("queued");
      expect(info.entry.metadata.toString()).toBe("rel");
    }
  }, 60_000);

  it("an idempotency key used on one node deduplicates an enqueue on another", async () => {
    const key = `idem-${randomUUID()}`;
    const first = await client(A).enqueue("idem", "idempotent data", {
      metadata: "first",
      idempotencyKey: key,
    });
    expect(first.deduplicated).toBe(false);
    await everywhere(first.entry.name, "idem/queued");
    // The key is recorded on B once B has placed A's entry (after the placement, not with it).
    await eventually("the key recorded on B", async () => {
      const r = await pool(B).query("select entry_name from idempotency_keys where key = $1", [
        key,
      ]);
      return r.rows[0]?.entry_name === first.entry.name;
    });
    const second = await client(B).enqueue("idem", "idempotent data", {
      metadata: "second",
      idempotencyKey: key,
    });
    expect(second.deduplicated).toBe(true);
    expect(second.entry.name).toBe(first.entry.name);
    await quiet();
    // Exactly one entry carries the key, on every node, and the journal made exactly one.
    for (const i of [A, B, C]) {
      const spool = cluster.node(i).spool;
      const withKey: string[] = [];
      for (const q of spool.queues) {
        const names = [
          ...(await spool.list(q)).map((e) => e.name),
          ...(await spool.listCheckedOutNames(q)),
        ];
        for (const name of names) {
          const seen = await Expert.inspectReplica(spool, name);
          if (seen.kind !== "present") continue;
          if (nodeEntryCodec.decode(seen.payload).idempotencyKey === key) withKey.push(name);
        }
      }
      expect(withKey, `entries with the key on ${cluster.ids[i]}`).toEqual([first.entry.name]);
      const enqueues = await pool(i).query<{ n: number }>(
        "select count(*)::int as n from journal where op = 'enqueue' and queue = 'idem'",
      );
      expect(enqueues.rows[0]?.n).toBe(1);
    }
  }, 60_000);

  it("quarantines rows naming an unknown queue or an invalid entry name, and replication goes on", async () => {
    const origin = cluster.ids[A] as string;
    const unknownQueueEntry = `quarantine-queue-${randomUUID()}`;
    const invalidEntry = `quarantine/${randomUUID()}`;
    const data = Buffer.from("never fetched");
    const { sha256, metadata } = entryMetadata("q", data);
    const c = await pool(A).connect();
    let invalidSeq: string;
    try {
      await c.query("begin");
      // A valid row (appendLocal validates it) for a queue no node has.
      await appendLocal(c, origin, [
        {
          op: "enqueue",
          entry: unknownQueueEntry,
          queue: "nowhere",
          attempts: 0,
          metadata,
          dataSha256: sha256,
          dataSize: data.length,
          leaseUntil: null,
          hlc: makeHlc(Date.now()),
        },
      ]);
      // An invalid entry name cannot pass appendLocal: raw SQL, taking the next seq from the
      // counter as appendLocal does (so the node's own later appends do not collide).
      const seq = await c.query<{ seq: string }>(
        "update journal_counter set last_seq = last_seq + 1 where origin = $1 returning last_seq as seq",
        [origin],
      );
      invalidSeq = seq.rows[0]?.seq as string;
      await c.query(
        `insert into journal (origin, seq, hlc, entry, op, queue, metadata, data_sha256,
                              data_size, attempts)
         values ($1, $2, $3, $4, 'enqueue', 'inbox', $5, $6, $7, 0)`,
        [
          origin,
          invalidSeq,
          makeHlc(Date.now()).toString(),
          invalidEntry,
          metadata,
          sha256,
          data.length,
        ],
      );
      await c.query("commit");
    } catch (err) {
      await c.query("rollback").catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }

    for (const i of [B, C]) {
      let rows: Array<{ entry: string; seq: string; problem: string }> = [];
      await eventually(`two quarantined rows on ${cluster.ids[i]}`, async () => {
        const r = await pool(i).query<{ entry: string; seq: string; problem: string }>(
          "select entry, seq::text as seq, problem from replica_quarantine where origin = $1 and entry = any($2::text[]) order by seq",
          [origin, [unknownQueueEntry, invalidEntry]],
        );
        rows = r.rows;
        return rows.length === 2;
      });
      const byEntry = new Map(rows.map((r) => [r.entry, r]));
      expect(byEntry.get(unknownQueueEntry)?.problem).toMatch(/nowhere/);
      expect(byEntry.get(invalidEntry)?.seq).toBe(invalidSeq);
      expect(byEntry.get(invalidEntry)?.problem).toMatch(/separator|invalid/);
      expect(await where(i, unknownQueueEntry)).toBe("absent");

      const res = await fetch(`http://127.0.0.1:${cluster.node(i).httpPort}/metrics`);
      expect(res.status).toBe(200);
      const line = (await res.text())
        .split("\n")
        .find(
          (l) =>
            l.startsWith("geospool_replication_events_total{") && l.includes('event="quarantined"'),
        );
      expect(line, "the quarantined counter").toBeDefined();
      expect(Number(line?.split(" ").pop())).toBeGreaterThan(0);
    }

    // Replication of everything else goes on: a later ordinary entry from A arrives.
    const { entry } = await client(A).enqueue("after", "still flowing", { metadata: "after" });
    await everywhere(entry.name, "after/queued");
    expect((await client(B).stat(entry.name)).entry.metadata.toString()).toBe("after");
    expect((await cluster.node(B).spool.dataFile(entry.name).read()).toString()).toBe(
      "still flowing",
    );
  }, 60_000);

  it("a row quarantined for a queue the node lacked is placed once the node has the queue", async () => {
    const origin = cluster.ids[A] as string;
    const entry = `late-queue-${randomUUID()}`;
    const data = Buffer.from("placed after a restart");
    const { sha256, metadata } = entryMetadata("late", data);
    // An enqueue from A into queue "late", which no node has yet; its data rides in the row.
    const c = await pool(A).connect();
    try {
      await c.query("begin");
      await appendLocal(c, origin, [
        {
          op: "enqueue",
          entry,
          queue: "late",
          attempts: 0,
          metadata,
          dataSha256: sha256,
          dataSize: data.length,
          leaseUntil: null,
          hlc: makeHlc(Date.now()),
          inlineData: data,
        },
      ]);
      await c.query("commit");
    } finally {
      c.release();
    }
    const quarantined = async (i: number) =>
      (await pool(i).query("select 1 from replica_quarantine where entry = $1", [entry])).rows
        .length;
    for (const i of [B, C]) {
      await eventually(
        `the row quarantined on ${cluster.ids[i]}`,
        async () => (await quarantined(i)) === 1,
      );
    }

    // B gets the queue (a restart with it configured): the row is tried again and placed.
    await cluster.stopNode(B);
    await cluster.start(B, { spool: { queues: [...QUEUES, "late"] } });
    await eventually(
      `${entry} placed on ${cluster.ids[B]}`,
      async () => (await where(B, entry)) === "late/queued",
    );
    expect((await cluster.node(B).spool.dataFile(entry).read()).equals(data)).toBe(true);
    await eventually("the quarantine of B cleared", async () => (await quarantined(B)) === 0);
    // C still lacks the queue: its row stays quarantined, and the entry is nowhere else.
    expect(await quarantined(C)).toBe(1);
    expect(await where(C, entry)).toBe("absent");
    expect(await where(A, entry)).toBe("absent");
  }, 90_000);
});
