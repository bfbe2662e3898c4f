/**
 * A worker process for the spool integration tests. Run as
 * `node spool-worker.mjs '<WorkerConfig as JSON>'` (bundled by spool-processes.ts), with an
 * IPC channel: it sends `ready` once the spool is open, obeys `go` and `stop`, writes its
 * result file, sends `done` and exits 0. Any failure exits non-zero with the error on stderr.
 * Run as `node spool-worker.mjs standby`, it sends `standby` and touches nothing until a
 * `start` message gives it its config (a test that starts hundreds of workers one after
 * another boots the next while it checks the last).
 */
import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { QueueReader, type SpoolError } from "../../src/spool/index.js";
import { runBatches } from "./spool-batch-chaos.js";
import { runChaos } from "./spool-chaos.js";
import { sha256 } from "./spool-payload.js";
import { runReplicaBatches } from "./spool-replica-batch-chaos.js";
import type {
  DequeueResult,
  EnqueueResult,
  FromWorker,
  RaceResult,
  ReapResult,
  ToWorker,
  WorkerConfig,
} from "./spool-worker-config.js";
import { openTestSpool } from "./spool-worker-spool.js";

function send(m: FromWorker): void {
  process.send?.(m);
}

const stop = new AbortController();
let go: () => void = () => undefined;
const gone = new Promise<void>((resolve) => {
  go = resolve;
});
let configured = false;
let start: (config: WorkerConfig) => void = () => undefined;
const started = new Promise<WorkerConfig>((resolve) => {
  start = resolve;
});
process.on("message", (m: ToWorker) => {
  if (m.kind === "stop") stop.abort();
  if (m.kind === "go") go();
  if (m.kind === "start") {
    configured = true;
    start(m.config);
  }
});
// The parent going away must not leave a worker behind.
process.on("disconnect", () => stop.abort());

function writeResult(path: string, value: unknown): void {
  const fd = openSync(path, "w");
  writeSync(fd, JSON.stringify(value));
  fsyncSync(fd);
  closeSync(fd);
}

async function main(config: WorkerConfig): Promise<void> {
  const spool = await openTestSpool(config.spool);
  switch (config.role) {
    case "enqueue": {
      send({ kind: "ready" });
      const result: EnqueueResult = { enqueued: [], failed: [] };
      for (let i = 0; i < config.count; i++) {
        const data = Buffer.from(`${config.tag}:${i}:${Math.random()}`);
        try {
          const e = await spool.enqueue(config.queue, { id: i, note: config.tag }, data);
          result.enqueued.push({ name: e.name, sha256: sha256(data) });
        } catch (err) {
          if (!config.tolerateErrors) throw err;
          const e = err as SpoolError;
          result.failed.push({ code: e.code, errno: e.errno, message: e.message });
        }
      }
      writeResult(config.out, result);
      break;
    }
    case "dequeue": {
      const reader = new QueueReader(spool, config.queue, {
        leaseMs: config.leaseMs ?? 600_000,
      });
      const result: DequeueResult = { dequeued: [] };
      send({ kind: "ready" });
      try {
        while (config.limit === undefined || result.dequeued.length < config.limit) {
          const r = await reader.dequeue(stop.signal);
          if (r.kind === "stopped") break;
          const data = await r.entry.dataFile().read();
          result.dequeued.push({
            name: r.entry.name,
            sha256: sha256(data),
            id: r.entry.contents.id,
          });
          const done = await r.entry.remove();
          if (done.kind !== "done") throw new Error(`remove of ${r.entry.name}: ${done.kind}`);
        }
      } finally {
        await reader.close();
      }
      writeResult(config.out, result);
      break;
    }
    case "race": {
      send({ kind: "ready" });
      await gone;
      const names = config.reverse ? [...config.names].reverse() : config.names;
      const result: RaceResult = { won: [], lost: 0 };
      for (const name of names) {
        const r = await spool.checkoutIfPresent(spool.entry(config.queue, name), {
          leaseMs: 600_000,
        });
        if (r.kind === "ok") result.won.push(name);
        else result.lost++;
      }
      writeResult(config.out, result);
      break;
    }
    case "reap": {
      send({ kind: "ready" });
      const result: ReapResult = { expired: [], rounds: 0 };
      while (!stop.signal.aborted) {
        for (const e of await spool.expireLeases()) {
          result.expired.push({ name: e.name, queue: e.queue, to: e.to, attempts: e.attempts });
        }
        result.rounds++;
        await sleep(1);
      }
      writeResult(config.out, result);
      break;
    }
    case "chaos": {
      await runChaos(
        spool,
        config,
        () => send({ kind: "ready" }),
        () => send({ kind: "removed" }),
      );
      break;
    }
    case "batch": {
      await runBatches(spool, config, () => send({ kind: "ready" }));
      break;
    }
    case "replica-batch": {
      await runReplicaBatches(spool, config, () => send({ kind: "ready" }));
      break;
    }
  }
  send({ kind: "done" });
}

const arg = process.argv[2];
if (arg === undefined) {
  console.error("usage: spool-worker '<config json>' | standby");
  process.exit(2);
}
if (arg === "standby") {
  // A standby whose parent goes away (or says stop) before `start` has nothing to clean up.
  stop.signal.addEventListener("abort", () => {
    if (!configured) process.exit(0);
  });
  send({ kind: "standby" });
}
(arg === "standby" ? started : Promise.resolve(JSON.parse(arg) as WorkerConfig)).then(main).then(
  () => {
    if (process.connected) process.disconnect();
  },
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  },
);
