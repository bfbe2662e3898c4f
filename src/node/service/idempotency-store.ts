import type pg from "pg";
import { StatementGroup } from "./statement-group.js";

/** An idempotency key as it is kept: one principal's key on one queue. */
export interface KeyScope {
  /** Who enqueued (the token's name; "" for rows that carry none). */
  principal: string;
  queue: string;
  key: string;
}

export type ClaimResult =
  | { kind: "claimed" }
  | { kind: "existing"; name: string; completed: boolean };

const WHERE_SCOPE = "principal = $1 and queue = $2 and key = $3";

/**
 * Idempotency keys in the node's PostgreSQL (table idempotency_keys, migrations 0001, 0002
 * and 0006). A key names the entry its first enqueue made, for `windowMs`; a retry with the
 * same key, by the same principal on the same queue, finds that entry instead of making a
 * second one. The same key from another principal or for another queue is another key.
 */
export class IdempotencyStore {
  /** Claims and completions of concurrent enqueues, one statement per group. */
  private readonly claims = new StatementGroup((c: { scope: KeyScope; name: string }[]) =>
    this.claimManyNow(c),
  );
  private readonly completions = new StatementGroup((c: { scope: KeyScope; name: string }[]) =>
    this.completeManyNow(c),
  );

  constructor(
    private readonly pool: pg.Pool,
    readonly windowMs: number,
  ) {}

  /** Claim `scope` for a new entry `name`, or learn which entry already has it. */
  async claim(scope: KeyScope, name: string): Promise<ClaimResult> {
    const at = [scope.principal, scope.queue, scope.key];
    const inserted = await this.pool.query(
      `insert into idempotency_keys (principal, queue, key, entry_name) values ($1, $2, $3, $4)
       on conflict (principal, queue, key) do nothing returning key`,
      [...at, name],
    );
    if (inserted.rowCount === 1) return { kind: "claimed" };
    // An expired key is reclaimed: compare-and-set on its created_at.
    const renewed = await this.pool.query(
      `update idempotency_keys
          set entry_name = $4, created_at = now(), completed_at = null
        where ${WHERE_SCOPE}
          and created_at < now() - make_interval(secs => $5::double precision / 1000)
        returning key`,
      [...at, name, this.windowMs],
    );
    if (renewed.rowCount === 1) return { kind: "claimed" };
    const row = await this.pool.query<{ entry_name: string; completed: boolean }>(
      `select entry_name, completed_at is not null as completed
         from idempotency_keys where ${WHERE_SCOPE}`,
      at,
    );
    const r = row.rows[0];
    if (r === undefined) return this.claim(scope, name); // deleted meanwhile: try again
    return { kind: "existing", name: r.entry_name, completed: r.completed };
  }

  /**
   * Claim many keys (distinct scopes) for new entries in one statement. Returns the
   * indexes claimed; a key already held (or expired) is left to `claim`, one by one.
   */
  async claimMany(claims: readonly { scope: KeyScope; name: string }[]): Promise<Set<number>> {
    const claimed = await this.claims.submit(claims);
    const out = new Set<number>();
    claimed.forEach((ok, i) => {
      if (ok) out.add(i);
    });
    return out;
  }

  /**
   * `claimMany`'s statement, for the claims of every caller grouped together: the same
   * scope may come twice (two calls at once), and only the row inserted counts as claimed
   * (the join is on the entry's name too).
   */
  private async claimManyNow(
    claims: readonly { scope: KeyScope; name: string }[],
  ): Promise<boolean[]> {
    const r = await this.pool.query<{ i: number }>(
      `with wanted as (
         select * from unnest($1::text[], $2::text[], $3::text[], $4::text[])
           with ordinality as u(principal, queue, key, entry_name, i)
       ), inserted as (
         insert into idempotency_keys (principal, queue, key, entry_name)
         select principal, queue, key, entry_name from wanted
         -- One order for every insert of many keys (recordCompletedMany too): two of them
         -- taking the same keys never wait on each other in a cycle.
         order by principal, queue, key
         on conflict (principal, queue, key) do nothing
         returning principal, queue, key, entry_name
       )
       select w.i::int as i from wanted w
         join inserted n using (principal, queue, key, entry_name)`,
      [
        claims.map((c) => c.scope.principal),
        claims.map((c) => c.scope.queue),
        claims.map((c) => c.scope.key),
        claims.map((c) => c.name),
      ],
    );
    const claimed = claims.map(() => false);
    for (const row of r.rows) claimed[row.i - 1] = true;
    return claimed;
  }

