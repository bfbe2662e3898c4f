import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import pg from "pg";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  GUIX,
  NIX_XZ,
  NIX_ZSTD,
  narinfoFixtures,
  readFixture,
} from "../../test/helpers/cache-fixtures.js";
import { useSharedPostgres } from "../../test/helpers/postgres.js";
import { useTempDir } from "../../test/helpers/tmp.js";
import { migrate } from "../db/migrate.js";
import { ensurePublication } from "../replication/mesh.js";
import { jsonCodec, Spool } from "../spool/index.js";
import { NarStaging } from "./nar-staging.js";
import { parseNarinfo } from "./narinfo.js";
import {
  type CacheEntryCodec,
  type CacheRecord,
  fileHashOfDigest,
  SpoolCacheStore,
} from "./spool-cache-store.js";
import { stampOfMs } from "./upload-stamp.js";

interface Meta {
  record?: CacheRecord;
  sha256: string;
  size: number;
}
const codec: CacheEntryCodec<Meta> = {
  wrap: (record, data) => ({ record, ...data }),
  unwrap: (m) => m.record,
};
const INFO = { storeDir: "/nix/store", wantMassQuery: true, priority: 30 };
const dir = useTempDir("geospool-spool-cache-");
const shared = useSharedPostgres("spoolcache");
const pools: pg.Pool[] = [];
afterEach(async () => {
  for (const pool of pools.splice(0)) await pool.end();
});

async function database(): Promise<pg.Pool> {
  const pool = new pg.Pool({ connectionString: await shared.freshDatabase(), max: 4 });
  pools.push(pool);
  await migrate(pool);
  return pool;
}

/** A node's view of the one spool directory, with its own database (or `pool`'s). */
async function node(origin: string, clock: () => number, pool?: pg.Pool) {
  const db = pool ?? (await database());
  const spool = await Spool.load(
    join(dir.path, "spool"),
    { metadata: jsonCodec<Meta>(), queues: ["cache", "other"] },
    { createIfMissing: true },
  );
  const store = await SpoolCacheStore.open({
    spool,
    queue: "cache",
    codec,
    info: INFO,
    origin,
    stamp: () => stampOfMs(clock()),
    pool: db,
  });
  const staging = await NarStaging.open(join(dir.path, `staging-${origin}`), { maxBytes: 1 << 20 });
  return { spool, store, staging, pool: db };
}

async function upload(n: Awaited<ReturnType<typeof node>>, cache: string, index: number) {
  const [, bytes] = narinfoFixtures(cache)[index]!;
  const info = parseNarinfo(bytes);
  const staged = await n.staging.put(info.url, Readable.from([readFixture(cache, info.url)]));
  if (staged.kind !== "staged") throw new Error(staged.kind);
  const nar = n.staging.take(info.url);
  return n.store.commit({
    narinfo: info,
    served: bytes,
    nar,
    listing: undefined,
    trust: "trusted",
    by: "t",
  });
}

