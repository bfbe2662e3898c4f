import { createHash } from "node:crypto";
import pg from "pg";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { migrate } from "../../src/db/migrate.js";
import { makeHlc } from "../../src/replication/hlc.js";
import {
  appendLocal,
  countByOrigin,
  type NewJournalRow,
} from "../../src/replication/journal-store.js";
import {
  dropPeerSlot,
  ensurePublication,
  joinPeer,
  leavePeer,
  listPeers,
  meshStatus,
  slotName,
  slotStatus,
  subscriptionName,
} from "../../src/replication/mesh.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * Four real PostgreSQL 18 servers shared by the tests. Each test makes its own nodes: fresh
 * databases (one per node, on servers 0..3) and node ids of its own, so its publications,
 * subscriptions and slots never meet another test's, and it builds the mesh it needs; no
 * test depends on what another one did. A test that stops a server starts its own.
 */

// Node ids with the characters a name may hold, to exercise the identifier mapping; each
// test adds its number (`eu-1.a-t3`).
const BASE = { A: "eu-1.a", B: "US:b", C: "ap@c", D: "d=late+1" } as const;
let A: string;
let B: string;
let C: string;
let D: string;
let test = 0;

interface Node {
  id: string;
  /** The node's own database on `server`. */
  url: string;
  server: TestPostgres;
  pool: pg.Pool;
}

const dir = useSuiteTempDir("geospool-mesh-");
let servers: TestPostgres[] = [];
const nodes: Record<string, Node> = {};
const latencies: number[] = [];

beforeAll(async () => {
  // The test servers run with fsync off, which also turns synchronous_commit off; then a commit
  // reaches the walsenders only when the WAL writer flushes (wal_writer_delay, 200 ms). With
  // fsync off a flush is cheap, so keep commits synchronous: rows replicate in milliseconds.
  servers = await startPostgresServers(4, {
    dir: dir.path,
    settings: { synchronous_commit: "on" },
  });
});

beforeEach(() => {
  test++;
  [A, B, C, D] = [BASE.A, BASE.B, BASE.C, BASE.D].map((id) => `${id}-t${test}`) as [
    string,
    string,
    string,
    string,
  ];
});

afterEach(async () => {
  const ending = Object.values(nodes);
  for (const id of Object.keys(nodes)) delete nodes[id];
  // Drop this test's subscriptions (without reaching the peer), then their slots, so no apply
  // worker or walsender of a finished test holds the shared servers' worker slots.
  await Promise.allSettled(
    ending.map(async (n) => {
      const { rows } = await n.pool.query<{ subname: string }>(
        `select subname from pg_subscription
         where subdbid = (select oid from pg_database where datname = current_database())`,
      );
      for (const { subname } of rows) {
        const sub = pg.escapeIdentifier(subname);
        await n.pool.query(`alter subscription ${sub} disable`);
        await n.pool.query(`alter subscription ${sub} set (slot_name = none)`);
        await n.pool.query(`drop subscription ${sub}`);
      }
    }),
  );
  const databases = [0, 1, 2, 3].map((i) => databaseName(i));
  await Promise.allSettled(servers.map((server) => dropSlots(server, databases)));
  await Promise.allSettled(ending.map((n) => n.pool.end()));
});

function databaseName(place: number): string {
  return `mesh_t${test}_${place}`;
}

/** Drop the slots of `databases` on `server`, once their walsenders have gone. */
async function dropSlots(server: TestPostgres, databases: string[]): Promise<void> {
  const client = new pg.Client(server.url);
  await client.connect();
  try {
    await waitFor(`the slots of ${databases.join(", ")} to go`, async () => {
      const { rows } = await client.query<{ slot_name: string; active: boolean }>(
        "select slot_name, active from pg_replication_slots where database = any($1)",
        [databases],
      );
      for (const r of rows.filter((r) => !r.active)) {
        await client.query("select pg_drop_replication_slot($1)", [r.slot_name]).catch(() => {});
      }
      return rows.length === 0 || undefined;
    });
  } finally {
    await client.end();
  }
}

