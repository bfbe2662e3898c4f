import type pg from "pg";
import { type Spool, SpoolError, SpoolErrorCode } from "../spool/index.js";
import { type RootStore, removeSpoolEntry, rootLive } from "./cache-roots.js";
import { checkGcFence, type GcFence } from "./gc-fence.js";
import type { GcHandshake } from "./gc-handshake.js";
import { walkCacheGraph } from "./gc-walk.js";
import { stampOfMs } from "./upload-stamp.js";

/**
 * The cache's garbage collection on one node (docs/architecture.md, "Garbage collection"):
 * the roots from their replicated queue, the reachability walk over the node's index
 * (gc-walk.ts), then each unreachable entry older than the grace period removed through the
 * spool (checked out, then removed: the tailer journals the remove, so it replicates and is
 * final on every node), its nar with it; the index follows through `onRemoved`. Expired roots
 * are removed the same way. Nothing is removed unless the fence (gc-fence.ts) says this
 * node's view of the cluster is recent enough. One run at a time per `CacheGc`.
 */

export interface CacheGcOptions<M, Q extends string> {
  spool: Spool<M, Q>;
  /** The cache's queue. */
  queue: Q;
  roots: RootStore<M, Q>;
  /** The node's PostgreSQL with the cache's index. */
  pool: pg.Pool;
  /** Entries younger than this (ms, by their upload stamp) are live, with their closures. */
  graceMs: number;
  /** The configured peers' ids (for the fence). */
  peers: readonly string[];
  maxPeerSilenceMs: number;
  peerSettleMs: number;
  /** The data size an entry's metadata records. */
  sizeOf(metadata: M): number;
  /** An entry was removed: the index follows. */
  onRemoved?(entry: string): Promise<void>;
  /** Each run's report, and each run that failed (for metrics and logs). */
  onRun?(report: GcReport): void;
  onFailed?(err: unknown, dryRun: boolean): void;
  clock?: () => number;
  /** Entries removed between two walks (default: 500, or a twentieth of the garbage). */
  removeAtOnce?: number;
  /**
   * The handshake with the other nodes (gc-handshake.ts): each batch is condemned, and
   * removed only once every node acknowledged it, less what they revived. Without it (a
   * node alone, tests) removals follow the walk and the fence alone.
   */
  handshake?: Pick<GcHandshake<M, Q>, "condemn" | "awaitAcks" | "resolve" | "resolveLeftovers">;
  /** How long a batch waits for every node's acknowledgement (ms). Default 60 s. */
  ackTimeoutMs?: number;
}

export interface GcRemoved {
  readonly entry: string;
  readonly hashPart: string;
  readonly url: string;
  readonly bytes: number;
}

export interface GcReport {
  readonly dryRun: boolean;
  /** ms since the epoch the run started. */
  readonly at: number;
  readonly durationMs: number;
  /** Entries stamped before this (ms) and unreachable are garbage. */
  readonly cutoff: number;
  /** Why nothing was removed, when the fence was not clear (a dry run reports it too). */
  readonly blocked?: string;
  readonly roots: { readonly live: number; readonly expired: number };
  readonly liveHashParts: number;
  readonly kept: number;
  /** Removed (or, in a dry run, to remove). */
  readonly removed: readonly GcRemoved[];
  readonly bytesFreed: number;
  /** Expired root entries removed (or to remove). */
  readonly rootsRemoved: number;
  /** Live hash parts referenced but held by no entry on this node. */
  readonly missing: readonly string[];
  /** Condemned hash parts that a node's acknowledgement revived (kept). */
  readonly revived: readonly string[];
}

/** How long a batch's condemnation waits for its removals to be journaled (ms). */
const RESOLVE_TIMEOUT_MS = 60_000;

/** Entries removed between two walks, at least. */
const REMOVE_AT_ONCE = 500;

function pick(g: { entry: string; hashPart: string; url: string }) {
  return { entry: g.entry, hashPart: g.hashPart, url: g.url };
}

