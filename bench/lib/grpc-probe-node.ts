/**
 * Where the time of one job goes inside the node, without gRPC: run in the node process
 * (grpc-node-process.ts, command `probe N`) after the measured runs, one operation at a
 * time (concurrency 1, nothing else running), N times each. Steps:
 *
 * - disk: the system calls of core.enqueue one by one, timed (in a scratch directory
 *   beside the spool, on the same disk): reserve (open O_EXCL + close), data file (open,
 *   write 1 KiB, fsync, close), metadata file likewise, fsync of two directories, rename,
 *   fsync of the queue directory; and a bare threadpool round trip (stat);
 * - PostgreSQL: IdempotencyStore.claim and .complete, the two statements each Enqueue with
 *   an idempotency key runs (each its own commit, so a WAL fsync);
 * - spool: Spool.enqueue, QueueReader dequeue + remove (the library alone);
 * - service: SpoolService.enqueue with an idempotency key (what the gRPC handler calls),
 *   SpoolService.dequeue (waiting) and .complete(remove).
 */
import { constants as C } from "node:fs";
import { mkdir, open, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import pg from "pg";
import type { RunningNode } from "../../src/node/node.js";
import { IdempotencyStore } from "../../src/node/service/idempotency-store.js";
import { QueueReader } from "../../src/spool/index.js";
import { distribution } from "./grpc-stats.js";

type Timings = Record<string, number[]>;

async function timed<T>(t: Timings, step: string, f: () => Promise<T>): Promise<T> {
  const start = performance.now();
  const r = await f();
  const xs = t[step] ?? [];
  xs.push(performance.now() - start);
  t[step] = xs;
  return r;
}

async function writeSynced(path: string, bytes: Uint8Array, t: Timings, what: string) {
  const fh = await timed(t, `${what}: open`, () =>
    open(path, C.O_CREAT | C.O_TRUNC | C.O_WRONLY, 0o644),
  );
  await timed(t, `${what}: write`, () => fh.write(bytes, 0, bytes.length));
  await timed(t, `${what}: fsync`, () => fh.sync());
  await timed(t, `${what}: close`, () => fh.close());
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, C.O_RDONLY | C.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** core.enqueue's system calls, each timed. */
async function diskSteps(scratch: string, n: number, t: Timings): Promise<void> {
  const dirs = ["registry", "data", "tmp", "queue"].map((d) => join(scratch, d));
  for (const d of dirs) await mkdir(d, { recursive: true });
  const [registry, data, tmp, queue] = dirs as [string, string, string, string];
  const bytes = Buffer.alloc(1024, 97);
  const meta = Buffer.alloc(200, 98);
  const total: number[] = [];
  for (let i = 0; i < n; i++) {
    const name = `e${i}`;
    const start = performance.now();
    await timed(t, "reserve name: open O_EXCL + close", async () => {
      const fh = await open(join(registry, name), C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o644);
      await fh.close();
    });
    await writeSynced(join(data, name), bytes, t, "data file");
    await writeSynced(join(tmp, name), meta, t, "metadata file");
    await timed(t, "fsync .registry + .data (parallel)", () =>
      Promise.all([fsyncDir(registry), fsyncDir(data)]),
    );
    await timed(t, "rename into queue", () => rename(join(tmp, name), join(queue, name)));
    await timed(t, "fsync queue dir", () => fsyncDir(queue));
    total.push(performance.now() - start);
    await timed(t, "threadpool round trip (stat)", () => stat(join(queue, name)));
  }
  t["= core.enqueue's system calls, in sequence"] = total;
  await rm(scratch, { recursive: true, force: true });
}

export async function probeNode(
  node: RunningNode,
  postgresUrl: string,
  n: number,
): Promise<Record<string, { p50: number; p99: number; mean: number }>> {
  const t: Timings = {};
  const scratch = join(dirname(node.config.spool.dir), "probe-scratch");
  await diskSteps(scratch, n, t);

  const pool = new pg.Pool({ connectionString: postgresUrl, max: 2 });
  pool.on("error", () => undefined);
  try {
    const store = new IdempotencyStore(pool, node.config.idempotency.window);
    for (let i = 0; i < n; i++) {
      const key = `probe-${process.pid}-${i}-${Math.random()}`;
      const name = `probe-${i}`;
      await timed(t, "postgres: IdempotencyStore.claim (insert, commit)", () =>
        store.claim(key, "inbox", name),
      );
      await timed(t, "postgres: IdempotencyStore.complete (update, commit)", () =>
        store.complete(key, name),
      );
    }
    await pool.query("delete from idempotency_keys where key like 'probe-%'");
  } finally {
    await pool.end();
  }

  const spool = node.spool;
  const reader = new QueueReader(spool, "inbox", { reapEveryMs: 0 });
  try {
    const meta = { user: Buffer.alloc(100, 99), sha256: "0".repeat(64), size: 1024, enqueuedAt: 0 };
    for (let i = 0; i < n; i++) {
      await timed(t, "spool: Spool.enqueue", () =>
        spool.enqueue("inbox", meta, Buffer.alloc(1024, 97)),
      );
      const r = await timed(t, "spool: QueueReader.dequeue", () =>
        reader.dequeue(AbortSignal.timeout(5_000)),
      );
      if (r.kind !== "checked_out") throw new Error("probe: nothing to dequeue");
      await timed(t, "spool: CheckedOutEntry.remove", () => r.entry.remove());
    }
  } finally {
    await reader.close();
  }

  const service = node.service;
  for (let i = 0; i < n; i++) {
    const chunk = Buffer.alloc(1024, 97);
    async function* chunks() {
      yield chunk;
    }
    await timed(t, "service: SpoolService.enqueue (with idempotency key)", () =>
      service.enqueue(
        {
          queue: "inbox",
          metadata: Buffer.alloc(100, 99),
          idempotencyKey: `probe-${process.pid}-${i}-${Math.random()}`,
          dataSize: 1024,
        },
        chunks(),
      ),
    );
    const got = await timed(t, "service: SpoolService.dequeue (wait)", () =>
      service.dequeue({ queue: "inbox", waitMs: 5_000 }),
    );
    if (!got) throw new Error("probe: service dequeue found nothing");
    await timed(t, "service: SpoolService.complete (remove)", () =>
      service.complete({
        queue: "inbox",
        name: got.entry.name,
        leaseToken: got.leaseToken,
        action: { kind: "remove" },
      }),
    );
  }

  const out: Record<string, { p50: number; p99: number; mean: number }> = {};
  for (const [step, xs] of Object.entries(t)) {
    const d = distribution(xs);
    out[step] = { p50: d.p50, p99: d.p99, mean: d.mean };
  }
  return out;
}
