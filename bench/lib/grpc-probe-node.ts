/**
 * Where the time of one job goes inside the node, without gRPC: run in the node process
 * (grpc-node-process.ts, command `probe N`) after the measured runs, one operation at a
 * time (concurrency 1). Every iteration does each of the following once, interleaved, so
 * that all of them see the same disk and machine load (which drifts on a shared machine):
 *
 * - disk: core.enqueue's system calls one by one, timed, in a scratch directory beside the
 *   spool (same disk): reserve (open O_EXCL + close), data file (open, write 1 KiB, fsync,
 *   close), metadata file likewise, fsync of .registry and .data, rename, fsync of the queue
 *   directory; then the same calls made synchronously in one go (no thread-pool round trip
 *   between them); and a bare thread-pool round trip (stat);
 * - PostgreSQL: IdempotencyStore.claim and .complete, the two statements (each its own
 *   commit, so a WAL flush) that every Enqueue with an idempotency key runs;
 * - spool: Spool.enqueue, QueueReader.dequeue, CheckedOutEntry.remove (the library alone);
 * - SpoolService.enqueue's steps replayed one by one in its order (reserveName, claim,
 *   enqueueDeferred with the reserved name, complete);
 * - service: SpoolService.enqueue with an idempotency key (the Enqueue stream's handler),
 *   SpoolService.enqueueBatch of one keyed entry (what a small client enqueue is since
 *   5fcd64d), SpoolService.dequeue (waiting) and .complete(remove);
 * - spool: Spool.enqueueBatch of one entry as the service makes it (fresh name, reserve,
 *   visibleIf), and PostgreSQL: IdempotencyStore.claimMany of one key.
 *
 * Then counts the file-system requests (each a round trip through libuv's thread pool)
 * that each spool and service operation makes, with an async_hooks hook on FSREQ*
 * resources (this includes what the node's file watcher does in reaction).
 */
