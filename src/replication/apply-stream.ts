import { createHash } from "node:crypto";
import pg from "pg";
import { LogicalReplicationService, PgoutputPlugin } from "pg-logical-replication";
import type { Logger } from "pino";
import { componentLogger } from "../common/logger.js";
import { checkNodeId, nodeTag } from "./mesh-names.js";

/**
 * The applier's view of the node's own database: a logical decoding stream (pgoutput) of
 * the journal rows that came from peers, read through a slot of the node's own.
 *
 * - Publication `geospool_apply_<tag>`: the journal's inserts whose origin is not this node
 *   (rows written by the subscriptions' apply workers). Slot `geospool_apply_<tag>` on the
 *   same database. Both are made before the node joins any peer, so every peer row that
 *   ever lands here, the bootstrap copy included, is in the stream.
 * - Flow control on; automatic and timer acknowledgement off: the caller acknowledges a
 *   commit's LSN (`acknowledge`) once the spool changes it needed are durable, and the slot
 *   re-sends everything after the last acknowledged commit when the stream is made again.
 * - Heartbeats that ask for an answer get the last acknowledged LSN.
 * - On any stream error the stream is destroyed and made again from the slot after a
 *   backoff (not re-subscribed on a broken connection).
 */
export interface ApplyStreamHandlers {
  /**
   * A peer row was inserted in the transaction being read; `raw` is the decoded tuple
   * (columns by name, as node-postgres parses them).
   */
  row(entry: string, origin: string, raw: Record<string, unknown>): void;
  /** The transaction ended at `lsn`; may return a promise to hold the stream (backpressure). */
  commit(lsn: string): void | Promise<void>;
  /** The stream failed and will be made again. */
  error(err: Error, retryInMs: number): void;
  /** Nothing received is still being applied (every commit seen is acknowledged). */
  idle(): boolean;
}

export interface ApplyNames {
  publication: string;
  slot: string;
}

/**
 * Publication and slot names. Slot names are server-wide and a logical slot belongs to one
 * database, so the slot's name also carries a digest of the database's name.
 */
export function applyNames(nodeId: string, database: string): ApplyNames {
  checkNodeId(nodeId);
  const tag = nodeTag(nodeId);
  const db = createHash("sha256").update(database).digest("hex").slice(0, 8);
  return { publication: `geospool_apply_${tag}`, slot: `geospool_apply_${tag}_${db}` };
}

/**
 * Make the apply publication and slot if missing (idempotent; safe under concurrent starts).
 * A slot PostgreSQL has invalidated (it held more WAL than max_slot_wal_keep_size, or sat
 * idle past idle_replication_slot_timeout while the node was down) can never stream again:
 * it is dropped and made anew, and `recreated` tells the caller that rows may have been
 * skipped, so it must compare the whole journal with the spool.
 */
export async function ensureApplySlot(
  pool: pg.Pool,
  nodeId: string,
): Promise<ApplyNames & { recreated: boolean }> {
  const db = await pool.query<{ db: string }>("select current_database() as db");
  const names = applyNames(nodeId, db.rows[0]?.db ?? "");
  const { publication, slot } = names;
  const found = await pool.query("select 1 from pg_publication where pubname = $1", [publication]);
  if (found.rowCount === 0) {
    await pool
      .query(
        `create publication ${pg.escapeIdentifier(publication)} for table journal` +
          ` where (origin <> ${pg.escapeLiteral(nodeId)}) with (publish = 'insert')`,
      )
      .catch(ignoreDuplicate);
  }
  const slots = await pool.query<{ lost: boolean }>(
    `select (invalidation_reason is not null or wal_status = 'lost') as lost
       from pg_replication_slots where slot_name = $1`,
    [slot],
  );
  const lost = slots.rows[0]?.lost === true;
  if (lost) await pool.query("select pg_drop_replication_slot($1)", [slot]);
  if (slots.rowCount === 0 || lost) {
    await pool
      .query("select pg_create_logical_replication_slot($1, 'pgoutput')", [slot])
      .catch(ignoreDuplicate);
  }
  return { ...names, recreated: lost };
}

function ignoreDuplicate(err: unknown): void {
  const code = (err as { code?: string }).code;
  // duplicate_object (a concurrent start made it first) or unique_violation on the catalog
  if (code === "42710" || code === "23505") return;
  throw err;
}

export interface ApplyStreamOptions {
  connectionString: string;
  names: ApplyNames;
  handlers: ApplyStreamHandlers;
  logger?: Logger;
  /** Run before every (re)connection, e.g. to remake an invalidated slot. */
  prepare?: () => Promise<void>;
  /** First retry delay after a stream error; doubles up to 5 s. Default 200 ms. */
  retryMs?: number;
}

const MAX_RETRY_MS = 5_000;

export class ApplyStream {
  private service: LogicalReplicationService | undefined;
  private plugin: ApplyPlugin | undefined;
  private stopped = false;
  private acked = "0/0";
  private retryMs: number;
  private timer: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private running: Promise<void> | undefined;

  constructor(private readonly opts: ApplyStreamOptions) {
    this.retryMs = opts.retryMs ?? 200;
    this.log = componentLogger(opts.logger, "apply-stream");
  }

  start(): void {
    this.connect();
  }

  /** The last LSN acknowledged to the server. */
  get acknowledged(): string {
    return this.acked;
  }

