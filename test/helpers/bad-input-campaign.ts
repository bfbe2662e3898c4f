import { appendFileSync } from "node:fs";
import fc from "fast-check";
import { enqueue } from "./bad-input-arbitraries.js";
import { type Ctx, describe } from "./bad-input-check.js";
import { runEnqueue } from "./bad-input-enqueue.js";
import {
  complete,
  dequeue,
  extend,
  release,
  runComplete,
  runDequeue,
  runExtend,
  runRelease,
} from "./bad-input-leases.js";
import type { Model } from "./bad-input-model.js";
import {
  clusterStatus,
  list,
  readData,
  runClusterStatus,
  runList,
  runReadData,
  runStat,
  runWatch,
  stat,
  watch,
} from "./bad-input-reads.js";
import type { RawSpool } from "./grpc-raw.js";

const single = fc.oneof(
  { weight: 6, arbitrary: enqueue },
  { weight: 5, arbitrary: dequeue },
  { weight: 4, arbitrary: complete },
  { weight: 2, arbitrary: release },
  { weight: 2, arbitrary: extend },
  { weight: 2, arbitrary: list },
  { weight: 3, arbitrary: stat },
  { weight: 3, arbitrary: readData },
  { weight: 1, arbitrary: watch },
  { weight: 1, arbitrary: clusterStatus },
);
export type Single = typeof single extends fc.Arbitrary<infer T> ? T : never;

/** One step of the campaign: an RPC with hostile fields, or several at once. */
export const action = fc.oneof(
  { weight: 5, arbitrary: single },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("concurrent" as const),
      // No idempotency keys in a batch: which of two racing enqueues is first is not known.
      actions: fc
        .array(single, { minLength: 2, maxLength: 4 })
        .map((xs) => xs.map((x) => (x.kind === "enqueue" ? { ...x, key: undefined } : x))),
    }),
  },
);
export type Action = typeof action extends fc.Arbitrary<infer T> ? T : never;

/** GEOSPOOL_CAMPAIGN_TRACE=<file>: one line per action (start, end, input, error). */
const TRACE = process.env.GEOSPOOL_CAMPAIGN_TRACE;
let probe: (() => Promise<unknown>) | undefined;
/** Something to record after each traced action (e.g. how many names are reserved). */
export function traceProbe(f: () => Promise<unknown>): void {
  probe = f;
}

async function runSingle(ctx: Ctx, a: Single): Promise<void> {
  if (!TRACE) return dispatch(ctx, a);
  const start = Date.now();
  let error = "";
  try {
    await dispatch(ctx, a);
  } catch (err) {
    error = String(err);
    throw err;
  } finally {
    const seen = await probe?.();
    const line = { start, end: Date.now(), a: describe(a), last: ctx.raw.last, seen, error };
    appendFileSync(TRACE, `${JSON.stringify(line)}\n`);
  }
}

function dispatch(ctx: Ctx, a: Single): Promise<void> {
  switch (a.kind) {
    case "enqueue":
      return runEnqueue(ctx, a);
    case "dequeue":
      return runDequeue(ctx, a);
    case "complete":
      return runComplete(ctx, a);
    case "release":
      return runRelease(ctx, a);
    case "extend":
      return runExtend(ctx, a);
    case "list":
      return runList(ctx, a);
    case "stat":
      return runStat(ctx, a);
    case "read_data":
      return runReadData(ctx, a);
    case "watch":
      return runWatch(ctx, a);
    case "cluster_status":
      return runClusterStatus(ctx, a);
  }
}

/** What an action run alone knows: nothing else moves. */
export function aloneCtx(raw: RawSpool, model: Model): Ctx {
  const none = new Set<string>();
  return {
    raw,
    model,
    moving: false,
    racing: none,
    removable: none,
    finishable: none,
    busyQueues: none,
  };
}

/** What an action of a batch knows about the others running beside it. */
export function batchCtx(raw: RawSpool, model: Model, actions: readonly Single[]): Ctx {
  const moving = actions.some((x) =>
    ["enqueue", "dequeue", "complete", "release"].includes(x.kind),
  );
  const removes = actions.some((x) => x.kind === "complete" && x.action.kind === "remove");
  const finishes = actions.some((x) => x.kind === "complete" || x.kind === "release");
  return {
    raw,
    model,
    moving,
    racing: new Set(moving ? [...model.entries.keys(), ...model.removed] : []),
    removable: new Set(removes ? model.held().map((e) => e.name) : []),
    finishable: new Set(finishes ? model.held().map((e) => e.name) : []),
    // An ExtendLease takes its checkout file aside for a moment, so queue depths read
    // beside it may miss that entry, though nothing moves between queues.
    busyQueues: new Set(
      moving || actions.some((x) => x.kind === "extend") ? ["inbox", "outbox", "dead"] : [],
    ),
  };
}

/** After a batch: checkouts of entries whose enqueue was acknowledged after the Dequeue answered. */
export function settlePending(model: Model): void {
  for (const p of model.pending.splice(0)) {
    const e = model.entries.get(p.name);
    if (!e) throw new Error(`Dequeue handed out ${p.name}, never acknowledged`);
    model.checkedOut(e, p.queue, p.token, p.until);
  }
}

/**
 * Run one action. A batch runs its actions at once; each then judges its answer knowing
 * that the entries the others may move (every acknowledged entry, for a batch that
 * dequeues, finishes or enqueues) and their queues are in motion.
 */
export async function runAction(raw: RawSpool, model: Model, a: Action): Promise<number> {
  if (a.kind !== "concurrent") {
    await runSingle(aloneCtx(raw, model), a);
    return 1;
  }
  const ctx = batchCtx(raw, model, a.actions);
  const results = await Promise.allSettled(a.actions.map((x) => runSingle(ctx, x)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  settlePending(model);
  return a.actions.length;
}
