import { createHash } from "node:crypto";
import { join } from "node:path";
import pg from "pg";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../../test/helpers/postgres.js";
import { tempDir } from "../../test/helpers/tmp.js";
import { migrate } from "../db/migrate.js";
import { makeHlc } from "./hlc.js";
import { appendLocal, countByOrigin, type NewJournalRow } from "./journal-store.js";
import {
  ensurePublication,
  joinPeer,
  leavePeer,
  MeshError,
  MeshErrorCode,
  meshNames,
  meshStatus,
  nodeTag,
  normalizeConninfo,
  publicationName,
  redactConninfo,
  slotName,
  slotStatus,
  subscriptionName,
} from "./mesh.js";

function captureError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe("mesh names", () => {
  it("maps node ids to short, safe, distinct identifiers deterministically", () => {
    const ids = ["n1", "N1", "eu-1", "EU.1", "eu_1", "eu:1", "a@b+c=d", "x".repeat(200)];
    const tags = ids.map(nodeTag);
    expect(new Set(tags).size).toBe(ids.length);
    expect(ids.map(nodeTag)).toEqual(tags);
    for (const id of ids) {
      for (const name of [
        publicationName(id),
        subscriptionName(id),
        slotName(id, "y".repeat(200)),
        slotName("y".repeat(200), id),
      ]) {
        expect(name).toMatch(/^geospool_[a-z0-9_]+$/);
        expect(name.length).toBeLessThanOrEqual(63);
      }
    }
    expect(nodeTag("eu-1")).toBe(
      `eu_1_${createHash("sha256").update("eu-1").digest("hex").slice(0, 8)}`,
    );
    expect(slotName("a", "b")).not.toBe(slotName("b", "a"));
    expect(meshNames("self", "peer")).toEqual({
      publication: publicationName("peer"),
      subscription: subscriptionName("peer"),
      slot: slotName("peer", "self"),
    });
  });

  it("refuses ids that are not names", () => {
    for (const bad of ["", ".hidden", "a/b", "a b", "x".repeat(201)]) {
      const err = captureError(() => nodeTag(bad));
      expect(err).toBeInstanceOf(MeshError);
      expect((err as MeshError).code).toBe(MeshErrorCode.InvalidNodeId);
    }
  });

  it("normalizes and redacts peer URLs", () => {
    expect(normalizeConninfo("postgresql://u:p@127.0.0.1:5432/db")).toBe(
      "postgresql://u:p@127.0.0.1:5432/db?connect_timeout=10",
    );
    expect(normalizeConninfo("postgres://h/db?connect_timeout=3&sslmode=require")).toBe(
      "postgres://h/db?connect_timeout=3&sslmode=require",
    );
    expect(redactConninfo("postgresql://u:secret@h/db?password=also")).toBe(
      "postgresql://u:redacted@h/db?password=redacted",
    );
    for (const bad of ["host=h dbname=db", "http://h/db"]) {
      expect(() => normalizeConninfo(bad)).toThrow(
        expect.objectContaining({ code: MeshErrorCode.InvalidConninfo }),
      );
    }
  });
});

/**
 * Nodes as databases of one server: subscriptions between databases of one server work
 * because a join never creates a slot from inside CREATE SUBSCRIPTION.
 */
