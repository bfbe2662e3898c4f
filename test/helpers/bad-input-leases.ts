import { randomBytes } from "node:crypto";
import { status } from "@grpc/grpc-js";
import fc from "fast-check";
import type { geospool } from "../../src/proto/generated/spool.js";
import {
  type DurationInput,
  duration,
  durationMs,
  hostileName,
  queueName,
  wellFormed,
} from "./bad-input-arbitraries.js";
import { type Ctx, expectStatus, fail, plain, queueCodes, validName } from "./bad-input-check.js";
import { LIMITS, type ModelEntry, QUEUES, sha256 } from "./bad-input-model.js";

/** Whether the node must accept ("ok"), must refuse ("bad") or may do either with a duration. */
export function durationVerdict(
  d: DurationInput | undefined,
  rule: "positive" | "not_negative",
): "ok" | "bad" | "either" {
  if (d === undefined) return "ok";
  const ms = durationMs(d) as number;
  const exact = d.seconds * 1000 + d.nanos / 1e6;
  const refused = rule === "positive" ? ms <= 0 : ms < 0;
  const wrong = rule === "positive" ? exact <= 0 : exact < 0;
  if (refused && wrong) return "bad";
  if (!refused && !wrong && wellFormed(d) && ms <= 1e10) return "ok";
  return "either";
}

function durationCodes(v: "ok" | "bad" | "either"): status[] {
  return v === "ok" ? [] : [status.INVALID_ARGUMENT];
}

export const dequeue = fc.record({
  kind: fc.constant("dequeue" as const),
  queue: queueName,
  lease: duration({ maxMs: 3_000 }),
  wait: duration({ maxMs: 200 }),
});
export type DequeueInput = typeof dequeue extends fc.Arbitrary<infer T> ? T : never;

export async function runDequeue(ctx: Ctx, input: DequeueInput): Promise<void> {
  const outcome = await ctx.raw.unary<geospool.v1.DequeueResponse>("dequeue", {
    queue: input.queue,
    ...(input.lease ? { lease: input.lease } : {}),
    ...(input.wait ? { wait: input.wait } : {}),
  });
  const allowed = dequeueCodes(input);
  expectStatus(outcome, allowed, input);
  if (!outcome.ok) return;
  await handedOut(ctx, input.queue, outcome.value, input);
}

/** The statuses a Dequeue of these fields may get (also Complete's then_dequeue). */
function dequeueCodes(input: Omit<DequeueInput, "kind">): status[] {
  const lease = durationVerdict(input.lease, "positive");
  const wait = durationVerdict(input.wait, "not_negative");
  const q = queueCodes(input.queue);
  return lease === "bad" || wait === "bad"
    ? [status.INVALID_ARGUMENT, ...q]
    : q.length > 0
      ? [...q, ...durationCodes(lease), ...durationCodes(wait)]
      : [status.OK, ...durationCodes(lease), ...durationCodes(wait)];
}

/** A Dequeue's answer (or Complete's `next`): what it handed out, judged against the model. */
async function handedOut(
  ctx: Ctx,
  queue: string,
  answer: geospool.v1.IDequeueResponse,
  input: unknown,
): Promise<void> {
  const leaseToken = answer.leaseToken ?? "";
  if (!answer.entry) {
    if (!ctx.busyQueues.has(queue) && ctx.model.certainlyAvailable(queue)) {
      const waiting = [...ctx.model.entries.values()]
        .filter((e) => e.queue === queue && !e.lease && !e.drifted)
        .map((e) => e.name);
      const listed = await ctx.raw.unary<geospool.v1.ListResponse>("list", { queue: queue });
      const there = listed.ok ? listed.value.entries.map((e) => e.name) : listed.details;
      fail(`Dequeue answered empty; ${queue} had ${waiting}; it lists ${there}`, input);
    }
    return;
  }
  const entry = plain(answer.entry);
  const until = entry.leaseUntil ?? 0;
  const e = ctx.model.entries.get(entry.name);
  if (!e && ctx.moving && !ctx.model.removed.has(entry.name)) {
    ctx.model.pending.push({ name: entry.name, queue: queue, token: leaseToken, until });
    return;
  }
  if (!e) return fail(`Dequeue handed out ${entry.name}, never acknowledged or removed`, input);
  // A sibling's Complete may have saved it into this queue before its own answer came.
  const moved = ctx.finishable.has(e.name);
  if (entry.queue !== queue || (!moved && !ctx.model.possibleQueues(e).includes(queue))) {
    fail(`Dequeue of ${queue} handed out ${entry.name} from ${entry.queue} (${e.queue})`, input);
  }
  if (entry.dataSha256 !== e.sha256 || Number(entry.dataSize) !== e.data.length) {
    fail(`Dequeue handed out ${entry.name} with other data`, input);
  }
  if (!ctx.racing.has(e.name) && !entry.metadata.equals(e.metadata)) {
    fail(`Dequeue handed out ${entry.name} with other metadata`, input);
  }
  // A sibling's Release or Complete(save) may have given it back before its answer came.
  if (ctx.model.leaseState(e) === "live" && !ctx.finishable.has(e.name)) {
    fail(`${entry.name} was handed out again while its lease ran until ${e.lease?.until}`, input);
  }
  if (!leaseToken || ctx.model.tokens.has(leaseToken)) {
    fail(`Dequeue gave a lease token that is empty or was given before: ${leaseToken}`, input);
  }
  ctx.model.checkedOut(e, queue, leaseToken, until);
  e.drifted = false;
}

