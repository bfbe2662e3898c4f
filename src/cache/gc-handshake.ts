import type pg from "pg";
import type { Spool } from "../spool/index.js";
import { removeSpoolEntry } from "./cache-roots.js";
import {
  type Acknowledgement,
  type Condemnation,
  type GcMark,
  type GcMarkCodec,
  listGcMarks,
} from "./gc-marks.js";

/**
 * The GC handshake between nodes (docs/architecture.md, "Garbage collection"): before a
 * node removes anything, every node says which of the condemned paths it still needs, and
 * stops accepting uploads that would need the others.
 *
 * 1. The collector writes a condemnation (gc-marks.ts) listing the entries it means to
 *    remove; it replicates like any entry.
 * 2. Every node that holds it (the collector too) acknowledges it once: the condemned hash
 *    parts live in its own view (`liveAmong`: its roots, its uploads younger than the
 *    grace, their closures) or referenced by an upload it is accepting at that moment are
 *    revived. From then on, while the condemnation is in its queue, it refuses (`admit`) an
 *    upload that references or is a condemned path it did not revive. Uploads that began
 *    before count as revivals: `admit` registers every upload's paths until its commit
 *    is indexed, and an acknowledgement counts those registered while it was worked out.
 * 3. The collector waits for an acknowledgement from itself and every configured peer
 *    (none: it withdraws the condemnation and removes nothing), walks again with the
 *    revived paths as roots, and removes the condemned entries still unreachable.
 * 4. It removes the condemnation only once its journal holds the remove row of every entry
 *    it removed, so a node that no longer holds the condemnation has those rows in its own
 *    journal (rows of one origin arrive in order). Each node then removes its own
 *    acknowledgement. A condemnation left by a collector that stopped is removed by its
 *    next run, once the same holds (`resolveLeftovers`).
 */

export interface GcHandshakeOptions<M, Q extends string> {
  spool: Spool<M, Q>;
  /** The GC's queue (the roots queue): marks live beside the roots. */
  queue: Q;
  codec: GcMarkCodec<M>;
  nodeId: string;
  /** The configured peers' ids: each must acknowledge, and only their marks count. */
  peers: readonly string[];
  /** The node's PostgreSQL (the journal: have removals been journaled?). */
  pool: pg.Pool;
  /**
   * Which of `among` are live on this node, with `extraRoots` counted as roots (the node
   * runs `liveAmong` over its index with its roots and grace). Called after `settle`.
   */
  liveAmong(among: readonly string[], extraRoots: readonly string[]): Promise<string[]>;
  /** Bring the node's index up to date with what it has accepted (throws when it cannot). */
  settle(): Promise<void>;
  /** Failures of the background work (the next scan tries again). */
  onError?(err: unknown, what: string): void;
  /** How often marks are looked for besides `poke` (ms). Default 1000. */
  pollMs?: number;
}

export type Admission =
  | { readonly kind: "ok"; release(): void }
  | { readonly kind: "refused"; readonly hashPart: string; readonly message: string };

export type AckOutcome =
  | { readonly kind: "acknowledged"; readonly revived: ReadonlySet<string> }
  | { readonly kind: "missing"; readonly nodes: readonly string[] };

interface Held {
  readonly mark: Condemnation;
  readonly hashParts: ReadonlySet<string>;
  /** This node's acknowledgement: what it revived. */
  acked?: ReadonlySet<string>;
  /** Paths of uploads admitted while the acknowledgement is worked out. */
  admitting?: Set<string>;
  /** The acknowledgement is in the queue. */
  written?: boolean;
}

