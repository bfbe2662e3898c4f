import { readdir } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * A work queue that drains to empty is the normal case, and an empty spool is not a lost
 * one. Round after round, node B takes every entry of its spool and removes it (each remove
 * acknowledged), and is SIGKILLed 0 to 3 ms after the last acknowledgement, before (or
 * while) its replicator journals the removes. After it restarts, nothing removed may come
 * back, on B or on its peer A, and A must hear of every remove.
 *
 * GEOSPOOL_DRAINED_CRASH_ROUNDS sets the number of rounds (default 50).
 */

const ROUNDS = Number(process.env.GEOSPOOL_DRAINED_CRASH_ROUNDS ?? 50);
/** Entries per round: half enqueued on A, half on B. */
const PER_ROUND = 4;

/** Names of the entries in a queue directory, waiting or checked out. */
async function namesIn(spoolDir: string, queue: string): Promise<string[]> {
  const list = async (d: string) =>
    (await readdir(d).catch(() => [] as string[])).filter(
      (n) => !n.startsWith(".") && !n.includes("~"),
    );
  return [
    ...(await list(join(spoolDir, queue))),
    ...(await list(join(spoolDir, queue, ".checkout"))),
  ];
}

describe("a node SIGKILLed right after acknowledged removes that drain its spool", () => {
  const dir = useSuiteTempDir("geospool-drained-crash-");
  let cli: Awaited<ReturnType<typeof buildCli>>;
  let servers: TestPostgres[] = [];
  const inProcess: RunningNode[] = [];
  let pools: pg.Pool[] = [];

  beforeAll(async () => {
    [cli, servers] = await Promise.all([
      buildCli(),
      startPostgresServers(2, { dir: join(dir.path, "pg") }),
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
  }, 60_000);

  it(`nothing removed comes back after ${ROUNDS} SIGKILLs`, async () => {
    const mesh = await startMixedCluster({
      ids: ["a", "b"],
      dir: dir.path,
      servers,
      cli,
      inProcess,
    });
    const a = inProcess[0] as RunningNode;
    const [grpcA, grpcB] = mesh.grpc as [string, string];
    const spoolA = a.spool.dir;
    const spoolB = join(dir.path, "spool-b");
    const startB = () => mesh.startChild();
    let b: NodeProcess = await startB();
    const clientA = new GeospoolClient({ endpoints: [grpcA], retryForMs: 20_000 });
    const clientB = new GeospoolClient({ endpoints: [grpcB], retryForMs: 20_000 });
    const removed = new Map<string, number>();
    const t0 = Date.now();
    let journaledBeforeKill = 0;
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const names: string[] = [];
        for (let k = 0; k < PER_ROUND; k++) {
          const client = k % 2 === 0 ? clientA : clientB;
          const { entry } = await client.enqueue("inbox", `r${round}e${k}`);
          names.push(entry.name);
        }
        // Both nodes hold (and so have recorded) every entry before B drains its spool.
        await eventually(`round ${round}: entries on both nodes`, async () => {
          const [onA, onB] = [
            new Set(await namesIn(spoolA, "inbox")),
            new Set(await namesIn(spoolB, "inbox")),
          ];
          return names.every((n) => onA.has(n) && onB.has(n));
        });
        const leases = [];
        for (let k = 0; k < PER_ROUND; k++) {
          const lease = await clientB.dequeue("inbox", { leaseMs: 60_000 });
          expect(lease, `round ${round}: dequeue ${k} on B`).toBeDefined();
          leases.push(lease as NonNullable<typeof lease>);
        }
        expect(leases.map((l) => l.entry.name).sort()).toEqual([...names].sort());
        await Promise.all(leases.map((l) => clientB.remove(l)));
        // SIGKILL 0 to 3 ms after the last acknowledgement.
        const delay = round % 4;
        if (delay === 0) b.child.kill("SIGKILL");
        else setTimeout(() => b.child.kill("SIGKILL"), delay);
        await b.exited;
        for (const n of names) removed.set(n, round);
        const left = (await namesIn(spoolB, "inbox")).map((n) => `${n}@round${removed.get(n)}`);
        expect(left, `round ${round}: B's spool after the kill`).toEqual([]);
        const { rows } = await (pools[1] as pg.Pool).query<{ n: string }>(
          "select count(*) as n from journal where op = 'remove' and entry = any($1::text[])",
          [names],
        );
        journaledBeforeKill += Number(rows[0]?.n);
        b = await startB();
      }
      const killedAt = Date.now();

      // Every remove reaches both journals, and nothing removed is held by either node.
      const all = [...removed.keys()];
      for (const [i, pool] of pools.entries()) {
        await eventually(
          `every remove in ${i === 0 ? "A" : "B"}'s journal`,
          async () => {
            const { rows } = await pool.query<{ n: string }>(
              "select count(distinct entry) as n from journal where op = 'remove' and entry = any($1::text[])",
              [all],
            );
            return Number(rows[0]?.n) === all.length;
          },
          30_000,
        ).catch(async (err) => {
          const back = (await namesIn(spoolB, "inbox")).map((n) => `${n}@round${removed.get(n)}`);
          throw new Error(
            `${(err as Error).message}; back on B: ${back.join(", ") || "none"}\nB's log:\n${b.stderr()}`,
          );
        });
      }
      await a.replication.replicator.idle();
      expect(await b.stop(), b.stderr()).toBe(0);
      const back = [
        ...(await namesIn(spoolA, "inbox")).map((n) => `A:${n}@round${removed.get(n)}`),
        ...(await namesIn(spoolB, "inbox")).map((n) => `B:${n}@round${removed.get(n)}`),
      ];
      expect(back, "entries removed and acknowledged that came back").toEqual([]);
      console.log(
        `replication-drained-crash: ${ROUNDS} SIGKILLs, ${removed.size} removes ` +
          `(${journaledBeforeKill} journaled before the kill) in ${killedAt - t0} ms; ` +
          `converged ${Date.now() - killedAt} ms later`,
      );
    } finally {
      clientA.close();
      clientB.close();
    }
  }, 600_000);
});