  /**
   * `complete` for many finished enqueues, in one statement (grouped with those of other
   * calls under way, see StatementGroup).
   */
  async completeMany(done: readonly { scope: KeyScope; name: string }[]): Promise<void> {
    await this.completions.submit(done);
  }

  private async completeManyNow(done: readonly { scope: KeyScope; name: string }[]) {
    await this.pool.query(
      `update idempotency_keys k set completed_at = now()
         from unnest($1::text[], $2::text[], $3::text[], $4::text[])
           as u(principal, queue, key, entry_name)
        where k.principal = u.principal and k.queue = u.queue and k.key = u.key
          and k.entry_name = u.entry_name`,
      [
        done.map((c) => c.scope.principal),
        done.map((c) => c.scope.queue),
        done.map((c) => c.scope.key),
        done.map((c) => c.name),
      ],
    );
    return done.map(() => undefined);
  }

  /**
   * Record `scope` as naming `name`, a finished enqueue (a peer's entry arriving by
   * replication): one statement. A key claimed within the window (here, or by an earlier
   * peer row) is left as it is: the first claim wins, as for local enqueues; an expired one
   * is taken over, as `claim` does.
   */
  async recordCompleted(scope: KeyScope, name: string): Promise<void> {
    await this.pool.query(
      `insert into idempotency_keys (principal, queue, key, entry_name, completed_at)
       values ($1, $2, $3, $4, now())
       on conflict (principal, queue, key) do update
         set entry_name = excluded.entry_name, created_at = now(), completed_at = now()
         where idempotency_keys.created_at
               < now() - make_interval(secs => $5::double precision / 1000)`,
      [scope.principal, scope.queue, scope.key, name, this.windowMs],
    );
  }

  /**
   * `recordCompleted` for many keys, in one statement. A scope given twice counts once (its
   * first entry: a statement may not update one row twice).
   */
  async recordCompletedMany(keys: readonly { scope: KeyScope; name: string }[]): Promise<void> {
    const seen = new Set<string>();
    const unique = keys.filter((k) => {
      const id = JSON.stringify([k.scope.principal, k.scope.queue, k.scope.key]);
      if (seen.has(id)) return false;
      seen.add(id);
      return true;
    });
    if (unique.length === 0) return;
    await this.pool.query({
      name: "idempotency_record_completed_many",
      text: `insert into idempotency_keys (principal, queue, key, entry_name, completed_at)
             select principal, queue, key, entry_name, now()
               from unnest($1::text[], $2::text[], $3::text[], $4::text[])
                 as u(principal, queue, key, entry_name)
              order by principal, queue, key
             on conflict (principal, queue, key) do update
               set entry_name = excluded.entry_name, created_at = now(), completed_at = now()
               where idempotency_keys.created_at
                     < now() - make_interval(secs => $5::double precision / 1000)`,
      values: [
        unique.map((k) => k.scope.principal),
        unique.map((k) => k.scope.queue),
        unique.map((k) => k.scope.key),
        unique.map((k) => k.name),
        this.windowMs,
      ],
    });
  }

  /**
   * The enqueue of `name` under `scope` returned: later retries are duplicates (one
   * `completeMany`, grouped with the completions under way).
   */
  async complete(scope: KeyScope, name: string): Promise<void> {
    await this.completeMany([{ scope, name }]);
  }

  /** The enqueue of `name` under `scope` failed: forget the claim. */
  async abandon(scope: KeyScope, name: string): Promise<void> {
    await this.pool.query(
      `delete from idempotency_keys
        where ${WHERE_SCOPE} and entry_name = $4 and completed_at is null`,
      [scope.principal, scope.queue, scope.key, name],
    );
  }

  /**
   * Whether `scope` is claimed for `name`, not completed, and claimed less than `ms` ago:
   * an enqueue that may still be writing its entry (see IdempotentEnqueue.claimKey).
   */
  async claimedWithin(scope: KeyScope, name: string, ms: number): Promise<boolean> {
    const r = await this.pool.query(
      `select 1 from idempotency_keys
        where ${WHERE_SCOPE} and entry_name = $4 and completed_at is null
          and created_at > now() - make_interval(secs => $5::double precision / 1000)`,
      [scope.principal, scope.queue, scope.key, name, ms],
    );
    return (r.rowCount ?? 0) > 0;
  }

  /** Replace a claim whose enqueue died (its name no longer exists) by a new one. */
  async takeOver(scope: KeyScope, oldName: string, newName: string): Promise<boolean> {
    const r = await this.pool.query(
      `update idempotency_keys set entry_name = $5, created_at = now()
        where ${WHERE_SCOPE} and entry_name = $4 and completed_at is null`,
      [scope.principal, scope.queue, scope.key, oldName, newName],
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
