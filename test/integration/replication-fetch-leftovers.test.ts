import { randomBytes } from "node:crypto";
import { readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GeospoolClient } from "../../src/node/client/geospool-client.js";
import type { RunningNode } from "../../src/node/node.js";
import { Monitor } from "../../src/spool/index.js";
import { eventually, freePorts } from "../helpers/cluster.js";
import { startTestNode } from "../helpers/node.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * A fetch cut mid-way leaves no `.tmp/<entry>~fetch` behind once the entry needs no data
 * (its remove arrived), nor does a file an earlier process left: fsck is clean at once, not
 * after the 10-minute tmp age (issue #12, item 4). B reaches A's gRPC through a TCP proxy
 * that the test cuts after some bytes; the journals replicate directly between the databases.
 */

const dir = useSuiteTempDir("geospool-fetch-left-");
let servers: TestPostgres[] = [];
let a: RunningNode;
let b: RunningNode | undefined;
let proxy: TcpProxy;
let clientA: GeospoolClient;
let poolB: pg.Pool;
let bGrpc: string;

const startB = () =>
  startTestNode({
    id: "b",
    dir: dir.path,
    postgresUrl: servers[1]!.url,
    config: {
      grpc: { listen: bGrpc },
      replication: { fullReconcileEvery: "2s", joinRetry: "300ms" },
      peers: [{ id: "a", grpc: proxy.endpoint, postgres: servers[0]!.url }],
    },
  });

beforeAll(async () => {
  servers = await startPostgresServers(2, { dir: dir.path });
  bGrpc = `127.0.0.1:${(await freePorts(1))[0]}`;
  a = await startTestNode({
    id: "a",
    dir: dir.path,
    postgresUrl: servers[0]!.url,
    config: {
      replication: { fullReconcileEvery: "2s", joinRetry: "300ms" },
      peers: [{ id: "b", grpc: bGrpc, postgres: servers[1]!.url }],
    },
  });
  proxy = await startTcpProxy(`127.0.0.1:${a.grpcPort}`);
  b = await startB();
  clientA = new GeospoolClient({ endpoints: [`127.0.0.1:${a.grpcPort}`], retryForMs: 5_000 });
  poolB = new pg.Pool({ connectionString: servers[1]!.url, max: 1 });
}, 120_000);

afterAll(async () => {
  clientA?.close();
  await poolB?.end();
  await Promise.allSettled([a?.stop(), b?.stop()]);
  await proxy?.close();
  await stopPostgresServers(servers);
});

const tmpOfB = () => join(dir.path, "spool-b", ".tmp");
const leftIn = async (d: string) => (await readdir(d)).filter((f) => f.includes("~"));
const pendingOnB = async (entry: string) =>
  (await poolB.query("select 1 from replica_pending where entry = $1", [entry])).rowCount ?? 0;

async function removeOnA(name: string): Promise<void> {
  for (;;) {
    const lease = await clientA.dequeue("inbox", { waitMs: 2_000 });
    if (lease === undefined) throw new Error(`${name} never came out of A's inbox`);
    if (lease.entry.name === name) return clientA.remove(lease);
    await clientA.release(lease);
  }
}

describe("fetch files left in the spool's tmp dir", () => {
  it("are deleted once a fetch cut mid-way is given up because the entry was removed", async () => {
    const node = b as RunningNode;
    proxy.cutAfterBytes(300_000);
    const data = randomBytes(2 * 1024 * 1024);
    const { entry } = await clientA.enqueue("inbox", data, { metadata: "{}" });
    const file = join(tmpOfB(), `${entry.name}~fetch`);
    // The transfer got some bytes, then every source failed: the bytes are kept to resume.
    await eventually("B's fetch cut and given up", async () => {
      const size = await stat(file).then(
        (s) => s.size,
        () => 0,
      );
      return (
        proxy.isCut &&
        size > 0 &&
        (await pendingOnB(entry.name)) === 1 &&
        node.replication.fetcher.pending() === 0
      );
    });
    expect(await new Monitor(node.spool).fsck()).toContainEqual(
      expect.objectContaining({ kind: "orphaned", dir: { kind: "tmp" } }),
    );

    // The entry is consumed on A; its remove reaches B by the journal: nothing to fetch.
    await removeOnA(entry.name);
    await eventually("B gave the entry up", async () => (await pendingOnB(entry.name)) === 0);
    await eventually("the fetch file gone", async () => (await leftIn(tmpOfB())).length === 0);
    expect(await new Monitor(node.spool).fsck()).toEqual([]);
    proxy.heal();
  }, 60_000);

  it("are resumed or deleted at start when an earlier process left them", async () => {
    // Stopped: B's spool and database stay; A goes on.
    await b?.stop();
    b = undefined;
    const live = randomBytes(300_000);
    const { entry: kept } = await clientA.enqueue("inbox", live, { metadata: "{}" });
    const gone = await clientA.enqueue("inbox", randomBytes(200_000), { metadata: "{}" });
    await removeOnA(gone.entry.name);
    // What a crash mid-fetch leaves: a prefix of a live entry, a file of a removed one, and
    // the staged inline data of a placement that never happened.
    await writeFile(join(tmpOfB(), `${kept.name}~fetch`), live.subarray(0, 100_000));
    await writeFile(join(tmpOfB(), `${gone.entry.name}~fetch`), randomBytes(50_000));
    await writeFile(join(tmpOfB(), `${gone.entry.name}~inline`), randomBytes(10));
    b = await startB();
    const node = b;
    await eventually("the live entry placed on B", async () => {
      const loc = await node.spool.locate(kept.name);
      return loc !== undefined;
    });
    expect((await node.spool.dataFile(kept.name).read()).equals(live)).toBe(true);
    await eventually("nothing left in B's tmp", async () => (await leftIn(tmpOfB())).length === 0);
    expect(await new Monitor(node.spool).fsck()).toEqual([]);
  }, 60_000);
});
