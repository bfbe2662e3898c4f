import type { geospool } from "../../proto/generated/spool.js";
import type { EntryInfo } from "../entry-info.js";

type DurationLike = { seconds?: number | null; nanos?: number | null } | null | undefined;

/**
 * google.protobuf.Duration → ms (undefined when absent). Zero and negative durations are
 * returned as they are: each field says what they mean, or refuses them.
 */
export function durationMs(d: DurationLike): number | undefined {
  if (!d) return undefined;
  return Number(d.seconds ?? 0) * 1000 + Math.floor(Number(d.nanos ?? 0) / 1e6);
}

export function toDuration(ms: number): { seconds: number; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

export function toTimestamp(ms: number): { seconds: number; nanos: number } {
  return toDuration(ms);
}

export function timestampMs(t: DurationLike): number | undefined {
  if (!t) return undefined;
  return Number(t.seconds ?? 0) * 1000 + Math.floor(Number(t.nanos ?? 0) / 1e6);
}

export function toEntry(e: EntryInfo): geospool.v1.Entry.$Properties {
  const out: geospool.v1.Entry.$Properties = {
    name: e.name,
    queue: e.queue,
    metadata: e.metadata,
    attempts: e.attempts,
    dataSize: e.dataSize,
    dataSha256: e.dataSha256,
    enqueuedAt: toTimestamp(e.enqueuedAt),
  };
  if (e.leaseUntil !== undefined) out.leaseUntil = toTimestamp(e.leaseUntil);
  return out;
}
