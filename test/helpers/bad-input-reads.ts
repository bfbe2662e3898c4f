import { status } from "@grpc/grpc-js";
import fc from "fast-check";
import type { geospool } from "../../src/proto/generated/spool.js";
import { hostileName, pageSize, pageToken, queueName } from "./bad-input-arbitraries.js";
import {
  type Ctx,
  expectStatus,
  fail,
  plain,
  queueCodes,
  queueKind,
  validName,
} from "./bad-input-check.js";
import type { ModelEntry } from "./bad-input-model.js";

const entryRef = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("any" as const), i: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("removed" as const), i: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("hostile" as const), name: hostileName }) },
);
type EntryRef = typeof entryRef extends fc.Arbitrary<infer T> ? T : never;

function pickName(ctx: Ctx, ref: EntryRef): { name: string; e: ModelEntry | undefined } {
  if (ref.kind === "hostile") {
    return { name: ref.name, e: ctx.model.entries.get(ref.name) };
  }
  if (ref.kind === "any") {
    const e = ctx.model.pick(ref.i);
    if (e) return { name: e.name, e };
  }
  const removed = [...ctx.model.removed];
  return { name: removed[ref.i % Math.max(1, removed.length)] ?? "gone", e: undefined };
}

/** Check what an answer says of an entry against the model. */
function sameEntry(ctx: Ctx, e: ModelEntry, raw: geospool.v1.IEntry, input: unknown): void {
  const got = plain(raw);
  if (
    got.name !== e.name ||
    got.dataSha256 !== e.sha256 ||
    Number(got.dataSize) !== e.data.length
  ) {
    fail(`${e.name} is shown with other data: ${got.dataSha256} ${got.dataSize}`, input);
  }
  if (ctx.racing.has(e.name)) return;
  if (!Buffer.from(got.metadata ?? []).equals(e.metadata)) fail(`${e.name}: other metadata`, input);
  if (!ctx.model.possibleQueues(e).includes(got.queue ?? "")) {
    fail(`${e.name} is shown in ${got.queue}, expected ${ctx.model.possibleQueues(e)}`, input);
  }
}

export const list = fc.record({
  kind: fc.constant("list" as const),
  queue: queueName,
  checkedOut: fc.boolean(),
  pageSize,
  pageToken,
});
export type ListInput = typeof list extends fc.Arbitrary<infer T> ? T : never;

export async function runList(ctx: Ctx, input: ListInput): Promise<void> {
  const outcome = await ctx.raw.unary<geospool.v1.ListResponse>("list", input);
  const q = queueCodes(input.queue);
  // A token the server did not hand out is refused, or read as the name to list after.
  const token = input.pageToken === "" ? [] : [status.INVALID_ARGUMENT];
  expectStatus(outcome, q.length > 0 ? [...q, ...token] : [status.OK, ...token], input);
  if (!outcome.ok) return;
  const { entries } = outcome.value;
  const max = Math.min(Math.max(input.pageSize || 100, 1), 1000);
  if (entries.length > max)
    fail(`List returned ${entries.length} entries, page size ${max}`, input);
  let last = "";
  for (const got of entries.map((x) => ({ ...plain(x), raw: x }))) {
    if (got.name <= last) fail(`List out of order: ${got.name} after ${last}`, input);
    last = got.name;
    const e = ctx.model.entries.get(got.name);
    if (!e) {
      if (ctx.moving) continue;
      fail(`List shows ${got.name}, which was never acknowledged or was removed`, input);
    }
    sameEntry(ctx, e, got.raw, input);
  }
}

export const stat = fc.record({
  kind: fc.constant("stat" as const),
  entry: entryRef,
  hint: fc.oneof(
    { weight: 3, arbitrary: fc.constant("") },
    { weight: 2, arbitrary: fc.constant("<right>") },
    { weight: 2, arbitrary: queueName },
  ),
});
export type StatInput = typeof stat extends fc.Arbitrary<infer T> ? T : never;

export async function runStat(ctx: Ctx, input: StatInput): Promise<void> {
  const { name, e } = pickName(ctx, input.entry);
  const hint = input.hint === "<right>" ? (e?.queue ?? "") : input.hint;
  const outcome = await ctx.raw.unary<geospool.v1.StatResponse>("stat", { name, queue: hint });
  const shown = { ...input, name, hint };
  const allowed: status[] = [];
  if (!validName("entry", name)) allowed.push(status.INVALID_ARGUMENT);
  else if (hint !== "" && queueKind(hint) !== "known") {
    // An unknown queue answers like an absent entry (callers cannot probe for queues).
    allowed.push(status.NOT_FOUND, ...queueCodes(hint));
  } else if (!e) allowed.push(status.NOT_FOUND);
  else allowed.push(status.OK);
  if (ctx.removable.has(name)) allowed.push(status.NOT_FOUND);
  expectStatus(outcome, allowed, shown);
  if (outcome.ok && e?.name === name) {
    const got = outcome.value.entry;
    if (!got) return fail("Stat answered OK without an entry", shown);
    sameEntry(ctx, e, got, shown);
  }
}

