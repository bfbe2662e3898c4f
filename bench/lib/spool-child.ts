/**
 * One measurement, in a fresh process started by bench/spool.ts with UV_THREADPOOL_SIZE
 * set in its environment (libuv sizes its thread pool once, at the first pool operation,
 * which in an ESM program happens while modules load: only the environment of a new
 * process can set it reliably). Prints one line `RESULT <json>` on stdout.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { QueueReader, Spool } from "../../src/spool/index.js";
import { type CycleOps, type CycleResult, runCycles } from "./spool-cycle.js";
import { fillSpool } from "./spool-fixture.js";
import { baselineSide, benchSpoolable, QUEUE, spoolSide } from "./spool-sides.js";

const mb = (kb: number) => Math.round((kb / 1024) * 10) / 10;
const maxRssMB = () => mb(process.resourceUsage().maxRSS);

async function threads(): Promise<number | undefined> {
  const status = await readFile("/proc/self/status", "utf8").catch(() => "");
  const m = /^Threads:\s+(\d+)/m.exec(status);
  return m ? Number(m[1]) : undefined;
}

/** Every file of the spool was removed: the run did whole cycles. */
async function assertEmpty(dir: string): Promise<void> {
  for (const d of [".registry", ".data", ".tmp", join(QUEUE, ".checkout")]) {
    const left = await readdir(join(dir, d));
    if (left.length > 0) throw new Error(`${d} still holds ${left.length} files after the run`);
  }
  const queue = (await readdir(join(dir, QUEUE))).filter((n) => !n.startsWith("."));
  if (queue.length > 0) throw new Error(`${QUEUE} still holds ${queue.length} entries`);
}

async function cycles(args: string[]): Promise<object> {
  const [side, dir, c, warmup, duration] = args;
  if (dir === undefined) {
    throw new Error(
      "usage: cycles spool|baseline|baseline-group DIR CONCURRENCY WARMUP_MS DURATION_MS",
    );
  }
  const run = <T, H>(ops: CycleOps<T, H>) =>
    runCycles(ops, Number(c), Number(warmup), Number(duration));
  let r: CycleResult;
  switch (side) {
    case "spool":
      r = await run(await spoolSide(dir));
      break;
    case "baseline":
      r = await run(await baselineSide(dir, "each"));
      break;
    case "baseline-group":
      r = await run(await baselineSide(dir, "group"));
      break;
    default:
      throw new Error(`unknown side ${String(side)}`);
  }
  await assertEmpty(dir);
  return { side, concurrency: Number(c), ...r, threads: await threads() };
}

async function list(dir: string): Promise<object> {
  const atStart = maxRssMB();
  const spool = await Spool.load(dir, benchSpoolable());
  const t0 = performance.now();
  const entries = await spool.list(QUEUE);
  const listMs = performance.now() - t0;
  // A spot check that the fixture is what the spool expects.
  const first = entries[0];
  if (first === undefined) throw new Error("the spool is empty");
  const meta = await first.direct.contents();
  if (typeof meta.id !== "number") throw new Error("unexpected metadata in the fixture");
  return { count: entries.length, listMs, rssAtStartMB: atStart, maxRssMB: maxRssMB() };
}

/**
 * Dequeue and remove entries with one QueueReader, one at a time, until `count` are done or
 * `budgetMs` has passed (with `drains`, `count` is every entry: the spool must end empty):
 * - `inotify`: `reader.dequeue()`, which starts the reader's doorbell, one fs.watch on the
 *   queue directory (the default);
 * - `poll`: `reader.dequeue()` with `watch: "poll"`, the doorbell's chokidar fallback;
 * - `none`: `reader.dequeueAvailable()`, which never starts a doorbell.
 * Comparing them shows what the doorbell costs. Only the reader's listing (names) is held,
 * never the entries' metadata.
 */
async function dequeue(
  dir: string,
  count: number,
  how: string,
  budgetMs: number,
  drains: boolean,
): Promise<object> {
  if (how !== "inotify" && how !== "poll" && how !== "none") {
    throw new Error(`unknown dequeue mode ${how}`);
  }
  const atStart = maxRssMB();
  const spool = await Spool.load(dir, benchSpoolable());
  const reader = new QueueReader(spool, QUEUE, how === "poll" ? { watch: "poll" } : {});
  const signal = AbortSignal.timeout(budgetMs);
  const t0 = performance.now();
  let firstMs: number | undefined;
  let n = 0;
  try {
    while (n < count && !signal.aborted) {
      const r = how === "none" ? await reader.dequeueAvailable() : await reader.dequeue(signal);
      if (r.kind !== "checked_out") break;
      firstMs ??= performance.now() - t0;
      const done = await r.entry.remove();
      if (done.kind !== "done") throw new Error(`remove of ${r.entry.name}: ${done.kind}`);
      n++;
    }
  } finally {
    await reader.close();
  }
  const ms = performance.now() - t0;
  const complete = n === count;
  if (!complete && !signal.aborted) throw new Error(`dequeued ${n} entries, expected ${count}`);
  if (complete && drains) await assertEmpty(dir);
  return {
    how,
    count: n,
    complete,
    firstDequeueMs: firstMs,
    totalMs: ms,
    perSecond: (n / ms) * 1000,
    rssAtStartMB: atStart,
    maxRssMB: maxRssMB(),
  };
}

async function main(argv: string[]): Promise<object> {
  const [mode, ...rest] = argv;
  switch (mode) {
    case "cycles":
      return cycles(rest);
    case "fill": {
      const t0 = performance.now();
      await fillSpool(rest[0] as string, Number(rest[1]));
      return { filled: Number(rest[1]), ms: performance.now() - t0 };
    }
    case "list":
      return list(rest[0] as string);
    case "dequeue":
      return dequeue(
        rest[0] as string,
        Number(rest[1]),
        rest[2] ?? "inotify",
        Number(rest[3]),
        rest[4] === "drain",
      );
    default:
      throw new Error(`unknown mode ${String(mode)}`);
  }
}

const result = await main(process.argv.slice(2));
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
