import { createHash } from "node:crypto";
import { MeshError, MeshErrorCode } from "./mesh-errors.js";

/** Seconds libpq waits for a peer to accept a connection, unless the URL says otherwise. */
export const DEFAULT_CONNECT_TIMEOUT_S = 10;

/**
 * A peer's connection string as the subscription stores it: a `postgres://` or
 * `postgresql://` URL (the form both libpq and node-postgres read), with `connect_timeout`
 * added when absent so that an apply worker, or a DROP SUBSCRIPTION, facing a silent peer gives
 * up after seconds instead of the kernel's TCP timeout.
 */
export function normalizeConninfo(conninfo: string): string {
  let url: URL;
  try {
    url = new URL(conninfo);
  } catch (cause) {
    throw new MeshError(
      MeshErrorCode.InvalidConninfo,
      "a peer's conninfo must be a postgresql:// URL",
      { cause },
    );
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new MeshError(
      MeshErrorCode.InvalidConninfo,
      `a peer's conninfo must be a postgresql:// URL, not ${url.protocol}//`,
    );
  }
  if (!url.searchParams.has("connect_timeout")) {
    url.searchParams.set("connect_timeout", String(DEFAULT_CONNECT_TIMEOUT_S));
  }
  return url.toString();
}

/** The URL without its password, for logs, status and the `node_peers` table. */
export function redactConninfo(conninfo: string): string {
  try {
    const url = new URL(conninfo);
    if (url.password !== "") url.password = "redacted";
    for (const key of [...url.searchParams.keys()]) {
      if (key.toLowerCase() === "password") url.searchParams.set(key, "redacted");
    }
    return url.toString();
  } catch {
    return "(unparseable conninfo)";
  }
}

/** Detects a changed connection string without storing its secret. */
export function conninfoDigest(conninfo: string): string {
  return createHash("sha256").update(conninfo).digest("hex");
}
