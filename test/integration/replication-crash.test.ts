import { createHash, randomBytes } from "node:crypto";
import { watch } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GeospoolClient } from "../../src/node/client/index.js";
import type { RunningNode } from "../../src/node/node.js";
import { type NodeEntryMeta, nodeEntryCodec } from "../../src/node/service/entry-meta.js";
import type { NodeSpool } from "../../src/node/service/spool-service.js";
import { countByOrigin } from "../../src/replication/journal-store.js";
import { Expert, Monitor, Spool } from "../../src/spool/index.js";
import { buildCli } from "../helpers/cli-build.js";
import {
  closeCluster,
  eventually,
  killPostgres,
  restartPostgres,
  startTestCluster,
  type TestCluster,
} from "../helpers/cluster.js";
import { startMixedCluster } from "../helpers/mixed-cluster.js";
import { killNodeProcesses, type NodeProcess } from "../helpers/node-process.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * Replication survives crashes: a node's daemon SIGKILLed while it fetches and applies peer
 * entries, a node's PostgreSQL SIGKILLed while entries flow, and a node that comes back to a
 * backlog of 10,000 entries. After catch-up every node holds every entry exactly once, whole,
 * and every database holds the same journal rows per origin.
 */

const MIB = 1024 * 1024;
const QUEUES = ["inbox", "outbox", "dead"];

interface Expected {
  queue: string;
  user: string;
  sha256: string;
}

interface Held {
  where: string;
  user: string;
  /** The digest recorded in the entry's metadata. */
  sha256: string;
  /** The digest of the data file as it is on disk. */
  dataSha256: string;
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const sleep = (ms: number) =>
  new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref());

async function mapLimit<T>(n: number, limit: number, f: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, n) }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await f(i);
      }
    }),
  );
  return out;
}

/** Every entry of a spool, wherever it is; a name found twice goes to `duplicates`. */
async function spoolContents(
  spool: NodeSpool,
): Promise<{ entries: Map<string, Held>; duplicates: string[] }> {
  const entries = new Map<string, Held>();
  const duplicates: string[] = [];
  const add = async (name: string, where: string, m: NodeEntryMeta) => {
    const h = createHash("sha256");
    for await (const chunk of spool.dataFile(name).createReadStream()) h.update(chunk as Buffer);
    if (entries.has(name)) duplicates.push(name);
    entries.set(name, {
      where,
      user: m.user.toString(),
      sha256: m.sha256,
      dataSha256: h.digest("hex"),
    });
  };
  for (const q of spool.queues) {
    for (const e of await spool.list(q)) {
      const { metadata } = await e.direct.read();
      await add(e.name, q, metadata);
    }
    for (const name of await spool.listCheckedOutNames(q)) {
      const co = await Expert.checkedOutUnsafe(spool, q, name);
      if (co) await add(name, `${q}/checked_out`, co.contents);
    }
  }
  return { entries, duplicates };
}

/** Check a spool holds exactly `expected`: same queue, metadata and data, once each. */
async function expectHolds(label: string, spool: NodeSpool, expected: Map<string, Expected>) {
  const { entries, duplicates } = await spoolContents(spool);
  expect(duplicates, `${label}: duplicated entries`).toEqual([]);
  const extra = [...entries.keys()].filter((n) => !expected.has(n));
  const missing = [...expected.keys()].filter((n) => !entries.has(n));
  expect({ extra, missing }, `${label}: entries`).toEqual({ extra: [], missing: [] });
  for (const [name, want] of expected) {
    const got = entries.get(name) as Held;
    expect(
      { where: got.where, user: got.user, sha256: got.sha256, data: got.dataSha256 },
      `${label}: ${name}`,
    ).toEqual({ where: want.queue, user: want.user, sha256: want.sha256, data: want.sha256 });
  }
}

