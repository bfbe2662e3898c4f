import { createHash } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { useTempDir } from "../../../test/helpers/tmp.js";
import { Spool } from "../../spool/index.js";
import { parseConfig } from "../config/index.js";
import { nodeEntryCodec } from "./entry-meta.js";
import { ServiceErrorCode } from "./errors.js";
import { DEFAULT_LIMITS, type NodeSpool, SpoolService } from "./spool-service.js";

const dir = useTempDir();
let spool: NodeSpool;
let service: SpoolService;

beforeEach(async () => {
  spool = await Spool.create(join(dir.path, "spool"), {
    metadata: nodeEntryCodec,
    queues: ["inbox", "outbox", "dead"],
    leases: { graceMs: 0, maxAttempts: 2, deadLetterQueue: "dead" },
  });
  service = new SpoolService({ spool, nodeId: "n1", logger: pino({ level: "silent" }) });
});
afterEach(async () => {
  await service.close();
});

async function* chunks(...parts: string[]) {
  for (const p of parts) yield Buffer.from(p);
}
const sha = (s: string) => createHash("sha256").update(s).digest("hex");

describe("SpoolService", () => {
  it("enqueues, dequeues with a lease token, and completes", async () => {
    const { entry, deduplicated } = await service.enqueue(
      {
        queue: "inbox",
        metadata: Buffer.from('{"a":1}'),
        dataSize: 10,
        dataSha256: sha("hello world".slice(0, 10)),
      },
      chunks("hello", " worl"),
    );
    expect(deduplicated).toBe(false);
    expect(entry.dataSize).toBe(10);
    expect(entry.dataSha256).toBe(sha("hello worl"));
    const got = await service.dequeue({ queue: "inbox", leaseMs: 60_000 });
    expect(got?.entry.name).toBe(entry.name);
    expect(got?.entry.metadata.toString()).toBe('{"a":1}');
    expect(got?.entry.leaseUntil).toBeGreaterThan(Date.now());
    const wrong = await service
      .complete({ queue: "inbox", name: entry.name, leaseToken: "x.0", action: { kind: "remove" } })
      .catch((e) => e);
    expect(wrong.code).toBe(ServiceErrorCode.LeaseLost);
    const saved = await service.complete({
      queue: "inbox",
      name: entry.name,
      leaseToken: got!.leaseToken,
      action: { kind: "save", queue: "outbox", metadata: Buffer.from("new") },
    });
    expect(saved?.queue).toBe("outbox");
    expect((await service.stat({ name: entry.name })).entry.metadata.toString()).toBe("new");
  });

  it("rejects data that does not match what was announced and leaves nothing", async () => {
    for (const header of [
      { queue: "inbox", metadata: Buffer.alloc(0), dataSize: 3 },
      { queue: "inbox", metadata: Buffer.alloc(0), dataSize: 100 },
      { queue: "inbox", metadata: Buffer.alloc(0), dataSha256: sha("other") },
    ]) {
      const err = await service.enqueue(header, chunks("abcd")).catch((e) => e);
      expect(err.code).toBe(ServiceErrorCode.DataMismatch);
    }
    for (const d of [".registry", ".data", ".tmp", "inbox"]) {
      expect((await readdir(join(spool.dir, d))).filter((n) => n !== ".checkout")).toEqual([]);
    }
  });

  it("a stream that fails mid-way leaves nothing", async () => {
    async function* broken() {
      yield Buffer.from("part");
      throw new Error("client went away");
    }
    await expect(
      service.enqueue({ queue: "inbox", metadata: Buffer.alloc(0) }, broken()),
    ).rejects.toThrow();
    expect(await readdir(join(spool.dir, ".registry"))).toEqual([]);
  });

  it("refuses unknown queues and bad names", async () => {
    const e1 = await service
      .enqueue({ queue: "nope", metadata: Buffer.alloc(0) }, chunks("x"))
      .catch((e) => e);
    expect(e1.code).toBe(ServiceErrorCode.NotFound);
    const e2 = await service
      .enqueue({ queue: "../etc", metadata: Buffer.alloc(0) }, chunks("x"))
      .catch((e) => e);
    expect(e2.code).toBe(ServiceErrorCode.InvalidArgument);
    const e3 = await service.stat({ name: "../../x" }).catch((e) => e);
    expect(e3.code).toBe(ServiceErrorCode.InvalidArgument);
    const e4 = await service.stat({ name: "absent" }).catch((e) => e);
    expect(e4.code).toBe(ServiceErrorCode.NotFound);
  });

  it("dequeue waits for an entry, and returns nothing when none comes", async () => {
    expect(await service.dequeue({ queue: "inbox", waitMs: 50 })).toBeUndefined();
    const waiting = service.dequeue({ queue: "inbox", waitMs: 5_000 });
    await new Promise((r) => setTimeout(r, 100));
    await service.enqueue({ queue: "inbox", metadata: Buffer.alloc(0) }, chunks("late"));
    expect((await waiting)?.entry.dataSize).toBe(4);
  });

  it("releases count attempts and dead-letter after maxAttempts", async () => {
    await service.enqueue({ queue: "inbox", metadata: Buffer.alloc(0) }, chunks("x"));
    const a = await service.dequeue({ queue: "inbox" });
    expect(
      await service.release({ queue: "inbox", name: a!.entry.name, leaseToken: a!.leaseToken }),
    ).toEqual({
      queue: "inbox",
      attempts: 1,
    });
    const b = await service.dequeue({ queue: "inbox" });
    expect(b!.entry.attempts).toBe(1);
    expect(b!.leaseToken).not.toBe(a!.leaseToken);
    expect(
      await service.release({ queue: "inbox", name: b!.entry.name, leaseToken: b!.leaseToken }),
    ).toEqual({
      queue: "dead",
      attempts: 2,
    });
  });

  it("extends leases, and a stale token cannot act after expiry", async () => {
    await service.enqueue({ queue: "inbox", metadata: Buffer.alloc(0) }, chunks("x"));
    const a = await service.dequeue({ queue: "inbox", leaseMs: 100 });
    const until = await service.extendLease({
      queue: "inbox",
      name: a!.entry.name,
      leaseToken: a!.leaseToken,
      leaseMs: 60_000,
    });
    expect(until).toBeGreaterThan(Date.now() + 50_000);
    const b = await service.dequeue({ queue: "inbox" });
    expect(b).toBeUndefined();
    const c = await service.extendLease({
      queue: "inbox",
      name: a!.entry.name,
      leaseToken: a!.leaseToken,
      leaseMs: 1,
    });
    expect(c).toBeGreaterThan(0);
    // A 1 ms lease can end before the file's ctime settles: past the quiet period, it is taken.
    await new Promise((r) => setTimeout(r, 1_100));
    await spool.expireLeases();
    const d = await service.dequeue({ queue: "inbox", leaseMs: 60_000 });
    expect(d?.entry.attempts).toBe(1);
    const stale = await service
      .complete({
        queue: "inbox",
        name: a!.entry.name,
        leaseToken: a!.leaseToken,
        action: { kind: "remove" },
      })
      .catch((e) => e);
    expect(stale.code).toBe(ServiceErrorCode.LeaseLost);
  });

  it("lists in pages and reads data from an offset with the digest at the end", async () => {
    const names: string[] = [];
    for (let i = 0; i < 5; i++) {
      names.push(
        (
          await service.enqueue(
            { queue: "inbox", metadata: Buffer.from(String(i)) },
            chunks(`data-${i}`),
          )
        ).entry.name,
      );
    }
    const p1 = await service.list({ queue: "inbox", pageSize: 2 });
    const p2 = await service.list({ queue: "inbox", pageSize: 2, pageToken: p1.nextPageToken });
    const p3 = await service.list({ queue: "inbox", pageSize: 2, pageToken: p2.nextPageToken });
    expect([...p1.entries, ...p2.entries, ...p3.entries].map((e) => e.name)).toEqual(names);
    expect(p3.nextPageToken).toBe("");
    const parts = [];
    for await (const c of service.readData({ name: names[0]!, offset: 2 })) parts.push(c);
    expect(Buffer.concat(parts.map((p) => p.chunk)).toString()).toBe("ta-0");
    const whole = [];
    for await (const c of service.readData({ name: names[0]! })) whole.push(c);
    expect(whole.at(-1)?.sha256).toBe(sha("data-0"));
    const past = await (async () => {
      for await (const _ of service.readData({ name: names[0]!, offset: 99 })) {
      }
    })().catch((e) => e);
    expect(past.code).toBe(ServiceErrorCode.OutOfRange);
  });

  it("watch streams transitions of the queues asked for", async () => {
    const ac = new AbortController();
    const seen: string[] = [];
    const done = (async () => {
      for await (const t of service.watch(["inbox"], ac.signal)) {
        seen.push(t.kind);
        if (seen.length === 3) ac.abort();
      }
    })();
    const { entry } = await service.enqueue(
      { queue: "inbox", metadata: Buffer.alloc(0) },
      chunks("x"),
    );
    await service.enqueue({ queue: "outbox", metadata: Buffer.alloc(0) }, chunks("y"));
    const got = await service.dequeue({ queue: "inbox" });
    await service.complete({
      queue: "inbox",
      name: entry.name,
      leaseToken: got!.leaseToken,
      action: { kind: "remove" },
    });
    await done;
    expect(seen).toEqual(["enqueued", "checked_out", "removed"]);
  });

  it("a retried Complete or Release gets the first answer, not lease_lost", async () => {
    await service.enqueue({ queue: "inbox", metadata: Buffer.alloc(0) }, chunks("x"));
    await service.enqueue({ queue: "inbox", metadata: Buffer.alloc(0) }, chunks("y"));
    const a = await service.dequeue({ queue: "inbox" });
    const req = { queue: "inbox", name: a!.entry.name, leaseToken: a!.leaseToken };
    const save = { ...req, action: { kind: "save", queue: "outbox" } as const };
    const [first, concurrent] = await Promise.all([service.complete(save), service.complete(save)]);
    expect(concurrent).toEqual(first);
    expect(await service.complete(save)).toEqual(first);
    // A different action under the same (used) lease is still refused.
    const other = await service.complete({ ...req, action: { kind: "remove" } }).catch((e) => e);
    expect(other.code).toBe(ServiceErrorCode.LeaseLost);
    const b = await service.dequeue({ queue: "inbox" });
    const rel = { queue: "inbox", name: b!.entry.name, leaseToken: b!.leaseToken };
    const r1 = await service.release(rel);
    expect(await service.release(rel)).toEqual(r1);
    expect((await service.list({ queue: "outbox" })).entries.map((e) => e.name)).toEqual([
      a!.entry.name,
    ]);
  });
});

describe("limits", () => {
  it("a service made without config has the config's default limits", () => {
    const { uploadIdleTimeout: _, ...limits } = parseConfig({
      node: { id: "n1" },
      spool: { dir: "/s" },
    }).limits;
    expect(DEFAULT_LIMITS).toEqual(limits);
  });
});
