import { readdir, readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GeospoolClient } from "../../src/node/client/geospool-client.js";
import { freePort } from "../../src/node/postgres/free-port.js";
import { nodeEntryCodec } from "../../src/node/service/entry-meta.js";
import { Monitor, Spool } from "../../src/spool/index.js";
import { buildCli } from "../helpers/cli-build.js";
import {
  killNodeProcesses,
  type NodeProcess,
  spawnCli,
  startNodeProcess,
} from "../helpers/node-process.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

const dir = useSuiteTempDir("geospool-failover-");
let cli: Awaited<ReturnType<typeof buildCli>>;
let pg: TestPostgres[] = [];

beforeAll(async () => {
  [cli, pg] = await Promise.all([buildCli(), startPostgresServers(3, { dir: dir.path })]);
});

afterAll(async () => {
  await killNodeProcesses();
  await stopPostgresServers(pg);
  await cli?.cleanup();
});

/** A node on fresh ports, with no peers (each node is on its own). */
async function startNode(id: string, postgresUrl: string): Promise<NodeProcess> {
  return startNodeProcess({
    main: cli.main,
    id,
    spoolDir: join(dir.path, id, "spool"),
    postgresUrl,
    grpc: `127.0.0.1:${await freePort()}`,
    http: `127.0.0.1:${await freePort()}`,
    peers: [],
  });
}

describe("client failover", () => {
  it("keeps enqueuing when the node it uses is SIGKILLed mid-stream; every acknowledged entry exists", async () => {
    const nodes = await Promise.all(["a", "b", "c"].map((id, i) => startNode(id, pg[i]!.url)));
    const client = new GeospoolClient({
      endpoints: nodes.map((n) => n.grpc),
      callTimeoutMs: 2_000,
      retryForMs: 20_000,
      backoff: { initialMs: 20, maxMs: 200 },
    });
    const acks: Array<{ name: string; endpoint: string; i: number }> = [];
    const TOTAL = 240;
    let killed: NodeProcess | undefined;
    const payload = (i: number) => Buffer.alloc(20_000 + i, i % 251);
    for (let i = 0; i < TOTAL; i++) {
      const call = client.enqueue("inbox", payload(i), { metadata: JSON.stringify({ i }) });
      if (i === 80) {
        // Kill the node serving the stream while this enqueue is in flight.
        killed = nodes.find((n) => n.grpc === acks.at(-1)?.endpoint);
        killed?.child.kill("SIGKILL");
      }
      const r = await call;
      acks.push({ name: r.entry.name, endpoint: r.endpoint, i });
    }
    expect(killed).toBeDefined();
    expect((await killed!.exited).signal).toBe("SIGKILL");
    const after = acks.filter((a) => a.i > 80);
    expect(after.every((a) => a.endpoint !== killed!.grpc)).toBe(true);
    const survivors = nodes.filter((n) => n !== killed).map((n) => n.grpc);
    for (const a of after) expect(survivors).toContain(a.endpoint);

    // Bring the killed node back on its spool and database: every acknowledged entry is
    // on the node that acknowledged it, whole.
    const back = await startNode(killed!.id, pg[["a", "b", "c"].indexOf(killed!.id)]!.url);
    const byEndpoint = new Map(
      nodes.map((n) => [n.grpc, n.id === killed!.id ? back.grpc : n.grpc]),
    );
    for (const a of acks) {
      const check = new GeospoolClient({
        endpoints: [byEndpoint.get(a.endpoint)!],
        retryForMs: 5_000,
      });
      const { data } = await check.readData(a.name);
      check.close();
      expect(data.equals(payload(a.i)), `entry ${a.i} (${a.name}) on ${a.endpoint}`).toBe(true);
    }
    // On the node that was killed, nothing is visible without its data and nothing is
    // duplicated: at most an unfinished enqueue's files, which repair removes.
    const spool = await Spool.load(join(dir.path, killed!.id, "spool"), {
      metadata: nodeEntryCodec,
      queues: ["inbox", "outbox", "dead"],
    });
    const problems = await new Monitor(spool).fsck();
    expect(problems.filter((p) => p.kind === "missing_data" || p.kind === "duplicated")).toEqual(
      [],
    );
    client.close();
    for (const n of [...nodes.filter((n) => n !== killed), back]) {
      n.child.kill("SIGTERM");
      expect((await n.exited).code).toBe(0);
    }
  });
});

describe("geospool dev", () => {
  it("starts a 3-node cluster, serves, stops cleanly with no stray process, and keeps its state", async () => {
    const devDir = join(dir.path, "dev");
    const base = await freePortRange(3, 100);
    const start = async () => {
      const proc = spawnCli(
        cli.main,
        [
          "dev",
          "--nodes",
          "3",
          "--base-grpc-port",
          String(base),
          "--base-http-port",
          String(base + 100),
          "--dir",
          devDir,
          "--json",
        ],
        { stdout: true },
      );
      let out = "";
      proc.child.stdout?.on("data", (d) => (out += d));
      const deadline = Date.now() + 60_000;
      let exited = false;
      proc.exited.then(() => (exited = true));
      while (!out.includes("\n")) {
        if (Date.now() > deadline || exited) {
          throw new Error(`dev did not print its endpoints:\n${proc.stderr()}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      return {
        ...proc,
        nodes: JSON.parse(out.split("\n")[0]!).nodes as Array<{
          id: string;
          grpc: string;
          http: string;
        }>,
      };
    };
    const first = await start();
    expect(first.nodes.map((n) => n.grpc)).toEqual([0, 1, 2].map((i) => `127.0.0.1:${base + i}`));
    const client = new GeospoolClient({
      endpoints: first.nodes.map((n) => n.grpc),
      retryForMs: 5_000,
    });
    const names: string[] = [];
    for (const n of first.nodes) {
      const one = new GeospoolClient({ endpoints: [n.grpc] });
      names.push((await one.enqueue("inbox", `kept by ${n.id}`)).entry.name);
      one.close();
      expect((await fetch(`http://${n.http}/readyz`)).status).toBe(200);
    }
    client.close();
    first.child.kill("SIGTERM");
    expect((await first.exited).code).toBe(0);
    expect(await postgresProcessesUnder(devDir)).toEqual([]);

    const second = await start();
    for (const [i, n] of second.nodes.entries()) {
      const one = new GeospoolClient({ endpoints: [n.grpc] });
      expect((await one.readData(names[i]!)).data.toString()).toBe(`kept by ${n.id}`);
      one.close();
    }
    second.child.kill("SIGINT");
    expect((await second.exited).code).toBe(0);
    expect(await postgresProcessesUnder(devDir)).toEqual([]);
  });
});

/**
 * A base port such that base..base+n-1 and base+offset..base+offset+n-1 are free, below the
 * kernel's ephemeral range so servers started with port 0 elsewhere cannot take them.
 */
async function freePortRange(n: number, offset: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 10_000 + Math.floor(Math.random() * 20_000);
    const ports = Array.from({ length: n }, (_, i) => [base + i, base + offset + i]).flat();
    const free = await Promise.all(ports.map(canBind));
    if (free.every(Boolean)) return base;
  }
  throw new Error("no free port range found");
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** pids of processes whose command line mentions `dir` (a PostgreSQL left behind would). */
async function postgresProcessesUnder(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmd.includes(dir) && cmd.includes("postgres")) out.push(Number(pid));
  }
  return out;
}