/** Names of the entries waiting in a queue directory (no tmp files, no .checkout). */
async function queueNames(spoolDir: string, queue: string): Promise<string[]> {
  const names = await readdir(join(spoolDir, queue)).catch(() => [] as string[]);
  return names.filter((n) => !n.startsWith(".") && !n.includes("~"));
}

/** The journal rows per origin of each database, as `origin:rows:maxSeq,...`. */
async function journalCounts(pools: readonly pg.Pool[]): Promise<string[]> {
  return Promise.all(
    pools.map(async (pool) =>
      (await countByOrigin(pool)).map((c) => `${c.origin}:${c.rows}:${c.maxSeq}`).join(","),
    ),
  );
}

async function expectJournalsConverge(pools: readonly pg.Pool[], timeoutMs = 30_000) {
  let last: string[] = [];
  await eventually(
    "journal rows per origin equal on every node",
    async () => {
      last = await journalCounts(pools);
      return last.every((c) => c === last[0]);
    },
    timeoutMs,
  ).catch((err) => {
    throw new Error(`${(err as Error).message}: ${JSON.stringify(last)}`);
  });
  // Gapless: each origin's rows are 1..maxSeq.
  for (const c of await countByOrigin(pools[0] as pg.Pool)) expect(BigInt(c.rows)).toBe(c.maxSeq);
}

async function replicaBacklog(pool: pg.Pool): Promise<{ pending: number; quarantined: number }> {
  const { rows } = await pool.query<{ pending: string; quarantined: string }>(
    `select (select count(*) from replica_pending) as pending,
            (select count(*) from replica_quarantine) as quarantined`,
  );
  return { pending: Number(rows[0]?.pending), quarantined: Number(rows[0]?.quarantined) };
}

/**
 * SIGKILL `proc` as soon as `check` holds: checked on every event in `dir` (fs.watch) and
 * every few milliseconds. `killed(ms)` waits up to `ms` more for that, then stops watching;
 * it answers with the file name of the event that fired (or "poll"), or undefined when the
 * process was not killed (and is left running).
 */
function killWhen(
  proc: NodeProcess,
  dir: string,
  check: (file: string | undefined) => boolean | Promise<boolean>,
): { killed(ms: number): Promise<string | undefined> } {
  let done = false;
  let resolve!: (file: string | undefined) => void;
  const fired = new Promise<string | undefined>((r) => {
    resolve = r;
  });
  const test = (file: string | undefined) => {
    if (done) return;
    Promise.resolve(check(file)).then(
      (ok) => {
        if (!ok || done) return;
        done = true;
        proc.child.kill("SIGKILL");
        stop();
        resolve(file ?? "poll");
      },
      () => undefined,
    );
  };
  const watcher = watch(dir, (_e, file) => test(typeof file === "string" ? file : undefined));
  watcher.on("error", () => undefined);
  const timer = setInterval(() => test(undefined), 5);
  const stop = () => {
    watcher.close();
    clearInterval(timer);
  };
  return {
    async killed(ms) {
      const file = await Promise.race([fired, sleep(ms)]);
      if (file === undefined) {
        done = true;
        stop();
        return undefined;
      }
      await proc.exited;
      return file;
    },
  };
}

