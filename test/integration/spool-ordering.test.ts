import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Spool } from "../../src/spool/index.js";
import {
  killAll,
  readResult,
  useSpoolWorkerBundle,
  WorkerProcess,
} from "../helpers/spool-processes.js";
import { leftovers, scanSpool } from "../helpers/spool-scan.js";
import type { DequeueResult, EnqueueResult } from "../helpers/spool-worker-config.js";
import { useTempDir } from "../helpers/tmp.js";
import { WIDGET_QUEUES, widgetSpoolable } from "../helpers/widget.js";

const ENTRIES = 1000;

const worker = useSpoolWorkerBundle();
const dir = useTempDir();

describe("ordering (Multispool's ordering test)", () => {
  it(`a reader started before the writer dequeues ${ENTRIES} entries in the order they were enqueued`, async () => {
    const spool = await Spool.create(join(dir.path, "spool"), widgetSpoolable());
    const workers: WorkerProcess[] = [];
    try {
      const reader = new WorkerProcess(worker.path, {
        role: "dequeue",
        spool: { dir: spool.dir },
        queue: "inbox",
        limit: ENTRIES,
        out: join(dir.path, "reader.json"),
      });
      workers.push(reader);
      await reader.waitFor("ready");
      const writer = new WorkerProcess(worker.path, {
        role: "enqueue",
        spool: { dir: spool.dir, names: { kind: "lexicographic", tag: "writer" } },
        queue: "inbox",
        count: ENTRIES,
        tag: "writer",
        out: join(dir.path, "writer.json"),
      });
      workers.push(writer);
      await writer.succeeded();
      await reader.succeeded();

      const written = await readResult<EnqueueResult>(join(dir.path, "writer.json"));
      const read = await readResult<DequeueResult>(join(dir.path, "reader.json"));
      const enqueueOrder = written.enqueued.map((e) => e.name);
      // The names sort in the order they were made: that is what makes the listing FIFO.
      expect([...enqueueOrder].sort()).toEqual(enqueueOrder);
      expect(read.dequeued.map((d) => d.name)).toEqual(enqueueOrder);
      expect(read.dequeued.map((d) => d.id)).toEqual(enqueueOrder.map((_, i) => i));
      for (const [i, d] of read.dequeued.entries())
        expect(d.sha256).toBe(written.enqueued[i]!.sha256);
      expect(leftovers(await scanSpool(spool.dir, WIDGET_QUEUES))).toEqual([]);
    } finally {
      await killAll(workers);
    }
  });
});
