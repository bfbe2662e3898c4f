import pg from "pg";
import { describe, expect, it } from "vitest";
import { useMigratedDatabases } from "../../test/helpers/postgres.js";
import { readClusterRequestReport } from "./request-report-cluster.js";
import { type CountRow, HOUR_MS } from "./request-stats.js";
import { writeCounts } from "./request-stats-store.js";

const T0 = Date.UTC(2026, 11, 6, 10, 0, 0);
const [A, B, C, D, E, F] = ["a", "b", "c", "d", "e", "f"].map((c) => c.repeat(32)) as [
  string,
  string,
  string,
  string,
  string,
  string,
];

const { database } = useMigratedDatabases("reqcluster");

const narinfo = (key: string, hits: number, misses: number, bucket = T0): CountRow => ({
  bucket,
  kind: "narinfo",
  key,
  hits,
  misses,
  bytes: 0,
});
const nar = (key: string, hits: number, bytes: number): CountRow => ({
  bucket: T0,
  kind: "nar",
  key,
  hits,
  misses: 0,
  bytes,
});

describe("the cluster's request report", () => {
  it("adds up every node's counts, ranks the sums, and names the node it could not read", async () => {
    const a = await database();
    const b = await database();
    await writeCounts(a, [
      narinfo(A, 5, 1),
      narinfo(E, 4, 0),
      narinfo(B, 0, 3),
      narinfo(F, 0, 7),
      nar("nar/a.nar", 1, 10),
    ]);
    await writeCounts(b, [
      narinfo(E, 5, 0),
      narinfo(C, 0, 4),
      narinfo(A, 2, 0),
      narinfo(D, 0, 2),
      // B was found on b, an hour before: not "never served" anywhere.
      narinfo(B, 1, 0, T0 - HOUR_MS),
      nar("nar/a.nar", 1, 5),
      nar("nar/b.nar", 1, 12),
    ]);
    // F is served by b now (uploaded after a missed it).
    await b.query(
      `insert into cache_entries (entry, hash_part, url, trust, origin, hlc, narinfo, uploaded_by)
       values ('e1', $1, 'nar/f.nar', 'trusted', 'b', 1, $2, 'x')`,
      [F, Buffer.from(`StorePath: /nix/store/${F}-f\n`)],
    );
    await b.query("insert into cache_served (hash_part, entry) values ($1, 'e1')", [F]);

    const report = await readClusterRequestReport(
      [
        { node: "a", pool: a },
        { node: "b", pool: b },
        { node: "c", pool: undefined },
      ],
      { since: T0 - 2 * HOUR_MS, top: 2 },
    );
    // On a alone A ranks first, on b alone E: summed, E (9) before A (8).
    expect(report.topNarinfos).toEqual([
      { hashPart: E, storePath: null, hits: 9, misses: 0 },
      { hashPart: A, storePath: null, hits: 7, misses: 1 },
    ]);
    expect(report.topNars).toEqual([
      { path: "nar/a.nar", hits: 2, misses: 0, bytes: 15 },
      { path: "nar/b.nar", hits: 1, misses: 0, bytes: 12 },
    ]);
    // F missed 7 times on a, but b serves it; B was found on b.
    expect(report.missedNeverServed).toEqual([
      { hashPart: C, misses: 4 },
      { hashPart: D, misses: 2 },
    ]);
    expect(report.narinfo).toEqual({ hits: 17, misses: 17, bytes: 0, unkeyed: 0 });
    expect(report.nar).toEqual({ hits: 3, misses: 0, bytes: 27, unkeyed: 0 });
    expect(report.from).toBe(new Date(T0 - HOUR_MS).toISOString());
    expect(report.to).toBe(new Date(T0).toISOString());
    expect(report.nodes.map((n) => [n.node, n.narinfo?.hits, n.error])).toEqual([
      ["a", 9, undefined],
      ["b", 8, undefined],
      ["c", undefined, expect.stringMatching(/PostgreSQL URL is not in this configuration/)],
    ]);
  });

  it("reports a node whose database fails, and still adds up the others", async () => {
    const a = await database();
    await writeCounts(a, [narinfo(A, 1, 0)]);
    const broken = new pg.Pool({ connectionString: "postgres://nobody@127.0.0.1:1/none", max: 1 });
    broken.on("error", () => undefined);
    const report = await readClusterRequestReport(
      [
        { node: "a", pool: a },
        { node: "down", pool: broken },
      ],
      { top: 5 },
    ).finally(() => broken.end());
    expect(report.narinfo.hits).toBe(1);
    expect(report.topNarinfos.map((n) => n.hashPart)).toEqual([A]);
    expect(report.nodes[1]).toMatchObject({
      node: "down",
      error: expect.stringMatching(/ECONNREFUSED|connect/),
    });
  });
});
