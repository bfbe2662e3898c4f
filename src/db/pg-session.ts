import type pg from "pg";

/**
 * Run `fn` on a client checked out of `pool`, and give it back. A checked-out client has no
 * pool listener, so an error between two statements (the server going away) would be an
 * uncaught exception: while out, the client has one, which marks it broken. A broken client
 * (or one `fn` calls `broken()` for) is destroyed on release rather than reused.
 */
export async function withClient<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient, broken: () => void) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let isBroken = false;
  const markBroken = () => {
    isBroken = true;
  };
  client.on("error", markBroken);
  try {
    return await fn(client, markBroken);
  } finally {
    client.off("error", markBroken);
    client.release(isBroken);
  }
}

/**
 * Run `fn` in a transaction: committed when it returns, rolled back when it throws (and the
 * error rethrown). A client whose rollback fails is not reused.
 */
export function inTransaction<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  return withClient(pool, async (client, broken) => {
    await client.query("begin");
    try {
      const result = await fn(client);
      await client.query("commit");
      return result;
    } catch (err) {
      await client.query("rollback").catch(broken);
      throw err;
    }
  });
}
