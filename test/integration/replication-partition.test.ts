import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GeospoolClient } from "../../src/node/client/index.js";
import { buildCli } from "../helpers/cli-build.js";
import { eventually } from "../helpers/cluster.js";
import { createLab, type NetnsLab, netnsProblem } from "../helpers/netns.js";
import { type LabPostgres, labPgDir, startLabPostgres } from "../helpers/netns-postgres.js";
import {
  killNodeProcesses,
  type NodeProcess,
  spawnCli,
  startNodeProcess,
} from "../helpers/node-process.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * Region partitions (issue #12): three node processes, each with its own PostgreSQL, in
 * network namespaces joined by a bridge. Producers enqueue on the first two nodes, a consumer
 * dequeues and removes on the third; one node's link is cut under load (packets dropped
 * silently), then healed. After each heal, once the load stops: every acknowledged enqueue
 * is on every node or was acknowledged removed, no acknowledged remove is back anywhere, the
 * journals and the spools are identical, and fsck is clean. Deliveries of one entry more than
 * once (at-least-once across the cluster) are counted, not failed.
 *
 * GEOSPOOL_PARTITION_ROUNDS: cuts (default 1: node 0 for 6 s). With more, each round cuts
 * the next node at a random moment for 4 to 10 s, with leases (3 s) shorter than the cut, a
 * second consumer on node 0, and one first delivery in five dropped by its worker (its lease
 * expires and the entry is delivered again): `npm run test:partitions`. Skipped, with the reason, where namespaces cannot be made.
 */

const ROUNDS = Number(process.env.GEOSPOOL_PARTITION_ROUNDS ?? 1);
const LONG = ROUNDS > 1;
const LEASE_MS = LONG ? 3_000 : 20_000;
/** GEOSPOOL_PARTITION_LOG_DIR: each node's whole log, at debug level, in `<dir>/<id>.log`. */
const LOG_DIR = process.env.GEOSPOOL_PARTITION_LOG_DIR;
const problem = await netnsProblem();
if (problem !== undefined) console.warn(`replication-partition skipped: ${problem}`);

const dir = useSuiteTempDir("geospool-partition-");
let cli: Awaited<ReturnType<typeof buildCli>>;
let lab: NetnsLab | undefined;
const servers: LabPostgres[] = [];
const nodes: NodeProcess[] = [];
const clients: GeospoolClient[] = [];
const pools: pg.Pool[] = [];
const IDS = ["p0", "p1", "p2"];

