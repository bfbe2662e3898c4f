import type pg from "pg";
import { describe, expect, it } from "vitest";
import { useMigratedDatabases } from "../../test/helpers/postgres.js";
import { silentLogger } from "../node/observability/index.js";
import { ensurePublication } from "../replication/mesh.js";
import { HOUR_MS, OVERFLOW_KEY, RequestStats } from "./request-stats.js";
import { startRequestStatsFlush } from "./request-stats-flush.js";
import { BucketKeyCounts, readRequestReport, writeCounts } from "./request-stats-store.js";

const A = "l493h11hsb577v1lhgwxzcmxh4q2m02w";
const B = "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx";
const T0 = Date.UTC(2026, 11, 6, 10, 0, 0);
const DAY = 24 * HOUR_MS;

const { database } = useMigratedDatabases("reqstats");

async function rows(pool: pg.Pool) {
  const { rows } = await pool.query<{
    bucket: Date;
    kind: string;
    key: string;
    hits: string;
    misses: string;
    bytes: string;
  }>("select * from cache_request_counts order by bucket, kind, key");
  return rows.map((r) => [
    r.bucket.getTime(),
    r.kind,
    r.key,
    Number(r.hits),
    Number(r.misses),
    Number(r.bytes),
  ]);
}

/** A flush that writes only when asked (its timer an hour), pruning at 30 days. */
function flushOnDemand(pool: pg.Pool, stats: RequestStats, clock: () => number) {
  return startRequestStatsFlush({
    stats,
    pool,
    everyMs: 3_600_000,
    keepForMs: 30 * DAY,
    logger: silentLogger(),
    clock,
  });
}

