import { join } from "node:path";
import pg from "pg";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { useSharedPostgres } from "../../../test/helpers/postgres.js";
import { useTempDir } from "../../../test/helpers/tmp.js";
import { migrate } from "../../db/migrate.js";
import { Spool } from "../../spool/index.js";
import { nodeEntryCodec } from "./entry-meta.js";
import { ServiceErrorCode } from "./errors.js";
import { IdempotencyStore, type KeyScope } from "./idempotency-store.js";
import { IdempotentEnqueue } from "./idempotent-enqueue.js";
import { ServiceContext } from "./service-context.js";
import { DEFAULT_LIMITS, type NodeSpool } from "./spool-service.js";

/**
 * A claim committed for a name the spool has not reserved yet (EnqueueBatch claims its keys
 * while the batch writer reserves and writes the names) is in progress, not an enqueue that
 * died: another claim of the key must not take it over while that write is under way.
 */
const shared = useSharedPostgres("idemenq");
const dir = useTempDir();

let pool: pg.Pool;
let spool: NodeSpool;
beforeEach(async () => {
  pool = new pg.Pool({ connectionString: await shared.freshDatabase(), max: 4 });
  pool.on("error", () => {});
  await migrate(pool);
  spool = await Spool.create(join(dir.path, "spool"), {
    metadata: nodeEntryCodec,
    queues: ["inbox"],
  });
});
afterEach(async () => {
  await pool.end();
});

describe("IdempotentEnqueue.claimKey", () => {
  it("treats a claim whose name is being written, or young, as in progress, and takes it over once old", async () => {
    const store = new IdempotencyStore(pool, 60_000);
    const ctx = new ServiceContext(
      spool,
      pino({ level: "silent" }),
      Date.now,
      DEFAULT_LIMITS,
      () => undefined,
    );
    const uploads = new IdempotentEnqueue(ctx, store);
    const scope: KeyScope = { principal: "p", queue: "inbox", key: "k" };
    const [first, second] = spool.newNames(2) as [string, string];
    // The first batch's claim is committed; its name is not reserved yet.
    expect(await store.claim(scope, first)).toEqual({ kind: "claimed" });
    let finish: () => void = () => undefined;
    uploads.writingWhile(
      [first],
      new Promise<void>((resolve) => {
        finish = resolve;
      }),
    );
    const during = await uploads.claimKey(scope, second, false).catch((e) => e);
    expect(during.code).toBe(ServiceErrorCode.InProgress);
    expect(await spool.isReserved(first)).toBe(false);
    // The write ended without an entry (withdrawn, or failed): in this process that is
    // known, but another process serving the spool could still be writing it while the
    // claim is young, so it stays in progress for a while.
    finish();
    await new Promise((resolve) => setImmediate(resolve));
    const young = await uploads.claimKey(scope, second, false).catch((e) => e);
    expect(young.code).toBe(ServiceErrorCode.InProgress);
    // An old claim with no entry and no reservation is a dead enqueue: taken over.
    await pool.query("update idempotency_keys set created_at = now() - interval '1 minute'");
    expect(await uploads.claimKey(scope, second, false)).toEqual({ kind: "claimed" });
  });
});