/** Which entry, queue and token a finishing call names. */
const target = fc.record({
  entry: fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant("held" as const), i: fc.nat() }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("any" as const), i: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("removed" as const), i: fc.nat() }) },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant("hostile" as const), name: hostileName }),
    },
  ),
  queue: fc.oneof(
    { weight: 8, arbitrary: fc.constant({ kind: "right" as const }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("given" as const), queue: queueName }) },
  ),
  token: fc.constantFrom("right", "right", "right", "right", "stale", "random", "empty", "long"),
});
type TargetInput = typeof target extends fc.Arbitrary<infer T> ? T : never;

interface Resolved {
  e: ModelEntry | undefined;
  name: string;
  queue: string;
  token: string;
  /** The request names the entry's live checkout exactly. */
  holder: boolean;
}

function resolve(ctx: Ctx, t: TargetInput): Resolved {
  const held = ctx.model.held();
  const removed = [...ctx.model.removed];
  const e =
    t.entry.kind === "held"
      ? (held[t.entry.i % Math.max(1, held.length)] ?? ctx.model.pick(t.entry.i))
      : t.entry.kind === "any"
        ? ctx.model.pick(t.entry.i)
        : undefined;
  const name =
    e?.name ??
    (t.entry.kind === "hostile"
      ? t.entry.name
      : (removed[(t.entry as { i: number }).i % Math.max(1, removed.length)] ?? "gone"));
  const queue = t.queue.kind === "right" ? (e?.queue ?? QUEUES[0]) : t.queue.queue;
  const stale = ctx.model.staleTokens;
  const token = {
    right: e?.lease?.token ?? stale.at(-1) ?? "",
    stale: stale[stale.length > 0 ? name.length % stale.length : 0] ?? "",
    random: randomBytes(16).toString("base64url"),
    empty: "",
    long: "t".repeat(10_000),
  }[t.token];
  const holder = !!e?.lease && token === e.lease.token && queue === e.queue;
  return { e, name, queue, token, holder };
}

/**
 * The statuses a finishing call (Complete, Release, ExtendLease) may get besides those of
 * its own fields, and whether it may succeed.
 */
function holderCodes(ctx: Ctx, r: Resolved, retryKey: string): status[] {
  const codes = queueCodes(r.queue);
  if (!validName("entry", r.name)) codes.push(status.INVALID_ARGUMENT);
  if (codes.length > 0) return codes;
  const cached = ctx.model.finished.has(retryKey) ? [status.OK] : [];
  const racing = ctx.racing.has(r.name)
    ? [status.OK, status.NOT_FOUND, status.FAILED_PRECONDITION]
    : [];
  if (!r.e) return [status.NOT_FOUND, ...cached, ...racing];
  if (!r.holder) return [status.FAILED_PRECONDITION, ...cached, ...racing];
  const state = ctx.model.leaseState(r.e);
  if (state === "live") return [status.OK, ...racing];
  if (state === "either") return [status.OK, status.FAILED_PRECONDITION, ...racing];
  return [status.FAILED_PRECONDITION, ...cached, ...racing];
}