describe("a node's daemon SIGKILLed while it fetches and applies", () => {
  const dir = useSuiteTempDir("geospool-repl-crash-");
  let cli: Awaited<ReturnType<typeof buildCli>>;
  let servers: TestPostgres[] = [];
  const inProcess: RunningNode[] = [];
  let pools: pg.Pool[] = [];

  beforeAll(async () => {
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
  }, 60_000);

  it("C comes back after kill -9 mid-fetch, mid-apply and mid-catch-up with every entry once", async () => {
    const ids = ["a", "b", "c"];
    const mesh = await startMixedCluster({ ids, dir: dir.path, servers, cli, inProcess });
    const [grpcA] = mesh.grpc as [string];
    const spoolC = join(dir.path, "spool-c");
    const startC = () => mesh.startChild();
    let c = await startC();
    const restartC = async () => {
      c = await startC();
    };

    const clientA = new GeospoolClient({ endpoints: [grpcA], retryForMs: 20_000 });
    const expected = new Map<string, Expected>();
    let seq = 0;
    /** `count` entries on A, three at a time; every third one of 1 to 4 MiB. */
    const enqueueOnA = (count: number) =>
      mapLimit(count, 3, async () => {
        const k = seq++;
        const size = k % 3 === 0 ? (1 + (k % 4)) * MIB - k : 100 + k;
        const data = randomBytes(size);
        const user = JSON.stringify({ k });
        const { entry } = await clientA.enqueue("inbox", data, { metadata: user });
        expected.set(entry.name, { queue: "inbox", user, sha256: sha256(data) });
      });
    const moments: string[] = [];
    try {
      // 1. Mid-fetch: the moment a `<entry>~fetch` file appears in C's .tmp.
      const tmpC = join(spoolC, ".tmp");
      const midFetch = killWhen(c, tmpC, (f) => f?.endsWith("~fetch") === true);
      await enqueueOnA(24);
      const fetchFile = await midFetch.killed(5_000);
      if (fetchFile === undefined) throw new Error(`no fetch seen on C:\n${c.stderr()}`);
      const leftovers = (await readdir(tmpC)).filter((f) => f.endsWith("~fetch"));
      moments.push(`mid-fetch: killed on ${fetchFile}; ~fetch files left: ${leftovers.length}`);

      // 2. Mid-apply: C restarted takes in its backlog and a new stream; killed once it has
      // placed a dozen more entries.
      await restartC();
      const before = (await queueNames(spoolC, "inbox")).length;
      const midApply = killWhen(
        c,
        join(spoolC, "inbox"),
        async () => (await queueNames(spoolC, "inbox")).length >= before + 12,
      );
      await enqueueOnA(24);
      if ((await midApply.killed(15_000)) === undefined) {
        throw new Error(`C did not apply 12 entries in time:\n${c.stderr()}`);
      }
      const placed = (await queueNames(spoolC, "inbox")).length;
      moments.push(`mid-apply: C held ${before} entries, killed at ${placed} of ${expected.size}`);
      expect(placed).toBeGreaterThan(before);
      expect(placed).toBeLessThan(expected.size);

      // 3. Mid-catch-up: entries pile up while C is down; killed after its first few.
      await enqueueOnA(12);
      await restartC();
      const atStart = (await queueNames(spoolC, "inbox")).length;
      const midCatchUp = killWhen(
        c,
        join(spoolC, "inbox"),
        async () => (await queueNames(spoolC, "inbox")).length >= atStart + 3,
      );
      if ((await midCatchUp.killed(15_000)) === undefined) {
        throw new Error(`C did not catch up 3 entries in time:\n${c.stderr()}`);
      }
      const caught = (await queueNames(spoolC, "inbox")).length;
      moments.push(`mid-catch-up: C held ${atStart}, killed at ${caught} of ${expected.size}`);
      expect(caught).toBeLessThan(expected.size);

      // Back for good: C catches up.
      await restartC();
      const want = [...expected.keys()].sort();
      await eventually(
        "every entry on C",
        async () => (await queueNames(spoolC, "inbox")).sort().join() === want.join(),
        60_000,
      ).catch((err) => {
        throw new Error(`${(err as Error).message}\nC's log:\n${c.stderr()}`);
      });
      await expectJournalsConverge(pools);
      await eventually(
        "C's replica backlog empty",
        async () => (await replicaBacklog(pools[2] as pg.Pool)).pending === 0,
      );
      expect(await replicaBacklog(pools[2] as pg.Pool)).toEqual({ pending: 0, quarantined: 0 });
      expect(await c.stop(), c.stderr()).toBe(0);

      // C's spool, read with the daemon stopped: every entry once, whole; fsck clean after
      // repair (which only removes stale leftovers).
      const spool: NodeSpool = await Spool.load(spoolC, {
        metadata: nodeEntryCodec,
        queues: QUEUES,
      });
      await expectHolds("c", spool, expected);
      const monitor = new Monitor(spool);
      const report = await monitor.repair();
      moments.push(`repair on C: ${report.repaired.length} repaired`);
      expect(report.remaining).toEqual([]);
      expect(await monitor.fsck()).toEqual([]);
      for (const [i, node] of inProcess.entries()) {
        await expectHolds(ids[i] as string, node.spool, expected);
      }
      console.log(`replication-crash: ${expected.size} entries; ${moments.join("; ")}`);
    } finally {
      clientA.close();
    }
  }, 150_000);
});

