import { readdir, rename, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { useSharedPostgres } from "../../../test/helpers/postgres.js";
import { useTempDir } from "../../../test/helpers/tmp.js";
import { migrate } from "../../db/migrate.js";
import { Spool } from "../../spool/index.js";
import { nodeEntryCodec } from "./entry-meta.js";
import { ServiceError, ServiceErrorCode } from "./errors.js";
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

/** The service's context over the test's spool, with a silent log. */
function serviceContext(): ServiceContext {
  return new ServiceContext(
    spool,
    pino({ level: "silent" }),
    Date.now,
    DEFAULT_LIMITS,
    () => undefined,
  );
}

describe("IdempotentEnqueue.claimKey", () => {
  it("treats a claim whose name is being written, or young, as in progress, and takes it over once old", async () => {
    const store = new IdempotencyStore(pool, 60_000);
    const uploads = new IdempotentEnqueue(serviceContext(), store);
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

/** An IdempotencyStore that runs `onExisting` (once) when a claim finds the key held. */
class HookedStore extends IdempotencyStore {
  onExisting: (() => Promise<void>) | undefined;
  /** For each abandon: whether the claim's name was still reserved in the spool then. */
  readonly abandonedWhileReserved: boolean[] = [];

  private claimedBy: (name: string) => void = () => undefined;
  /** The name of the first claim that came back claimed. */
  readonly claimed = new Promise<string>((resolve) => {
    this.claimedBy = resolve;
  });

  override async claim(scope: KeyScope, name: string) {
    const r = await super.claim(scope, name);
    if (r.kind === "claimed") this.claimedBy(name);
    const hook = this.onExisting;
    if (r.kind === "existing" && hook) {
      this.onExisting = undefined;
      await hook();
    }
    return r;
  }

  override async abandon(scope: KeyScope, name: string) {
    this.abandonedWhileReserved.push(await spool.isReserved(name));
    await super.abandon(scope, name);
  }
}

/** An upload that sends `first` and then nothing, until `cut` ends it with an error. */
function lingering(first: Buffer) {
  let cut: (err: Error) => void = () => undefined;
  const ended = new Promise<never>((_, reject) => {
    cut = reject;
  });
  // Cut before the upload reads past its first chunk: the rejection is still seen there.
  ended.catch(() => undefined);
  async function* chunks() {
    yield first;
    await ended;
  }
  return { chunks: chunks(), cut };
}

async function* once(b: Buffer) {
  yield b;
}

describe("IdempotentEnqueue.enqueue after an upload with the same key failed", () => {
  function setUp() {
    const store = new HookedStore(pool, 60_000);
    return { store, uploads: new IdempotentEnqueue(serviceContext(), store) };
  }
  const header = { queue: "inbox", metadata: Buffer.alloc(0), idempotencyKey: "k", principal: "p" };

  // The bad-input campaign's seed 877631424: a cut upload with key k3 whose cancel never
  // reached the node lingered until limits.uploadIdleTimeout; a retry with k3 read its claim,
  // waited in findInfo while its name was reserved, and by the time it looked again the
  // failed upload had given up both name and claim. The retry answered ABORTED
  // ("idempotency key changed hands") instead of its own verdict, although nobody held the key.
  it("claims the key the failed upload gave up while the retry looked at its claim", async () => {
    const { store, uploads } = setUp();
    const first = lingering(Buffer.from("ab"));
    const failed = uploads.enqueue(header, first.chunks);
    failed.catch(() => undefined);
    const held = await store.claimed;
    expect(await spool.isReserved(held)).toBe(true);
    // The retry reads the claim; then the first upload fails and cleans up entirely.
    store.onExisting = async () => {
      first.cut(new ServiceError(ServiceErrorCode.Cancelled, "client cancelled the upload"));
      await failed.catch(() => undefined);
    };
    const data = Buffer.from([94, 206, 81, 18, 112]);
    const retry = await uploads
      .enqueue({ ...header, dataSize: data.length + 1 }, once(data))
      .catch((e) => e);
    expect(store.onExisting).toBeUndefined();
    expect((await failed.catch((e) => e)).code).toBe(ServiceErrorCode.Cancelled);
    // Its own verdict: the data is shorter than announced.
    expect(retry).toBeInstanceOf(ServiceError);
    expect(retry.code).toBe(ServiceErrorCode.DataMismatch);
    // Neither attempt left the key claimed: the next one makes the entry.
    const made = await uploads.enqueue(header, once(data));
    expect(made.deduplicated).toBe(false);
    expect(made.entry.dataSize).toBe(data.length);
    const again = await uploads.enqueue(header, once(Buffer.from("other")));
    expect(again).toMatchObject({ deduplicated: true, entry: { name: made.entry.name } });
  });

  it("gives up the claim of a failed upload before its name", async () => {
    const { store, uploads } = setUp();
    const first = lingering(Buffer.from("ab"));
    const failed = uploads.enqueue(header, first.chunks);
    failed.catch(() => undefined);
    const held = await store.claimed;
    first.cut(new ServiceError(ServiceErrorCode.DeadlineExceeded, "the stream sent nothing"));
    expect((await failed.catch((e) => e)).code).toBe(ServiceErrorCode.DeadlineExceeded);
    // While the name was reserved, a retry found the upload in progress; after, no claim.
    expect(store.abandonedWhileReserved).toEqual([true]);
    expect(await spool.isReserved(held)).toBe(false);
    expect((await pool.query("select 1 from idempotency_keys")).rowCount).toBe(0);
  });
});

describe("IdempotentEnqueue.enqueue when the spool fails before it made the data file", () => {
  it("gives the name it reserved back", async () => {
    const uploads = new IdempotentEnqueue(serviceContext(), new IdempotencyStore(pool, 60_000));
    const root = join(dir.path, "spool");
    const registry = join(root, ".registry");
    const before = await readdir(registry);
    // .data replaced by a link to a directory where no file can be made (/proc/sys: even
    // root gets ENOENT), while a stat there still answers: the data file cannot be made.
    await rename(join(root, ".data"), join(root, ".data-away"));
    await symlink("/proc/sys", join(root, ".data"));
    try {
      const header = {
        queue: "inbox",
        metadata: Buffer.alloc(0),
        idempotencyKey: "k",
        principal: "p",
      };
      const err = await uploads.enqueue(header, once(Buffer.from("x"))).catch((e) => e);
      expect(String(err)).toMatch(/write data/);
    } finally {
      await rm(join(root, ".data"));
      await rename(join(root, ".data-away"), join(root, ".data"));
    }
    expect(await readdir(registry)).toEqual(before);
    // And the key is free: the next enqueue with it makes the entry.
    const made = await uploads.enqueue(
      { queue: "inbox", metadata: Buffer.alloc(0), idempotencyKey: "k", principal: "p" },
      once(Buffer.from("x")),
    );
    expect(made.deduplicated).toBe(false);
  });
});