/**
 * Nodes `ids` of this test, each on a fresh database (on `server`, else on the server of the
 * id's place in A, B, C, D), migrated, with its publication; no subscriptions yet.
 */
async function makeNodes(ids: string[], server?: TestPostgres): Promise<void> {
  await Promise.all(
    ids.map(async (id) => {
      const on = server ?? (servers[[A, B, C, D].indexOf(id)] as TestPostgres);
      const name = databaseName([A, B, C, D].indexOf(id));
      const admin = new pg.Client(on.url);
      await admin.connect();
      try {
        await admin.query(`create database ${name}`);
      } finally {
        await admin.end();
      }
      const url = new URL(on.url);
      url.pathname = `/${name}`;
      const pool = new pg.Pool({ connectionString: url.toString(), max: 4 });
      pool.on("error", () => {});
      nodes[id] = { id, url: url.toString(), server: on, pool };
      await migrate(pool);
      await pool.query("insert into node_info (node_id, region) values ($1, 'test')", [id]);
      expect((await ensurePublication(pool, id)).kind).toBe("created");
    }),
  );
}

/** Every node of `ids` subscribed to every other; returns once the initial copies are done. */
async function fullMesh(ids: string[]): Promise<void> {
  const links = ids.flatMap((self) => ids.filter((p) => p !== self).map((peer) => [self, peer]));
  for (const [self, peer] of links) {
    expect((await join(self as string, peer as string)).kind).toBe("created");
  }
}

afterAll(async () => {
  if (latencies.length > 0) {
    const sorted = [...latencies].sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    console.log(
      `append→visible on a peer over ${sorted.length} rows: median ${at(0.5)} ms, ` +
        `p90 ${at(0.9)} ms, max ${sorted.at(-1)} ms`,
    );
  }
  await stopPostgresServers(servers);
});

function node(id: string): Node {
  const n = nodes[id];
  if (n === undefined) throw new Error(`no node ${id}`);
  return n;
}

function join(self: string, peer: string) {
  return joinPeer(node(self).pool, {
    selfId: self,
    peerId: peer,
    peerConninfo: node(peer).url,
  });
}

let entries = 0;
function rows(n: number, origin: string): NewJournalRow[] {
  const now = Date.now();
  return Array.from({ length: n }, (_, i) => {
    const name = `${origin.replace(/[^A-Za-z0-9]/g, "_")}-${++entries}`;
    return {
      hlc: makeHlc(now, i),
      entry: name,
      op: "enqueue" as const,
      queue: "inbox",
      metadata: Buffer.from(`metadata of ${name}`),
      dataSha256: createHash("sha256").update(name).digest("hex"),
      dataSize: name.length,
      leaseUntil: null,
      attempts: 0,
    };
  });
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Rows per origin on one node. */
async function counts(id: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const c of await countByOrigin(node(id).pool)) out[c.origin] = c.rows;
  return out;
}

/** A digest of every stored row (all columns), per origin. */
async function digests(id: string): Promise<Record<string, string>> {
  const { rows } = await node(id).pool.query<{ origin: string; digest: string; n: string }>(
    `select origin, count(*) as n,
            md5(string_agg(format('%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s', seq, hlc, entry, op, queue,
                                  encode(metadata, 'hex'), data_sha256, data_size, lease_until,
                                  attempts, recorded_at), ',' order by seq)) as digest
     from journal group by origin`,
  );
  return Object.fromEntries(rows.map((r) => [r.origin, `${r.n}:${r.digest}`]));
}

async function hasRow(id: string, origin: string, seq: bigint): Promise<boolean> {
  const { rowCount } = await node(id).pool.query(
    "select 1 from journal where origin = $1 and seq = $2",
    [origin, seq.toString()],
  );
  return rowCount === 1;
}

async function waitForCounts(ids: string[], expected: Record<string, number>) {
  for (const id of ids) {
    await waitFor(`${id} to hold ${JSON.stringify(expected)}`, async () => {
      const got = await counts(id);
      return Object.entries(expected).every(([o, n]) => got[o] === n) || undefined;
    });
  }
}