describe.skipIf(problem !== undefined)("a region partition under load", () => {
  beforeAll(async () => {
    cli = await buildCli();
    lab = await createLab(3);
    const hosts = lab.hosts;
    for (const [i, h] of hosts.entries())
      servers.push(await startLabPostgres(h, labPgDir(dir.path, i)));
    for (const [i, h] of hosts.entries()) {
      const peers = hosts
        .map((p, j) => ({
          id: IDS[j] as string,
          grpc: `${p.meshIp}:7000`,
          postgres: servers[j]!.meshUrl,
        }))
        .filter((_, j) => j !== i);
      nodes.push(
        await startNodeProcess({
          main: cli.main,
          id: IDS[i] as string,
          spoolDir: join(dir.path, `spool-${i}`),
          postgresUrl: servers[i]!.localUrl,
          grpc: `${h.clientIp}:7000`,
          http: `${h.clientIp}:8000`,
          peers,
          netns: h.ns,
          ...(LOG_DIR ? { logLevel: "debug" } : {}),
          flags: {
            "grpc.listen": "0.0.0.0:7000",
            "replication.leaseReapGrace": LONG ? "2s" : "10s",
          },
        }),
      );
      if (LOG_DIR) {
        const out = createWriteStream(join(LOG_DIR, `${IDS[i]}.log`), { flags: "a" });
        nodes[i]!.child.stderr?.pipe(out);
      }
      clients.push(new GeospoolClient({ endpoints: [`${h.clientIp}:7000`], retryForMs: 2_000 }));
      const pool = new pg.Pool({ connectionString: servers[i]!.clientUrl, max: 2 });
      pool.on("error", () => undefined);
      pools.push(pool);
    }
    // Building the CLI and starting three servers and three nodes took over 3 minutes at a
    // load average of 40 (a shared 2-core machine).
  }, 300_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.allSettled(pools.map((p) => p.end()));
    await killNodeProcesses();
    await Promise.allSettled(servers.map((s) => s.stop()));
    await lab?.destroy();
    await cli?.cleanup();
  }, 60_000);

  it(
    `loses nothing and brings nothing back over ${ROUNDS} cut(s)`,
    async () => {
      const l = lab as NetnsLab;
      // Every node joined: an entry enqueued on each is on every node.
      for (const c of clients) {
        const { entry } = await c.enqueue("inbox", `hello`, { metadata: "{}" });
        await eventually(
          `${entry.name} everywhere`,
          async () => {
            for (let i = 0; i < 3; i++) if (!(await names(i)).has(entry.name)) return false;
            return true;
          },
          60_000,
        );
      }
      const acked = new Map<string, number>();
      const removed = new Set<string>();
      const deliveries = new Map<string, number>();
      const failures = { enqueue: 0, dequeue: 0, remove: 0 };
      let running = true;
      const producer = async (i: number) => {
        for (let n = 0; running; n++) {
          const data = n % 4 === 0 ? randomBytes(100_000) : Buffer.from(`p${i}-${n}`);
          await clients[i]!.enqueue("inbox", data, { metadata: "{}" }).then(
            ({ entry }) => acked.set(entry.name, i),
            () => failures.enqueue++,
          );
          await new Promise((r) => setTimeout(r, 50));
        }
      };
      let taken = 0;
      let abandoned = 0;
      const consumer = async (i: number) => {
        while (running) {
          const lease = await clients[i]!.dequeue("inbox", {
            leaseMs: LEASE_MS,
            waitMs: 300,
          }).catch(() => {
            failures.dequeue++;
            return undefined;
          });
          if (lease === undefined) continue;
          const name = lease.entry.name;
          const delivered = (deliveries.get(name) ?? 0) + 1;
          deliveries.set(name, delivered);
          // In the long run, one first delivery in five is dropped by its worker: the lease
          // expires (during a cut, on both sides of it) and the entry is delivered again.
          if (LONG && delivered === 1 && ++taken % 5 === 0) {
            abandoned++;
            continue;
          }
          await clients[i]!.remove(lease).then(
            () => removed.add(name),
            () => failures.remove++,
          );
        }
      };
      const report: string[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        running = true;
        const load = [producer(0), producer(1), consumer(2), ...(LONG ? [consumer(0)] : [])];
        const victim = round % 3;
        const before = LONG ? 500 + Math.floor(Math.random() * 3_000) : 2_000;
        const cutMs = LONG ? 4_000 + Math.floor(Math.random() * 6_000) : 6_000;
        await new Promise((r) => setTimeout(r, before));
        await l.cut(victim);
        const cutAt = Date.now();
        // The cut is real: a node on the other side says so within seconds.
        const witness = clients[(victim + 1) % 3] as GeospoolClient;
        await eventually(
          `${IDS[victim]} reported unreachable`,
          async () => {
            const p = (await witness.clusterStatus()).peers.find((x) => x.nodeId === IDS[victim]);
            return p?.unreachable === true;
          },
          cutMs,
        );
        const detected = Date.now() - cutAt;
        await new Promise((r) => setTimeout(r, Math.max(0, cutMs - detected)));
        await l.heal(victim);
        await new Promise((r) => setTimeout(r, 1_000));
        running = false;
        await Promise.all(load);
        const t0 = Date.now();
        await converged().catch(async (err: Error & { odd?: string[] }) => {
          // What the test knows of the entries that differ, each node's record of them, and
          // the nodes' warnings.
          const odd = err.odd ?? [];
          const fate = odd.map(
            (n) =>
              `${n}: acked ${acked.has(n)}, removed ${removed.has(n)}, delivered ${deliveries.get(n) ?? 0}`,
          );
          const records = await Promise.all(pools.map((p) => recordOf(p, odd)));
          const logs = nodes.map((p) => `--- ${p.id}:\n${p.stderr().slice(-4000)}`);
          throw new Error(
            `${err.message}\n${fate.join("\n")}\n${records.map((r, i) => `${IDS[i]}: ${r}`).join("\n")}\n${logs.join("\n")}`,
          );
        });
        const converge = Date.now() - t0;

        // Every acknowledged enqueue is everywhere or was acknowledged removed; no
        // acknowledged remove is back anywhere.
        // A lease dropped just before the load stopped may expire after the spools
        // converged: its entry then moves from .checkout to its queue on every node, and a
        // listing taken meanwhile misses it. So a missing entry is looked for again for a
        // few seconds; one that stays missing fails the round.
        let on = await Promise.all([0, 1, 2].map(names));
        const missingOf = () =>
          [...acked.keys()].filter((n) => !removed.has(n) && on.some((s) => !s.has(n)));
        await eventually(
          "no acknowledged enqueue missing",
          async () => {
            if (missingOf().length === 0) return true;
            on = await Promise.all([0, 1, 2].map(names));
            return missingOf().length === 0;
          },
          10_000,
        ).catch(() => undefined);
        const missing = missingOf();
        const back = [...removed].filter((n) => on.some((s) => s.has(n)));
        expect(missing, `round ${round}: acknowledged enqueues missing`).toEqual([]);
        expect(back, `round ${round}: acknowledged removes back`).toEqual([]);
        // The spools converged without the self-check having to repair an entry (it would
        // hide a lost peer change from the checks above).
        const diverged = await Promise.all(nodes.map((p) => divergedOn(p.http)));
        expect(diverged, `round ${round}: divergences the self-check repaired`).toEqual([0, 0, 0]);
        for (let i = 0; i < 3; i++) {
          await eventually(`fsck clean on ${IDS[i]}`, () => fsckClean(i), 20_000);
        }
        const twice = [...deliveries.values()].filter((n) => n > 1).length;
        report.push(
          `round ${round}: cut ${IDS[victim]} ${cutMs} ms after ${before} ms, reported ` +
            `unreachable in ${detected} ms; converged ` +
            `${converge} ms after the load stopped; ${acked.size} enqueues, ${removed.size} ` +
            `removes, ${abandoned} leases dropped, ${twice} delivered more than once; ` +
            `failed calls ${JSON.stringify(failures)}`,
        );
      }
      console.log(`replication-partition:\n  ${report.join("\n  ")}`);
    },
    120_000 + ROUNDS * 90_000,
  );
});