export class CacheGc<M, Q extends string> {
  private running: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: CacheGcOptions<M, Q>) {}

  get graceMs(): number {
    return this.options.graceMs;
  }

  /** One GC run (after any run under way); a dry run changes nothing. */
  run(opts: { dryRun?: boolean } = {}): Promise<GcReport> {
    const dryRun = opts.dryRun ?? false;
    const next = this.running
      .catch(() => undefined)
      .then(() => this.runNow(dryRun))
      .then(
        (report) => {
          this.options.onRun?.(report);
          return report;
        },
        (err: unknown) => {
          this.options.onFailed?.(err, dryRun);
          throw err;
        },
      );
    this.running = next;
    return next;
  }

  private async runNow(dryRun: boolean): Promise<GcReport> {
    const o = this.options;
    const clock = o.clock ?? Date.now;
    const at = clock();
    const cutoffMs = at - o.graceMs;
    const cutoff = stampOfMs(cutoffMs);
    const roots = await o.roots.list();
    const live = roots.filter((r) => rootLive(r.root, at));
    const expired = roots.filter((r) => !rootLive(r.root, at));
    const fence: GcFence = await checkGcFence(o.pool, {
      peers: o.peers,
      queue: o.queue,
      cutoff,
      maxSilenceMs: o.maxPeerSilenceMs,
      settleMs: o.peerSettleMs,
    });
    const walkNow = () =>
      walkCacheGraph(o.pool, { roots: [...new Set(live.map((r) => r.root.hashPart))], cutoff });
    let walk = await walkNow();
    const act = !dryRun && fence.kind === "clear";
    let blocked = fence.kind === "blocked" ? fence.reason : undefined;
    const revived = new Set<string>();
    const removed: GcRemoved[] = [];
    if (dryRun) {
      for (const g of walk.garbage) {
        const bytes = await this.sizeOf(g.entry);
        if (bytes !== undefined) removed.push({ ...pick(g), bytes });
      }
    } else if (act) {
      // In batches, walking again before each: an entry that became live meanwhile (a local
      // upload referencing it) is kept. Entries that could not be taken are not tried again.
      // Batches grow with the garbage, so a large first GC walks about 20 times, not once
      // per 500 entries.
      const skipped = new Set<string>();
      const atOnce =
        o.removeAtOnce ?? Math.max(REMOVE_AT_ONCE, Math.ceil(walk.garbage.length / 20));
      const hs = o.handshake;
      if (hs !== undefined) await hs.resolveLeftovers((e) => this.holds(e));
      for (;;) {
        let batch = walk.garbage.filter((g) => !skipped.has(g.entry)).slice(0, atOnce);
        if (batch.length === 0) break;
        let condemned: string | undefined;
        if (hs !== undefined) {
          // Every node says which of these it still needs, and refuses uploads needing the
          // rest until the round is over; then walk again with what they revived as roots.
          condemned = await hs.condemn(
            batch.map((g) => [g.entry, g.hashPart] as const),
            clock(),
          );
          const acks = await hs.awaitAcks(condemned, o.ackTimeoutMs ?? 60_000);
          if (acks.kind === "missing") {
            await hs.resolve(condemned, [], RESOLVE_TIMEOUT_MS);
            blocked = `no acknowledgement of the GC's condemnation from ${acks.nodes.map((n) => JSON.stringify(n)).join(", ")} within ${Math.round((o.ackTimeoutMs ?? 60_000) / 1000)} s`;
            break;
          }
          for (const h of acks.revived) revived.add(h);
          const again = await walkCacheGraph(o.pool, {
            roots: [...new Set([...live.map((r) => r.root.hashPart), ...revived])],
            cutoff,
          });
          const still = new Set(again.garbage.map((g) => g.entry));
          for (const g of batch) if (!still.has(g.entry)) skipped.add(g.entry);
          batch = batch.filter((g) => still.has(g.entry));
        }
        const gone: string[] = [];
        for (const g of batch) {
          const bytes = await this.sizeOf(g.entry);
          if (bytes === undefined || !(await removeSpoolEntry(o.spool, o.queue, g.entry))) {
            skipped.add(g.entry);
            continue;
          }
          await o.onRemoved?.(g.entry);
          removed.push({ ...pick(g), bytes });
          gone.push(g.entry);
        }
        if (hs !== undefined && condemned !== undefined) {
          await hs.resolve(condemned, gone, RESOLVE_TIMEOUT_MS);
        }
        walk = await walkNow();
      }
    }
    const listing = act || dryRun;
    let rootsRemoved = 0;
    for (const r of listing ? expired : []) {
      if (!act || (await o.roots.removeEntry(r.entry))) rootsRemoved++;
    }
    return {
      dryRun,
      at,
      durationMs: clock() - at,
      cutoff: cutoffMs,
      ...(blocked === undefined ? {} : { blocked }),
      roots: { live: live.length, expired: expired.length },
      liveHashParts: walk.liveHashParts,
      kept: walk.kept,
      removed,
      bytesFreed: removed.reduce((n, r) => n + r.bytes, 0),
      rootsRemoved,
      missing: walk.missing,
      revived: [...revived].sort(),
    };
  }

  private async holds(entry: string): Promise<boolean> {
    return (await this.sizeOf(entry)) !== undefined;
  }

  private async sizeOf(entry: string): Promise<number | undefined> {
    const { spool, queue, sizeOf } = this.options;
    try {
      return sizeOf(await spool.entry(queue, entry).direct.contents());
    } catch (err) {
      if (err instanceof SpoolError && err.code === SpoolErrorCode.EntryNotFound) return undefined;
      throw err;
    }
  }
}
