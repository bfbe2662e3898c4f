import type { Config } from "./config.js";
import { redactUrl } from "./schema.js";

export const REDACTED = "[redacted]";

/** A copy of the config safe to log: token secrets and database passwords hidden. */
export function redactConfig(config: Config): Config {
  const copy = structuredClone(config);
  for (const token of copy.auth.tokens) token.token = REDACTED;
  if (copy.postgres.url !== undefined) copy.postgres.url = redactUrl(copy.postgres.url) as string;
  for (const peer of copy.peers) {
    if (peer.postgres !== undefined) peer.postgres = redactUrl(peer.postgres) as string;
  }
  return copy;
}
