import type pg from "pg";

export type ClaimResult =
  | { kind: "claimed" }
  | { kind: "existing"; queue: string; name: string; completed: boolean };

/**
 * Idempotency keys in the node's PostgreSQL (table idempotency_keys, migrations 0001 and
 * 0002). A key names the entry its first enqueue made, for `windowMs`; a retry with the
 * same key finds that entry instead of making a second one.
 */
export class IdempotencyStore {
  constructor(
    private readonly pool: pg.Pool,
    readonly windowMs: number,
  ) {}

  /** Claim `key` for a new entry `name`, or learn which entry already has it. */
  async claim(key: string, queue: string, name: string): Promise<ClaimResult> {
    const inserted = await this.pool.query(
      `insert into idempotency_keys (key, queue, entry_name) values ($1, $2, $3)
       on conflict (key) do nothing returning key`,
      [key, queue, name],
    );
    if (inserted.rowCount === 1) return { kind: "claimed" };
    // An expired key is reclaimed: compare-and-set on its created_at.
    const renewed = await this.pool.query(
      `update idempotency_keys
          set queue = $2, entry_name = $3, created_at = now(), completed_at = null
        where key = $1 and created_at < now() - make_interval(secs => $4::double precision / 1000)
        returning key`,
      [key, queue, name, this.windowMs],
    );
    if (renewed.rowCount === 1) return { kind: "claimed" };
    const row = await this.pool.query<{ queue: string; entry_name: string; completed: boolean }>(
      `select queue, entry_name, completed_at is not null as completed
         from idempotency_keys where key = $1`,
      [key],
    );
    const r = row.rows[0];
    if (r === undefined) return this.claim(key, queue, name); // deleted meanwhile: try again
    return { kind: "existing", queue: r.queue, name: r.entry_name, completed: r.completed };
  }

  /**
   * Record `key` as naming `name`, a finished enqueue (a peer's entry arriving by
   * replication): one statement. A key claimed within the window (here, or by an earlier
   * peer row) is left as it is: the first claim wins, as for local enqueues; an expired one
   * is taken over, as `claim` does.
   */
  async recordCompleted(key: string, queue: string, name: string): Promise<void> {
    await this.pool.query(
      `insert into idempotency_keys (key, queue, entry_name, completed_at)
       values ($1, $2, $3, now())
       on conflict (key) do update
         set queue = excluded.queue, entry_name = excluded.entry_name,
             created_at = now(), completed_at = now()
         where idempotency_keys.created_at
               < now() - make_interval(secs => $4::double precision / 1000)`,
      [key, queue, name, this.windowMs],
    );
  }

  /** The enqueue of `name` under `key` returned: later retries are duplicates. */
  async complete(key: string, name: string): Promise<void> {
    await this.pool.query(
      "update idempotency_keys set completed_at = now() where key = $1 and entry_name = $2",
      [key, name],
    );
  }

  /** The enqueue of `name` under `key` failed: forget the claim. */
  async abandon(key: string, name: string): Promise<void> {
    await this.pool.query(
      "delete from idempotency_keys where key = $1 and entry_name = $2 and completed_at is null",
      [key, name],
    );
  }

  /** Replace a claim whose enqueue died (its name no longer exists) by a new one. */
  async takeOver(key: string, oldName: string, queue: string, newName: string): Promise<boolean> {
    const r = await this.pool.query(
      `update idempotency_keys set entry_name = $3, queue = $4, created_at = now()
        where key = $1 and entry_name = $2 and completed_at is null`,
      [key, oldName, newName, queue],
    );
    return r.rowCount === 1;
  }

  /** Drop keys older than the window. */
  async purge(): Promise<number> {
    const r = await this.pool.query(
      "delete from idempotency_keys where created_at < now() - make_interval(secs => $1::double precision / 1000)",
      [this.windowMs],
    );
    return r.rowCount ?? 0;
  }
}