import { createHook } from "node:async_hooks";
import { createHash } from "node:crypto";
import {
  constants as C,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  renameSync,
  writeSync,
} from "node:fs";
import { open, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import pg from "pg";
import type { RunningNode } from "../../src/node/node.js";
import type { NodeEntryMeta } from "../../src/node/service/entry-meta.js";
import { IdempotencyStore } from "../../src/node/service/idempotency-store.js";
import { QueueReader } from "../../src/spool/index.js";
import { distribution } from "./grpc-stats.js";

type Samples = Record<string, number[]>;

function record(s: Samples, step: string, value: number): void {
  const xs = s[step] ?? [];
  xs.push(value);
  s[step] = xs;
}

async function timed<T>(t: Samples, step: string, f: () => Promise<T>): Promise<T> {
  const start = performance.now();
  const r = await f();
  record(t, step, performance.now() - start);
  return r;
}

/** File-system requests started while the hook is enabled. */
let fsRequests = 0;
const fsHook = createHook({
  init(_id, type) {
    if (type.startsWith("FSREQ")) fsRequests++;
  },
});

async function counted<T>(counts: Samples, step: string, f: () => Promise<T>): Promise<T> {
  const before = fsRequests;
  const r = await f();
  // Let the file watcher's reaction to this operation start (it runs on later turns).
  await new Promise((resolve) => setTimeout(resolve, 5));
  record(counts, step, fsRequests - before);
  return r;
}

interface Dirs {
  registry: string;
  data: string;
  tmp: string;
  queue: string;
}

const DATA = Buffer.alloc(1024, 97);
const META = Buffer.alloc(200, 98);

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, C.O_RDONLY | C.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function writeSynced(path: string, bytes: Uint8Array, t: Samples, what: string) {
  const fh = await timed(t, `${what}: open`, () =>
    open(path, C.O_CREAT | C.O_TRUNC | C.O_WRONLY, 0o644),
  );
  await timed(t, `${what}: write`, () => fh.write(bytes, 0, bytes.length));
  await timed(t, `${what}: fsync`, () => fh.sync());
  await timed(t, `${what}: close`, () => fh.close());
}

/** core.enqueue's system calls, through fs/promises, each timed. */
async function enqueueCalls(d: Dirs, name: string, t: Samples): Promise<void> {
  const start = performance.now();
  await timed(t, "reserve name: open O_EXCL + close", async () => {
    const fh = await open(join(d.registry, name), C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o644);
    await fh.close();
  });
  await writeSynced(join(d.data, name), DATA, t, "data file");
  await writeSynced(join(d.tmp, name), META, t, "metadata file");
  await timed(t, "fsync .registry + .data (parallel)", () =>
    Promise.all([fsyncDir(d.registry), fsyncDir(d.data)]),
  );
  await timed(t, "rename into queue", () => rename(join(d.tmp, name), join(d.queue, name)));
  await timed(t, "fsync queue dir", () => fsyncDir(d.queue));
  record(t, "= core.enqueue's system calls, in sequence", performance.now() - start);
  await timed(t, "thread-pool round trip (stat)", () => stat(join(d.queue, name)));
}

/** The same system calls, synchronously, one after the other. */
function enqueueCallsSync(d: Dirs, name: string, t: Samples): void {
  const start = performance.now();
  closeSync(openSync(join(d.registry, name), C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o644));
  for (const [path, bytes] of [
    [join(d.data, name), DATA],
    [join(d.tmp, name), META],
  ] as const) {
    const fd = openSync(path, C.O_CREAT | C.O_TRUNC | C.O_WRONLY, 0o644);
    writeSync(fd, bytes);
    fsyncSync(fd);
    closeSync(fd);
  }
  for (const dir of [d.registry, d.data]) {
    const fd = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
    fsyncSync(fd);
    closeSync(fd);
  }
  renameSync(join(d.tmp, name), join(d.queue, name));
  const fd = openSync(d.queue, C.O_RDONLY | C.O_DIRECTORY);
  fsyncSync(fd);
  closeSync(fd);
  record(t, "= the same system calls, synchronous, one thread", performance.now() - start);
}

export interface ProbeResult {
  times: Record<string, { p50: number; p99: number; mean: number }>;
  fsRequestsPerCall: Record<string, number>;
}

export async function probeNode(
  node: RunningNode,
  postgresUrl: string,
  n: number,
): Promise<ProbeResult> {
  const t: Samples = {};
  const counts: Samples = {};
  const spool = node.spool;
  const service = node.service;
  const scratch = join(dirname(node.config.spool.dir), "probe-scratch");
  const dirs = (suffix: string): Dirs => ({
    registry: join(scratch, `registry${suffix}`),
    data: join(scratch, `data${suffix}`),
    tmp: join(scratch, `tmp${suffix}`),
    queue: join(scratch, `queue${suffix}`),
  });
  const asyncDirs = dirs("");
  const syncDirs = dirs("-sync");
  for (const d of [asyncDirs, syncDirs])
    for (const p of Object.values(d)) mkdirSync(p, { recursive: true });

  const pool = new pg.Pool({ connectionString: postgresUrl, max: 2 });
  pool.on("error", () => undefined);
  const store = new IdempotencyStore(pool, node.config.idempotency.window);
  const reader = new QueueReader(spool, "inbox", { reapEveryMs: 0 });
  const key = (i: number, what: string) => ({
    principal: "probe",
    queue: "inbox",
    key: `probe-${what}-${process.pid}-${i}-${Math.random()}`,
  });
  const meta: NodeEntryMeta = {
    user: Buffer.alloc(100, 99),
    sha256: "0".repeat(64),
    size: 1024,
    enqueuedAt: 0,
  };
  const COUNTED = Math.min(n, 30);
  try {
    for (let i = 0; i < n + COUNTED; i++) {
      const counting = i >= n;
      if (counting) fsHook.enable();
      const measure = <T>(step: string, f: () => Promise<T>) =>
        counting ? counted(counts, step, f) : timed(t, step, f);
      if (!counting) {
        await enqueueCalls(asyncDirs, `e${i}`, t);
        enqueueCallsSync(syncDirs, `e${i}`, t);

        const k = key(i, "pg");
        await timed(t, "postgres: IdempotencyStore.claim (insert, commit)", () =>
          store.claim(k, `probe-${i}`),
        );
        await timed(t, "postgres: IdempotencyStore.complete (update, commit)", () =>
          store.complete(k, `probe-${i}`),
        );
        const km = key(i, "pg-many");
        await timed(t, "postgres: IdempotencyStore.claimMany (one key; insert, commit)", () =>
          store.claimMany([{ scope: km, name: `probe-many-${i}` }]),
        );
      }

      // A small client enqueue since 5fcd64d: the spool's batch of one (fresh name reserved
      // by the writer thread; made visible once its claim says yes), then the service's.
      await measure("spool: Spool.enqueueBatch (one entry, reserve, visibleIf)", () =>
        spool.enqueueBatch([
          {
            queue: "inbox",
            metadata: meta,
            data: DATA,
            name: spool.newNames(1)[0] as string,
            reserve: true,
            visibleIf: Promise.resolve(true),
          },
        ]),
      );
      const b = await reader.dequeue(AbortSignal.timeout(5_000));
      if (b.kind !== "checked_out") throw new Error("probe: nothing to dequeue");
      await b.entry.remove();

      await measure("spool: Spool.enqueue", () => spool.enqueue("inbox", meta, DATA));
      const r = await measure("spool: QueueReader.dequeue", () =>
        reader.dequeue(AbortSignal.timeout(5_000)),
      );
      if (r.kind !== "checked_out") throw new Error("probe: nothing to dequeue");
      await measure("spool: CheckedOutEntry.remove", () => r.entry.remove());

      if (!counting) {
        // SpoolService.enqueue's steps, in its order. The entry is dequeued below.
        const k = key(i, "steps");
        const start = performance.now();
        const name = await timed(t, "service enqueue, step 1: Spool.reserveName", () =>
          spool.reserveName(),
        );
        await timed(t, "service enqueue, step 2: IdempotencyStore.claim", () =>
          store.claim(k, name),
        );
        const hash = createHash("sha256");
        async function* verified() {
          hash.update(DATA);
          yield DATA;
        }
        await timed(t, "service enqueue, step 3: Spool.enqueueDeferred (reserved name)", () =>
          spool.enqueueDeferred(
            "inbox",
            verified(),
            ({ size }) => ({ ...meta, size, sha256: hash.digest("hex"), idempotencyKey: k.key }),
            { name },
          ),
        );
        await timed(t, "service enqueue, step 4: IdempotencyStore.complete", () =>
          store.complete(k, name),
        );
        record(t, "service enqueue, steps: = total", performance.now() - start);
      }

      await measure("service: SpoolService.enqueue (with idempotency key)", () => {
        async function* chunks() {
          yield DATA;
        }
        return service.enqueue(
          {
            queue: "inbox",
            metadata: Buffer.alloc(100, 99),
            idempotencyKey: key(i, "service").key,
            dataSize: DATA.length,
          },
          chunks(),
        );
      });
      await measure("service: SpoolService.enqueueBatch (one entry, with idempotency key)", () =>
        service.enqueueBatch("probe", [
          {
            queue: "inbox",
            metadata: Buffer.alloc(100, 99),
            data: DATA,
            idempotencyKey: key(i, "batch").key,
          },
        ]),
      );
      for (let j = 0; j < (counting ? 2 : 3); j++) {
        const got = await measure("service: SpoolService.dequeue (wait)", () =>
          service.dequeue({ queue: "inbox", waitMs: 5_000 }),
        );
        if (!got) throw new Error("probe: the service found nothing to dequeue");
        await measure("service: SpoolService.complete (remove)", () =>
          service.complete({
            queue: "inbox",
            name: got.entry.name,
            leaseToken: got.leaseToken,
            action: { kind: "remove" },
          }),
        );
      }
    }
  } finally {
    fsHook.disable();
    await reader.close();
    await pool.query("delete from idempotency_keys where key like 'probe-%'").catch(() => {});
    await pool.end();
    await rm(scratch, { recursive: true, force: true });
  }

  const times: ProbeResult["times"] = {};
  for (const [step, xs] of Object.entries(t)) {
    const d = distribution(xs);
    times[step] = { p50: d.p50, p99: d.p99, mean: d.mean };
  }
  const fsRequestsPerCall: Record<string, number> = {};
  for (const [step, xs] of Object.entries(counts)) fsRequestsPerCall[step] = distribution(xs).mean;
  return { times, fsRequestsPerCall };
}
