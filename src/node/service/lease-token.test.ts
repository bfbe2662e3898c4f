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
