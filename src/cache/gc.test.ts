import { join } from "node:path";
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { useSharedPostgres } from "../../test/helpers/postgres.js";
import { useTempDir } from "../../test/helpers/tmp.js";
import { migrate } from "../db/migrate.js";
import { jsonCodec, Spool } from "../spool/index.js";
import { type CacheRoot, RootInputError, RootStore } from "./cache-roots.js";
import { CacheError } from "./errors.js";
import { CacheGc } from "./gc.js";
import { stampOfMs } from "./upload-stamp.js";

/**
 * CacheGc over a real spool and PostgreSQL: the index rows are written here directly (what
 * the cache's index would hold for each entry), and `onRemoved` drops them as the index does.
 */

interface Meta {
  root?: CacheRoot;
  size: number;
}
type Q = "cache" | "roots";

const dir = useTempDir("geospool-gc-");
const shared = useSharedPostgres("gc");
const pools: pg.Pool[] = [];
afterEach(async () => {
  for (const pool of pools.splice(0)) await pool.end();
});

const H = (c: string) => c.repeat(32); // a hash part of one nix32 character
const NOW = 1_000_000;
const GRACE = 1_000;

async function setup(opts: { peers?: string[]; removeAtOnce?: number } = {}) {
  const pool = new pg.Pool({ connectionString: await shared.freshDatabase(), max: 2 });
  pools.push(pool);
  await migrate(pool);
  const spool = await Spool.load<Meta, Q>(
    join(dir.path, "spool"),
    { metadata: jsonCodec<Meta>(), queues: ["cache", "roots"] },
    { createIfMissing: true },
  );
  const clock = () => NOW;
  const roots = new RootStore<Meta, Q>({
    spool,
    queue: "roots",
    clock,
    codec: { wrap: (root) => ({ root, size: 0 }), unwrap: (m) => m.root },
  });
  const removedHooks: Array<(entry: string) => Promise<void>> = [];
  const gc = new CacheGc<Meta, Q>({
    spool,
    queue: "cache",
    roots,
    pool,
    graceMs: GRACE,
    peers: opts.peers ?? [],
    maxPeerSilenceMs: 60_000,
    peerSettleMs: 0,
    sizeOf: (m) => m.size,
    async onRemoved(entry) {
      await pool.query("delete from cache_entries where entry = $1", [entry]);
      for (const hook of removedHooks) await hook(entry);
    },
    clock,
    ...(opts.removeAtOnce === undefined ? {} : { removeAtOnce: opts.removeAtOnce }),
  });
  /** An entry of hash part `h`, stamped `hlc`, referencing `refs`, with `size` bytes. */
  async function entry(h: string, hlc: number, refs: string[] = [], size = 10): Promise<string> {
    const e = await spool.enqueue("cache", { size }, Buffer.alloc(size));
    await pool.query(
      `insert into cache_entries (entry, hash_part, url, trust, origin, hlc, narinfo, uploaded_by, refs)
       values ($1, $2, $3, 'trusted', 'n1', $4, '', 'test', $5)`,
      [e.name, h, `nar/${e.name}.nar`, stampOfMs(hlc).toString(), refs],
    );
    return e.name;
  }
  return { pool, spool, roots, gc, entry, removedHooks };
}

