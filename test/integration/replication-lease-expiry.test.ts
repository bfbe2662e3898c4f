import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { GeospoolClient } from "../../src/node/client/index.js";
import type { RunningNode } from "../../src/node/node.js";
import { buildCli } from "../helpers/cli-build.js";
import { eventually } from "../helpers/cluster.js";
import { startMixedCluster } from "../helpers/mixed-cluster.js";
import { killNodeProcesses, type NodeProcess } from "../helpers/node-process.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { tempDir } from "../helpers/tmp.js";

/**
 * A node that holds leases dies (SIGKILL). Its checkouts have replicated to A and B; when
 * the leases run out, the entries must come back exactly once across the cluster: a worker
 * on A that takes each one again and keeps it (a long job) is never handed the same entry
 * twice, because no late release from another node lands after its checkout. (On the code before the holder's node got the first
 * claim, two of six entries were delivered twice.)
 */

const ENTRIES = 6;
const LEASE_MS = 6_000;

describe("lease expiry of checkouts held by a node that died", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let cli: Awaited<ReturnType<typeof buildCli>>;
  let servers: TestPostgres[] = [];
  const inProcess: RunningNode[] = [];
  let pools: pg.Pool[] = [];
  let failed = false;

  beforeEach((ctx) => {
    ctx.onTestFailed(() => {
      failed = true;
    });
  });

  beforeAll(async () => {
    dir = await tempDir("geospool-lease-expiry-");
    [cli, servers] = await Promise.all([
      buildCli(),
      startPostgresServers(3, { dir: join(dir.path, "pg") }),
    ]);
    pools = servers.map((s) => new pg.Pool({ connectionString: s.url, max: 2 }));
    for (const p of pools) p.on("error", () => undefined);
  }, 120_000);

  afterAll(async () => {
    await killNodeProcesses();
    await Promise.allSettled(inProcess.map((n) => n.stop()));
    await Promise.allSettled(pools.map((p) => p.end()));
    await stopPostgresServers(servers);
    await cli?.cleanup();
    await dir?.cleanup(failed);
  }, 60_000);

  it("each entry is delivered again exactly once", async () => {
    const ids = ["a", "b", "c"];
    const mesh = await startMixedCluster({
      ids,
      dir: dir.path,
      servers,
      cli,
      inProcess,
      leaseReapGrace: "2s",
    });
    const c: NodeProcess = await mesh.startChild();
    const [grpcA, , grpcC] = mesh.grpc as [string, string, string];
    const [clientA, clientC] = [grpcA, grpcC].map(
      (e) => new GeospoolClient({ endpoints: [e], retryForMs: 20_000 }),
    ) as [GeospoolClient, GeospoolClient];
    const where = async (i: number, name: string) => {
      const loc = await (inProcess[i] as RunningNode).spool.locate(name);
      return loc === undefined ? "absent" : `${loc.queue}/${loc.state}`;
    };
    let working = true;
    let worker: Promise<void> | undefined;
    try {
      const names: string[] = [];
      for (let k = 0; k < ENTRIES; k++) {
        names.push((await clientA.enqueue("inbox", `job ${k}`)).entry.name);
      }
      const wantAll = async (state: string, nodes: number[]) => {
        for (const i of nodes) {
          for (const n of names) {
            await eventually(
              `${n} ${state} on ${ids[i]}`,
              async () => (await where(i, n)) === state,
            );
          }
        }
      };
      await wantAll("inbox/queued", [0, 1]);
      // C takes every entry; its checkouts replicate to A and B; then C dies.
      const taken = new Set<string>();
      while (taken.size < ENTRIES) {
        const lease = await clientC.dequeue("inbox", { leaseMs: LEASE_MS, waitMs: 5_000 });
        if (lease) taken.add(lease.entry.name);
      }
      await wantAll("inbox/checked_out", [0, 1]);
      await c.kill();

      // A worker on A takes what comes back and keeps it (60 s leases: a long job).
      const deliveries = new Map<string, number>();
      worker = (async () => {
        while (working) {
          const lease = await clientA.dequeue("inbox", { leaseMs: 60_000, waitMs: 500 });
          if (lease) deliveries.set(lease.entry.name, (deliveries.get(lease.entry.name) ?? 0) + 1);
        }
      })();
      await eventually(
        "every entry delivered again on A",
        () => deliveries.size === ENTRIES,
        60_000,
      );
      // Every release and checkout reaches both journals, and the replicators are idle.
      const rows = async (pool: pg.Pool) =>
        (
          await pool.query<{ entry: string; op: string; origin: string }>(
            `select entry, op, origin from journal where entry = any($1::text[])
               and op in ('release', 'checkout') order by entry, hlc, origin, seq`,
            [names],
          )
        ).rows
          .map((r) => `${r.entry.slice(-6)}:${r.op}@${r.origin}`)
          .join(" ");
      let last: string[] = [];
      await eventually(
        "journals of A and B agree",
        async () => {
          last = await Promise.all([rows(pools[0] as pg.Pool), rows(pools[1] as pg.Pool)]);
          return last[0] === last[1];
        },
        30_000,
      );
      for (const n of inProcess) await n.replication.replicator.idle();
      await wantAll("inbox/checked_out", [0, 1]);
      working = false;
      await worker;
      // No release lands after the entry was checked out again (in the fold's order): that is
      // what hands a working holder's entry to a second worker.
      const { rows: ordered } = await (pools[0] as pg.Pool).query<{
        entry: string;
        op: string;
        origin: string;
      }>(
        `select entry, op, origin from journal where entry = any($1::text[])
           order by entry, hlc, origin, seq`,
        [names],
      );
      const lateReleases: string[] = [];
      const retaken = new Set<string>();
      for (const r of ordered) {
        if (r.op === "checkout" && r.origin !== "c") retaken.add(r.entry);
        if (r.op === "release" && retaken.has(r.entry)) lateReleases.push(`${r.entry}@${r.origin}`);
      }
      const twice = [...deliveries].filter(([, n]) => n !== 1);
      expect({ lateReleases, deliveredTwice: twice }, `journal: ${last[0]}`).toEqual({
        lateReleases: [],
        deliveredTwice: [],
      });
      console.log(`replication-lease-expiry: ${ENTRIES} leases of a dead node, each released once`);
    } finally {
      working = false;
      await worker?.catch(() => undefined);
      clientA.close();
      clientC.close();
    }
  }, 180_000);
});
