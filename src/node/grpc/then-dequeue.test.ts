import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { rename } from "node:fs/promises";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { useTempDir } from "../../../test/helpers/tmp.js";
import { geospool } from "../../proto/generated/spool.js";
import { spoolServiceDefinition } from "../../proto/service-definition.js";
import { Spool } from "../../spool/index.js";
import { Authorizer } from "../auth/authorizer.js";
import { GeospoolClient, type Lease } from "../client/index.js";
import { nodeEntryCodec } from "../service/entry-meta.js";
import {
  inlineDataFitting,
  MAX_INLINE_DATA,
  type NodeSpool,
  SpoolService,
} from "../service/spool-service.js";
import { spoolHandlers } from "./spool-server.js";

/**
 * Complete with then_dequeue, at the gRPC handlers over a real spool: a next checkout that
 * fails after the finish is not an empty queue, and a caller gone during the finish gets
 * no next checkout taken for it. And a checkout's data inline (`inline_data_max`), on
 * Dequeue and on then_dequeue, over calls and over a Session stream.
 */
const dir = useTempDir();
let spool: NodeSpool;
let service: SpoolService;
let server: grpc.Server;
let client: GeospoolClient;
let endpoint: string;
let handlers: ReturnType<typeof spoolHandlers>["handlers"];

