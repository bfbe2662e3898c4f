import pg from "pg";
import { MeshError, MeshErrorCode } from "../../../replication/mesh.js";
import { CliError, usageError } from "../cli-error.js";
import { ExitCode } from "../exit-codes.js";

/**
 * What `geospool cluster join|leave` need: a connection to the node's own database (the
 * subscriptions live there) and the node's id, as the database recorded it at its first start.
 */

export const DATABASE_OPTIONS_HELP = `  --postgres-url URL   this node's database (default: $GEOSPOOL_POSTGRES__URL, the variable
                       the node reads); prefer the variable: other local users can see
                       command lines
  --node-id ID         this node's id; default: the one its database recorded (they must
                       agree)`;

/** The SQLSTATE of a relation that does not exist. */
const UNDEFINED_TABLE = "42P01";

export interface NodeDatabase {
  pool: pg.Pool;
  nodeId: string;
}

/** Connect to the node's database, find its node id, run `fn`, disconnect. */
export async function withNodeDatabase<T>(
  opts: { url: string | undefined; nodeId: string | undefined; connectTimeoutMs: number },
  fn: (db: NodeDatabase) => Promise<T>,
): Promise<T> {
  const url = opts.url ?? process.env.GEOSPOOL_POSTGRES__URL;
  if (url === undefined || url === "") {
    throw usageError("no database: give --postgres-url URL or set GEOSPOOL_POSTGRES__URL");
  }
  const pool = new pg.Pool({
    connectionString: url,
    max: 2,
    connectionTimeoutMillis: opts.connectTimeoutMs,
    application_name: "geospool-cluster",
  });
  pool.on("error", () => {
    // An idle connection dropped; the next query reports it.
  });
  try {
    let recorded: string | undefined;
    try {
      const { rows } = await pool.query<{ node_id: string }>("select node_id from node_info");
      recorded = rows[0]?.node_id;
    } catch (err) {
      if ((err as { code?: unknown }).code === UNDEFINED_TABLE) recorded = undefined;
      else throw databaseError(err) ?? err;
    }
    if (recorded === undefined) {
      throw new CliError(
        "not_a_node_database",
        "the database has no geospool node yet: start the node once (it migrates its database and records its id)",
        ExitCode.Failure,
      );
    }
    if (opts.nodeId !== undefined && opts.nodeId !== recorded) {
      throw usageError(
        `--node-id ${JSON.stringify(opts.nodeId)}: the database belongs to node ${JSON.stringify(recorded)}`,
      );
    }
    return await fn({ pool, nodeId: recorded });
  } finally {
    await pool.end().catch(() => undefined);
  }
}

/** A failure of the node's own database (a SQLSTATE or a network errno) as a CliError. */
function databaseError(err: unknown): CliError | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return undefined;
  const message = err instanceof Error ? err.message : String(err);
  const sqlstate = /^[0-9A-Z]{5}$/.test(code);
  if (!sqlstate && !/^E[A-Z]+$/.test(code)) return undefined;
  if (!sqlstate || code.startsWith("08") || code.startsWith("57P0")) {
    return new CliError(
      "database_unreachable",
      `cannot reach this node's database: ${message}`,
      ExitCode.Unavailable,
      { cause: err },
    );
  }
  return new CliError("database_error", `this node's database: ${message}`, ExitCode.Failure, {
    cause: err,
  });
}

/** The one place where mesh failures become `geospool cluster` exit codes. */
export function toClusterCliError(err: unknown): unknown {
  if (err instanceof CliError) return err;
  if (err instanceof MeshError) {
    const exit =
      err.code === MeshErrorCode.InvalidNodeId || err.code === MeshErrorCode.InvalidConninfo
        ? ExitCode.Usage
        : err.code === MeshErrorCode.PeerUnreachable
          ? ExitCode.Unavailable
          : ExitCode.Failure;
    return new CliError(err.code, err.message, exit, { cause: err });
  }
  return databaseError(err) ?? err;
}
