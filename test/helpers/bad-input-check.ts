import { status } from "@grpc/grpc-js";
import type { geospool } from "../../src/proto/generated/spool.js";
import { validateName } from "../../src/spool/index.js";
import { type Model, QUEUES } from "./bad-input-model.js";
import type { RawSpool } from "./grpc-raw.js";
import { type Outcome, statusName } from "./grpc-raw.js";

/** What every action gets: the node, the model, and how strictly it may judge answers. */
export interface Ctx {
  raw: RawSpool;
  model: Model;
  /**
   * Other actions of the batch may enqueue, take or finish entries: an entry whose
   * enqueue's answer has not arrived yet may show up. False when run alone.
   */
  moving: boolean;
  /**
   * Names other actions running at the same time may move or remove: answers about them
   * depend on timing, so only their status codes are judged. Empty when run alone.
   */
  racing: ReadonlySet<string>;
  /** Names another action of the batch may remove (held at the batch's start). */
  removable: ReadonlySet<string>;
  /** Names another action of the batch may finish or release (held at the batch's start). */
  finishable: ReadonlySet<string>;
  /** Another action of the batch may take or finish anything in these queues. */
  busyQueues: ReadonlySet<string>;
}

export class CampaignFailure extends Error {
  constructor(
    message: string,
    readonly input: unknown,
  ) {
    super(`${message}\ninput: ${describe(input)}`);
    this.name = "CampaignFailure";
  }
}

export function describe(input: unknown): string {
  return JSON.stringify(input, (_k, v) => {
    if (v instanceof Uint8Array) return `<${v.length} bytes>`;
    if (typeof v === "string" && v.length > 80) return `${v.slice(0, 40)}…(${v.length} chars)`;
    return v;
  });
}

/** Statuses no input may ever produce. */
const NEVER = new Set([status.INTERNAL, status.UNKNOWN, status.UNAVAILABLE, status.UNIMPLEMENTED]);

/**
 * The outcome's status must be one of `allowed` (OK included when `allowed` has it); a
 * refusal must say what was wrong (non-empty details).
 */
export function expectStatus<T>(
  outcome: Outcome<T>,
  allowed: Iterable<status>,
  input: unknown,
): void {
  const set = new Set(allowed);
  const code = outcome.ok ? status.OK : outcome.code;
  const detail = outcome.ok ? "" : ` (${outcome.details})`;
  if (NEVER.has(code) || !set.has(code)) {
    throw new CampaignFailure(
      `got ${statusName(code)}${detail}, expected one of ${[...set].map(statusName).join(", ")}`,
      input,
    );
  }
  if (!outcome.ok && outcome.details.trim() === "") {
    throw new CampaignFailure(`${statusName(code)} without details`, input);
  }
}

export function fail(message: string, input: unknown): never {
  throw new CampaignFailure(message, input);
}

/** How a queue (or entry) name field is: a configured queue, unknown but valid, or invalid. */
export function queueKind(q: string): "known" | "unknown" | "invalid" {
  if ((QUEUES as readonly string[]).includes(q)) return "known";
  return validName("queue", q) ? "unknown" : "invalid";
}

export function validName(what: "queue" | "entry", name: string): boolean {
  try {
    validateName(what, name);
    return true;
  } catch {
    return false;
  }
}

/** The statuses a queue field alone can cause. */
export function queueCodes(q: string): status[] {
  const k = queueKind(q);
  return k === "known" ? [] : k === "unknown" ? [status.NOT_FOUND] : [status.INVALID_ARGUMENT];
}

/** A decoded Entry with its optional fields filled in. */
export function plain(e: geospool.v1.IEntry) {
  const t = e.leaseUntil;
  return {
    name: e.name ?? "",
    queue: e.queue ?? "",
    metadata: Buffer.from(e.metadata ?? []),
    attempts: e.attempts ?? 0,
    dataSize: Number(e.dataSize ?? 0),
    dataSha256: e.dataSha256 ?? "",
    leaseUntil: t ? Number(t.seconds ?? 0) * 1000 + (t.nanos ?? 0) / 1e6 : undefined,
  };
}