beforeEach(async () => {
  spool = await Spool.create(join(dir.path, "spool"), {
    metadata: nodeEntryCodec,
    queues: ["inbox", "dead"],
    leases: { graceMs: 0, maxAttempts: 1000, deadLetterQueue: "dead" },
  });
  service = new SpoolService({ spool, nodeId: "n1", logger: pino({ level: "silent" }) });
  handlers = spoolHandlers({
    service,
    authorizer: new Authorizer([]),
    logger: pino({ level: "silent" }),
    nodeId: "n1",
    region: "r1",
  }).handlers;
  server = new grpc.Server();
  server.addService(spoolServiceDefinition, handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  endpoint = `127.0.0.1:${port}`;
  client = new GeospoolClient({ endpoints: [endpoint], retryForMs: 0 });
});

afterEach(async () => {
  client.close();
  server.forceShutdown();
  await service.close();
});

async function* chunks(...parts: string[]) {
  for (const p of parts) yield Buffer.from(p);
}
async function enqueue(data: string): Promise<string> {
  const { entry } = await service.enqueue(
    { queue: "inbox", metadata: Buffer.from("m") },
    chunks(data),
  );
  return entry.name;
}

describe("Complete with then_dequeue", () => {
  it("a dequeue that fails after the finish is not reported as an empty queue", async () => {
    await enqueue("a");
    const lease = await client.dequeue("inbox");
    expect(lease).toBeDefined();
    // The next checkout comes from "dead", whose directory is gone from under the node (a
    // real disk fault: listing it fails), so it fails after the finish has been done.
    const dead = join(dir.path, "spool", "dead");
    await rename(dead, `${dead}.away`);
    // The worker must learn that the checkout failed (an error, as the fallback Dequeue
    // call gives), not that the queue is empty: the README's worker loop `while (held)`
    // would stop for good on an answer without `next`.
    await expect(
      client.completeThenDequeue(lease as Lease, { remove: true }, { queue: "dead", waitMs: 100 }),
    ).rejects.toThrow();
    await rename(`${dead}.away`, dead);
    // The finish itself was carried out.
    await expect(client.stat((lease as Lease).entry.name)).rejects.toThrow(/no entry/);
  });

  it("a Complete cancelled while it finishes does not go on to check out a next entry", async () => {
    const name = await enqueue("a");
    const got = await service.dequeue({ queue: "inbox", leaseMs: 60_000 });
    expect(got?.entry.name).toBe(name);
    const request = geospool.v1.CompleteRequest.fromObject({
      queue: "inbox",
      name,
      leaseToken: got?.leaseToken ?? "",
      remove: {},
      thenDequeue: { queue: "inbox", wait: { seconds: 1 } },
    });
    const call = Object.assign(new EventEmitter(), {
      metadata: new grpc.Metadata(),
      getPeer: () => "test",
      cancelled: false,
      request,
    });
    // What the node does is seen through its transitions (the feed replication uses).
    const seen: string[] = [];
    const stop = service.onTransition((t) => seen.push(`${t.kind} ${t.name}`));
    const answered = new Promise<unknown>((resolve) => {
      (handlers.complete as grpc.handleUnaryCall<unknown, unknown>)(
        call as unknown as grpc.ServerUnaryCall<unknown, unknown>,
        (err, res) => resolve(err ?? res),
      );
    });
    // The client goes away (its deadline, say) while the node is still finishing.
    call.cancelled = true;
    call.emit("cancelled", "cancelled");
    // An entry arriving meanwhile is there to be taken: it must be left alone.
    const later = await enqueue("b");
    await answered;
    stop();
    // Nobody will receive a next checkout: the node should not wait for one, nor take one.
    expect(seen.sort()).toEqual([`enqueued ${later}`, `removed ${name}`]);
    expect((await service.stat({ name: later })).state).toBe("queued");
  });
});

describe("Dequeue with the data inline", () => {
  for (const session of [true, false]) {
    it(`returns data no larger than inline_data_max, and nothing else (${session ? "Session stream" : "unary calls"})`, async () => {
      const c = new GeospoolClient({
        endpoints: [endpoint],
        retryForMs: 0,
        session,
      });
      try {
        const small = await enqueue("abcd");
        const large = await enqueue("abcdefgh");
        const plain = await enqueue("xyz");
        const a = (await c.dequeue("inbox", { inlineDataMax: 4 })) as Lease;
        expect(a.entry.name).toBe(small);
        expect(a.data?.toString()).toBe("abcd");
        expect(
          createHash("sha256")
            .update(a.data as Buffer)
            .digest("hex"),
        ).toBe(a.entry.dataSha256);
        // The next one, in the Complete: over the limit, so no data (the checkout is whole).
        const { next: b } = await c.completeThenDequeue(a, { remove: true }, { inlineDataMax: 4 });
        expect(b?.entry.name).toBe(large);
        expect(b?.data).toBeUndefined();
        expect(b?.entry.dataSize).toBe(8);
        const { next: d } = await c.completeThenDequeue(b as Lease, { remove: true });
        expect(d?.entry.name).toBe(plain);
        expect(d?.data).toBeUndefined();
        await c.remove(d as Lease);
        // A limit over the node's maximum counts as the maximum: data of exactly that size
        // comes whole, in one message (over calls and over the stream alike).
        const full = "q".repeat(MAX_INLINE_DATA);
        await enqueue(full);
        const e = (await c.dequeue("inbox", { inlineDataMax: Number.POSITIVE_INFINITY })) as Lease;
        expect(e.data?.length).toBe(MAX_INLINE_DATA);
        expect(e.data?.toString()).toBe(full);
        // An empty entry's data is there, empty.
        await enqueue("");
        const { next: f } = await c.completeThenDequeue(e, { remove: true }, { inlineDataMax: 1 });
        expect(f?.data).toEqual(Buffer.alloc(0));
        await c.remove(f as Lease);
        for (const bad of [1.5, -1, Number.NaN]) {
          await expect(c.dequeue("inbox", { inlineDataMax: bad })).rejects.toThrow(
            `inlineDataMax must be a whole number of bytes (0: no data inline), got ${bad}`,
          );
        }
      } finally {
        c.close();
      }
    });
  }

  it("the node caps inline data at MAX_INLINE_DATA, or lower where its messages are smaller", async () => {
    await enqueue("z".repeat(MAX_INLINE_DATA + 1));
    const got = await service.dequeue({ queue: "inbox", inlineDataMax: MAX_INLINE_DATA + 1 });
    expect(got?.entry.dataSize).toBe(MAX_INLINE_DATA + 1);
    expect(got?.data).toBeUndefined();
    // A node whose gRPC messages leave room for less returns less.
    expect(inlineDataFitting(4 * 1024 * 1024, 256 * 1024)).toBe(MAX_INLINE_DATA);
    expect(inlineDataFitting(64 * 1024, 8 * 1024)).toBe(64 * 1024 - 2 * (8 * 1024 + 2048));
    expect(inlineDataFitting(1024, 256 * 1024)).toBe(0);
    const small = new SpoolService({
      spool,
      nodeId: "n1",
      logger: pino({ level: "silent" }),
      maxInlineDataBytes: 3,
    });
    try {
      await enqueue("abc");
      await enqueue("abcd");
      const a = await small.dequeue({ queue: "inbox", inlineDataMax: 100 });
      expect(a?.data?.toString()).toBe("abc");
      const b = await small.dequeue({ queue: "inbox", inlineDataMax: 100 });
      expect(b?.entry.dataSize).toBe(4);
      expect(b?.data).toBeUndefined();
    } finally {
      await small.close();
    }
  });
});
