import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GeospoolClient } from "../../src/node/client/index.js";
import {
  closeCluster,
  eventually,
  placeOf,
  startTestCluster,
  type TestCluster,
} from "../helpers/cluster.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * Idempotency keys belong to (principal, queue, key): a key one token used on `secret` is
 * another key entirely for another token, or for another queue, on every node, including
 * keys that arrived by replication. A reuse never answers with another's entry.
 */
const ALICE = "alice-token-0123456789";
const BOB = "bob-token-0123456789ab";
const REPLICATION = "replication-token-0123456789";

describe("idempotency keys are scoped to principal and queue", () => {
  let cluster: TestCluster;
  const dir = useSuiteTempDir("geospool-idem-scope-");
  const clients: GeospoolClient[] = [];
  /** alice on node i, bob on node i. */
  const alice = (i: number) => clients[2 * i] as GeospoolClient;
  const bob = (i: number) => clients[2 * i + 1] as GeospoolClient;

  beforeAll(async () => {
    cluster = await startTestCluster({
      n: 2,
      dir: dir.path,
      config: {
        spool: { queues: ["secret", "outbox", "dead"] },
        auth: {
          tokens: [
            {
              name: "alice",
              token: ALICE,
              permissions: [{ queues: ["secret", "outbox"], actions: ["enqueue", "dequeue"] }],
            },
            {
              name: "bob",
              token: BOB,
              permissions: [{ queues: ["outbox"], actions: ["enqueue", "dequeue"] }],
            },
            {
              name: "replication",
              token: REPLICATION,
              permissions: [{ queues: ["*"], actions: ["dequeue"] }],
            },
          ],
        },
        replication: { token: REPLICATION, fullReconcileEvery: "2s", joinRetry: "300ms" },
      },
    });
    for (const e of cluster.endpoints) {
      clients.push(new GeospoolClient({ endpoints: [e], token: ALICE, retryForMs: 5_000 }));
      clients.push(new GeospoolClient({ endpoints: [e], token: BOB, retryForMs: 5_000 }));
    }
  }, 120_000);

  afterAll(async () => {
    await closeCluster({ clients, cluster });
  }, 60_000);

  it("another principal's or another queue's use of a key is its own key and reveals nothing", async () => {
    const key = "order-1";
    const secret = await alice(0).enqueue("secret", "launch codes", {
      metadata: "classified",
      idempotencyKey: key,
    });
    expect(secret.deduplicated).toBe(false);

    // Bob, with no rights on `secret`, reuses the key on `outbox`: a new entry of his own.
    const bobs = await bob(0).enqueue("outbox", "bob's data", {
      metadata: "bob",
      idempotencyKey: key,
    });
    expect(bobs.deduplicated).toBe(false);
    expect(bobs.entry.name).not.toBe(secret.entry.name);
    expect(bobs.entry.queue).toBe("outbox");
    expect(bobs.entry.metadata.toString()).toBe("bob");

    // Alice reuses her own key on another queue: its own key as well.
    const alicesOutbox = await alice(0).enqueue("outbox", "alice's outbox data", {
      idempotencyKey: key,
    });
    expect(alicesOutbox.deduplicated).toBe(false);
    expect(alicesOutbox.entry.name).not.toBe(secret.entry.name);
    expect(alicesOutbox.entry.name).not.toBe(bobs.entry.name);

    // Each principal's retry on its own queue still finds its own entry.
    const again = await alice(0).enqueue("secret", "launch codes", { idempotencyKey: key });
    expect(again).toMatchObject({ deduplicated: true, entry: { name: secret.entry.name } });
    const bobAgain = await bob(0).enqueue("outbox", "bob's data", { idempotencyKey: key });
    expect(bobAgain).toMatchObject({ deduplicated: true, entry: { name: bobs.entry.name } });

    // Bob's data was stored, not dropped, and `secret` still holds only alice's entry.
    const lease = await bob(0).dequeue("outbox");
    expect(lease?.entry.name).toBe(bobs.entry.name);
    expect((await bob(0).readData(bobs.entry.name)).data.toString()).toBe("bob's data");
    await bob(0).remove(lease!);
    const next = await alice(0).dequeue("outbox");
    expect(next?.entry.name).toBe(alicesOutbox.entry.name);
    await alice(0).remove(next!);
    const secrets = await alice(0).list("secret");
    expect(secrets.entries.map((e) => e.name)).toEqual([secret.entry.name]);

    // Bob may not enqueue on `secret` at all, with or without the key.
    await expect(bob(0).enqueue("secret", "x", { idempotencyKey: key })).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
    });
  });

  it("keys that arrive by replication are scoped too", async () => {
    const key = "order-2";
    const secret = await alice(0).enqueue("secret", "replicated secret", {
      metadata: "classified",
      idempotencyKey: key,
    });
    // The key is recorded on node 2 before the entry becomes visible there.
    await eventually("the entry to reach node 2", async () => {
      return (await placeOf(cluster, 1, secret.entry.name)) === "secret/queued";
    });

    const bobs = await bob(1).enqueue("outbox", "bob on node 2", {
      metadata: "bob",
      idempotencyKey: key,
    });
    expect(bobs.deduplicated).toBe(false);
    expect(bobs.entry.name).not.toBe(secret.entry.name);
    expect(bobs.entry.metadata.toString()).toBe("bob");

    const alicesOutbox = await alice(1).enqueue("outbox", "alice on node 2", {
      idempotencyKey: key,
    });
    expect(alicesOutbox.deduplicated).toBe(false);
    expect(alicesOutbox.entry.name).not.toBe(secret.entry.name);

    // Alice's retry on node 2, same queue: the entry made on node 1.
    const retry = await alice(1).enqueue("secret", "replicated secret", { idempotencyKey: key });
    expect(retry).toMatchObject({ deduplicated: true, entry: { name: secret.entry.name } });

    // And bob's key, made on node 2, reaches node 1 scoped to him.
    await eventually("bob's entry to reach node 1", async () => {
      return (await placeOf(cluster, 0, bobs.entry.name)) === "outbox/queued";
    });
    const bobRetry = await bob(0).enqueue("outbox", "bob on node 2", { idempotencyKey: key });
    expect(bobRetry).toMatchObject({ deduplicated: true, entry: { name: bobs.entry.name } });
    await eventually("alice's outbox entry to reach node 1", async () => {
      return (await placeOf(cluster, 0, alicesOutbox.entry.name)) === "outbox/queued";
    });
    const aliceOnOne = await alice(0).enqueue("outbox", "alice on node 2", {
      idempotencyKey: key,
    });
    expect(aliceOnOne).toMatchObject({
      deduplicated: true,
      entry: { name: alicesOutbox.entry.name },
    });
  });
});
