import { join } from "node:path";
import { status as grpcStatus } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GeospoolClient } from "../../src/node/client/index.js";
import { buildCli } from "../helpers/cli-build.js";
import { freePorts } from "../helpers/cluster.js";
import { killNodeProcesses, startNodeProcess } from "../helpers/node-process.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * A lease token outlives the node process that handed it out: a `geospool node` SIGKILLed
 * while a client holds a lease, and started again on the same spool, honours the holder's
 * token (it is kept with the checkout, not in the process) and refuses an earlier holder's.
 */

const dir = useSuiteTempDir("geospool-lease-token-");
let cli: Awaited<ReturnType<typeof buildCli>>;
let servers: TestPostgres[] = [];

beforeAll(async () => {
  [cli, servers] = await Promise.all([
    buildCli(),
    startPostgresServers(1, { dir: join(dir.path, "pg") }),
  ]);
}, 180_000);
afterAll(async () => {
  await killNodeProcesses();
  await stopPostgresServers(servers);
  await cli?.cleanup();
});

describe("lease tokens across a node restart", () => {
  it("a SIGKILLed and restarted node honours the holder's token and refuses a stale one", async () => {
    const [grpc, http] = (await freePorts(2)).map((p) => `127.0.0.1:${p}`) as [string, string];
    const start = () =>
      startNodeProcess({
        main: cli.main,
        id: "t1",
        spoolDir: join(dir.path, "spool"),
        postgresUrl: (servers[0] as TestPostgres).url,
        grpc,
        http,
        peers: [],
      });
    let node = await start();
    let client = new GeospoolClient({ endpoints: [grpc], retryForMs: 0 });
    const { entry } = await client.enqueue("inbox", "payload");
    // An earlier holder finishes by saving back; the entry is then checked out again.
    const first = await client.dequeue("inbox", { leaseMs: 10 * 60_000 });
    expect(first?.entry.name).toBe(entry.name);
    await client.save(first!, "inbox");
    const lease = await client.dequeue("inbox", { leaseMs: 10 * 60_000 });
    expect(lease?.entry.name).toBe(entry.name);
    expect(lease!.token).not.toBe(first!.token);
    client.close();

    await node.kill();
    node = await start();
    client = new GeospoolClient({ endpoints: [grpc], retryForMs: 0 });
    const stale = await client.release(first!).catch((e) => e);
    expect(stale.code).toBe(grpcStatus.FAILED_PRECONDITION);
    expect((await client.stat(entry.name)).state).toBe("checked_out");
    await client.remove(lease!);
    expect((await client.stat(entry.name).catch((e) => e)).code).toBe(grpcStatus.NOT_FOUND);
    client.close();
    await node.stop();
  }, 180_000);
});