describe("request counts in PostgreSQL", () => {
  it("adds each flush to the stored counts of the same bucket and key, and flushes at stop", async () => {
    const pool = await database();
    const clock = { now: T0 + 60_000 };
    const stats = new RequestStats({ clock: () => clock.now });
    const flush = flushOnDemand(pool, stats, () => clock.now);
    stats.narinfo(A, true);
    stats.nar("nar/x.nar", true, 1000);
    await flush.flush();
    expect(await rows(pool)).toEqual([
      [T0, "nar", "nar/x.nar", 1, 0, 1000],
      [T0, "narinfo", A, 1, 0, 0],
    ]);
    stats.narinfo(A, true);
    stats.narinfo(A, false);
    clock.now += HOUR_MS;
    stats.narinfo(B, false);
    await flush.stop();
    expect(await rows(pool)).toEqual([
      [T0, "nar", "nar/x.nar", 1, 0, 1000],
      [T0, "narinfo", A, 2, 1, 0],
      [T0 + HOUR_MS, "narinfo", B, 0, 1, 0],
    ]);
    // Node-local: the mesh's publication still carries the journal alone.
    await ensurePublication(pool, "n1");
    const pub = await pool.query<{ tablename: string }>(
      "select tablename from pg_publication_tables",
    );
    expect(pub.rows.map((r) => r.tablename)).toEqual(["journal"]);
  });

  it("keeps the counts of a failed write for the next flush", async () => {
    const pool = await database();
    const stats = new RequestStats({ clock: () => T0 });
    const flush = flushOnDemand(pool, stats, () => T0);
    stats.narinfo(A, true);
    await pool.query("alter table cache_request_counts rename to away");
    await flush.flush();
    expect(stats.heldKeys).toBe(1);
    await pool.query("alter table away rename to cache_request_counts");
    stats.narinfo(A, true);
    await flush.stop();
    expect(await rows(pool)).toEqual([[T0, "narinfo", A, 2, 0, 0]]);
  });

  it("writes a flush of many statements whole, and keeps it all when a later statement fails", async () => {
    const pool = await database();
    const stats = new RequestStats({ clock: () => T0 });
    const flush = flushOnDemand(pool, stats, () => T0);
    const keys = Array.from({ length: 2_500 }, (_, i) => `k${String(i).padStart(4, "0")}`);
    for (const k of keys) stats.narinfo(k, false);
    // The second statement (rows 1,000 to 1,999) fails after the first went in.
    await pool.query(
      "alter table cache_request_counts add constraint poison check (key <> 'k1500')",
    );
    await flush.flush();
    expect(await rows(pool)).toEqual([]);
    expect(stats.heldKeys).toBe(2_500);
    await pool.query("alter table cache_request_counts drop constraint poison");
    for (const k of keys) stats.narinfo(k, true);
    await flush.stop();
    const written = await rows(pool);
    expect(written).toEqual(keys.map((k) => [T0, "narinfo", k, 1, 1, 0]));
    expect(stats.heldKeys).toBe(0);
  });

  it("keeps at most maxKeysPerBucket keys per bucket and kind: new keys past it count as unkeyed", async () => {
    const pool = await database();
    const C = "c".repeat(32);
    const [D, E, F] = ["d", "e", "f"].map((x) => x.repeat(32)) as [string, string, string];
    const row = (bucket: number, key: string, hits: number, misses = 0) => ({
      bucket,
      kind: "narinfo" as const,
      key,
      hits,
      misses,
      bytes: 0,
    });
    const keyCounts = new BucketKeyCounts();
    const bounded = { maxKeysPerBucket: 3, keyCounts };
    await writeCounts(pool, [row(T0, A, 1), row(T0, B, 1)], bounded);
    // Room for one more key: C (first in order) gets it; D and E are added to the
    // unkeyed row; A, already there, goes on being counted.
    await writeCounts(
      pool,
      [row(T0, C, 1), row(T0, D, 2), row(T0, E, 0, 3), row(T0, A, 4), row(T0, OVERFLOW_KEY, 1)],
      bounded,
    );
    // Another bucket has its own room; the nar kind too.
    await writeCounts(
      pool,
      [row(T0 + HOUR_MS, D, 1), { ...row(T0, "nar/x.nar", 1), kind: "nar" as const, bytes: 5 }],
      bounded,
    );
    // A restarted node (its key counts read again from the table) is bound the same way.
    await writeCounts(pool, [row(T0, F, 1), row(T0, B, 1)], {
      maxKeysPerBucket: 3,
      keyCounts: new BucketKeyCounts(),
    });
    expect(await rows(pool)).toEqual([
      [T0, "nar", "nar/x.nar", 1, 0, 5],
      [T0, "narinfo", "", 4, 3, 0],
      [T0, "narinfo", B, 2, 0, 0],
      [T0, "narinfo", C, 1, 0, 0],
      [T0, "narinfo", A, 5, 0, 0],
      [T0 + HOUR_MS, "narinfo", D, 1, 0, 0],
    ]);
    // Totals stay exact: 13 narinfo hits written, 3 misses.
    const report = await readRequestReport(pool, { top: 10 });
    expect(report.narinfo).toMatchObject({ hits: 13, misses: 3, unkeyed: 7 });
  });

  it("prunes buckets older than keepFor at each flush", async () => {
    const pool = await database();
    await writeCounts(pool, [
      { bucket: T0 - 40 * DAY, kind: "narinfo", key: A, hits: 1, misses: 0, bytes: 0 },
      { bucket: T0 - 2 * DAY, kind: "narinfo", key: B, hits: 1, misses: 0, bytes: 0 },
    ]);
    const stats = new RequestStats({ clock: () => T0 });
    const flush = flushOnDemand(pool, stats, () => T0);
    await flush.stop();
    expect(await rows(pool)).toEqual([[T0 - 2 * DAY, "narinfo", B, 1, 0, 0]]);
  });

  it("reports totals, the top paths and the misses of paths never served", async () => {
    const pool = await database();
    const C = "0".repeat(32);
    await writeCounts(pool, [
      { bucket: T0 - 2 * DAY, kind: "narinfo", key: B, hits: 9, misses: 0, bytes: 0 },
      { bucket: T0, kind: "narinfo", key: A, hits: 5, misses: 1, bytes: 0 },
      { bucket: T0, kind: "narinfo", key: B, hits: 0, misses: 3, bytes: 0 },
      { bucket: T0, kind: "narinfo", key: C, hits: 0, misses: 2, bytes: 0 },
      { bucket: T0, kind: "narinfo", key: OVERFLOW_KEY, hits: 4, misses: 6, bytes: 0 },
      { bucket: T0, kind: "nar", key: "nar/a.nar", hits: 2, misses: 0, bytes: 10 },
      { bucket: T0, kind: "nar", key: "nar/b.nar", hits: 1, misses: 0, bytes: 99 },
    ]);
    const report = await readRequestReport(pool, { since: T0 - DAY, top: 10 });
    expect(report.from).toBe(new Date(T0).toISOString());
    expect(report.narinfo).toEqual({ hits: 9, misses: 12, bytes: 0, unkeyed: 10 });
    expect(report.nar).toEqual({ hits: 3, misses: 0, bytes: 109, unkeyed: 0 });
    expect(report.topNarinfos).toEqual([
      { hashPart: A, storePath: null, hits: 5, misses: 1 },
      { hashPart: B, storePath: null, hits: 0, misses: 3 },
      { hashPart: C, storePath: null, hits: 0, misses: 2 },
    ]);
    expect(report.topNars.map((n) => n.path)).toEqual(["nar/b.nar", "nar/a.nar"]);
    // B missed in range but was found before it: not "never served".
    expect(report.missedNeverServed).toEqual([{ hashPart: C, misses: 2 }]);
    const all = await readRequestReport(pool, { top: 1 });
    expect(all.narinfo.hits).toBe(18);
    expect(all.topNarinfos.map((n) => n.hashPart)).toEqual([B]);
  });
});