export class GcHandshake<M, Q extends string> {
  /** Condemnations this node holds and that count (by self or a configured peer). */
  private readonly held = new Map<string, Held>();
  /** Paths of uploads admitted and not yet indexed, with how many each. */
  private readonly inFlight = new Map<string, number>();
  private readonly known = new Map<string, GcMark | null>();
  private marks = new Map<string, GcMark>();
  private readonly waiters = new Set<() => void>();
  private scanning: Promise<void> = Promise.resolve();
  private queued: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: GcHandshakeOptions<M, Q>) {}

  /** Look for marks now and every `pollMs`. */
  start(): void {
    this.poke();
    this.timer = setInterval(() => this.poke(), this.options.pollMs ?? 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    for (const w of this.waiters) w();
    await this.scanning.catch(() => undefined);
  }

  /** Something in the GC's queue may have changed: look again (coalesced). */
  poke(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.queued !== undefined) return this.queued;
    const next = this.scanning
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        return this.scan();
      });
    this.queued = next;
    this.scanning = next;
    next.catch((err: unknown) => this.options.onError?.(err, "scan"));
    return next;
  }

  /**
   * May an upload of `hashParts` (its own and its references) be accepted? Refused when one
   * is condemned by a condemnation this node acknowledged without reviving it; otherwise
   * the paths count as in use until `release` (after the upload is indexed, or failed).
   */
  admit(hashParts: readonly string[]): Admission {
    const wanted = [...new Set(hashParts)];
    for (const [name, h] of this.held) {
      if (h.acked === undefined) continue;
      for (const p of wanted) {
        if (h.hashParts.has(p) && !h.acked.has(p)) {
          return {
            kind: "refused",
            hashPart: p,
            message: `${p} is being removed by a cache GC on node ${h.mark.by} (${name}); upload the closure again once that GC is over`,
          };
        }
      }
    }
    for (const h of this.held.values()) {
      if (h.admitting === undefined) continue;
      for (const p of wanted) if (h.hashParts.has(p)) h.admitting.add(p);
    }
    for (const p of wanted) this.inFlight.set(p, (this.inFlight.get(p) ?? 0) + 1);
    let released = false;
    return {
      kind: "ok",
      release: () => {
        if (released) return;
        released = true;
        for (const p of wanted) {
          const n = (this.inFlight.get(p) ?? 1) - 1;
          if (n > 0) this.inFlight.set(p, n);
          else this.inFlight.delete(p);
        }
      },
    };
  }

  /** Write a condemnation of `entries` ([entry, hashPart]); returns its entry name. */
  async condemn(entries: readonly (readonly [string, string])[], at: number): Promise<string> {
    const mark: Condemnation = { v: 1, kind: "condemn", by: this.options.nodeId, at, entries };
    const e = await this.options.spool.enqueue(
      this.options.queue,
      this.options.codec.wrap(mark),
      Buffer.alloc(0),
    );
    void this.poke(); // this node acknowledges it too, in the background
    return e.name;
  }

  /**
   * Wait until this node and every configured peer acknowledged condemnation `name`, at
   * most `timeoutMs`; the union of what they revived, or who is missing.
   */
  async awaitAcks(name: string, timeoutMs: number): Promise<AckOutcome> {
    const nodes = [this.options.nodeId, ...this.options.peers];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const acks = new Map<string, Acknowledgement>();
      for (const m of this.marks.values()) {
        if (m.kind === "ack" && m.condemn === name && nodes.includes(m.by)) acks.set(m.by, m);
      }
      const missing = nodes.filter((n) => !acks.has(n));
      if (missing.length === 0) {
        return {
          kind: "acknowledged",
          revived: new Set([...acks.values()].flatMap((a) => a.revived)),
        };
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.stopped) return { kind: "missing", nodes: missing };
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          this.waiters.delete(done);
          resolve();
        };
        const t = setTimeout(done, Math.min(left, 1000));
        this.waiters.add(done);
      });
    }
  }

  /**
   * End the round of condemnation `name` once every entry in `removed` has its remove row in
   * this node's journal (at most `timeoutMs`): true when the condemnation was removed. When
   * not, it stays (nodes go on refusing its paths) until `resolveLeftovers` removes it.
   */
  async resolve(name: string, removed: readonly string[], timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while ((await this.unjournaled(removed)).length > 0) {
      if (Date.now() > deadline || this.stopped) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
    const gone = await removeSpoolEntry(this.options.spool, this.options.queue, name);
    await this.poke();
    return gone;
  }

  /**
   * Remove this node's condemnations left by an earlier run (a crash, a resolve that timed
   * out): each once every entry it lists is still in the cache queue or has its remove row
   * journaled. `cacheHolds` says whether the cache queue still holds an entry.
   */
  async resolveLeftovers(cacheHolds: (entry: string) => Promise<boolean>): Promise<number> {
    await this.poke();
    let n = 0;
    for (const [name, m] of this.marks) {
      if (m.kind !== "condemn" || m.by !== this.options.nodeId) continue;
      const absent: string[] = [];
      for (const [entry] of m.entries) if (!(await cacheHolds(entry))) absent.push(entry);
      if ((await this.unjournaled(absent)).length > 0) continue;
      if (await removeSpoolEntry(this.options.spool, this.options.queue, name)) n++;
    }
    if (n > 0) await this.poke();
    return n;
  }

  /** The entries of `entries` with no remove row in this node's journal. */
  private async unjournaled(entries: readonly string[]): Promise<string[]> {
    if (entries.length === 0) return [];
    const { rows } = await this.options.pool.query<{ entry: string }>(
      `select e as entry from unnest($1::text[]) as e
        where not exists (select 1 from journal j where j.entry = e and j.op = 'remove')`,
      [entries],
    );
    return rows.map((r) => r.entry);
  }

  private async scan(): Promise<void> {
    const o = this.options;
    this.marks = await listGcMarks(o.spool, o.queue, o.codec, this.known);
    const counts = new Set([o.nodeId, ...o.peers]);
    let wrote = false;
    const mine = new Map<string, { entry: string; ack: Acknowledgement }>();
    for (const [entry, m] of this.marks) {
      if (m.kind === "ack" && m.by === o.nodeId) mine.set(m.condemn, { entry, ack: m });
    }
    // Condemnations gone: stop refusing their paths; drop this node's acknowledgements.
    for (const name of [...this.held.keys()]) if (!this.marks.has(name)) this.held.delete(name);
    for (const [condemn, { entry }] of mine) {
      if (!this.marks.has(condemn)) await removeSpoolEntry(o.spool, o.queue, entry);
    }
    for (const [name, m] of this.marks) {
      if (m.kind !== "condemn" || !counts.has(m.by)) continue;
      let h = this.held.get(name);
      if (h === undefined) {
        h = { mark: m, hashParts: new Set(m.entries.map(([, hp]) => hp)) };
        const ack = mine.get(name)?.ack;
        // Acknowledged by an earlier process of this node: refuse again as it said.
        if (ack !== undefined) {
          h.acked = new Set(ack.revived);
          h.written = true;
        }
        this.held.set(name, h);
      }
      if (h.written !== true) {
        await this.acknowledge(name, h);
        wrote = true;
      }
    }
    for (const w of [...this.waiters]) w();
    // The acknowledgements just written are in the queue: the next scan lists them.
    if (wrote) void this.poke();
  }

  /** Work out what this node revives of condemnation `name`, then write the acknowledgement. */
  private async acknowledge(name: string, h: Held): Promise<void> {
    const o = this.options;
    if (h.acked === undefined) {
      const admitting = new Set([...this.inFlight.keys()].filter((p) => h.hashParts.has(p)));
      h.admitting = admitting;
      let revived: Set<string> | undefined;
      try {
        await o.settle();
        revived = new Set(await o.liveAmong([...h.hashParts], [...admitting]));
      } finally {
        h.admitting = undefined;
        // Set with the result, no await between: an upload admitted from now on sees the
        // acknowledgement and is refused if it needs a condemned path it did not revive.
        if (revived !== undefined) {
          for (const p of admitting) revived.add(p);
          h.acked = revived;
        }
      }
    }
    const ack: Acknowledgement = {
      v: 1,
      kind: "ack",
      condemn: name,
      by: o.nodeId,
      revived: [...(h.acked ?? [])].sort(),
    };
    await o.spool.enqueue(o.queue, o.codec.wrap(ack), Buffer.alloc(0));
    h.written = true;
  }
}
