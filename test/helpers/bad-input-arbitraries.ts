import fc from "fast-check";
import { QUEUES } from "./bad-input-model.js";

/** Strings that are no good as entry or queue names, and some that look fine but are unknown. */
export const hostileName = fc.oneof(
  fc.constantFrom(
    "",
    ".",
    "..",
    "../../etc/passwd",
    "a/b",
    "/abs",
    "a\\b",
    ".registry",
    ".tmp",
    ".data",
    ".checkout",
    "x\0y",
    " ",
    "\n",
    "名前",
    "%2e%2e",
    "a".repeat(256),
    "a".repeat(5_000),
    "-",
    "CON",
  ),
  fc.string({ maxLength: 40 }),
  fc.stringMatching(/^[A-Za-z0-9_-]{1,24}$/),
);

export const queueName = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...QUEUES) },
  { weight: 1, arbitrary: hostileName },
);

export interface DurationInput {
  seconds: number;
  nanos: number;
}

/** Durations: sensible short ones mostly, then zero, negative, tiny, huge and malformed. */
export const duration = (typical: { maxMs: number }): fc.Arbitrary<DurationInput | undefined> =>
  fc.oneof(
    { weight: 2, arbitrary: fc.constant(undefined) },
    {
      weight: 6,
      arbitrary: fc
        .integer({ min: 1, max: typical.maxMs })
        .map((ms) => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 })),
    },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        { seconds: 0, nanos: 0 },
        { seconds: -1, nanos: 0 },
        { seconds: 0, nanos: -5 },
        { seconds: 0, nanos: 500 },
        { seconds: -1, nanos: 999_999_999 },
        { seconds: 1, nanos: 2_000_000_000 },
        { seconds: 1e12, nanos: 0 },
        { seconds: Number.MAX_SAFE_INTEGER, nanos: 0 },
        { seconds: -Number.MAX_SAFE_INTEGER, nanos: 0 },
      ),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        seconds: fc.integer({ min: -1e6, max: 1e6 }),
        nanos: fc.integer({ min: -2e9, max: 2e9 }),
      }),
    },
  );

/** The duration as the node reads it (whole milliseconds, nanos floored). */
export function durationMs(d: DurationInput | undefined): number | undefined {
  return d === undefined ? undefined : d.seconds * 1000 + Math.floor(d.nanos / 1e6);
}

/** Whether a duration is one the protobuf rules allow at all (nanos in range, same sign). */
export function wellFormed(d: DurationInput): boolean {
  return (
    Math.abs(d.nanos) <= 999_999_999 &&
    (d.seconds === 0 || d.nanos === 0 || Math.sign(d.seconds) === Math.sign(d.nanos)) &&
    Math.abs(d.seconds) <= 315_576_000_000
  );
}

export const pageToken = fc.oneof(
  { weight: 3, arbitrary: fc.constant("") },
  {
    weight: 2,
    arbitrary: fc
      .oneof(hostileName, fc.stringMatching(/^[0-9a-z]{1,30}$/))
      .map((s) => Buffer.from(s).toString("base64url")),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }) },
  { weight: 1, arbitrary: fc.constantFrom("!!!", "====", "a".repeat(20_000), "\0") },
);

export const pageSize = fc.oneof(
  fc.constantFrom(0, 1, 2, 3, 1000, 1001, 2 ** 32 - 1),
  fc.integer({ min: 0, max: 50 }),
);

export type DigestMode = "absent" | "right" | "wrong" | "upper" | "short" | "empty" | "junk";
export type SizeMode = "absent" | "right" | "short" | "long" | "zero" | "huge";
export type Order =
  | "normal"
  | "no_header"
  | "two_headers"
  | "after_commit"
  | "no_commit"
  | "empty"
  | "commit_first"
  | "cut";

export interface EnqueueInput {
  kind: "enqueue";
  queue: string;
  metadata: Uint8Array;
  key: string | undefined;
  size: SizeMode;
  digest: DigestMode;
  data: { bytes: Uint8Array; repeat: number };
  chunkSizes: number[];
  order: Order;
  cutAt: number;
}

const bigData = fc.record({
  bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  repeat: fc.integer({ min: 1, max: 20_000 }),
});

export const enqueue: fc.Arbitrary<EnqueueInput> = fc.record({
  kind: fc.constant("enqueue" as const),
  queue: queueName,
  metadata: fc.oneof(
    { weight: 5, arbitrary: fc.uint8Array({ maxLength: 64 }) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1000, maxLength: 20_000 }) },
  ),
  key: fc.oneof(
    { weight: 5, arbitrary: fc.constant(undefined) },
    { weight: 2, arbitrary: fc.constantFrom("k1", "k2", "k3") },
    { weight: 1, arbitrary: fc.constantFrom("a".repeat(201), "x\0y", "a".repeat(200)) },
  ),
  size: fc.constantFrom<SizeMode>(
    "absent",
    "absent",
    "right",
    "right",
    "short",
    "long",
    "zero",
    "huge",
  ),
  digest: fc.constantFrom<DigestMode>(
    "absent",
    "absent",
    "right",
    "right",
    "wrong",
    "upper",
    "short",
    "empty",
    "junk",
  ),
  data: fc.oneof(
    {
      weight: 5,
      arbitrary: fc.record({ bytes: fc.uint8Array({ maxLength: 3000 }), repeat: fc.constant(1) }),
    },
    { weight: 1, arbitrary: bigData },
  ),
  chunkSizes: fc.array(fc.integer({ min: 0, max: 70_000 }), { maxLength: 6 }),
  order: fc.oneof(
    { weight: 10, arbitrary: fc.constant<Order>("normal") },
    {
      weight: 3,
      arbitrary: fc.constantFrom<Order>(
        "no_header",
        "two_headers",
        "after_commit",
        "no_commit",
        "empty",
        "commit_first",
        "cut",
      ),
    },
  ),
  cutAt: fc.nat(8),
});
