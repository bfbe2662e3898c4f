/**
 * `npm run bench:bulk-spool`: the spool alone, in this process, no node, no replication:
 * N small entries (200 bytes) through `Spool.enqueueBatch` (batches of 500, 4 at once)
 * against the same number through `Spool.enqueue` from 32 concurrent loops, in the same
 * run, each into a fresh spool on the same filesystem. Prints entries/s, CPU per entry
 * (this process: user and system, the batch writer thread and the thread pool included)
 * and the ratio. Run it with UV_THREADPOOL_SIZE=32, as the node runs.
 *
 * Flags: --entries N (20000), --dir DIR (a temporary directory).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { bytesCodec, Spool } from "../src/spool/index.js";
import { fileCreateLine, measureFileCreate } from "./lib/spool-machine.js";

const { values: args } = parseArgs({
  options: { entries: { type: "string", default: "20000" }, dir: { type: "string" } },
});
const N = Number(args.entries);
const data = Buffer.alloc(200, 0x61);
const metadata = Buffer.from('{"bench":"bulk-spool"}');

async function run(what: string, root: string, f: (s: Spool<Buffer, "q">) => Promise<void>) {
  const spool = await Spool.create(join(root, what), { metadata: bytesCodec, queues: ["q"] });
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await f(spool);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(c0);
  const perSecond = Math.round(N / seconds);
  const userUs = Math.round(cpu.user / N);
  const systemUs = Math.round(cpu.system / N);
  console.log(
    `${what.padEnd(10)} ${perSecond} entries/s, CPU per entry ${userUs} µs user + ${systemUs} µs system`,
  );
  return perSecond;
}

async function main() {
  const root = args.dir ?? (await mkdtemp(join(tmpdir(), "geospool-bench-bulk-spool-")));
  console.log(
    `load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")}; ${N} entries of 200 bytes in ${root}`,
  );
  console.log(fileCreateLine(root, measureFileCreate(root)));
  try {
    const batched = await run("batched", root, async (spool) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (next < N) {
            const n = Math.min(500, N - next);
            next += n;
            const items = Array.from({ length: n }, () => ({
              queue: "q" as const,
              metadata,
              data,
            }));
            for (const r of await spool.enqueueBatch(items)) if (!r.ok) throw r.error;
          }
        }),
      );
    });
    const single = await run("one-by-one", root, async (spool) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          while (next++ < N) await spool.enqueue("q", metadata, data);
        }),
      );
    });
    console.log(
      `batched / one by one: ${(batched / single).toFixed(2)}x; load average after ${loadavg()[0]?.toFixed(2)}`,
    );
  } finally {
    if (args.dir === undefined) await rm(root, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
