/**
 * The floor of bench/replication.ts: a bare journal row inserted on A's PostgreSQL and seen
 * in C's, through the same subscriptions the entries travel by.
 *
 * - `ProbeWriter`: `appendLocal` (src/replication/journal-store.ts) of one harmless row with
 *   A's origin: op `remove` for a never-existing entry `bench-probe-<n>` (every node's applier
 *   folds it to "absent" and, the entry being absent, does nothing).
 * - `JournalWatcher`: polls C's journal for A's new rows with one prepared statement
 *   (`origin = A and seq > last`), every `pollMs` (1 ms) after the previous poll's answer.
 *   A row counts as seen at the time the poll that returned it was sent: visibility is
 *   resolved to one poll interval. It sees every row of A's, so it also timestamps each
 *   entry's enqueue row arriving on C (a point of the breakdown).
 */
import pg from "pg";
import { makeHlc } from "../src/replication/hlc.js";
import { appendLocal } from "../src/replication/journal-store.js";
import { now } from "./replication-trace.js";

export const PROBE_PREFIX = "bench-probe-";

export interface ProbeRecord {
  n: number;
  entry: string;
  /** Before the insert. */
  t0: number;
  /** After its commit returned. */
  committed: number;
}

export class ProbeWriter {
  private n = 0;

  private constructor(
    private readonly client: pg.Client,
    private readonly origin: string,
  ) {}

  static async connect(url: string, origin: string): Promise<ProbeWriter> {
    const client = new pg.Client({ connectionString: url });
    client.on("error", () => undefined);
    await client.connect();
    return new ProbeWriter(client, origin);
  }

  async probe(): Promise<ProbeRecord> {
    const n = ++this.n;
    const entry = `${PROBE_PREFIX}${n}`;
    const t0 = now();
    await appendLocal(this.client, this.origin, [
      {
        op: "remove",
        entry,
        queue: "inbox",
        attempts: 0,
        hlc: makeHlc(Date.now()),
        metadata: null,
        dataSha256: null,
        dataSize: null,
        leaseUntil: null,
      },
    ]);
    return { n, entry, t0, committed: now() };
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }
}

export class JournalWatcher {
  /** First time each entry's row (of A's origin) was seen on C. */
  readonly seen = new Map<string, number>();
  /** Rows seen, by op (from this watcher's start). */
  readonly rowsByOp = new Map<string, number>();
  polls = 0;
  /** Its backend on C's server (the bench's CPU, not the cluster's: replication-cpu.ts). */
  backendPid = 0;
  private lastSeq = 0n;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private waiters = new Map<string, Array<(t: number) => void>>();

  private constructor(
    private readonly client: pg.Client,
    private readonly origin: string,
    private readonly pollMs: number,
  ) {}

  static async start(url: string, origin: string, pollMs = 1): Promise<JournalWatcher> {
    const client = new pg.Client({ connectionString: url });
    client.on("error", () => undefined);
    await client.connect();
    const w = new JournalWatcher(client, origin, pollMs);
    const pid = await client.query<{ pid: number }>("select pg_backend_pid() as pid");
    w.backendPid = pid.rows[0]?.pid ?? 0;
    const r = await client.query<{ max: string | null }>(
      "select max(seq) as max from journal where origin = $1",
      [origin],
    );
    w.lastSeq = BigInt(r.rows[0]?.max ?? 0);
    w.loop = w.run();
    return w;
  }

  /** Resolves with the time `entry` was seen (at once if it was). */
  when(entry: string): Promise<number> {
    const t = this.seen.get(entry);
    if (t !== undefined) return Promise.resolve(t);
    return new Promise((resolve) => {
      const list = this.waiters.get(entry) ?? [];
      list.push(resolve);
      this.waiters.set(entry, list);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop?.catch(() => undefined);
    await this.client.end().catch(() => undefined);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const sent = now();
      const { rows } = await this.client.query<{ seq: string; entry: string; op: string }>({
        name: "bench_journal_poll",
        text: "select seq, entry, op from journal where origin = $1 and seq > $2 order by seq",
        values: [this.origin, this.lastSeq.toString()],
      });
      this.polls++;
      for (const row of rows) {
        const seq = BigInt(row.seq);
        if (seq > this.lastSeq) this.lastSeq = seq;
        this.rowsByOp.set(row.op, (this.rowsByOp.get(row.op) ?? 0) + 1);
        if (this.seen.has(row.entry)) continue;
        this.seen.set(row.entry, sent);
        const ws = this.waiters.get(row.entry);
        if (ws) {
          this.waiters.delete(row.entry);
          for (const w of ws) w(sent);
        }
      }
      await new Promise((r) => setTimeout(r, this.pollMs));
    }
  }
}
