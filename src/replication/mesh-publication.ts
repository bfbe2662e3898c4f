import type pg from "pg";
import type { Logger } from "pino";
import { componentLogger } from "../common/logger.js";
import { inTransaction } from "../db/pg-session.js";
import { checkNodeId, publicationName } from "./mesh-names.js";
import { ident, literal, PUBLICATION_LOCK } from "./mesh-sql.js";

export type EnsurePublicationOutcome = {
  kind: "created" | "exists" | "repaired";
  publication: string;
};

/**
 * Make sure this node publishes its own journal rows (idempotent; safe when several
 * processes start at once). A publication of the right name that does not publish exactly the
 * journal's inserts is repaired.
 */
export async function ensurePublication(
  pool: pg.Pool,
  nodeId: string,
  opts: { logger?: Logger } = {},
): Promise<EnsurePublicationOutcome> {
  checkNodeId(nodeId);
  const publication = publicationName(nodeId);
  const logger = componentLogger(opts.logger, "mesh").child({ publication });
  const create =
    `create publication ${ident(publication)} for table journal` +
    ` where (origin = ${literal(nodeId)}) with (publish = 'insert')`;
  const outcome = await inTransaction(pool, async (client) => {
    await client.query("select pg_advisory_xact_lock($1::bigint)", [PUBLICATION_LOCK]);
    const { rows } = await client.query<PublicationRow>(
      `select p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate, p.puballtables,
              (select count(*)::int from pg_publication_rel r where r.prpubid = p.oid) as tables,
              exists (select 1 from pg_publication_rel r
                      where r.prpubid = p.oid and r.prrelid = 'journal'::regclass
                        and r.prqual is not null) as journal
       from pg_publication p where p.pubname = $1`,
      [publication],
    );
    const found = rows[0];
    if (found === undefined) {
      await client.query(create);
      return "created" as const;
    }
    const right =
      found.pubinsert &&
      !found.pubupdate &&
      !found.pubdelete &&
      !found.pubtruncate &&
      !found.puballtables &&
      found.tables === 1 &&
      found.journal;
    if (right) return "exists" as const;
    if (found.puballtables) {
      await client.query(`drop publication ${ident(publication)}`);
      await client.query(create);
    } else {
      await client.query(
        `alter publication ${ident(publication)} set table journal where (origin = ${literal(nodeId)})`,
      );
      await client.query(`alter publication ${ident(publication)} set (publish = 'insert')`);
    }
    return "repaired" as const;
  });
  if (outcome !== "exists") logger.info({ outcome }, "publication ensured");
  return { kind: outcome, publication };
}

interface PublicationRow {
  pubinsert: boolean;
  pubupdate: boolean;
  pubdelete: boolean;
  pubtruncate: boolean;
  puballtables: boolean;
  tables: number;
  journal: boolean;
}
