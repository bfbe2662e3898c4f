import pg from "pg";
import { redactConninfo } from "./mesh-conninfo.js";
import {
  isConnectionError,
  MeshError,
  MeshErrorCode,
  SQLSTATE,
  sqlstateOf,
} from "./mesh-errors.js";

/** A query on the peer; failures are already `MeshError`s. */
export type PeerQuery = <R extends pg.QueryResultRow = pg.QueryResultRow>(
  text: string,
  values?: unknown[],
) => Promise<pg.QueryResult<R>>;

/**
 * Run `fn` with queries on a fresh connection to the peer. A failure to connect, a lost
 * connection or a statement past `timeoutMs` is `peer_unreachable`; another failed statement
 * on the peer is `failed` (with its SQLSTATE). Errors of anything else `fn` does pass as they are.
 */
export async function withPeer<T>(
  conninfo: string,
  timeoutMs: number,
  fn: (peer: PeerQuery) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({
    connectionString: conninfo,
    connectionTimeoutMillis: timeoutMs,
    statement_timeout: timeoutMs,
    application_name: "geospool-mesh",
  });
  client.on("error", () => {});
  const where = redactConninfo(conninfo);
  try {
    try {
      await client.connect();
    } catch (err) {
      throw new MeshError(
        MeshErrorCode.PeerUnreachable,
        `could not connect to the peer at ${where}`,
        {
          cause: err,
        },
      );
    }
    const peer: PeerQuery = async (text, values) => {
      try {
        return await client.query(text, values);
      } catch (err) {
        if (isConnectionError(err) || sqlstateOf(err) === SQLSTATE.queryCanceled) {
          throw new MeshError(
            MeshErrorCode.PeerUnreachable,
            `the peer at ${where} stopped answering`,
            {
              cause: err,
            },
          );
        }
        // The MeshError keeps the SQLSTATE (`sqlstate`) for callers that expect some.
        const state = sqlstateOf(err);
        throw new MeshError(
          MeshErrorCode.Failed,
          `a statement on the peer at ${where} failed${state ? ` (SQLSTATE ${state})` : ""}: ${
            err instanceof Error ? err.message : String(err)
          }`,
          { cause: err },
        );
      }
    };
    return await fn(peer);
  } finally {
    await client.end().catch(() => {});
  }
}