describe("the cache over a spool queue", () => {
  it("stores an upload as one entry whose data digest is the FileHash, and serves it", async () => {
    const a = await node("eu-1", () => 100);
    expect(await upload(a, NIX_XZ, 2)).toBe("stored");
    const [entry] = await a.spool.list("cache");
    const meta = await entry!.direct.contents();
    const [, bytes] = narinfoFixtures(NIX_XZ)[2]!;
    const info = parseNarinfo(bytes);
    expect(fileHashOfDigest(meta.sha256)).toBe(`sha256:${info.url.slice(4, 56)}`);
    expect(meta.size).toBe(info.fileSize);
    expect((await a.store.narinfo(info.storePath.hashPart))!.equals(bytes)).toBe(true);
    const nar = await a.store.openNar(info.url);
    expect(await buffer(nar!.read())).toEqual(readFixture(NIX_XZ, info.url));
    expect(await upload(a, NIX_XZ, 2)).toBe("already_served");
    expect(await a.spool.list("cache")).toHaveLength(1);
  });

  it("serves the same upload on every node whatever order entries arrived in; a nar stays while an entry holds it", async () => {
    const a = await node("eu-1", () => 100);
    const b = await node("us-1", () => 200);
    await upload(b, NIX_ZSTD, 2); // later stamp, reached b first
    await upload(a, NIX_XZ, 2);
    const hash = parseNarinfo(narinfoFixtures(NIX_XZ)[2]![1]).storePath.hashPart;
    await a.store.refresh();
    await b.store.refresh();
    const xz = narinfoFixtures(NIX_XZ)[2]![1];
    expect((await a.store.narinfo(hash))!.equals(xz)).toBe(true);
    expect((await b.store.narinfo(hash))!.equals(xz)).toBe(true);
    const zstUrl = parseNarinfo(narinfoFixtures(NIX_ZSTD)[2]![1]).url;
    expect(await b.store.openNar(zstUrl)).toBeDefined();

    // Removing the served upload's entry (GC, replicated) lets the other one be served.
    const served = (await a.store.served(hash))!;
    await a.spool.entry("cache", served.entry).direct.remove();
    await a.store.changed(served.entry); // as the service's transition or a replicated drop
    await b.store.refresh();
    expect((await a.store.narinfo(hash))!.equals(narinfoFixtures(NIX_ZSTD)[2]![1])).toBe(true);
    expect((await b.store.narinfo(hash))!.equals(narinfoFixtures(NIX_ZSTD)[2]![1])).toBe(true);
    expect(await b.store.openNar(parseNarinfo(xz).url)).toBeUndefined();
  });

  it("ignores entries that are not cache records and rebuilds its index from the queue", async () => {
    const a = await node("eu-1", () => 1);
    await a.spool.enqueue("cache", { sha256: "00", size: 0 }, "");
    await upload(a, NIX_XZ, 0);
    const hash = "3krxljsj1sqc3iv7snmxba6pmc7mkl3f";
    const served = (await a.store.narinfo(hash))!;
    expect(a.store.size).toBe(1);

    // Rows gone, the same spool: the next open finds the queue's entries missing and adds them.
    await a.pool.query("delete from cache_entries");
    const again = await node("eu-1", () => 1, a.pool);
    expect((await again.store.narinfo(hash))!.equals(served)).toBe(true);
    expect(again.store.size).toBe(1);

    // Served rows gone: chosen again at open.
    await a.pool.query("delete from cache_served");
    const chosen = await node("eu-1", () => 1, a.pool);
    expect((await chosen.store.narinfo(hash))!.equals(served)).toBe(true);

    // An index derived from another spool is dropped and rebuilt.
    await a.pool.query("update cache_index_state set spool_id = 'another'");
    await a.pool.query(
      "insert into cache_entries values ('x', $1, 'nar/x.nar', 'trusted', 'o', 1, 'junk', null, 'by')",
      ["0".repeat(32)],
    );
    const rebuilt = await node("eu-1", () => 1, a.pool);
    expect(rebuilt.store.size).toBe(1);
    expect(await rebuilt.store.served("0".repeat(32))).toBeUndefined();
    expect(await rebuilt.store.narinfo("0".repeat(32))).toBeUndefined();
    expect((await rebuilt.store.narinfo(hash))!.equals(served)).toBe(true);
  });

  it("keeps the index in PostgreSQL with the served entry and the references, never in the publication", async () => {
    const a = await node("eu-1", () => 1);
    for (const i of [0, 1, 2]) await upload(a, NIX_XZ, i);
    const hashes = narinfoFixtures(NIX_XZ).map(([, b]) => parseNarinfo(b));
    for (const info of hashes.slice(0, 3)) {
      const h = info.storePath.hashPart;
      const { rows } = await a.pool.query(
        "select s.entry, e.narinfo from cache_served s join cache_entries e using (entry) where s.hash_part = $1",
        [h],
      );
      expect(rows[0].entry).toBe((await a.store.served(h))!.entry);
      // The memory front serves what PostgreSQL says is served.
      expect((await a.store.narinfo(h))!.equals(rows[0].narinfo)).toBe(true);
      expect(await a.store.references(h)).toEqual(
        [...new Set(info.references.map((r) => r.hashPart))].sort(),
      );
    }
    await ensurePublication(a.pool, "eu-1");
    const { rows } = await a.pool.query<{ tablename: string }>(
      "select tablename from pg_publication_tables",
    );
    expect(rows.map((r) => r.tablename)).toEqual(["journal"]);
  });

  it("serves a narinfo of several nars only once the entry of each has come", async () => {
    const a = await node("eu-1", () => 1);
    const [, bytes] = narinfoFixtures(GUIX).find(([, b]) => parseNarinfo(b).files.length > 1)!;
    const info = parseNarinfo(bytes);
    const files = info.files.map((f) => f.url);
    for (const [i, url] of files.entries()) {
      expect(await a.store.narinfo(info.storePath.hashPart)).toBeUndefined();
      const staged = await a.staging.put(url, Readable.from([readFixture(GUIX, url)]));
      if (staged.kind !== "staged") throw new Error(staged.kind);
      await a.store.commit({
        narinfo: info,
        served: bytes,
        nar: a.staging.take(url),
        listing: undefined,
        trust: "trusted",
        by: "t",
        files,
      });
      expect((await a.store.served(info.storePath.hashPart)) === undefined).toBe(
        i < files.length - 1,
      );
      expect((await a.store.narinfo(info.storePath.hashPart)) === undefined).toBe(
        i < files.length - 1,
      );
    }
    expect((await a.store.narinfo(info.storePath.hashPart))!.equals(bytes)).toBe(true);
  });

  it("indexes an entry whose update failed, without waiting for another change", async () => {
    const a = await node("eu-1", () => 1);
    await a.pool.query("alter table cache_served rename to cache_served_away");
    await expect(upload(a, NIX_XZ, 0)).rejects.toThrow(/cache_served/);
    expect(await a.spool.list("cache")).toHaveLength(1);
    await a.pool.query("alter table cache_served_away rename to cache_served");
    await vi.waitFor(
      async () => expect(await a.store.narinfo("3krxljsj1sqc3iv7snmxba6pmc7mkl3f")).toBeDefined(),
      { timeout: 10_000, interval: 50 },
    );
    await a.store.close();
  });
});