/** Entry names in node i's spool, queued or checked out, in every queue. */
async function names(i: number): Promise<Set<string>> {
  const root = join(dir.path, `spool-${i}`);
  const list = async (d: string) =>
    (await readdir(d).catch(() => [] as string[])).filter(
      (n) => !n.startsWith(".") && !n.includes("~"),
    );
  const out = new Set<string>();
  for (const q of ["inbox", "outbox", "dead"]) {
    for (const n of await list(join(root, q))) out.add(`${n}`);
    for (const n of await list(join(root, q, ".checkout"))) out.add(`${n}`);
  }
  return out;
}

/** Where node i holds each entry: `queue` or `queue/checked_out`. */
async function places(i: number): Promise<string> {
  const root = join(dir.path, `spool-${i}`);
  const out: string[] = [];
  for (const q of ["inbox", "outbox", "dead"]) {
    for (const [sub, tag] of [
      ["", q],
      [".checkout", `${q}/checked_out`],
    ] as const) {
      const d = join(root, q, sub);
      for (const n of await readdir(d).catch(() => [] as string[])) {
        if (!n.startsWith(".") && !n.includes("~")) out.push(`${n}@${tag}`);
      }
    }
  }
  return out.sort().join("\n");
}

const JOURNAL_SQL = `select count(*)::int as n, md5(string_agg(origin || '/' || seq || '/' || op || '/' ||
  entry || '/' || coalesce(queue, '') || '/' || coalesce(attempts::text, ''), ',' order by origin, seq)) as digest
  from journal`;

/** Identical journals, then identical spools (state as a function of the journal). */
async function converged(): Promise<void> {
  let last = "";
  let oddEntries: string[] = [];
  await eventually(
    "identical journals and spools",
    async () => {
      const journals = await Promise.all(
        pools.map(async (p) => JSON.stringify((await p.query(JOURNAL_SQL)).rows[0])),
      );
      const spools = await Promise.all([0, 1, 2].map(places));
      const lines = spools.map((x) => new Set(x.split("\n")));
      const odd = [...new Set(spools.flatMap((x) => x.split("\n")))].filter(
        (line) => !lines.every((set) => set.has(line)),
      );
      const where = odd.map(
        (line) =>
          `${line} on ${[0, 1, 2]
            .filter((i) => lines[i]?.has(line))
            .map((i) => IDS[i])
            .join("+")}`,
      );
      const oddNames = [...new Set(odd.map((line) => line.split("@")[0] as string))].slice(0, 5);
      oddEntries = oddNames;
      const rows = await pools[0]!.query<{ r: string }>(
        `select entry || ' ' || string_agg(origin || '/' || seq || ':' || op || ':' || coalesce(queue, '') || ':a' || coalesce(attempts::text, '') || ':h' || hlc::text, ' ' order by hlc, origin, seq) as r
         from journal where entry = any($1::text[]) group by entry`,
        [oddNames],
      );
      last = `journals ${journals.join(" ")}; spools differ on: ${where.slice(0, 10).join(", ")}; rows: ${rows.rows.map((r) => r.r).join(" | ")}`;
      return new Set(journals).size === 1 && new Set(spools).size === 1;
    },
    60_000,
  ).catch((err) => {
    throw Object.assign(new Error(`${(err as Error).message}: ${last}`), { odd: oddEntries });
  });
}

/** `geospool_replication_events_total{event="diverged"}` of the node serving /metrics at `http`. */
async function divergedOn(http: string): Promise<number> {
  const text = await (await fetch(`http://${http}/metrics`)).text();
  const m = /^geospool_replication_events_total\{event="diverged"[^}]*\} (\d+)/m.exec(text);
  return Number(m?.[1] ?? 0);
}

/** A node's record, retries and quarantine of `entries`, as one line. */
async function recordOf(pool: pg.Pool, entries: string[]): Promise<string> {
  const q = async (sql: string) =>
    JSON.stringify(
      (await pool.query(sql, [entries]).catch((e: Error) => ({ rows: e.message }))).rows,
    );
  return [
    `record ${await q("select entry, queue, checked_out, attempts from replica_entries where entry = any($1)")}`,
    `pending ${await q("select entry, reason, failures from replica_pending where entry = any($1)")}`,
    `quarantine ${await q("select entry, origin, seq, problem from replica_quarantine where entry = any($1)")}`,
  ].join("; ");
}

async function fsckClean(i: number): Promise<boolean> {
  const p = spawnCli(cli.main, ["spool", "fsck", join(dir.path, `spool-${i}`)]);
  return (await p.exited).code === 0;
}