describe("mesh on one server", () => {
  let serverDir: Awaited<ReturnType<typeof tempDir>>;
  let server: TestPostgres;
  let anyFailed = false;
  beforeAll(async () => {
    serverDir = await tempDir("geospool-mesh-unit-");
    [server] = (await startPostgresServers(1, {
      dir: serverDir.path,
      settings: { synchronous_commit: "on" },
    })) as [TestPostgres];
  });
  afterAll(async () => {
    await stopPostgresServers(server ? [server] : []);
    await serverDir.cleanup(anyFailed);
  });

  interface Db {
    id: string;
    url: string;
    pool: pg.Pool;
  }
  let dbs: Db[] = [];
  let databases = 0;
  beforeEach((ctx) => {
    ctx.onTestFailed(() => {
      anyFailed = true;
    });
  });
  afterEach(async () => {
    await dropAll();
  });

  /** Subscriptions hold slots and workers on the shared server: drop them with the test. */
  async function dropAll() {
    for (const db of dbs) {
      const { rows } = await db.pool.query<{ subname: string }>(
        "select subname from pg_subscription where subdbid = (select oid from pg_database where datname = current_database())",
      );
      for (const r of rows) await db.pool.query(`drop subscription "${r.subname}"`);
    }
    await Promise.all(dbs.map((db) => db.pool.end()));
    dbs = [];
  }

  async function database(
    id: string,
    opts: { publish?: boolean; on?: TestPostgres } = {},
  ): Promise<Db> {
    const name = `mesh_${++databases}`;
    const on = opts.on ?? server;
    const admin = new pg.Client(on.url);
    await admin.connect();
    await admin.query(`create database ${name}`);
    await admin.end();
    const url = new URL(on.url);
    url.pathname = `/${name}`;
    const pool = new pg.Pool({ connectionString: url.toString(), max: 6 });
    pool.on("error", () => {});
    await migrate(pool);
    if (opts.publish ?? true) await ensurePublication(pool, id);
    const db = { id, url: url.toString(), pool };
    dbs.push(db);
    return db;
  }

  function link(self: Db, peer: Db) {
    return joinPeer(self.pool, { selfId: self.id, peerId: peer.id, peerConninfo: peer.url });
  }

  function rows(n: number, tag: string): NewJournalRow[] {
    return Array.from({ length: n }, (_, i) => ({
      hlc: makeHlc(Date.now(), i),
      entry: `${tag}-${i}`,
      op: "remove" as const,
      queue: "inbox",
      metadata: null,
      dataSha256: null,
      dataSize: null,
      leaseUntil: null,
      attempts: 0,
    }));
  }

  async function waitFor(what: string, probe: () => Promise<boolean>) {
    const deadline = Date.now() + 20_000;
    while (!(await probe())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async function rowsOf(db: Db, origin: string): Promise<number> {
    return (await countByOrigin(db.pool)).find((c) => c.origin === origin)?.rows ?? 0;
  }

  it("ensurePublication creates once, even when raced, and repairs a changed one", async () => {
    const db = await database("n1", { publish: false });
    const outcomes = await Promise.all(
      Array.from({ length: 4 }, () => ensurePublication(db.pool, db.id)),
    );
    expect(outcomes.map((o) => o.kind).sort()).toEqual(["created", "exists", "exists", "exists"]);
    const { rows: tables } = await db.pool.query<{ rowfilter: string }>(
      "select rowfilter from pg_publication_tables where pubname = $1 and tablename = 'journal'",
      [publicationName("n1")],
    );
    expect(tables[0]?.rowfilter).toContain("'n1'");
    await db.pool.query(
      `alter publication "${publicationName("n1")}" set (publish = 'insert, delete')`,
    );
    expect((await ensurePublication(db.pool, db.id)).kind).toBe("repaired");
    const { rows: flags } = await db.pool.query(
      "select pubinsert, pubupdate, pubdelete, pubtruncate from pg_publication where pubname = $1",
      [publicationName("n1")],
    );
    expect(flags[0]).toEqual({
      pubinsert: true,
      pubupdate: false,
      pubdelete: false,
      pubtruncate: false,
    });
    expect((await ensurePublication(db.pool, db.id)).kind).toBe("exists");
  });

  it("waits for a peer that does not publish yet, and refuses itself and unreachable peers", async () => {
    const a = await database("a");
    const b = await database("b", { publish: false });
    await appendLocal(b.pool, b.id, rows(3, "b"));
    expect((await link(a, b)).kind).toBe("peer_not_ready");
    expect((await meshStatus(a.pool)).peers).toEqual([]);
    await ensurePublication(b.pool, b.id);
    expect(await link(a, b)).toMatchObject({ kind: "created", copiedRows: 3 });
    expect(await rowsOf(a, "b")).toBe(3);

    const self = await joinPeer(a.pool, { selfId: "a", peerId: "a", peerConninfo: a.url }).catch(
      (e) => e,
    );
    expect(self.code).toBe(MeshErrorCode.InvalidNodeId);

    const closed = new URL(server.url);
    closed.port = "1"; // nothing listens there
    const gone = await joinPeer(a.pool, {
      selfId: "a",
      peerId: "ghost",
      peerConninfo: closed.toString(),
    }).catch((e) => e);
    expect(gone).toBeInstanceOf(MeshError);
    expect(gone.code).toBe(MeshErrorCode.PeerUnreachable);
    expect((await meshStatus(a.pool)).peers.map((p) => p.peerId)).toEqual(["b"]);
    expect(await leavePeer(a.pool, "ghost")).toEqual({ kind: "not_found" });
  });

  it("two nodes sharing a server replicate both ways; an interrupted join resumes", async () => {
    const a = await database("eu.a");
    const b = await database("EU-A"); // same tag text, different hash
    await appendLocal(a.pool, a.id, rows(5, "a"));
    const [ab, ba] = await Promise.all([link(a, b), link(b, a)]);
    expect(ab.kind).toBe("created");
    expect(ba).toMatchObject({ kind: "created", copiedRows: 5 });
    await appendLocal(b.pool, b.id, rows(2, "b"));
    await waitFor("b's rows on a", async () => (await rowsOf(a, b.id)) === 2);

    // As if a crashed between creating the subscription and finishing the join.
    await a.pool.query(`alter subscription "${subscriptionName(b.id)}" disable`);
    await a.pool.query("delete from node_peers");
    await appendLocal(b.pool, b.id, rows(4, "b2"));
    expect(await link(a, b)).toMatchObject({ kind: "resumed", copiedRows: 4 });
    expect(await rowsOf(a, b.id)).toBe(6);
    await appendLocal(b.pool, b.id, rows(1, "b3"));
    await waitFor("b's next row on a", async () => (await rowsOf(a, b.id)) === 7);
    expect(await link(a, b)).toMatchObject({ kind: "exists", peerReachable: true });

    // A changed connection string is applied to the subscription.
    const other = new URL(b.url);
    other.searchParams.set("application_name", "changed");
    expect(
      (await joinPeer(a.pool, { selfId: a.id, peerId: b.id, peerConninfo: other.toString() })).kind,
    ).toBe("updated");
    const { rows: subs } = await a.pool.query<{ subconninfo: string }>(
      "select subconninfo from pg_subscription where subname = $1",
      [subscriptionName(b.id)],
    );
    expect(subs[0]?.subconninfo).toContain("application_name=changed");
    const status = await meshStatus(a.pool);
    expect(status.peers).toHaveLength(1);
    expect(status.peers[0]).toMatchObject({ peerId: b.id, syncState: "ready", enabled: true });
  });

  it("the join's initial copy keeps a small entry's data with its enqueue row", async () => {
    const a = await database("copy.a");
    const b = await database("copy.b");
    const data = Buffer.from("the data of a small entry");
    await appendLocal(a.pool, a.id, [
      {
        hlc: makeHlc(Date.now(), 0),
        entry: "small-0",
        op: "enqueue",
        queue: "inbox",
        metadata: Buffer.from("meta"),
        inlineData: data,
        dataSha256: createHash("sha256").update(data).digest("hex"),
        dataSize: data.length,
        leaseUntil: null,
        attempts: 0,
      },
    ]);
    expect(await link(b, a)).toMatchObject({ kind: "created", copiedRows: 1 });
    const { rows: copied } = await b.pool.query<{ data: Buffer | null }>(
      "select data from journal where origin = $1 and entry = 'small-0'",
      [a.id],
    );
    expect(copied[0]?.data?.equals(data)).toBe(true);
  });

  it("a slot invalidated by max_slot_wal_keep_size is reported, and the next join rebuilds", async () => {
    // Its own server: the setting is given on the command line, which ALTER SYSTEM cannot
    // override. These servers have 1 MB WAL segments.
    const [small] = (await startPostgresServers(1, {
      dir: join(serverDir.path, "small"),
      settings: { synchronous_commit: "on", max_slot_wal_keep_size: "2MB" },
    })) as [TestPostgres];
    try {
      const a = await database("a", { on: small });
      const b = await database("b", { on: small });
      expect((await link(a, b)).kind).toBe("created");
      // a stops consuming; b's server then writes more WAL than it may keep for a's slot.
      await a.pool.query(`alter subscription "${subscriptionName(b.id)}" disable`);
      await waitFor("the slot to go inactive", async () => {
        const { rows } = await b.pool.query(
          "select active from pg_replication_slots where slot_name = $1",
          [slotName(b.id, a.id)],
        );
        return rows[0]?.active === false;
      });
      for (let i = 0; i < 4; i++) {
        await appendLocal(b.pool, b.id, rows(1, `wal${i}`));
        await b.pool.query("select pg_switch_wal()");
      }
      await b.pool.query("checkpoint");
      const report = await slotStatus(b.pool, { selfId: b.id, peerIds: [a.id] });
      expect(report.settings.maxSlotWalKeepSizeBytes).toBe(2 * 1024 * 1024);
      const slot = report.slots.find((x) => x.slotName === slotName(b.id, a.id));
      expect(slot).toMatchObject({
        kind: "mesh",
        subscriberId: a.id,
        walStatus: "lost",
        invalidationReason: "wal_removed",
      });
      expect(report.warnings.some((w) => w.includes("invalidated") && w.includes(a.id))).toBe(true);
      expect(await link(a, b)).toMatchObject({
        kind: "rebuilt",
        reason: "slot_invalidated",
        copiedRows: 4,
      });
      await appendLocal(b.pool, b.id, rows(1, "after"));
      await waitFor("b's row after the rebuild", async () => (await rowsOf(a, b.id)) === 5);
      expect((await meshStatus(a.pool)).peers[0]).toMatchObject({ applyErrorCount: 0 });
    } finally {
      await dropAll();
      await stopPostgresServers([small]);
    }
  });

  it("a row that diverges from one already stored stops the link loudly", async () => {
    const a = await database("a");
    const b = await database("b");
    expect((await link(a, b)).kind).toBe("created");
    // a holds a row under b's next key that b never wrote (b's database was rebuilt, say).
    await a.pool.query(
      "insert into journal (origin, seq, hlc, entry, op, queue) values ('b', 1, 1, 'x', 'remove', 'q')",
    );
    await appendLocal(b.pool, b.id, rows(1, "real"));
    await waitFor("an apply error", async () => {
      const p = (await meshStatus(a.pool)).peers[0];
      return (p?.applyErrorCount ?? 0) > 0;
    });
    const status = await meshStatus(a.pool);
    expect(status.warnings.some((w) => w.includes("apply"))).toBe(true);
    const { rows: stored } = await a.pool.query("select entry from journal where origin = 'b'");
    expect(stored).toEqual([{ entry: "x" }]);
  });
});