async function slotNames(id: string): Promise<string[]> {
  const { rows } = await node(id).pool.query<{ slot_name: string }>(
    "select slot_name from pg_replication_slots order by 1",
  );
  return rows.map((r) => r.slot_name);
}

describe("replication mesh", () => {
  it("A, B and C join each other at once, and a racing second join changes nothing", async () => {
    await makeNodes([A, B, C]);
    // Rows written before the mesh exists reach every peer by the initial copy.
    for (const id of [A, B, C]) await appendLocal(node(id).pool, id, rows(20, id));
    const links = [A, B, C].flatMap((self) =>
      [A, B, C].filter((p) => p !== self).map((peer) => [self, peer] as const),
    );
    // Every link at once, and A→B twice: the mutual joins must not wait on each other.
    const outcomes = await Promise.all([
      ...links.map(([self, peer]) => join(self, peer)),
      join(A, B),
    ]);
    const kinds = outcomes.map((o) => o.kind).sort();
    expect(kinds.filter((k) => k === "created")).toHaveLength(6);
    expect(kinds.filter((k) => k !== "created")).toEqual(["exists"]);
    for (const o of outcomes) if (o.kind === "created") expect(o.copiedRows).toBe(20);
    const { rows: subs } = await node(A).pool.query<{ subname: string }>(
      "select subname from pg_subscription order by 1",
    );
    expect(subs).toHaveLength(2);
    // The initial copy is done when the join returns.
    for (const id of [A, B, C]) expect(await counts(id)).toEqual({ [A]: 20, [B]: 20, [C]: 20 });
    expect((await listPeers(node(A).pool)).map((p) => p.peerId).sort()).toEqual([B, C].sort());
  });

  it("replicates each node's appends to the others, without loops or duplicates", async () => {
    await makeNodes([A, B, C]);
    await fullMesh([A, B, C]);
    // Single rows, timed from commit to visible on one peer.
    for (let i = 0; i < 15; i++) {
      const origin = [A, B, C][i % 3] as string;
      const peer = [B, C, A][i % 3] as string;
      const t0 = performance.now();
      const [row] = await appendLocal(node(origin).pool, origin, rows(1, origin));
      await waitFor("a row on a peer", () => hasRow(peer, origin, row?.seq ?? 0n), 10_000);
      latencies.push(Math.round(performance.now() - t0));
    }
    // Batches from all three at once.
    await Promise.all(
      [A, B, C].map(async (id) => {
        for (let i = 0; i < 5; i++) await appendLocal(node(id).pool, id, rows(40, id));
      }),
    );
    const expected = { [A]: 205, [B]: 205, [C]: 205 };
    await waitForCounts([A, B, C], expected);
    // A quiet period: a loop would keep adding rows (or fail on the primary key).
    await new Promise((r) => setTimeout(r, 1000));
    const [da, db, dc] = await Promise.all([digests(A), digests(B), digests(C)]);
    expect(Object.keys(da ?? {}).sort()).toEqual([A, B, C].sort());
    expect(db).toEqual(da);
    expect(dc).toEqual(da);
    for (const id of [A, B, C]) {
      expect(await counts(id)).toEqual(expected);
      const { rows: stats } = await node(id).pool.query<{ n: string }>(
        `select (sum(apply_error_count) + sum(confl_insert_exists))::text as n
         from pg_stat_subscription_stats`,
      );
      expect(stats[0]?.n).toBe("0");
    }
  });

  it("reports every link as healthy on both ends", async () => {
    await makeNodes([A, B, C]);
    await fullMesh([A, B, C]);
    // A new link is healthy once its apply worker runs and has heard from the peer.
    await waitFor("A's links to stream", async () => {
      const peers = (await meshStatus(node(A).pool)).peers;
      const mesh = (await slotStatus(node(A).pool)).slots.filter((s) => s.kind === "mesh");
      return (
        (peers.length === 2 &&
          peers.every((p) => p.workerRunning && p.lastMsgReceiptTime !== null) &&
          mesh.length === 2 &&
          mesh.every((s) => s.active)) ||
        undefined
      );
    });
    const status = await meshStatus(node(A).pool);
    expect(status.peers.map((p) => p.peerId).sort()).toEqual([B, C].sort());
    for (const p of status.peers) {
      expect(p).toMatchObject({
        subscriptionExists: true,
        enabled: true,
        workerRunning: true,
        syncState: "ready",
        applyErrorCount: 0,
        insertConflicts: 0,
      });
      expect(p.lastMsgReceiptTime).toBeInstanceOf(Date);
      expect(p.latestEndLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    }
    expect(status.settings.maxSlotWalKeepSizeBytes).toBe(1024 ** 3);
    expect(status.settings.idleReplicationSlotTimeoutMs).toBe(86_400_000);
    expect(status.settings.walLevel).toBe("logical");
    expect(status.warnings).toEqual([]);

    const slots = await slotStatus(node(A).pool);
    const mesh = slots.slots.filter((s) => s.kind === "mesh");
    expect(mesh.map((s) => s.subscriberId).sort()).toEqual([B, C].sort());
    for (const s of mesh) {
      expect(s).toMatchObject({ active: true, walStatus: "reserved", invalidationReason: null });
      expect(s.safeWalSizeBytes).toBeGreaterThan(0);
      expect(s.retainedBytes).toBeGreaterThanOrEqual(0);
    }
    // Table-sync slots are gone once the initial copies have finished.
    expect(slots.slots.filter((s) => s.kind !== "mesh")).toEqual([]);
  });

  it("a late node D receives the existing rows of A, B and C and is received by them", async () => {
    await makeNodes([A, B, C, D]);
    await fullMesh([A, B, C]);
    for (const id of [A, B, C]) await appendLocal(node(id).pool, id, rows(25, id));
    await appendLocal(node(D).pool, D, rows(10, D));
    const outcomes = await Promise.all([
      join(D, A),
      join(D, B),
      join(D, C),
      join(A, D),
      join(B, D),
      join(C, D),
    ]);
    expect(outcomes.map((o) => o.kind)).toEqual(Array(6).fill("created"));
    expect(outcomes.map((o) => (o.kind === "created" ? o.copiedRows : -1))).toEqual([
      25, 25, 25, 10, 10, 10,
    ]);
    // Appends while D bootstraps are neither lost nor doubled.
    await appendLocal(node(A).pool, A, rows(5, A));
    const expected = { [A]: 30, [B]: 25, [C]: 25, [D]: 10 };
    await waitForCounts([A, B, C, D], expected);
    expect(await digests(D)).toEqual(await digests(A));
  });

  it("a peer that leaves stops sending to it, and its slot on the peer is dropped", async () => {
    await makeNodes([A, B, C, D]);
    await fullMesh([A, B, C, D]);
    await appendLocal(node(C).pool, C, rows(5, C));
    await waitForCounts([A, B, D], { [C]: 5 });
    const slot = slotName(C, A);
    expect(await slotNames(C)).toContain(slot);
    expect(await leavePeer(node(A).pool, C)).toEqual({ kind: "left", slot: "dropped" });
    expect(await leavePeer(node(A).pool, C)).toEqual({ kind: "not_found" });
    expect(await slotNames(C)).not.toContain(slot);
    expect((await meshStatus(node(A).pool)).peers.map((p) => p.peerId).sort()).toEqual(
      [B, D].sort(),
    );

    const [row] = await appendLocal(node(C).pool, C, rows(1, C));
    // B still subscribes to C: once the row is there, A (as fast as B so far) would have it.
    await waitFor("C's row on B", () => hasRow(B, C, row?.seq ?? 0n));
    await waitFor("C's row on D", () => hasRow(D, C, row?.seq ?? 0n));
    expect(await hasRow(A, C, row?.seq ?? 0n)).toBe(false);
    expect((await counts(A))[C]).toBe(5);

    // Joining again copies only what A missed while away.
    expect(await join(A, C)).toMatchObject({ kind: "created", copiedRows: 1 });
    expect(await hasRow(A, C, row?.seq ?? 0n)).toBe(true);
    const [next] = await appendLocal(node(C).pool, C, rows(1, C));
    await waitFor("C's next row on A", () => hasRow(A, C, next?.seq ?? 0n));
    await waitForCounts([A, B, D], { [C]: 7 });
    const p = (await meshStatus(node(A).pool)).peers.find((s) => s.peerId === C);
    expect(p).toMatchObject({ syncErrorCount: 0, applyErrorCount: 0, insertConflicts: 0 });
    expect(await digests(A)).toEqual(await digests(B));
  });

  it("rebuilds a subscription whose slot on the peer was dropped", async () => {
    await makeNodes([B, C]);
    await fullMesh([B, C]);
    // B stops streaming from C; C drops B's slot, as if B had left.
    await node(B).pool.query(`alter subscription "${subscriptionName(C)}" disable`);
    await waitFor("B's slot on C to go inactive", async () => {
      const s = (await slotStatus(node(C).pool)).slots.find((x) => x.subscriberId === B);
      return s?.active === false || undefined;
    });
    expect(await dropPeerSlot(node(C).pool, { selfId: C, peerId: B })).toEqual({
      kind: "dropped",
      slotName: slotName(C, B),
    });
    const [row] = await appendLocal(node(C).pool, C, rows(1, C));
    const outcome = await join(B, C);
    expect(outcome).toMatchObject({ kind: "rebuilt", reason: "slot_missing", copiedRows: 1 });
    expect(await hasRow(B, C, row?.seq ?? 0n)).toBe(true);
    expect(await join(B, C)).toMatchObject({ kind: "exists", peerReachable: true });
    const [next] = await appendLocal(node(C).pool, C, rows(1, C));
    await waitFor("C's next row on B after the rebuild", () => hasRow(B, C, next?.seq ?? 0n));
  });

  it("a stopped peer shows as down on both ends; leaving it detaches its slot", async () => {
    // D on a server of its own, which this test stops.
    const [own] = await startPostgresServers(1, {
      dir: `${dir.path}/stopped-peer-t${test}`,
      settings: { synchronous_commit: "on" },
    });
    try {
      await stoppedPeer(own as TestPostgres);
    } finally {
      await stopPostgresServers(own ? [own] : []);
    }
  });
});

/** The body of "a stopped peer ...", with D on `own`. */
async function stoppedPeer(own: TestPostgres): Promise<void> {
  await makeNodes([A, B, C]);
  await makeNodes([D], own);
  await fullMesh([A, B, C, D]);
  await node(D).server.stop();
  await waitFor("A's subscription to D to lose its worker", async () => {
    const p = (await meshStatus(node(A).pool)).peers.find((s) => s.peerId === D);
    return p?.workerRunning === false || undefined;
  });
  const status = await meshStatus(node(A).pool);
  expect(status.warnings.some((w) => w.includes(D) && w.includes("not running"))).toBe(true);
  const slot = await waitFor("D's slot on A to go inactive", async () => {
    const s = (await slotStatus(node(A).pool)).slots.find((x) => x.subscriberId === D);
    return s?.active === false ? s : undefined;
  });
  expect(slot.inactiveSince).toBeInstanceOf(Date);
  expect(slot.invalidationReason).toBeNull();

  // D is down: the slot D's server holds for A cannot be dropped from here.
  expect(await leavePeer(node(A).pool, D, { timeoutMs: 5000 })).toEqual({
    kind: "left",
    slot: "left_on_peer",
    slotName: slotName(D, A),
  });
  expect((await meshStatus(node(A).pool)).peers.map((p) => p.peerId).sort()).toEqual([B, C].sort());
  // And A drops the slot that fed D, so D no longer holds back A's WAL.
  expect(await dropPeerSlot(node(A).pool, { selfId: A, peerId: D })).toMatchObject({
    kind: "dropped",
  });
  expect(await slotNames(A)).not.toContain(slotName(A, D));
  // Rows keep flowing between the others.
  const [row] = await appendLocal(node(A).pool, A, rows(1, A));
  await waitFor("A's row on C", () => hasRow(C, A, row?.seq ?? 0n));
}