describe("a node's PostgreSQL SIGKILLed, and a node catching up", () => {
  const dir = useSuiteTempDir("geospool-repl-pgkill-");
  let cluster: TestCluster;
  let pools: pg.Pool[] = [];
  const clients: GeospoolClient[] = [];
  const client = (i: number) => clients[i] as GeospoolClient;

  beforeAll(async () => {
    // Catch-up of small entries is bound by fetchConcurrency (one ReadData call, one file and
    // one fsync per entry): 16 instead of the default 4 keeps the 10,000-entry test under a
    // minute (about 260 entries/s instead of 100 on this 2-core machine; see the report).
    cluster = await startTestCluster({
      n: 3,
      dir: dir.path,
      config: {
        replication: { fullReconcileEvery: "2s", joinRetry: "300ms", fetchConcurrency: 16 },
      },
    });
    for (const e of cluster.endpoints) {
      clients.push(new GeospoolClient({ endpoints: [e], retryForMs: 20_000 }));
    }
    pools = cluster.postgres.map((p) => new pg.Pool({ connectionString: p.url, max: 2 }));
    for (const p of pools) p.on("error", () => undefined);
  }, 120_000);

  afterAll(async () => {
    await closeCluster({ clients, pools, cluster });
  }, 60_000);

  it("keeps serving while its database is down and loses nothing once it is back", async () => {
    const expected = new Map<string, Expected>();
    let k = 0;
    const enqueue = async (i: number) => {
      const n = k++;
      const data = randomBytes(n % 5 === 0 ? 256 * 1024 : 100 + n);
      const user = JSON.stringify({ n });
      const { entry } = await client(i).enqueue("inbox", data, { metadata: user });
      expected.set(entry.name, { queue: "inbox", user, sha256: sha256(data) });
      return { name: entry.name, data };
    };
    const mine: Array<{ name: string; data: Buffer }> = [];
    for (let j = 0; j < 6; j++) mine.push(await enqueue(2));
    for (let j = 0; j < 6; j++) await enqueue(0);
    await eventually("first entries on n3", async () => {
      const names = new Set(await queueNames(cluster.node(2).spool.dir, "inbox"));
      return [...expected.keys()].every((n) => names.has(n));
    });

    // Entries keep flowing on n1 and n2 across the outage.
    let flowing = true;
    let flowError: unknown;
    const flow = (async () => {
      while (flowing) await Promise.all([enqueue(0), enqueue(1)]);
    })().catch((err) => {
      flowError = err;
    });

    const server = cluster.postgres[2] as TestPostgres;
    const killedPid = await killPostgres(server);
    expect(killedPid).toBeGreaterThan(0);
    // n3 serves what needs only its spool: list, stat, data, dequeue and remove.
    const listed = await client(2).list("inbox", { pageSize: 1000 });
    const listedNames = new Set(listed.entries.map((e) => e.name));
    for (const m of mine) expect(listedNames.has(m.name)).toBe(true);
    const first = mine[0] as { name: string; data: Buffer };
    expect((await client(2).stat(first.name)).state).toBe("queued");
    expect((await client(2).readData(first.name)).data.equals(first.data)).toBe(true);
    const lease = await client(2).dequeue("inbox", { leaseMs: 60_000 });
    expect(lease).toBeDefined();
    const removed = (lease as NonNullable<typeof lease>).entry.name;
    await client(2).remove(lease as NonNullable<typeof lease>);
    expected.delete(removed);
    // An enqueue needs the database (idempotency key); whatever it answers, an entry it
    // acknowledges must survive.
    const outage = new GeospoolClient({
      endpoints: [cluster.endpoints[2] as string],
      retryForMs: 0,
    });
    const duringOutage = await outage
      .enqueue("inbox", "during the outage", { metadata: "outage" })
      .then(
        (r) => {
          expected.set(r.entry.name, {
            queue: "inbox",
            user: "outage",
            sha256: sha256(Buffer.from("during the outage")),
          });
          return "accepted";
        },
        (err: unknown) => `refused (${(err as Error).message})`,
      );
    outage.close();
    await sleep(1_500);

    await restartPostgres(server);
    await sleep(1_000);
    flowing = false;
    await flow;
    expect(flowError).toBeUndefined();

    // Caught up: every node holds the same entries, the removed one nowhere.
    const want = [...expected.keys()].sort().join();
    for (const i of [0, 1, 2]) {
      await eventually(
        `every entry on ${cluster.ids[i]}`,
        async () => (await queueNames(cluster.node(i).spool.dir, "inbox")).sort().join() === want,
        60_000,
      );
    }
    await expectJournalsConverge(pools);
    for (const i of [0, 1, 2]) {
      await cluster.node(i).replication.replicator.idle();
      await expectHolds(cluster.ids[i] as string, cluster.node(i).spool, expected);
      expect(await new Monitor(cluster.node(i).spool).fsck()).toEqual([]);
    }
    await eventually(
      "n3's replica backlog empty",
      async () => (await replicaBacklog(pools[2] as pg.Pool)).pending === 0,
    );
    expect(await replicaBacklog(pools[2] as pg.Pool)).toEqual({ pending: 0, quarantined: 0 });
    console.log(
      `replication-crash: postgres of n3 (pid ${killedPid}) killed; ${expected.size} entries; ` +
        `enqueue on n3 during the outage: ${duringOutage}`,
    );
  }, 120_000);

  it("a node stopped while 10,000 entries are enqueued catches up on all of them", async () => {
    const TOTAL = 10_000;
    // n2 is stopped too: the three nodes share this process's one thread, and n2 applying
    // the same 10,000 entries at the same time would halve n3's pace (see the report).
    await cluster.stopNode(2);
    await cluster.stopNode(1);
    const t0 = Date.now();
    const names = await mapLimit(TOTAL, 64, async (i) => {
      const { entry } = await client(0).enqueue("outbox", `e${i}`);
      return entry.name;
    });
    const enqueued = Date.now();
    const want = new Set(names);
    expect(want.size).toBe(TOTAL);
    const node = await cluster.start(2);
    const started = Date.now();
    let depth = 0;
    await eventually(
      "10,000 entries on n3",
      async () => {
        depth = (await queueNames(node.spool.dir, "outbox")).length;
        return depth >= TOTAL;
      },
      150_000,
    ).catch((err) => {
      throw new Error(`${(err as Error).message} (n3 holds ${depth})`);
    });
    const caughtUp = Date.now();
    const onC = await queueNames(node.spool.dir, "outbox");
    expect(onC.length).toBe(TOTAL);
    expect(onC.filter((n) => !want.has(n))).toEqual([]);
    const status = await client(2).clusterStatus();
    expect(status.queues.find((q) => q.queue === "outbox")).toEqual({
      queue: "outbox",
      queued: TOTAL,
      checkedOut: 0,
    });
    await expectJournalsConverge(pools, 60_000);
    console.log(
      `replication-crash: catch-up of ${TOTAL} entries: enqueue on n1 ${enqueued - t0} ms, ` +
        `n3 start ${started - enqueued} ms, n3 catch-up ${caughtUp - started} ms`,
    );
  }, 240_000);
});