  /** Tell the server everything up to `lsn` is applied (it may then recycle that WAL). */
  async acknowledge(lsn: string): Promise<void> {
    if (compareLsn(lsn, this.acked) <= 0) return;
    this.acked = lsn;
    const service = this.service;
    if (service && !service.isStop()) await service.acknowledge(lsn).catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const service = this.service;
    this.service = undefined;
    if (service) {
      const acked = this.acked;
      if (acked !== "0/0") await service.acknowledge(acked).catch(() => undefined);
      await closeQuietly(service, this.plugin);
    }
    await this.running?.catch(() => undefined);
  }

  private connect(): void {
    if (this.stopped) return;
    if (this.opts.prepare === undefined) {
      this.open();
      return;
    }
    this.opts.prepare().then(
      () => this.open(),
      (err: unknown) => {
        if (this.stopped) return;
        const wait = this.retryMs;
        this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
        const e = err instanceof Error ? err : new Error(String(err));
        this.opts.handlers.error(e, wait);
        this.log.warn({ err: e, retryInMs: wait }, "apply stream not ready; retrying");
        this.timer = setTimeout(() => this.connect(), wait);
        this.timer.unref();
      },
    );
  }

  private open(): void {
    if (this.stopped) return;
    const { publication, slot } = this.opts.names;
    const service = new LogicalReplicationService(
      { connectionString: this.opts.connectionString },
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } },
    );
    this.service = service;
    const h = this.opts.handlers;
    let failed = false;
    const fail = (err: Error) => {
      if (failed || this.stopped) return;
      failed = true;
      const wait = this.retryMs;
      this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
      h.error(err, wait);
      this.log.warn({ err, retryInMs: wait }, "apply stream failed; making it again");
      void closeQuietly(service, plugin);
      if (this.service === service) this.service = undefined;
      this.timer = setTimeout(() => this.connect(), wait);
      this.timer.unref();
    };
    service.on("error", fail);
    const plugin = new ApplyPlugin({ protoVersion: 1, publicationNames: [publication] });
    this.plugin = plugin;
    service.on("heartbeat", (lsn: string, _ts: number, shouldRespond: boolean) => {
      if (!shouldRespond) return;
      // Everything the server sent before this keepalive is in hand. When all of it has been
      // handled (every message parsed has been through our data handler, and the caller has
      // nothing pending), the slot may move up to the keepalive's position: otherwise a node
      // whose peers are quiet would hold its own WAL until max_slot_wal_keep_size
      // invalidates the slot.
      const caughtUp = plugin.parsed === plugin.handled && h.idle();
      const at = caughtUp && compareLsn(lsn, this.acked) > 0 ? lsn : this.acked;
      this.acked = at;
      void service.acknowledge(at).catch(() => undefined);
    });
    service.on("data", (lsn: string, msg: PgoutputMessage) => {
      this.retryMs = this.opts.retryMs ?? 200;
      if (msg.tag === "insert" && msg.relation?.name === "journal") {
        plugin.handled++;
        const entry = msg.new?.entry;
        const origin = msg.new?.origin;
        if (typeof entry === "string" && typeof origin === "string") {
          h.row(entry, origin, msg.new as Record<string, unknown>);
        }
        return;
      }
      if (msg.tag !== "commit") {
        plugin.handled++;
        return;
      }
      const held = h.commit(msg.commitEndLsn ?? lsn);
      if (held === undefined) {
        plugin.handled++;
        return;
      }
      return held.finally(() => {
        plugin.handled++;
      });
    });
    this.running = service.subscribe(plugin, slot).then(
      () => fail(new Error("the apply stream ended")),
      (err: unknown) => fail(err instanceof Error ? err : new Error(String(err))),
    );
  }
}

interface PgoutputMessage {
  tag: string;
  relation?: { name?: string };
  new?: Record<string, unknown>;
  commitEndLsn?: string | null;
}

/**
 * pgoutput, through the plugin interface the library documents (`parse`, `start`), keeping
 * what the stream needs without reading the library's private fields: how many messages it
 * parsed (the library parses each one as it arrives, before any later keepalive is emitted;
 * the data handler counts those it has finished, so equal counts mean nothing is queued or
 * in hand) and the replication connection it streams on (given to `start`).
 */
export class ApplyPlugin extends PgoutputPlugin {
  parsed = 0;
  handled = 0;
  client: pg.Client | undefined;

  override parse(buffer: Buffer): ReturnType<PgoutputPlugin["parse"]> {
    this.parsed++;
    return super.parse(buffer);
  }

  override start(client: pg.Client, slotName: string, lastLsn: string): Promise<unknown> {
    this.client = client;
    return super.start(client, slotName, lastLsn);
  }
}

/**
 * Destroy a replication service without leaving its connection able to throw. The library
 * removes every listener from its pg client when it stops, so an error the connection emits
 * afterwards (the server's "terminating connection" FATAL when its postmaster dies, or the
 * socket closing) would be an uncaught exception: the client gets a listener of ours again.
 */
export async function closeQuietly(
  service: LogicalReplicationService,
  plugin: ApplyPlugin | undefined,
): Promise<void> {
  const client = plugin?.client;
  client?.on("error", () => undefined);
  await service.destroy().catch(() => undefined);
  client?.on("error", () => undefined);
}

/** Order of two `X/Y` LSNs. */
export function compareLsn(a: string, b: string): number {
  const x = lsnValue(a);
  const y = lsnValue(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

function lsnValue(lsn: string): bigint {
  const [hi, lo] = lsn.split("/");
  return (BigInt(`0x${hi ?? "0"}`) << 32n) + BigInt(`0x${lo ?? "0"}`);
}
