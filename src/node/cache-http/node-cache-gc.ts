import type { Logger } from "pino";
import {
  type CacheRoot,
  isCacheRoot,
  type RootCodec,
  RootStore,
  rootLive,
} from "../../cache/cache-roots.js";
import { CacheGc } from "../../cache/gc.js";
import { GcHandshake } from "../../cache/gc-handshake.js";
import { type GcMark, type GcMarkCodec, isGcMark } from "../../cache/gc-marks.js";
import { liveAmong } from "../../cache/gc-walk.js";
import type { SpoolCacheStore } from "../../cache/spool-cache-store.js";
import { stampOfMs } from "../../cache/upload-stamp.js";
import type { NodeEntryMeta } from "../service/entry-meta.js";
import { CacheGcMetrics } from "./cache-gc-metrics.js";
import type { NodeCacheOptions } from "./node-cache.js";

/** The cache's garbage collection on a node (config `cache.gc`). */
export interface NodeCacheGcOptions {
  /** The roots' queue; when it is not one of the spool's, no roots and no GC (409). */
  rootsQueue: string;
  graceMs: number;
  /** ms between periodic runs; undefined: GC only on request. */
  everyMs: number | undefined;
  peers: readonly string[];
  maxPeerSilenceMs: number;
  peerSettleMs: number;
  /** How long a GC waits for every node's acknowledgement of a condemned batch (ms). */
  ackTimeoutMs?: number;
  /** Tokens that may make every GC call (cache.gc.tokens), with or without auth.tokens. */
  tokens?: readonly { name: string; token: string }[];
}

/** sha256 of no bytes: a root entry has no data. */
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** A GC root as a node entry's metadata: the record as JSON under `geospool.cacheRoot`. */
export const nodeRootCodec = (clock: () => number): RootCodec<NodeEntryMeta> => ({
  wrap: (root) => ({
    user: Buffer.from(JSON.stringify({ "geospool.cacheRoot": root })),
    sha256: EMPTY_SHA256,
    size: 0,
    enqueuedAt: clock(),
  }),
  unwrap(meta) {
    if (meta.user[0] !== 0x7b) return undefined;
    try {
      const root = (JSON.parse(meta.user.toString("utf8")) as Record<string, unknown>)[
        "geospool.cacheRoot"
      ];
      return isCacheRoot(root) ? (root as CacheRoot) : undefined;
    } catch {
      return undefined;
    }
  },
});

/** A GC handshake mark as a node entry's metadata: JSON under `geospool.cacheGc`. */
export const nodeGcMarkCodec = (clock: () => number): GcMarkCodec<NodeEntryMeta> => ({
  wrap: (mark) => ({
    user: Buffer.from(JSON.stringify({ "geospool.cacheGc": mark })),
    sha256: EMPTY_SHA256,
    size: 0,
    enqueuedAt: clock(),
  }),
  unwrap(meta) {
    if (meta.user[0] !== 0x7b) return undefined;
    try {
      const mark = (JSON.parse(meta.user.toString("utf8")) as Record<string, unknown>)[
        "geospool.cacheGc"
      ];
      return isGcMark(mark) ? (mark as GcMark) : undefined;
    } catch {
      return undefined;
    }
  },
});

/**
 * The GC, its roots and its handshake over the node's spool, and its periodic run when
 * configured.
 */
export function startGc(
  options: NodeCacheOptions,
  store: SpoolCacheStore<NodeEntryMeta, string>,
  log: Logger,
) {
  const o = options.gc;
  if (o === undefined || !options.spool.queues.includes(o.rootsQueue)) {
    return { gc: undefined, roots: undefined, handshake: undefined, gcTimer: undefined };
  }
  const clock = options.clock ?? Date.now;
  const roots = new RootStore({
    spool: options.spool,
    queue: o.rootsQueue,
    codec: nodeRootCodec(clock),
    clock,
  });
  // Every node takes part in the handshake (acknowledging peers' condemnations, refusing
  // uploads that need what it let go), whether or not it runs GCs itself.
  const handshake = new GcHandshake({
    spool: options.spool,
    queue: o.rootsQueue,
    codec: nodeGcMarkCodec(clock),
    nodeId: options.nodeId,
    peers: o.peers,
    pool: options.pool,
    async liveAmong(among, extraRoots) {
      const now = clock();
      const rooted = (await roots.list())
        .filter((r) => rootLive(r.root, now))
        .map((r) => r.root.hashPart);
      return liveAmong(options.pool, {
        roots: [...new Set([...rooted, ...extraRoots])],
        cutoff: stampOfMs(now - o.graceMs),
        among,
      });
    },
    settle: () => store.settle(),
    onError: (err, what) => log.warn({ err }, `cache GC handshake: ${what} failed`),
  });
  handshake.start();
  const metrics = options.registry === undefined ? undefined : new CacheGcMetrics(options.registry);
  const gc = new CacheGc({
    spool: options.spool,
    queue: options.queue,
    roots,
    pool: options.pool,
    graceMs: o.graceMs,
    peers: o.peers,
    maxPeerSilenceMs: o.maxPeerSilenceMs,
    peerSettleMs: o.peerSettleMs,
    sizeOf: (meta) => meta.size,
    onRemoved: (entry) => store.changed(entry),
    onRun(report) {
      metrics?.record(report);
      if (report.dryRun) return;
      const facts = {
        removed: report.removed.length,
        bytes: report.bytesFreed,
        kept: report.kept,
        blocked: report.blocked,
        ms: report.durationMs,
      };
      log.info(facts, report.blocked === undefined ? "cache GC ran" : "cache GC held back");
    },
    onFailed(_err, dryRun) {
      if (!dryRun) metrics?.failed();
    },
    clock,
    handshake,
    ...(o.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: o.ackTimeoutMs }),
  });
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  if (o.everyMs !== undefined) {
    timer = setInterval(() => {
      running = gc.run().catch((err: unknown) => log.error({ err }, "cache GC failed"));
    }, o.everyMs);
    timer.unref();
  }
  const gcTimer = {
    async stop() {
      clearInterval(timer);
      await running;
      await handshake.stop();
    },
  };
  return { gc, roots, handshake, gcTimer };
}
