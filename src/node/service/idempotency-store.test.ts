import { copyFile, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { useSharedPostgres } from "../../../test/helpers/postgres.js";
import { DEFAULT_SQL_DIR, migrate } from "../../db/migrate.js";
import { IdempotencyStore, type KeyScope } from "./idempotency-store.js";

const shared = useSharedPostgres("idem");

let url: string;
let pool: pg.Pool;
beforeEach(async () => {
  url = await shared.freshDatabase();
  pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on("error", () => {});
});
afterEach(async () => {
  await pool.end();
});

const WINDOW = 60_000;
const scope = (principal: string, queue: string, key = "k"): KeyScope => ({
  principal,
  queue,
  key,
});

describe("IdempotencyStore", () => {
  it("scopes a key to its principal and queue", async () => {
    await migrate(pool);
    const store = new IdempotencyStore(pool, WINDOW);
    expect(await store.claim(scope("alice", "secret"), "e1")).toEqual({ kind: "claimed" });
    // The same key, another principal or another queue: claimed afresh.
    expect(await store.claim(scope("bob", "secret"), "e2")).toEqual({ kind: "claimed" });
    expect(await store.claim(scope("bob", "outbox"), "e3")).toEqual({ kind: "claimed" });
    expect(await store.claim(scope("alice", "outbox"), "e4")).toEqual({ kind: "claimed" });
    // The same scope: the first entry.
    expect(await store.claim(scope("alice", "secret"), "e5")).toEqual({
      kind: "existing",
      name: "e1",
      completed: false,
    });
    await store.complete(scope("alice", "secret"), "e1");
    // Completing another scope's key with the same name changes nothing of alice's.
    await store.abandon(scope("bob", "secret"), "e1");
    expect(await store.claim(scope("alice", "secret"), "e6")).toEqual({
      kind: "existing",
      name: "e1",
      completed: true,
    });
    // A key abandoned in one scope leaves the others.
    await store.abandon(scope("bob", "outbox"), "e3");
    expect(await store.claim(scope("bob", "outbox"), "e7")).toEqual({ kind: "claimed" });
    expect(await store.claim(scope("bob", "secret"), "e8")).toMatchObject({ name: "e2" });
    // A take-over replaces only its own scope's claim.
    expect(await store.takeOver(scope("alice", "outbox"), "e4", "e9")).toBe(true);
    expect(await store.claim(scope("alice", "outbox"), "x")).toMatchObject({ name: "e9" });
    expect(await store.takeOver(scope("bob", "outbox"), "e4", "e10")).toBe(false);
  });

  it("records replicated keys in their scope; the first claim wins within the window", async () => {
    await migrate(pool);
    const store = new IdempotencyStore(pool, WINDOW);
    await store.recordCompleted(scope("alice", "secret"), "peer-1");
    await store.recordCompleted(scope("alice", "secret"), "peer-2");
    expect(await store.claim(scope("alice", "secret"), "local")).toEqual({
      kind: "existing",
      name: "peer-1",
      completed: true,
    });
    expect(await store.claim(scope("bob", "secret"), "local-bob")).toEqual({ kind: "claimed" });
  });

  it("records many replicated keys in one call: a scope given twice keeps its first entry", async () => {
    await migrate(pool);
    const store = new IdempotencyStore(pool, WINDOW);
    await store.recordCompleted(scope("alice", "held"), "earlier");
    await store.recordCompletedMany([
      { scope: scope("alice", "k1"), name: "peer-1" },
      { scope: scope("alice", "k1"), name: "peer-2" },
      { scope: scope("bob", "k1"), name: "peer-3" },
      { scope: scope("alice", "held"), name: "peer-4" },
    ]);
    const existing = (name: string) => ({ kind: "existing", name, completed: true });
    expect(await store.claim(scope("alice", "k1"), "local")).toEqual(existing("peer-1"));
    expect(await store.claim(scope("bob", "k1"), "local")).toEqual(existing("peer-3"));
    expect(await store.claim(scope("alice", "held"), "local")).toEqual(existing("earlier"));
    await store.recordCompletedMany([]);
  });

  it("keeps the keys of a database migrated before keys were scoped", async () => {
    // Migrate with the files before 0006, store a key as the old code did, then migrate on.
    const older = await mkdtemp(join(tmpdir(), "geospool-sql-"));
    try {
      for (const f of await readdir(DEFAULT_SQL_DIR)) {
        if (/^000[1-5]_.*\.sql$/.test(f)) await copyFile(join(DEFAULT_SQL_DIR, f), join(older, f));
      }
      await migrate(pool, { sqlDir: older });
    } finally {
      await rm(older, { recursive: true, force: true });
    }
    await pool.query(
      "insert into idempotency_keys (key, queue, entry_name, completed_at) values ('k', 'inbox', 'old', now())",
    );
    const { applied } = await migrate(pool);
    expect(applied).toContain("0006_idempotency_scope.sql");
    const store = new IdempotencyStore(pool, WINDOW);
    expect(await store.claim(scope("", "inbox"), "new")).toEqual({
      kind: "existing",
      name: "old",
      completed: true,
    });
    expect(await store.claim(scope("alice", "inbox"), "alices")).toEqual({ kind: "claimed" });
    expect(await store.purge()).toBe(0);
  });

  it("claims of concurrent calls go as one statement; a scope in two calls is claimed once", async () => {
    await migrate(pool);
    const store = new IdempotencyStore(pool, WINDOW);
    // The first call's statement is under way while the next three wait: those three go
    // together, and two of them want the same scope for different entries.
    const calls = await Promise.all([
      store.claimMany([{ scope: scope("p", "inbox", "a"), name: "e1" }]),
      store.claimMany([
        { scope: scope("p", "inbox", "b"), name: "e2" },
        { scope: scope("p", "inbox", "c"), name: "e3" },
      ]),
      store.claimMany([{ scope: scope("p", "inbox", "c"), name: "e4" }]),
      store.claimMany([{ scope: scope("p", "inbox", "d"), name: "e5" }]),
    ]);
    expect(calls.map((c) => [...c].sort())).toEqual([[0], [0, 1], [], [0]]);
    const { rows } = await pool.query("select key, entry_name from idempotency_keys order by key");
    expect(rows).toEqual([
      { key: "a", entry_name: "e1" },
      { key: "b", entry_name: "e2" },
      { key: "c", entry_name: "e3" },
      { key: "d", entry_name: "e5" },
    ]);
    // Completions group the same way; each marks only its own entry's claim.
    await Promise.all([
      store.completeMany([{ scope: scope("p", "inbox", "a"), name: "e1" }]),
      store.completeMany([{ scope: scope("p", "inbox", "c"), name: "e4" }]),
      store.completeMany([{ scope: scope("p", "inbox", "c"), name: "e3" }]),
    ]);
    const done = await pool.query(
      "select key from idempotency_keys where completed_at is not null order by key",
    );
    expect(done.rows.map((r) => r.key)).toEqual(["a", "c"]);
  });
});
