import { randomBytes } from "node:crypto";
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
 * /metrics labels only the configured queues: a client naming random queues (any token
 * can) adds no series; its calls are counted under queue="(unknown)".
 */
describe("metrics labels", () => {
  const dir = useSuiteTempDir("geospool-metrics-labels-");
  let pg: TestPostgres[] = [];
  let node: RunningNode;
  let client: GeospoolClient;

  beforeAll(async () => {
    pg = await startPostgresServers(1, { dir: dir.path });
    node = await startTestNode({ id: "n1", dir: dir.path, postgresUrl: pg[0]!.url });
    client = new GeospoolClient({ endpoints: [`127.0.0.1:${node.grpcPort}`], retryForMs: 0 });
  }, 120_000);

  afterAll(async () => {
    client?.close();
    await node?.stop();
    await stopPostgresServers(pg);
  }, 60_000);

  const scrape = async () => (await fetch(`http://127.0.0.1:${node.httpPort}/metrics`)).text();
  const queueLabels = (text: string) =>
    new Set([...text.matchAll(/[{,]queue="([^"]*)"/g)].map((m) => m[1]));
  const series = (text: string) => text.split("\n").filter((l) => l && !l.startsWith("#"));

  async function randomCalls(n: number): Promise<string[]> {
    const names: string[] = [];
    for (let i = 0; i < n; i++) {
      const q = `q${randomBytes(6).toString("hex")}`;
      names.push(q);
      // Refusals are expected: each call's rejection is handled as soon as the call is made.
      const calls: Promise<unknown>[] = [
        client.enqueue(q, "x"),
        client.list(q),
        client.dequeue(q),
        client.stat("some-entry", q),
        client.enqueue(`../${q}`, "x"),
      ].map((c: Promise<unknown>) => c.catch(() => undefined));
      await Promise.all(calls);
    }
    return names;
  }

  it("does not grow with random queue names", async () => {
    await client.enqueue("inbox", "known");
    const first = await randomCalls(30);
    const after1 = await scrape();
    const second = await randomCalls(30);
    const after2 = await scrape();

    for (const q of [...first, ...second]) expect(after2).not.toContain(q);
    const allowed = new Set([...node.service.queues, "(unknown)"]);
    for (const label of queueLabels(after2)) expect(allowed).toContain(label);
    expect(after2).toMatch(/geospool_operations_total\{[^}]*queue="\(unknown\)"/);
    expect(after2).toMatch(/geospool_operations_total\{[^}]*queue="inbox"/);
    // The second round of new names made no new series.
    const names = (text: string) =>
      new Set(
        series(text)
          .map((l) => l.replace(/ [^ ]+$/, ""))
          .filter((l) => l.includes("queue=")),
      );
    expect(names(after2)).toEqual(names(after1));
  });
});
