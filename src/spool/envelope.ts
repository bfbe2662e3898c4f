/**
 * The on-disk format of a metadata file: one header line of JSON with what the spool
 * itself tracks about the entry, then the bytes of the user's encoded metadata.
 *
 *     {"v":1,"attempts":2}\n<metadata bytes>
 *
 * `attempts` counts deliveries that ended without a save or remove (an expired lease or an
 * explicit release); it survives saves, so a poison entry reaches the dead-letter queue.
 * @internal
 */
export interface Envelope {
  attempts: number;
}

const NEWLINE = 0x0a;

/** @internal */
export function encodeEnvelope(env: Envelope, payload: Uint8Array): Buffer {
  const header = Buffer.from(`${JSON.stringify({ v: 1, attempts: env.attempts })}\n`);
  return Buffer.concat([header, payload]);
}

/** @internal */
export type DecodedEnvelope =
  | { ok: true; envelope: Envelope; payload: Buffer }
  | { ok: false; problem: string };

/** @internal */
export function decodeEnvelope(bytes: Buffer): DecodedEnvelope {
  const nl = bytes.indexOf(NEWLINE);
  if (nl < 0) return { ok: false, problem: "no header line" };
  let header: unknown;
  try {
    header = JSON.parse(bytes.subarray(0, nl).toString("utf8"));
  } catch {
    return { ok: false, problem: "header is not JSON" };
  }
  if (typeof header !== "object" || header === null) {
    return { ok: false, problem: "header is not an object" };
  }
  const h = header as { v?: unknown; attempts?: unknown };
  if (h.v !== 1) return { ok: false, problem: `unknown header version ${String(h.v)}` };
  if (typeof h.attempts !== "number" || !Number.isInteger(h.attempts) || h.attempts < 0) {
    return { ok: false, problem: "header attempts is not a non-negative integer" };
  }
  return { ok: true, envelope: { attempts: h.attempts }, payload: bytes.subarray(nl + 1) };
}
