import { once } from "node:events";
import type { EntryInfo, Lease } from "../../client/geospool-client.js";
import { usageError } from "../cli-error.js";
import { requireEndpoint } from "./settings.js";

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** Metadata as JSON fields: `metadata` when it is UTF-8 text, else `metadataBase64`. */
export function metadataJson(metadata: Buffer): { metadata: string } | { metadataBase64: string } {
  try {
    return { metadata: UTF8.decode(metadata) };
  } catch {
    return { metadataBase64: metadata.toString("base64") };
  }
}

/** Metadata for people: the text, or `base64:...`. */
export function metadataText(metadata: Buffer): string {
  const m = metadataJson(metadata);
  return "metadata" in m ? m.metadata : `base64:${m.metadataBase64}`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** An entry as every client command prints it with --json. */
export function entryJson(e: EntryInfo) {
  return {
    name: e.name,
    queue: e.queue,
    ...metadataJson(e.metadata),
    attempts: e.attempts,
    dataSize: e.dataSize,
    dataSha256: e.dataSha256,
    enqueuedAt: iso(e.enqueuedAt),
    ...(e.leaseUntil !== undefined ? { leaseUntil: iso(e.leaseUntil) } : {}),
  };
}

/**
 * What `dequeue --json` prints: the entry and everything that identifies the lease (queue,
 * name, leaseToken, endpoint), so the whole line can be given to `complete`, `release` or
 * `extend` as --lease-json.
 */
export function leaseJson(lease: Lease) {
  return { ...entryJson(lease.entry), leaseToken: lease.token, endpoint: lease.endpoint };
}

/** `key: value` lines under the bare name, for people and `head -1`. */
export function describe(name: string, fields: Record<string, unknown>): string[] {
  const lines = [name];
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    lines.push(`${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`);
  }
  return lines;
}

/** What identifies a lease: enough to build the client's `Lease` for a call on it. */
export interface LeaseRef {
  queue: string;
  name: string;
  token: string;
  endpoint: string;
}

/** The `Lease` GeospoolClient's lease calls take (they use only these fields). */
export function toLease(ref: LeaseRef): Lease {
  return {
    entry: {
      name: ref.name,
      queue: ref.queue,
      metadata: Buffer.alloc(0),
      attempts: 0,
      dataSize: 0,
      dataSha256: "",
      enqueuedAt: 0,
    },
    token: ref.token,
    endpoint: ref.endpoint,
  };
}

/** A lease from `dequeue --json` output (--lease-json); a usage error names what is wrong. */
export function parseLeaseJson(text: string): LeaseRef {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw usageError(`--lease-json: not valid JSON (${why})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw usageError("--lease-json: expected the JSON object printed by 'dequeue --json'");
  }
  const v = value as Record<string, unknown>;
  const field = (key: string): string => {
    const f = v[key];
    if (typeof f !== "string" || f === "") {
      throw usageError(`--lease-json: missing ${key} (give the output of 'dequeue --json')`);
    }
    return f;
  };
  return {
    queue: field("queue"),
    name: field("name"),
    token: field("leaseToken"),
    endpoint: requireEndpoint("--lease-json: endpoint", field("endpoint")),
  };
}

/** Raw bytes to a stream, waiting for it to drain. */
export async function writeBytes(stream: NodeJS.WritableStream, bytes: Buffer): Promise<void> {
  if (bytes.length === 0) return;
  if (!stream.write(bytes)) await once(stream, "drain");
}
