import { createHash } from "node:crypto";
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { useSharedPostgres } from "../../test/helpers/postgres.js";
import { migrate } from "../db/migrate.js";
import { makeHlc } from "./hlc.js";
import {
  appendLocal,
  countByOrigin,
  JournalStoreError,
  JournalStoreErrorCode,
  maxSeq,
  type NewJournalRow,
  readEntries,
  readEntry,
  readSince,
} from "./journal-store.js";

const shared = useSharedPostgres("journal");

let pool: pg.Pool;
beforeEach(async () => {
  const url = await shared.freshDatabase();
  pool = new pg.Pool({ connectionString: url, max: 12 });
  pool.on("error", () => {});
  await migrate(pool);
});
afterEach(async () => {
  await pool.end();
});

const NODE = "eu-1";

function enqueue(entry: string, hlc = makeHlc(Date.now())): NewJournalRow {
  return {
    hlc,
    entry,
    op: "enqueue",
    queue: "inbox",
    metadata: Buffer.from([0, 1, 2, 255]),
    dataSha256: createHash("sha256").update(entry).digest("hex"),
    dataSize: 2 ** 40,
    leaseUntil: null,
    attempts: 0,
  };
}

function checkout(entry: string, leaseUntil: number, hlc: bigint): NewJournalRow {
  return {
    hlc,
    entry,
    op: "checkout",
    queue: "inbox",
    metadata: null,
    dataSha256: null,
    dataSize: null,
    leaseUntil,
    attempts: 2,
  };
}

async function seqs(origin: string): Promise<number[]> {
  const { rows } = await pool.query<{ seq: string }>(
    "select seq from journal where origin = $1 order by seq",
    [origin],
  );
  return rows.map((r) => Number(r.seq));
}

