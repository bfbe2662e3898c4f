import { PassThrough } from "node:stream";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliIo } from "../../src/node/cli/command.js";
import { runCli } from "../../src/node/cli/main.js";
import { GeospoolClient } from "../../src/node/client/index.js";
import { Metrics } from "../../src/node/observability/metrics.js";
import { slotName, subscriptionName } from "../../src/replication/mesh.js";
import { eventually, startTestCluster, type TestCluster } from "../helpers/cluster.js";
import { metricSample } from "../helpers/metrics-text.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

describe("replication metrics at scrape time", () => {
  it("a source that never answers is a collect error, not a stuck scrape", async () => {
    const metrics = new Metrics({ processMetrics: false, replicationTimeoutMs: 50 });
    expect(await metrics.render()).not.toContain("geospool_replication_lag_seconds");
    metrics.setReplicationSource(() => new Promise(() => {}));
    const text = await metrics.render();
    expect(text).toContain("# TYPE geospool_replication_lag_seconds gauge");
    expect(text).not.toMatch(/^geospool_replication_lag_seconds\{/m);
    // Each failed read is counted; the count of a read shows in the next scrape at the latest.
    const after = await metrics.render();
    expect(after).toMatch(
      /^geospool_metrics_collect_errors_total\{collector="replication"\} [12]$/m,
    );
  });
});

/**
 * ClusterStatus, the replication metrics and `geospool cluster status|join|leave`, on three
 * nodes with their own real PostgreSQL servers. The tests run in order on one cluster: the
 * last one stops a node and its server.
 */
describe("cluster status", () => {
  let cluster: TestCluster;
  const dir = useSuiteTempDir("geospool-cluster-status-");
  let client: GeospoolClient;

  beforeAll(async () => {
    cluster = await startTestCluster({
      n: 3,
      dir: dir.path,
      config: { node: { region: "eu" } },
    });
    client = new GeospoolClient({ endpoints: [cluster.endpoints[0] as string] });
  }, 120_000);

  afterAll(async () => {
    client?.close();
    await cluster?.stop();
  }, 60_000);

  type Status = Awaited<ReturnType<GeospoolClient["clusterStatus"]>>;
  type PeerRow = Status["peers"][number];
  const peer = (s: Status, id: string) => s.peers.find((p) => p.nodeId === id) as PeerRow;
  const streaming = (p: PeerRow | undefined) =>
    p?.connected === true && (p.slotState === "streaming" || p.slotState === "catchup");

  async function metricsText(i: number): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${cluster.node(i).httpPort}/metrics`);
    expect(res.status).toBe(200);
    return res.text();
  }

  const sample = metricSample;

  async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const out = new PassThrough();
    const err = new PassThrough();
    let stdout = "";
    let stderr = "";
    out.on("data", (d) => (stdout += d));
    err.on("data", (d) => (stderr += d));
    const io: CliIo = {
      stdout: out,
      stderr: err,
      stdin: new PassThrough(),
      program: "geospool",
      shutdownSignal: () => new AbortController().signal,
    };
    const code = await runCli(args, io);
    return { code, stdout, stderr };
  }

  /** What n1's database holds about `entry`, for a failure message. */
  async function replicaState(url: string, entry: string): Promise<unknown> {
    const db = new pg.Pool({ connectionString: url, max: 1 });
    try {
      const q = async (sql: string, values: unknown[] = []) => (await db.query(sql, values)).rows;
      return {
        journal: await q("select origin, seq, op, queue from journal where entry = $1", [entry]),
        pending: await q("select * from replica_pending"),
        quarantine: await q("select * from replica_quarantine"),
        replicator: cluster.node(0).replication.replicator.status(),
      };
    } finally {
      await db.end();
    }
  }

  it("lists every peer, connected, with the state of its slot and lag fields", async () => {
    let s = await client.clusterStatus();
    await eventually("both peers streaming", async () => {
      s = await client.clusterStatus();
      return streaming(peer(s, "n2")) && streaming(peer(s, "n3"));
    });
    expect(s.nodeId).toBe("n1");
    expect(s.peers.map((p) => p.nodeId)).toEqual(["n2", "n3"]);
    for (const [i, id] of [
      [1, "n2"],
      [2, "n3"],
    ] as const) {
      const p = peer(s, id);
      expect(p.grpcEndpoint).toBe(cluster.endpoints[i]);
      expect(p.replicationLagMs).toBeGreaterThanOrEqual(0);
      // Fields at their default value are absent from a decoded message.
      expect(Number(p.lagBytes ?? 0)).toBeGreaterThanOrEqual(0);
      expect(Number(p.applyErrors ?? 0)).toBe(0);
    }
    // An entry enqueued on n2 reaches n1; then nothing of n2's waits for its data.
    const { entry } = await new GeospoolClient({
      endpoints: [cluster.endpoints[1] as string],
    }).enqueue("inbox", "from n2", { metadata: "m" });
    await eventually("entry on n1", async () => {
      return (await cluster.node(0).spool.locate(entry.name)) !== undefined;
    });
    await eventually("no pending fetches", async () => {
      s = await client.clusterStatus();
      return Number(peer(s, "n2").pendingFetches ?? 0) === 0;
    });
  }, 60_000);

  it("exposes the replication series on /metrics", async () => {
    await eventually("metrics of both peers", async () => {
      const text = await metricsText(0);
      // A peer's subscription attaches to n1's slot for it a moment after the peer is seen.
      return ["n2", "n3"].every(
        (id) =>
          sample(text, "geospool_replication_peer_connected", { peer: id }) === 1 &&
          sample(text, "geospool_replication_slot_active", {
            slot: slotName("n1", id),
            kind: "mesh",
            peer: id,
          }) === 1,
      );
    });
    const text = await metricsText(0);
    for (const id of ["n2", "n3"]) {
      expect(sample(text, "geospool_replication_lag_seconds", { peer: id })).toBeGreaterThanOrEqual(
        0,
      );
      expect(sample(text, "geospool_replication_lag_bytes", { peer: id })).toBeGreaterThanOrEqual(
        0,
      );
      expect(sample(text, "geospool_replication_subscription_apply_errors", { peer: id })).toBe(0);
      // n1's server feeds each peer's subscription through its own slot.
      expect(
        sample(text, "geospool_replication_slot_active", {
          slot: slotName("n1", id),
          kind: "mesh",
          peer: id,
        }),
      ).toBe(1);
    }
    expect(sample(text, "geospool_replication_slot_active", { kind: "apply" })).toBe(1);
    expect(sample(text, "geospool_replication_pending_fetches", {})).toBeGreaterThanOrEqual(0);
    expect(sample(text, "geospool_replication_backlog", { kind: "dirty" })).toBeGreaterThanOrEqual(
      0,
    );
    expect(
      sample(text, "geospool_metrics_collect_errors_total", { collector: "replication" }),
    ).toBeUndefined();
  }, 60_000);

  it("geospool cluster status prints the table and --json", async () => {
    const json = await cli([
      "cluster",
      "status",
      "--endpoints",
      cluster.endpoints[0] as string,
      "--json",
    ]);
    expect(json.stderr).toBe("");
    expect(json.code).toBe(0);
    const view = JSON.parse(json.stdout) as {
      nodeId: string;
      region: string;
      queues: Array<{ queue: string }>;
      peers: Array<{ nodeId: string; connected: boolean; slotState: string; lagBytes: number }>;
    };
    expect(view.nodeId).toBe("n1");
    expect(view.region).toBe("eu");
    expect(view.queues.map((q) => q.queue)).toContain("inbox");
    expect(view.peers.map((p) => [p.nodeId, p.connected])).toEqual([
      ["n2", true],
      ["n3", true],
    ]);
    const table = await cli(["cluster", "status", "--endpoints", cluster.endpoints[0] as string]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^PEER\s+REGION\s+ENDPOINT\s+CONNECTED/m);
    expect(table.stdout).toMatch(/^n3\s+-\s+127\.0\.0\.1:\d+\s+yes\s/m);
  }, 60_000);

  it("geospool cluster leave and join act on the node's database", async () => {
    const url = cluster.postgres[0]?.url as string;
    const n2url = cluster.postgres[1]?.url as string;
    const left = await cli(["cluster", "leave", "n2", "--postgres-url", url, "--json"]);
    expect(left.stderr).toBe("");
    expect(JSON.parse(left.stdout)).toMatchObject({ peer: "n2", kind: "left", slot: "dropped" });
    const db = new pg.Pool({ connectionString: url, max: 1 });
    try {
      const subs = await db.query("select 1 from pg_subscription where subname = $1", [
        subscriptionName("n2"),
      ]);
      expect(subs.rowCount).toBe(0);
    } finally {
      await db.end();
    }
    let s = await client.clusterStatus();
    await eventually("n2 not joined", async () => {
      s = await client.clusterStatus();
      return peer(s, "n2").slotState === "not_joined";
    });
    expect(peer(s, "n2").connected).not.toBe(true);

    // Rows n2 writes meanwhile are copied by the join.
    const n2 = new GeospoolClient({ endpoints: [cluster.endpoints[1] as string] });
    let name: string;
    try {
      name = (await n2.enqueue("inbox", "while apart", { metadata: "apart" })).entry.name;
    } finally {
      n2.close();
    }
    const joined = await cli(["cluster", "join", "n2", n2url, "--postgres-url", url, "--json"]);
    expect(joined.stderr).toBe("");
    const outcome = JSON.parse(joined.stdout) as { kind: string; copiedRows: number };
    expect(outcome.kind).toBe("created");
    expect(outcome.copiedRows).toBeGreaterThan(0);
    await eventually("entry enqueued while apart reaches n1", async () => {
      return (await cluster.node(0).spool.locate(name)) !== undefined;
    }).catch(async (err) => {
      console.error("n1 after the join:", JSON.stringify(await replicaState(url, name)));
      throw err;
    });
    await eventually("n2 streaming again", async () =>
      streaming(peer(await client.clusterStatus(), "n2")),
    );
  }, 60_000);

  it("reports a peer disconnected once its node and PostgreSQL stop", async () => {
    await cluster.stopNode(2);
    await cluster.postgres[2]?.stop();
    let s = await client.clusterStatus();
    await eventually(
      "n3 disconnected",
      async () => {
        s = await client.clusterStatus();
        return !peer(s, "n3").connected && peer(s, "n3").slotState === "unreachable";
      },
      30_000,
    );
    expect(peer(s, "n2")).toMatchObject({ connected: true, slotState: "streaming" });
    const text = await metricsText(0);
    expect(sample(text, "geospool_replication_peer_connected", { peer: "n3" })).toBe(0);
    expect(sample(text, "geospool_replication_peer_connected", { peer: "n2" })).toBe(1);
    // Nothing can be measured on n3's server now; n1's slot that fed n3 is idle.
    expect(sample(text, "geospool_replication_lag_bytes", { peer: "n3" })).toBeUndefined();
    expect(sample(text, "geospool_replication_slot_active", { slot: slotName("n1", "n3") })).toBe(
      0,
    );
  }, 60_000);
});
