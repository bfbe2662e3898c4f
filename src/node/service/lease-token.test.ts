import { join } from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { useTempDir } from "../../../test/helpers/tmp.js";
import { Expert, Spool } from "../../spool/index.js";
import { nodeEntryCodec } from "./entry-meta.js";
import { ServiceErrorCode } from "./errors.js";
import { type NodeSpool, SpoolService } from "./spool-service.js";

/**
 * Lease tokens: random, never repeated, kept with the checkout (so a restarted node honours
 * them), and the Complete/Release answer cache is keyed by token, action and destination.
 */

const dir = useTempDir();
let spool: NodeSpool;
let service: SpoolService;
const spoolDir = () => join(dir.path, "spool");
const spoolable = {
  metadata: nodeEntryCodec,
  queues: ["inbox", "outbox", "dead"],
  leases: { graceMs: 0, maxAttempts: 1000, deadLetterQueue: "dead" },
};
const newService = (s: NodeSpool) =>
  new SpoolService({ spool: s, nodeId: "n1", logger: pino({ level: "silent" }) });

beforeEach(async () => {
  spool = await Spool.create(spoolDir(), spoolable);
  service = newService(spool);
});
afterEach(async () => {
  await service.close();
});

async function* chunks(...parts: string[]) {
  for (const p of parts) yield Buffer.from(p);
}

async function enqueueOne(): Promise<string> {
  const { entry } = await service.enqueue(
    { queue: "inbox", metadata: Buffer.from("m") },
    chunks("d"),
  );
  return entry.name;
}

async function dequeue(name: string): Promise<string> {
  const got = await service.dequeue({ queue: "inbox", leaseMs: 60_000 });
  expect(got?.entry.name).toBe(name);
  return got!.leaseToken;
}

const ROUNDS = 60;