/**
 * After a refusal of the holder's own request, its lease is gone (the reaper took it).
 * Not so certainly in a batch: every finish and ExtendLease takes the checkout file aside
 * for a moment, so the refusal may have come from another call of the batch on the same
 * checkout, and that call's own answer says what became of it. There the lease stays in
 * the model: if the lease was certainly live, the sibling was the cause; if it may have
 * run out, the entry may have drifted, but a sibling ExtendLease may also have renewed it
 * (its answer updates the lease), and a later finish with that token may still succeed.
 */
function lost(ctx: Ctx, r: Resolved, code: status): void {
  if (!r.holder || !r.e || code !== status.FAILED_PRECONDITION) return;
  if (ctx.racing.has(r.name)) {
    if (ctx.model.leaseState(r.e) !== "live") r.e.drifted = true;
    return;
  }
  ctx.model.dropLease(r.e);
  r.e.drifted = true;
}

/**
 * Whether a finishing call's success changes the model: it named the live checkout and is
 * not a retry's cached answer. In a batch, a newer checkout's answer may have been seen
 * first (then that one stands); a lease dropped meanwhile by a refusal (see `lost`) does
 * not undo an acknowledged finish.
 */
function finishedByHolder(
  ctx: Ctx,
  r: Resolved,
  retryKey: string,
  shown: unknown,
): r is Resolved & { e: ModelEntry } {
  const cached = ctx.model.finished.has(retryKey);
  ctx.model.finished.add(retryKey);
  if (!r.e || !r.holder || cached) return false;
  const now = r.e.lease?.token;
  if (now === r.token) return true;
  if (!ctx.racing.has(r.name)) fail("two finishes of one checkout both succeeded", shown);
  return now === undefined;
}

export const complete = fc.record({
  kind: fc.constant("complete" as const),
  target,
  action: fc.oneof(
    { weight: 4, arbitrary: fc.constant({ kind: "remove" as const }) },
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant("save" as const),
        queue: queueName,
        metadata: fc.option(
          fc.oneof(
            { weight: 8, arbitrary: fc.uint8Array({ maxLength: 32 }) },
            { weight: 1, arbitrary: fc.uint8Array({ minLength: 16_000, maxLength: 17_000 }) },
          ),
          { nil: undefined },
        ),
      }),
    },
    { weight: 1, arbitrary: fc.constant({ kind: "none" as const }) },
  ),
  // then_dequeue: the next checkout in the same call, with Dequeue's hostile fields.
  next: fc.option(
    fc.record({
      queue: queueName,
      lease: duration({ maxMs: 3_000 }),
      wait: duration({ maxMs: 200 }),
    }),
    { nil: undefined, freq: 3 },
  ),
});
export type CompleteInput = typeof complete extends fc.Arbitrary<infer T> ? T : never;