describe("journal store", () => {
  it("appends a batch with consecutive seqs and reads it back exactly", async () => {
    const hlc = (1n << 62n) + 12345n; // far past Number's exact range
    const written = await appendLocal(pool, NODE, [
      enqueue("e1", hlc),
      checkout("e1", 1_700_000_000_123, hlc + 1n),
      enqueue("e2", hlc + 2n),
    ]);
    expect(written.map((r) => r.seq)).toEqual([1n, 2n, 3n]);
    expect(written.every((r) => r.origin === NODE)).toBe(true);
    const more = await appendLocal(pool, NODE, [enqueue("e3")]);
    expect(more[0]?.seq).toBe(4n);

    const read = await readSince(pool, { origin: NODE });
    expect(read.rejected).toEqual([]);
    expect(read.lastSeq).toBe(4n);
    expect(read.rows.map(({ recordedAt: _, ...r }) => r)).toEqual(
      [...written, ...more].map(({ recordedAt: _, ...r }) => r),
    );
    expect(read.rows[0]).toMatchObject({ hlc, metadata: Buffer.from([0, 1, 2, 255]) });
    expect(read.rows[0]?.dataSize).toBe(2 ** 40);
    expect(read.rows[1]).toMatchObject({ op: "checkout", leaseUntil: 1_700_000_000_123 });

    const page = await readSince(pool, { origin: NODE, afterSeq: 1n, limit: 2 });
    expect(page.rows.map((r) => r.seq)).toEqual([2n, 3n]);
    expect(page.lastSeq).toBe(3n);
    expect(await readSince(pool, { origin: NODE, afterSeq: 4n })).toEqual({
      rows: [],
      rejected: [],
      lastSeq: 4n,
    });
    expect(await appendLocal(pool, NODE, [])).toEqual([]);
  });

  it("gives a rolled-back append's numbers back", async () => {
    await appendLocal(pool, NODE, [enqueue("a")]);
    const client = await pool.connect();
    try {
      await client.query("begin");
      const rolledBack = await appendLocal(client, NODE, [enqueue("b"), enqueue("c")]);
      expect(rolledBack.map((r) => r.seq)).toEqual([2n, 3n]);
      await client.query("rollback");
    } finally {
      client.release();
    }
    expect((await appendLocal(pool, NODE, [enqueue("d")]))[0]?.seq).toBe(2n);
    expect(await seqs(NODE)).toEqual([1, 2]);
  });

  it("concurrent appenders get every seq exactly once, without gaps", async () => {
    const writers = 8;
    const perWriter = 15;
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let i = 0; i < perWriter; i++) {
          await appendLocal(pool, NODE, [enqueue(`w${w}-${i}-a`), enqueue(`w${w}-${i}-b`)]);
        }
      }),
    );
    const n = writers * perWriter * 2;
    expect(await seqs(NODE)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(await maxSeq(pool, NODE)).toBe(BigInt(n));
  });

  it("one origin's appends commit in seq order: a later append waits for the earlier commit", async () => {
    const first = await pool.connect();
    const events: string[] = [];
    try {
      await first.query("begin");
      const [held] = await appendLocal(first, NODE, [enqueue("held")]);
      const second = appendLocal(pool, NODE, [enqueue("waiting")]).then((rows) => {
        events.push("second appended");
        return rows;
      });
      // Wait until the second append is blocked on the counter row, then commit the first.
      for (;;) {
        const { rows } = await pool.query<{ n: number }>(
          "select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()",
        );
        if ((rows[0]?.n ?? 0) > 0) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      events.push("first committing");
      await first.query("commit");
      const [waited] = await second;
      expect(events).toEqual(["first committing", "second appended"]);
      expect(held?.seq).toBe(1n);
      expect(waited?.seq).toBe(2n);
    } finally {
      first.release();
    }
  });

  it("continues after the highest seq already stored when the counter is missing", async () => {
    await pool.query(
      `insert into journal (origin, seq, hlc, entry, op, queue) values ($1, 41, 1, 'x', 'remove', 'q')`,
      [NODE],
    );
    expect((await appendLocal(pool, NODE, [enqueue("y")]))[0]?.seq).toBe(42n);
    // Other origins are counted on their own.
    expect((await appendLocal(pool, "us-2", [enqueue("z")]))[0]?.seq).toBe(1n);
    expect(await countByOrigin(pool)).toEqual([
      { origin: NODE, rows: 2, maxSeq: 42n },
      { origin: "us-2", rows: 1, maxSeq: 1n },
    ]);
  });

  it("refuses an invalid row and inserts nothing of its batch", async () => {
    const bad = { ...enqueue("ok"), entry: "../escape" };
    const err = await appendLocal(pool, NODE, [enqueue("fine"), bad]).catch((e) => e);
    expect(err).toBeInstanceOf(JournalStoreError);
    expect(err.code).toBe(JournalStoreErrorCode.InvalidRow);
    expect(err.message).toContain("row 1");
    const noData = { ...enqueue("ok"), dataSha256: null } as unknown as NewJournalRow;
    expect((await appendLocal(pool, NODE, [noData]).catch((e) => e)).code).toBe("invalid_row");
    expect(await countByOrigin(pool)).toEqual([]);
  });

  it("reads an entry's rows in the fold's order and reports rows it cannot read", async () => {
    await appendLocal(pool, "b", [enqueue("e", 10n), checkout("e", Date.now() + 1000, 30n)]);
    await appendLocal(pool, "a", [checkout("e", Date.now() + 1000, 30n)]);
    await appendLocal(pool, "B", [checkout("e", Date.now() + 1000, 30n)]);
    // A peer's row this build cannot read (an enqueue without metadata or digest).
    await pool.query(
      `insert into journal (origin, seq, hlc, entry, op, queue) values ('c', 1, 20, 'e', 'enqueue', 'q')`,
    );
    const { rows, rejected } = await readEntry(pool, "e");
    // hlc first, then origin in byte order ("B" < "a" < "b"), then seq.
    expect(rows.map((r) => `${r.hlc}/${r.origin}/${r.seq}`)).toEqual([
      "10/b/1",
      "30/B/1",
      "30/a/1",
      "30/b/2",
    ]);
    expect(rejected).toHaveLength(1);
    expect(rejected[0]).toMatchObject({ origin: "c", seq: 1n });
    expect(rejected[0]?.problem).toContain("an enqueue has no");
    const since = await readSince(pool, { origin: "c" });
    expect(since.rows).toEqual([]);
    expect(since.lastSeq).toBe(1n);
  });

  it("reads many entries' rows, with or without the data small entries carry", async () => {
    const small: NewJournalRow = {
      hlc: makeHlc(Date.now()),
      entry: "x",
      op: "enqueue",
      queue: "inbox",
      metadata: Buffer.from("m"),
      dataSha256: createHash("sha256").update("x").digest("hex"),
      dataSize: 1,
      leaseUntil: null,
      attempts: 0,
      inlineData: Buffer.from("x"),
    };
    await appendLocal(pool, NODE, [
      small,
      enqueue("y"),
      checkout("x", Date.now() + 1000, makeHlc(Date.now() + 1)),
    ]);
    const full = await readEntries(pool, ["x", "y", "z"]);
    const placement = await readEntries(pool, ["x", "y", "z"], { inlineData: false });
    expect([...full.keys()]).toEqual(["x", "y", "z"]);
    expect(full.get("x")?.rows.map((r) => r.op)).toEqual(["enqueue", "checkout"]);
    const [enqueued] = full.get("x")?.rows ?? [];
    if (enqueued?.op !== "enqueue") throw new Error("no enqueue row");
    expect(enqueued.inlineData).toEqual(Buffer.from("x"));
    expect(full.get("z")?.rows).toEqual([]);
    // The same rows, but for the inline data.
    const { inlineData: _, ...withoutData } = enqueued;
    expect(placement.get("x")?.rows[0]).toEqual(withoutData);
    expect(placement.get("x")?.rows[1]).toEqual(full.get("x")?.rows[1]);
    expect(placement.get("y")?.rows).toEqual(full.get("y")?.rows);
    // With digests: each row's metadata is its SHA-256; a row without metadata keeps none.
    const digests = await readEntries(pool, ["x", "y", "z"], { metadataDigests: true });
    const sha = (b: Buffer | null | undefined) =>
      b == null ? b : createHash("sha256").update(b).digest();
    for (const e of ["x", "y"]) {
      const whole = placement.get(e)?.rows ?? [];
      expect(digests.get(e)?.rows).toEqual(whole.map((r) => ({ ...r, metadata: sha(r.metadata) })));
    }
    expect(digests.get("x")?.rows[1]?.metadata).toBe(null);
    expect(digests.get("z")?.rows).toEqual([]);
  });

  it("a replicated row that is already stored is skipped; a different one fails loudly", async () => {
    const [row] = await appendLocal(pool, NODE, [enqueue("r")]);
    const client = await pool.connect();
    try {
      // What a subscription's apply or copy worker does.
      await client.query("set session_replication_role = replica");
      const copy = await client.query(
        `insert into journal select * from journal where origin = $1 and seq = 1`,
        [NODE],
      );
      expect(copy.rowCount).toBe(0);
      const different = await client
        .query(
          `insert into journal (origin, seq, hlc, entry, op, queue, attempts, recorded_at)
           select origin, seq, hlc, entry, op, queue, attempts + 1, recorded_at
           from journal where origin = $1 and seq = 1`,
          [NODE],
        )
        .catch((e) => e);
      expect(different.code).toBe("23505");
      expect(different.message).toContain(`${NODE}/1`);
      const fresh = await client.query(
        `insert into journal (origin, seq, hlc, entry, op, queue) values ($1, 2, 5, 'r', 'remove', 'inbox')`,
        [NODE],
      );
      expect(fresh.rowCount).toBe(1);
    } finally {
      await client.query("reset session_replication_role");
      client.release();
    }
    // A local insert never skips: the primary key refuses the duplicate.
    const local = await pool
      .query("insert into journal select * from journal where origin = $1 and seq = 1", [NODE])
      .catch((e) => e);
    expect(local.code).toBe("23505");
    expect(row?.seq).toBe(1n);
    expect(await seqs(NODE)).toEqual([1, 2]);
  });
});