describe("lease tokens", () => {
  it("are random nonces of at least 128 bits, never repeated", async () => {
    const name = await enqueueOne();
    const seen = new Set<string>();
    for (let i = 0; i < ROUNDS; i++) {
      const token = await dequeue(name);
      expect(token).toMatch(/^[A-Za-z0-9_-]{22,}$/);
      expect(Buffer.from(token, "hex").length).toBeGreaterThanOrEqual(16);
      expect(seen.has(token)).toBe(false);
      seen.add(token);
      await service.complete({
        queue: "inbox",
        name,
        leaseToken: token,
        action: { kind: "save", queue: "inbox" },
      });
    }
  });

  it("a later holder's Complete is carried out, not answered from an earlier holder's", async () => {
    const name = await enqueueOne();
    for (let i = 0; i < ROUNDS; i++) {
      const token = await dequeue(name);
      await service.complete({
        queue: "inbox",
        name,
        leaseToken: token,
        action: { kind: "save", queue: "inbox" },
      });
      // Really saved: waiting in inbox again, not still checked out.
      expect((await service.stat({ name })).state, `round ${i}`).toBe("queued");
    }
  });

  it("the answer cache tells actions and destinations apart", async () => {
    const name = await enqueueOne();
    const token = await dequeue(name);
    const req = { queue: "inbox", name, leaseToken: token };
    const saved = await service.complete({ ...req, action: { kind: "save", queue: "outbox" } });
    expect(saved?.queue).toBe("outbox");
    // A retry of the same request gets the same answer...
    expect(await service.complete({ ...req, action: { kind: "save", queue: "outbox" } })).toEqual(
      saved,
    );
    // ...but another destination or action with that token is not that request.
    for (const action of [{ kind: "save", queue: "dead" } as const, { kind: "remove" } as const]) {
      const err = await service.complete({ ...req, action }).catch((e) => e);
      expect(err.code).toBe(ServiceErrorCode.LeaseLost);
    }
    expect((await service.stat({ name })).entry.queue).toBe("outbox");
  });

  it("the answer cache tells new metadata apart: another save is refused, not answered as kept", async () => {
    const name = await enqueueOne();
    const token = await dequeue(name);
    const req = { queue: "inbox", name, leaseToken: token };
    const save = (metadata?: Buffer) =>
      service.complete({
        ...req,
        action: { kind: "save", queue: "outbox", ...(metadata ? { metadata } : {}) },
      });
    // Two at once, as a client racing itself would send them: one is carried out, and the
    // other learns its metadata was not stored.
    const [a, b] = await Promise.allSettled([save(Buffer.from("one")), save(Buffer.alloc(0))]);
    const done = [a, b].filter((r) => r.status === "fulfilled");
    expect(done).toHaveLength(1);
    const lost = [a, b].find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(lost.reason.code).toBe(ServiceErrorCode.LeaseLost);
    const kept = a.status === "fulfilled" ? Buffer.from("one") : Buffer.alloc(0);
    expect((await service.stat({ name })).entry.metadata).toEqual(kept);
    // A retry naming the same metadata gets the first answer; keeping the metadata is
    // another request too.
    expect((await save(kept))?.metadata).toEqual(kept);
    expect(((await save().catch((e) => e)) as { code: string }).code).toBe(
      ServiceErrorCode.LeaseLost,
    );
  });

  it("of two finishes of one checkout at once, the loser changes nothing the winner stores", async () => {
    for (let i = 0; i < 20; i++) {
      const name = await enqueueOne();
      const token = await dequeue(name);
      const req = { queue: "inbox", name, leaseToken: token };
      const asked = [
        { kind: "save", queue: "outbox", metadata: Buffer.alloc(0) },
        { kind: "save", queue: "dead", metadata: Buffer.from(`loser ${i}`) },
      ] as const;
      const out = await Promise.allSettled(
        asked.map((action) => service.complete({ ...req, action })),
      );
      const won = out.findIndex((r) => r.status === "fulfilled");
      expect(
        out.filter((r) => r.status === "fulfilled"),
        `round ${i}`,
      ).toHaveLength(1);
      const { queue, metadata } = asked[won] as (typeof asked)[number];
      const saved = (out[won] as PromiseFulfilledResult<{ metadata: Buffer }>).value;
      expect(saved.metadata, `round ${i}`).toEqual(metadata);
      const stored = (await service.stat({ name })).entry;
      expect([stored.queue, stored.metadata], `round ${i}`).toEqual([queue, metadata]);
      await service.complete({
        queue,
        name,
        leaseToken: await (async () => {
          const got = await service.dequeue({ queue, leaseMs: 60_000 });
          return got?.leaseToken ?? "";
        })(),
        action: { kind: "remove" },
      });
    }
  });

  it("extensions of one checkout at once all hold, none reads as a lost lease", async () => {
    const name = await enqueueOne();
    const token = await dequeue(name);
    const req = { queue: "inbox", name, leaseToken: token };
    const untils = await Promise.all(
      [1, 2, 3, 4].map((i) => service.extendLease({ ...req, leaseMs: 60_000 + i })),
    );
    expect(untils).toHaveLength(4);
    await service.complete({ ...req, action: { kind: "remove" } });
  });

  it("a stale holder cannot act on a later checkout", async () => {
    const name = await enqueueOne();
    const stale: string[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const token = await dequeue(name);
      for (const old of stale) {
        const err = await service
          .release({ queue: "inbox", name, leaseToken: old })
          .catch((e) => e);
        expect(err.code, `round ${i}`).toBe(ServiceErrorCode.LeaseLost);
      }
      expect((await service.stat({ name })).state).toBe("checked_out");
      await service.complete({
        queue: "inbox",
        name,
        leaseToken: token,
        action: { kind: "save", queue: "inbox" },
      });
      stale.push(token);
    }
  });

  it("a replicated placement over a local checkout ends the local holder's token", async () => {
    const name = await enqueueOne();
    const token = await dequeue(name);
    const seen = await Expert.inspectReplica(spool, name);
    if (seen.kind !== "present") throw new Error(`expected present, got ${seen.kind}`);
    const placed = await Expert.placeReplica(
      spool,
      name,
      { queue: "inbox", checkedOut: true, leaseUntil: Date.now() + 120_000 },
      seen.payload,
      seen.attempts,
    );
    expect(placed.kind).toBe("placed");
    // Another node's service would not know the token either: nothing on disk matches it.
    await service.close();
    service = newService(await Spool.load(spoolDir(), spoolable));
    const err = await service
      .complete({ queue: "inbox", name, leaseToken: token, action: { kind: "remove" } })
      .catch((e) => e);
    expect(err.code).toBe(ServiceErrorCode.LeaseLost);
  });

  it("survive a restart: a new service on the same spool honours the token, and only it", async () => {
    const name = await enqueueOne();
    const token = await dequeue(name);
    await service.close();
    service = newService(await Spool.load(spoolDir(), spoolable));
    const forged = Buffer.alloc(16, 7).toString("hex");
    for (const leaseToken of [forged, `${token.slice(0, -1)}A`, ""]) {
      if (leaseToken === token) continue;
      const err = await service
        .complete({ queue: "inbox", name, leaseToken, action: { kind: "remove" } })
        .catch((e) => e);
      expect(err.code).toBe(ServiceErrorCode.LeaseLost);
    }
    await service.complete({ queue: "inbox", name, leaseToken: token, action: { kind: "remove" } });
    expect(await spool.locate(name)).toBeUndefined();
  });
});