export async function runComplete(ctx: Ctx, input: CompleteInput): Promise<void> {
  const r = resolve(ctx, input.target);
  const a = input.action;
  const next = input.next;
  const outcome = await ctx.raw.unary<geospool.v1.CompleteResponse>("complete", {
    queue: r.queue,
    name: r.name,
    leaseToken: r.token,
    ...(a.kind === "remove" ? { remove: {} } : {}),
    ...(a.kind === "save"
      ? { save: { queue: a.queue, ...(a.metadata ? { metadata: a.metadata } : {}) } }
      : {}),
    ...(next
      ? {
          thenDequeue: {
            queue: next.queue,
            ...(next.lease ? { lease: next.lease } : {}),
            ...(next.wait ? { wait: next.wait } : {}),
          },
        }
      : {}),
  });
  // The node takes a Complete for a retry only if it asks for the same metadata too.
  const meta = a.kind === "save" && a.metadata ? `/${sha256(Buffer.from(a.metadata))}` : "";
  const to = a.kind === "save" ? `save:${a.queue}${meta}` : "remove";
  const retryKey = `complete/${to}/${r.queue}/${r.name}/${r.token}`;
  const saveCodes = a.kind === "save" ? queueCodes(a.queue) : [];
  if (a.kind === "save" && a.metadata && a.metadata.length > LIMITS.metadataSize) {
    saveCodes.push(status.RESOURCE_EXHAUSTED);
  }
  const finishCodes =
    a.kind === "none"
      ? [status.INVALID_ARGUMENT]
      : saveCodes.length > 0
        ? [...saveCodes, ...queueCodes(r.queue), status.INVALID_ARGUMENT]
        : holderCodes(ctx, r, retryKey);
  // The next checkout's fields are checked before anything is finished: certainly bad,
  // they alone decide; maybe bad, their refusals join the finish's statuses.
  const nextCodes = next ? dequeueCodes(next) : [status.OK];
  const allowed = !nextCodes.includes(status.OK)
    ? nextCodes
    : [...finishCodes, ...nextCodes.filter((c) => c !== status.OK)];
  const shown = { ...input, resolved: { name: r.name, queue: r.queue, token: r.token } };
  expectStatus(outcome, allowed, shown);
  if (!outcome.ok) return lost(ctx, r, outcome.code);
  const cached = ctx.model.finished.has(retryKey);
  const byHolder = finishedByHolder(ctx, r, retryKey, shown);
  // A save that was carried out (not a retry's cached answer) wrote its metadata, even when
  // a sibling's Dequeue took the entry again before this answer came (then that checkout
  // stands, and only the metadata follows from here).
  if (a.kind === "save" && r.e && !cached) {
    const saved = plain(outcome.value.entry ?? {});
    if (saved.name !== r.name || saved.queue !== a.queue) {
      fail(`Complete saved ${saved?.name} into ${saved?.queue}`, shown);
    }
    if (a.metadata) r.e.metadata = Buffer.from(a.metadata);
    if (!saved.metadata.equals(r.e.metadata)) fail("Complete lost the metadata", shown);
  }
  if (byHolder) {
    if (a.kind === "remove") ctx.model.removedEntry(r.e);
    if (a.kind === "save") {
      ctx.model.dropLease(r.e);
      r.e.queue = a.queue;
    }
  }
  if (!next) return;
  // Nothing here fails after a finish (no disk faults): the next checkout is always answered.
  if (!outcome.value.next)
    return fail("Complete left out the next checkout it was asked for", shown);
  await handedOut(ctx, next.queue, outcome.value.next, shown);
}

export const release = fc.record({ kind: fc.constant("release" as const), target });
export type ReleaseInput = typeof release extends fc.Arbitrary<infer T> ? T : never;

export async function runRelease(ctx: Ctx, input: ReleaseInput): Promise<void> {
  const r = resolve(ctx, input.target);
  const outcome = await ctx.raw.unary<geospool.v1.ReleaseResponse>("release", {
    queue: r.queue,
    name: r.name,
    leaseToken: r.token,
  });
  const retryKey = `release/${r.queue}/${r.name}/${r.token}`;
  const shown = { ...input, resolved: { name: r.name, queue: r.queue, token: r.token } };
  expectStatus(outcome, holderCodes(ctx, r, retryKey), shown);
  if (!outcome.ok) return lost(ctx, r, outcome.code);
  if (!finishedByHolder(ctx, r, retryKey, shown)) return;
  const to = outcome.value.queue;
  if (to !== r.queue && to !== "dead") fail(`Release sent ${r.name} to ${to}`, shown);
  ctx.model.dropLease(r.e);
  r.e.queue = to;
}

export const extend = fc.record({
  kind: fc.constant("extend" as const),
  target,
  lease: duration({ maxMs: 3_000 }),
});
export type ExtendInput = typeof extend extends fc.Arbitrary<infer T> ? T : never;

export async function runExtend(ctx: Ctx, input: ExtendInput): Promise<void> {
  const r = resolve(ctx, input.target);
  const outcome = await ctx.raw.unary<geospool.v1.ExtendLeaseResponse>("extendLease", {
    queue: r.queue,
    name: r.name,
    leaseToken: r.token,
    ...(input.lease ? { lease: input.lease } : {}),
  });
  // Absent is refused here: the lease is required.
  const v = input.lease === undefined ? "bad" : durationVerdict(input.lease, "positive");
  const codes = holderCodes(ctx, r, "");
  const allowed =
    v === "bad"
      ? [status.INVALID_ARGUMENT, ...codes.filter((c) => c !== status.OK)]
      : [...codes, ...durationCodes(v)];
  const shown = { ...input, resolved: { name: r.name, queue: r.queue, token: r.token } };
  expectStatus(outcome, allowed, shown);
  if (!outcome.ok) return lost(ctx, r, outcome.code);
  if (!r.e?.lease || !r.holder) return;
  const t = outcome.value.leaseUntil;
  r.e.lease.until = Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;
}
