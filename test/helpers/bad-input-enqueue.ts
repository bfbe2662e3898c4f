import { status } from "@grpc/grpc-js";
import type { geospool } from "../../src/proto/generated/spool.js";
import type { EnqueueInput } from "./bad-input-arbitraries.js";
import { type Ctx, expectStatus, fail, plain, queueCodes } from "./bad-input-check.js";
import { LIMITS, sha256 } from "./bad-input-model.js";

/** The bytes an input uploads. */
export function payload(input: EnqueueInput): Buffer {
  const one = Buffer.from(input.data.bytes);
  return input.data.repeat === 1 ? one : Buffer.concat(Array(input.data.repeat).fill(one));
}

function chunksOf(data: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const n of sizes) {
    out.push(data.subarray(at, Math.min(data.length, at + n)));
    at = Math.min(data.length, at + n);
  }
  if (at < data.length || out.length === 0) out.push(data.subarray(at));
  return out;
}

function announcedSize(input: EnqueueInput, len: number): number | undefined {
  switch (input.size) {
    case "absent":
      return undefined;
    case "right":
      return len;
    case "short":
      return Math.max(0, len - 1);
    case "long":
      return len + 1;
    case "zero":
      return 0;
    case "huge":
      return Number.MAX_SAFE_INTEGER;
  }
}

function announcedDigest(input: EnqueueInput, sha: string): string | undefined {
  switch (input.digest) {
    case "absent":
      return undefined;
    case "right":
      return sha;
    case "wrong":
      return sha256(Buffer.from(`not ${sha}`));
    case "upper":
      return sha.toUpperCase();
    case "short":
      return sha.slice(1);
    case "empty":
      return "";
    case "junk":
      return `zz${sha.slice(2)}`;
  }
}

/** Upload `input` as told (any message order, cut where told) and judge the answer. */
export async function runEnqueue(ctx: Ctx, input: EnqueueInput): Promise<void> {
  const data = payload(input);
  const sha = sha256(data);
  const size = announcedSize(input, data.length);
  const digest = announcedDigest(input, sha);
  const header: geospool.v1.IEnqueueRequest = {
    header: {
      queue: input.queue,
      metadata: input.metadata,
      idempotencyKey: input.key ?? "",
      ...(size === undefined ? {} : { dataSize: size }),
      ...(digest === undefined ? {} : { dataSha256: digest }),
    },
  };
  const chunks = chunksOf(data, input.chunkSizes).map((chunk) => ({ chunk }));
  const commit = { commit: {} };
  const messages: geospool.v1.IEnqueueRequest[] = {
    normal: [header, ...chunks, commit],
    no_header: [...chunks, commit],
    two_headers: [header, ...chunks, header, commit],
    after_commit: [header, ...chunks, commit, { chunk: Buffer.from("x") }],
    no_commit: [header, ...chunks],
    empty: [],
    commit_first: [commit, header, ...chunks, commit],
    cut: [header, ...chunks, commit],
  }[input.order];
  const cutAfter = input.order === "cut" ? Math.min(input.cutAt, messages.length - 1) : undefined;
  const outcome = await ctx.raw.enqueue(messages, cutAfter === undefined ? {} : { cutAfter });

  // What the header alone is refused for (checked as soon as it arrives).
  const headerFaults: status[] = [...queueCodes(input.queue)];
  if (input.metadata.length > LIMITS.metadataSize) headerFaults.push(status.RESOURCE_EXHAUSTED);
  if (size !== undefined && size > LIMITS.entryDataSize) {
    headerFaults.push(status.RESOURCE_EXHAUSTED);
  }

  const key = input.key;
  if (key !== undefined && (key.length > 200 || key.includes("\0"))) {
    headerFaults.push(status.INVALID_ARGUMENT);
  }
  if (digest !== undefined && !/^[0-9a-f]{64}$/.test(digest)) {
    headerFaults.push(status.INVALID_ARGUMENT);
  }
  const dataFaults: status[] = [];
  if (data.length > LIMITS.entryDataSize) dataFaults.push(status.RESOURCE_EXHAUSTED);
  if (size !== undefined && size !== data.length) dataFaults.push(status.DATA_LOSS);
  if (digest !== undefined && /^[0-9a-f]{64}$/.test(digest) && digest !== sha) {
    dataFaults.push(status.DATA_LOSS);
  }
  const earlier = key ? ctx.model.keys.get(`${input.queue}\0${key}`) : undefined;
  let allowed: status[];
  switch (input.order) {
    case "no_header":
    case "empty":
    case "commit_first":
      allowed = [status.INVALID_ARGUMENT];
      break;
    case "two_headers":
    case "after_commit":
    case "no_commit":
      allowed = [status.INVALID_ARGUMENT, ...headerFaults, ...dataFaults];
      break;
    case "cut":
      allowed = [status.CANCELLED, ...headerFaults, ...dataFaults];
      break;
    case "normal":
      allowed =
        headerFaults.length > 0
          ? headerFaults
          : earlier !== undefined
            ? [status.OK, ...dataFaults]
            : dataFaults.length > 0
              ? dataFaults
              : [status.OK];
  }
  // Several uploads at once may be over limits.maxConcurrentUploads.
  if (ctx.moving || ctx.model.slotsMayBeHeld()) allowed.push(status.RESOURCE_EXHAUSTED);
  if (input.order === "cut") ctx.model.cuts.push(Date.now());
  expectStatus(outcome, allowed, { ...input, data: `${data.length} bytes` });
  if (!outcome.ok) return;

  const { deduplicated } = outcome.value;
  if (!outcome.value.entry) fail("Enqueue answered OK without an entry", input);
  const entry = plain(outcome.value.entry);
  if (earlier !== undefined) {
    if (!deduplicated || entry.name !== earlier) {
      fail(`key ${key} was used for ${earlier}; got ${entry.name} (dedup ${deduplicated})`, input);
    }
    return;
  }
  if (deduplicated) fail(`deduplicated against ${entry.name}, which was never acknowledged`, input);
  const want = {
    queue: input.queue,
    dataSize: data.length,
    dataSha256: sha,
    metadata: Buffer.from(input.metadata).toString("hex"),
    attempts: 0,
  };
  const got = {
    queue: entry.queue,
    dataSize: Number(entry.dataSize),
    dataSha256: entry.dataSha256,
    metadata: entry.metadata.toString("hex"),
    attempts: entry.attempts,
  };
  if (JSON.stringify(want) !== JSON.stringify(got)) {
    fail(`Enqueue answered ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`, input);
  }
  if (ctx.model.entries.has(entry.name) || ctx.model.removed.has(entry.name)) {
    fail(`Enqueue reused the name ${entry.name}`, input);
  }
  ctx.model.enqueued(entry.name, input.queue, Buffer.from(input.metadata), data, key);
}
