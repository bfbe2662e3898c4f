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
 *   SpoolService.dequeue (waiting) and .complete(remove);
 * - the same system calls as core.enqueue made synchronously in one go (no thread-pool
 *   round trip between them), to show what the round trips cost.
 *
 * Also counts the file-system requests (each a round trip through libuv's thread pool)
 * that each spool and service operation makes, with an async_hooks hook on FSREQ*
 * resources (this includes what the node's file watcher does in reaction).
 */
import { createHook } from "node:async_hooks";
import {
  constants as C,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  renameSync,
  writeSync,
} from "node:fs";
import { mkdir, open, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import pg from "pg";
import type { RunningNode } from "../../src/node/node.js";
import { IdempotencyStore } from "../../src/node/service/idempotency-store.js";
import { QueueReader } from "../../src/spool/index.js";
import { distribution } from "./grpc-stats.js";

type Timings = Record<string, number[]>;

/** File-system requests started since the hook was enabled. */
let fsRequests = 0;
const fsHook = createHook({
  init(_id, type) {
    if (type.startsWith("FSREQ")) fsRequests++;
  },
});

async function counted<T>(counts: Timings, step: string, f: () => Promise<T>): Promise<T> {
  const before = fsRequests;
  const r = await f();
  // Let the watcher's reaction to this operation start (it runs on the next turns).
  await new Promise((resolve) => setTimeout(resolve, 5));
  const xs = counts[step] ?? [];
  xs.push(fsRequests - before);
  counts[step] = xs;
  return r;
}

/** core.enqueue's system calls, synchronously, one after the other. */
function enqueueSync(
  dirs: { registry: string; data: string; tmp: string; queue: string },
  name: string,
) {
  const bytes = Buffer.alloc(1024, 97);
  const meta = Buffer.alloc(200, 98);
  closeSync(openSync(join(dirs.registry, name), C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o644));
  for (const [path, b] of [
    [join(dirs.data, name), bytes],
    [join(dirs.tmp, name), meta],
  ] as const) {
    const fd = openSync(path, C.O_CREAT | C.O_TRUNC | C.O_WRONLY, 0o644);
    writeSync(fd, b);
    fsyncSync(fd);
    closeSync(fd);
  }
  for (const d of [dirs.registry, dirs.data]) {
    const fd = openSync(d, C.O_RDONLY | C.O_DIRECTORY);
    fsyncSync(fd);
    closeSync(fd);
  }
  renameSync(join(dirs.tmp, name), join(dirs.queue, name));
  const fd = openSync(dirs.queue, C.O_RDONLY | C.O_DIRECTORY);
  fsyncSync(fd);
  closeSync(fd);
}

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
  const sync = { registry, data, tmp, queue: join(scratch, "queue-sync") };
  mkdirSync(sync.queue);
  const total: number[] = [];
  const syncTotal: number[] = [];
  for (let i = 0; i < n; i++) {
    const name = `e${i}`;
    let start = performance.now();
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
    // Interleaved, so both see the same disk and machine load.
    start = performance.now();
    enqueueSync(sync, `s${i}`);
    syncTotal.push(performance.now() - start);
  }
  t["= core.enqueue's system calls, in sequence"] = total;
  t["= the same system calls, synchronous, one thread"] = syncTotal;
  await rm(scratch, { recursive: true, force: true });
}

export async function probeNode(
  node: RunningNode,
  postgresUrl: string,
  n: number,
): Promise<{
  times: Record<string, { p50: number; p99: number; mean: number }>;
  fsRequestsPerCall: Record<string, number>;
}> {
  const t: Timings = {};
  const counts: Timings = {};
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
    fsHook.enable();
    for (let i = 0; i < Math.min(n, 30); i++) {
      await counted(counts, "spool: Spool.enqueue", () =>
        spool.enqueue("inbox", meta, Buffer.alloc(1024, 97)),
      );
      const r = await counted(counts, "spool: QueueReader.dequeue", () =>
        reader.dequeue(AbortSignal.timeout(5_000)),
      );
      if (r.kind !== "checked_out") throw new Error("probe: nothing to dequeue");
      await counted(counts, "spool: CheckedOutEntry.remove", () => r.entry.remove());
    }
  } finally {
    fsHook.disable();
    await reader.close();
  }

  const service = node.service;
  for (let i = 0; i < n + Math.min(n, 30); i++) {
    const counting = i >= n;
    if (counting) fsHook.enable();
    const measure = <T>(step: string, f: () => Promise<T>) =>
      counting ? counted(counts, step, f) : timed(t, step, f);
    const chunk = Buffer.alloc(1024, 97);
    async function* chunks() {
      yield chunk;
    }
    await measure("service: SpoolService.enqueue (with idempotency key)", () =>
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
    const got = await measure("service: SpoolService.dequeue (wait)", () =>
      service.dequeue({ queue: "inbox", waitMs: 5_000 }),
    );
    if (!got) throw new Error("probe: service dequeue found nothing");
    await measure("service: SpoolService.complete (remove)", () =>
      service.complete({
        queue: "inbox",
        name: got.entry.name,
        leaseToken: got.leaseToken,
        action: { kind: "remove" },
      }),
    );
  }

  fsHook.disable();
  const times: Record<string, { p50: number; p99: number; mean: number }> = {};
  for (const [step, xs] of Object.entries(t)) {
    const d = distribution(xs);
    times[step] = { p50: d.p50, p99: d.p99, mean: d.mean };
  }
  const fsRequestsPerCall: Record<string, number> = {};
  for (const [step, xs] of Object.entries(counts)) fsRequestsPerCall[step] = distribution(xs).mean;
  return { times, fsRequestsPerCall };
}
