import pg from "pg";
import { withClient } from "../db/pg-session.js";

/** Advisory lock keys: "geospool" as a bigint (the migrations' key) plus 1 and 2. */
export const PUBLICATION_LOCK = "7450224240596160365";
export const MEMBERSHIP_LOCK = "7450224240596160366";

/** Run `fn` on one connection holding the session advisory lock `key`. */
export async function withSessionLock<T>(
  pool: pg.Pool,
  key: string,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  return withClient(pool, async (client, broken) => {
    await client.query("select pg_advisory_lock($1::bigint)", [key]);
    try {
      return await fn(client);
    } finally {
      // On failure the session ends with the connection, and its lock with it.
      await client.query("select pg_advisory_unlock($1::bigint)", [key]).catch(broken);
    }
  });
}

export function ident(name: string): string {
  return pg.escapeIdentifier(name);
}

export function literal(value: string): string {
  return pg.escapeLiteral(value);
}
