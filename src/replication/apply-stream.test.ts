import pg from "pg";
import { LogicalReplicationService } from "pg-logical-replication";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { useSharedPostgres } from "../../test/helpers/postgres.js";
import { migrate } from "../db/migrate.js";
import {
  ApplyPlugin,
  ApplyStream,
  closeQuietly,
  compareLsn,
  ensureApplySlot,
} from "./apply-stream.js";
import { makeHlc } from "./hlc.js";
import { appendLocal } from "./journal-store.js";

/**
 * The apply stream against a real server, and what it needs from pg-logical-replication:
 * that the plugin parses each message as it arrives (before a later keepalive), that our
 * data handler sees every message it parsed, and that `start` gets the streaming client.
 * A release of the library that changes any of these fails here.
 */
const shared = useSharedPostgres("applystream");

const NODE = "n1";
let pool: pg.Pool;
let url: string;
beforeEach(async () => {
  url = await shared.freshDatabase();
  pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on("error", () => {});
  await migrate(pool);
});
afterEach(async () => {
  await pool.end();
});

/** The walsender asks for a reply every wal_sender_timeout / 2: 1 s here instead of 30. */
const fastKeepalives = (u: string) => {
  const x = new URL(u);
  x.searchParams.set("options", "-c wal_sender_timeout=2s");
  return x.toString();
};

async function insertPeerRow(entry: string): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query("begin");
    await appendLocal(c, "peer", [
      {
        op: "enqueue",
        entry,
        queue: "inbox",
        attempts: 0,
        metadata: Buffer.from("m"),
        dataSha256: "a".repeat(64),
        dataSize: 1,
        leaseUntil: null,
        hlc: makeHlc(Date.now()),
      },
    ]);
    await c.query("commit");
  } finally {
    c.release();
  }
}

async function confirmedFlush(slot: string): Promise<string> {
  const r = await pool.query<{ lsn: string | null }>(
    "select confirmed_flush_lsn::text as lsn from pg_replication_slots where slot_name = $1",
    [slot],
  );
  return r.rows[0]?.lsn ?? "0/0";
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("apply stream", () => {
  it("delivers peer rows, and moves an idle slot up to the server's keepalives", async () => {
    const names = await ensureApplySlot(pool, NODE);
    const rows: string[] = [];
    let stream: ApplyStream | undefined;
    const commits: string[] = [];
    stream = new ApplyStream({
      connectionString: fastKeepalives(url),
      names,
      handlers: {
        row: (entry) => rows.push(entry),
        commit: (lsn) => {
          commits.push(lsn);
          return stream?.acknowledge(lsn);
        },
        error: () => undefined,
        idle: () => true,
      },
    });
    stream.start();
    try {
      await insertPeerRow("e1");
      await waitFor("the peer row", async () => rows.includes("e1") && commits.length === 1);
      // WAL the publication does not carry: nothing but keepalives comes for it.
      await pool.query("create table filler (x int)");
      await pool.query("insert into filler select generate_series(1, 1000)");
      const { rows: at } = await pool.query<{ lsn: string }>(
        "select pg_current_wal_lsn()::text as lsn",
      );
      const target = at[0]?.lsn as string;
      expect(compareLsn(await confirmedFlush(names.slot), target)).toBeLessThan(0);
      await waitFor(
        `the slot to pass ${target}`,
        async () => compareLsn(await confirmedFlush(names.slot), target) >= 0,
      );
      expect(compareLsn(stream.acknowledged, target)).toBeGreaterThanOrEqual(0);
    } finally {
      await stream.stop();
    }
  }, 60_000);

  it("the plugin counts what it parses and holds the client it streams on", async () => {
    const names = await ensureApplySlot(pool, NODE);
    const service = new LogicalReplicationService(
      { connectionString: url },
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } },
    );
    service.on("error", () => undefined);
    let seen = 0;
    service.on("data", () => {
      seen++;
    });
    const started = new Promise<void>((r) => service.once("start", () => r()));
    const plugin = new ApplyPlugin({ protoVersion: 1, publicationNames: [names.publication] });
    const running = service.subscribe(plugin, names.slot).catch(() => undefined);
    await started;
    await insertPeerRow("e3");
    await waitFor("begin, relation, insert and commit", async () => seen >= 4);
    expect(plugin.parsed).toBe(seen);
    expect(plugin.client).toBeInstanceOf(pg.Client);
    const client = plugin.client as pg.Client;
    const pid = await pool.query<{ pid: number }>(
      "select active_pid as pid from pg_replication_slots where slot_name = $1",
      [names.slot],
    );
    expect(pid.rows[0]?.pid).toBe((client as unknown as { processID: number }).processID);
    await closeQuietly(service, plugin);
    await running;
    // The library dropped its listeners; a late error on the connection must not throw.
    expect(() => client.emit("error", new Error("late"))).not.toThrow();
  }, 60_000);
});