describe("CacheGc", () => {
  it("removes unreachable old entries through the spool, keeps roots' closures and young uploads", async () => {
    const { spool, roots, gc, entry } = await setup();
    const app = await entry(H("a"), NOW - 5_000, [H("b")]);
    const lib = await entry(H("b"), NOW - 5_000);
    const doc = await entry(H("c"), NOW - 5_000, [], 100);
    const fresh = await entry(H("d"), NOW - 10, [H("e")]);
    const dep = await entry(H("e"), NOW - 5_000);
    await roots.add(`/nix/store/${H("a")}-app`, "ops", { note: "release" });
    await roots.add(H("c"), "ops", { expiresAt: NOW + 1 });
    // An expired root is ignored (and removed); written as a peer would have written it.
    await spool.enqueue(
      "roots",
      { root: { v: 1, hashPart: H("c"), by: "ops", at: 1, expiresAt: NOW - 1 }, size: 0 },
      "",
    );

    const dry = await gc.run({ dryRun: true });
    expect(dry.removed).toEqual([]); // c is rooted until NOW + 1
    expect(dry.rootsRemoved).toBe(1);
    expect(dry.roots).toEqual({ live: 2, expired: 1 });
    expect((await spool.list("roots")).length).toBe(3); // a dry run changes nothing

    const report = await gc.run();
    expect(report.blocked).toBeUndefined();
    expect(report.removed).toEqual([]);
    expect(report.rootsRemoved).toBe(1);
    expect(report.kept).toBe(5);
    expect((await spool.list("roots")).length).toBe(2);

    await roots.remove(H("c"));
    const second = await gc.run();
    expect(second.removed.map((r) => r.entry)).toEqual([doc]);
    expect(second.bytesFreed).toBe(100);
    const left = (await spool.list("cache")).map((e) => e.name).sort();
    expect(left).toEqual([app, lib, fresh, dep].sort());
    await expect(spool.entry("cache", doc).dataFile().stat()).rejects.toThrow();
  });

  it("walks again between batches: an entry that became live meanwhile is kept", async () => {
    const { spool, gc, entry, removedHooks } = await setup({ removeAtOnce: 1 });
    const x = await entry(H("x"), 1);
    const y = await entry(H("y"), 2);
    // While x is being removed, a young upload referencing y arrives.
    removedHooks.push(async (removed) => {
      if (removed === x) await entry(H("p"), NOW, [H("y")]);
    });
    const report = await gc.run();
    expect(report.removed.map((r) => r.entry)).toEqual([x]);
    expect(report.kept).toBe(2);
    expect((await spool.list("cache")).map((e) => e.name)).toContain(y);
  });

  it("a root someone has checked out still keeps its closure", async () => {
    const { spool, roots, gc, entry } = await setup();
    const kept = await entry(H("k"), 1);
    await roots.add(H("k"), "ops");
    const taken = await spool.checkoutIfPresent((await spool.list("roots"))[0]!);
    expect(taken.kind).toBe("ok");
    expect((await roots.list()).map((r) => r.root.hashPart)).toEqual([H("k")]);
    const report = await gc.run();
    expect(report.removed).toEqual([]);
    expect((await spool.list("cache")).map((e) => e.name)).toEqual([kept]);
  });

  it("removes nothing while a configured peer is not joined, and says why", async () => {
    const { spool, gc, entry } = await setup({ peers: ["eu-2"] });
    const old = await entry(H("o"), 1);
    const dry = await gc.run({ dryRun: true });
    expect(dry.blocked).toBe('peer "eu-2" is not joined yet');
    expect(dry.removed.map((r) => r.entry)).toEqual([old]);
    const run = await gc.run();
    expect(run.blocked).toBe('peer "eu-2" is not joined yet');
    expect(run.removed).toEqual([]);
    expect((await spool.list("cache")).map((e) => e.name)).toEqual([old]);
  });

  it("removes nothing while a young entry from a peer is journaled but not indexed", async () => {
    const { pool, gc, entry } = await setup();
    await entry(H("o"), 1);
    // Journal rows carry the cluster clock's values, as upload stamps do: an old entry not
    // indexed (its upload long past the grace) holds nothing back, a young one does.
    await pool.query(
      `insert into journal (origin, seq, hlc, entry, op, queue) values ('n2', 1, $1, 'n2-old', 'enqueue', 'cache')`,
      [stampOfMs(NOW - 50_000).toString()],
    );
    await pool.query(
      `insert into journal (origin, seq, hlc, entry, op, queue) values ('n2', 3, $1, 'n2-e', 'enqueue', 'cache')`,
      [stampOfMs(NOW - 10).toString()],
    );
    expect((await gc.run()).blocked).toMatch(/1 young cache entries are journaled but not indexed/);
    await pool.query(
      `insert into journal (origin, seq, hlc, entry, op, queue) values ('n2', 4, $1, 'n2-e', 'remove', 'cache')`,
      [stampOfMs(NOW - 5).toString()],
    );
    const run = await gc.run();
    expect(run.blocked).toBeUndefined();
    expect(run.removed.length).toBe(1);
  });

  it("refuses bad roots with a typed error and adds nothing", async () => {
    const { spool, roots } = await setup();
    await expect(roots.add("not-a-path", "ops")).rejects.toBeInstanceOf(CacheError);
    await expect(roots.add("/nix/store/short-x", "ops")).rejects.toBeInstanceOf(CacheError);
    await expect(roots.add(H("a"), "ops", { expiresAt: NOW })).rejects.toBeInstanceOf(
      RootInputError,
    );
    await expect(roots.add(H("a"), "ops", { note: "x".repeat(2000) })).rejects.toBeInstanceOf(
      RootInputError,
    );
    expect(await spool.list("roots")).toEqual([]);
    // A Guix path is a path like any.
    const g = await roots.add(`/gnu/store/${H("g")}-guile-3.0`, "ops");
    expect(g.root).toMatchObject({ hashPart: H("g"), storePath: `/gnu/store/${H("g")}-guile-3.0` });
  });
});