export const readData = fc.record({
  kind: fc.constant("read_data" as const),
  entry: entryRef,
  offset: fc.constantFrom("zero", "zero", "mid", "end", "past", "huge"),
  limit: fc.constantFrom("absent", "absent", "zero", "one", "mid", "huge"),
  cutAfter: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined, freq: 4 }),
});
export type ReadDataInput = typeof readData extends fc.Arbitrary<infer T> ? T : never;

export async function runReadData(ctx: Ctx, input: ReadDataInput): Promise<void> {
  const { name, e } = pickName(ctx, input.entry);
  const size = e?.data.length ?? 10;
  const offset = {
    zero: 0,
    mid: Math.floor(size / 2),
    end: size,
    past: size + 1,
    huge: Number.MAX_SAFE_INTEGER,
  }[input.offset];
  const limit = { absent: undefined, zero: 0, one: 1, mid: Math.ceil(size / 3), huge: 2 ** 52 }[
    input.limit
  ];
  const outcome = await ctx.raw.readData(
    { name, offset, ...(limit === undefined ? {} : { limit }) },
    input.cutAfter === undefined ? {} : { cutAfter: input.cutAfter },
  );
  const shown = { ...input, name, offset, limit };
  const allowed: status[] = [];
  if (!validName("entry", name)) allowed.push(status.INVALID_ARGUMENT);
  else if (!e) allowed.push(status.NOT_FOUND);
  else if (offset > size) allowed.push(status.OUT_OF_RANGE);
  else allowed.push(status.OK);
  if (ctx.removable.has(name)) allowed.push(status.NOT_FOUND);
  if (input.cutAfter !== undefined) allowed.push(status.CANCELLED, status.OK);
  if (input.offset === "huge") allowed.push(status.INVALID_ARGUMENT);
  expectStatus(outcome, allowed, shown);
  if (!outcome.ok || !e || e.name !== name || input.cutAfter !== undefined) return;
  const parts = outcome.value;
  let at = offset;
  for (const p of parts) {
    if (Number(p.offset) !== at) fail(`ReadData chunk at ${p.offset}, expected ${at}`, shown);
    at += p.chunk.length;
  }
  const got = Buffer.concat(parts.map((p) => p.chunk));
  const want = e.data.subarray(offset, limit === undefined ? size : offset + limit);
  if (!got.equals(want)) {
    fail(`ReadData sent ${got.length} bytes, expected ${want.length} (${offset}+${limit})`, shown);
  }
  const digest = parts.at(-1)?.sha256 ?? "";
  if (offset === 0 && limit === undefined && digest !== e.sha256) {
    fail(`ReadData of the whole data ended with sha256 "${digest}"`, shown);
  }
  if (digest !== "" && digest !== e.sha256) fail(`ReadData sent a wrong sha256 ${digest}`, shown);
}

export const watch = fc.record({
  kind: fc.constant("watch" as const),
  queues: fc.array(queueName, { maxLength: 3 }),
  forMs: fc.integer({ min: 5, max: 150 }),
});
export type WatchInput = typeof watch extends fc.Arbitrary<infer T> ? T : never;

export async function runWatch(ctx: Ctx, input: WatchInput): Promise<void> {
  const { events, end } = await ctx.raw.watch(input.queues, input.forMs);
  const bad = input.queues.flatMap(queueCodes);
  // Ended by our cancel when the queues are good; refused at once otherwise.
  expectStatus(end, bad.length > 0 ? bad : [status.CANCELLED], input);
  if (bad.length > 0 && events.length > 0) fail("Watch of a bad queue sent events", input);
  for (const ev of events) {
    if (!(ev.kind >= 1 && ev.kind <= 6) || !validName("entry", ev.entry?.name ?? "")) {
      fail(`Watch sent a malformed event ${JSON.stringify(ev)}`, input);
    }
  }
}

export const clusterStatus = fc.constant({ kind: "cluster_status" as const });

export async function runClusterStatus(ctx: Ctx, input: unknown): Promise<void> {
  const outcome = await ctx.raw.unary<geospool.v1.ClusterStatusResponse>("clusterStatus", {});
  expectStatus(outcome, [status.OK], input);
  if (!outcome.ok || ctx.racing.size > 0 || ctx.busyQueues.size > 0) return;
  const total = outcome.value.queues.reduce(
    (n, q) => n + Number(q.queued) + Number(q.checkedOut),
    0,
  );
  // Depths are counted queue by queue: an entry the reaper moves meanwhile may be missed.
  const expiring = [...ctx.model.entries.values()].filter(
    (e) => e.drifted || (e.lease && ctx.model.leaseState(e) !== "live"),
  ).length;
  if (total > ctx.model.entries.size || total < ctx.model.entries.size - expiring) {
    const depths = outcome.value.queues.map((q) => `${q.queue}:${q.queued}+${q.checkedOut}`);
    const held = [...ctx.model.entries.values()].map(
      (e) => `${e.name.slice(-6)} ${e.queue} ${ctx.model.leaseState(e)} drifted=${e.drifted}`,
    );
    fail(`ClusterStatus counts ${total} (${depths}); acknowledged: ${held.join(", ")}`, input);
  }
}
