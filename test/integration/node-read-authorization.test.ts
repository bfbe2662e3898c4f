import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GeospoolClient } from "../../src/node/client/index.js";
import type { RunningNode } from "../../src/node/node.js";
import { startTestNode } from "../helpers/node.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * Stat and ReadData authorise before they look: a caller without rights on an entry's queue
 * gets the same NOT_FOUND "no entry NAME" for an entry that exists, one that does not, and a
 * queue that does not exist; nothing tells them apart.
 */
const ALICE = "alice-token-0123456789";
const BOB = "bob-token-0123456789ab";
const PRODUCER = "producer-token-0123456";

describe("reads authorise first", () => {
  const dir = useSuiteTempDir("geospool-read-auth-");
  let pg: TestPostgres[] = [];
  let node: RunningNode;
  const clients: GeospoolClient[] = [];
  const client = (token: string) => {
    const c = new GeospoolClient({
      endpoints: [`127.0.0.1:${node.grpcPort}`],
      token,
      retryForMs: 0,
    });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    pg = await startPostgresServers(1, { dir: dir.path });
    node = await startTestNode({
      id: "n1",
      dir: dir.path,
      postgresUrl: pg[0]!.url,
      config: {
        spool: { queues: ["secret", "outbox", "dead"] },
        auth: {
          tokens: [
            {
              name: "alice",
              token: ALICE,
              permissions: [{ queues: ["secret"], actions: ["enqueue", "dequeue"] }],
            },
            {
              name: "bob",
              token: BOB,
              permissions: [{ queues: ["outbox"], actions: ["enqueue", "dequeue"] }],
            },
            {
              name: "producer",
              token: PRODUCER,
              permissions: [{ queues: ["*"], actions: ["enqueue"] }],
            },
          ],
        },
      },
    });
  }, 120_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await node?.stop();
    await stopPostgresServers(pg);
  }, 60_000);

  /** The status and message a failed call gave, with the entry's name replaced by NAME. */
  async function refusal(call: Promise<unknown>, name: string): Promise<[number, string]> {
    const err = (await call.then(
      () => {
        throw new Error("the call succeeded");
      },
      (e: unknown) => e,
    )) as { code: number; message: string };
    return [err.code, err.message.replace(/^[^ ]+ /, "").replaceAll(name, "NAME")];
  }

  it("forbidden, absent and unknown-queue answer the same NOT_FOUND", async () => {
    const alice = client(ALICE);
    const bob = client(BOB);
    const producer = client(PRODUCER);
    const { entry } = await alice.enqueue("secret", "classified data", { metadata: "m" });
    const absent = `${entry.name.slice(0, -4)}zzzz`;
    const same: [number, string] = [grpc.status.NOT_FOUND, "NOT_FOUND: no entry NAME"];

    // The owner sees it.
    expect((await alice.stat(entry.name)).entry.queue).toBe("secret");
    expect((await alice.readData(entry.name)).data.toString()).toBe("classified data");

    for (const who of [bob, producer]) {
      // Existing but forbidden, absent, with and without a queue, known or unknown.
      expect(await refusal(who.stat(entry.name), entry.name)).toEqual(same);
      expect(await refusal(who.stat(absent), absent)).toEqual(same);
      expect(await refusal(who.stat(entry.name, "secret"), entry.name)).toEqual(same);
      expect(await refusal(who.stat(absent, "secret"), absent)).toEqual(same);
      expect(await refusal(who.stat(entry.name, "no-such-queue"), entry.name)).toEqual(same);
      expect(await refusal(who.stat(absent, "no-such-queue"), absent)).toEqual(same);
      expect(await refusal(who.readData(entry.name), entry.name)).toEqual(same);
      expect(await refusal(who.readData(absent), absent)).toEqual(same);
      expect(await refusal(who.readData(entry.name, { offset: 5 }), entry.name)).toEqual(same);
    }
    // The owner, asking about an absent entry or an unknown queue, gets the same answer too.
    expect(await refusal(alice.stat(absent), absent)).toEqual(same);
    expect(await refusal(alice.stat(entry.name, "no-such-queue"), entry.name)).toEqual(same);
    expect(await refusal(alice.readData(absent), absent)).toEqual(same);

    // Checked out: still the owner's alone.
    const lease = await alice.dequeue("secret");
    expect(lease?.entry.name).toBe(entry.name);
    expect((await alice.stat(entry.name)).state).toBe("checked_out");
    expect(await refusal(bob.stat(entry.name), entry.name)).toEqual(same);
    expect(await refusal(bob.readData(entry.name), entry.name)).toEqual(same);
    await alice.remove(lease!);
    expect(await refusal(alice.stat(entry.name), entry.name)).toEqual(same);
  });
});
