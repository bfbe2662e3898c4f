import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import type pg from "pg";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { canDecompress, EXTERNAL_DECODERS, readableCompressions } from "../../cache/decompress.js";
import type { CacheGc } from "../../cache/gc.js";
import type { GcHandshake } from "../../cache/gc-handshake.js";
import { NarStaging } from "../../cache/nar-staging.js";
import type { NixCacheInfo } from "../../cache/nix-cache-info.js";
import type { RejectionLog } from "../../cache/rejection-log.js";
import { RequestStats } from "../../cache/request-stats.js";
import { type RequestStatsFlush, startRequestStatsFlush } from "../../cache/request-stats-flush.js";
import {
  type CacheEntryCodec,
  type CacheRecord,
  SpoolCacheStore,
} from "../../cache/spool-cache-store.js";
import type { UploadRules } from "../../cache/upload-check.js";
import { DirChangeGate } from "../../common/dir-change-gate.js";
import { type Authorizer, allows } from "../auth/authorizer.js";
import type { NodeEntryMeta } from "../service/entry-meta.js";
import type { NodeSpool } from "../service/spool-service.js";
import { gcRoutes } from "./cache-gc-routes.js";
import { cacheHttpHandler } from "./cache-handler.js";
import { cacheUploadHandler, type WriteAccess } from "./cache-upload.js";
import { type NodeCacheGcOptions, startGc } from "./node-cache-gc.js";

/**
 * A cache record as a node entry's metadata: the node's header (data digest and size,
 * enqueue time) around the record as JSON under the key `geospool.cache`, so entries of
 * other kinds in the same queue are told apart and skipped.
 */
export const nodeCacheCodec = (clock: () => number): CacheEntryCodec<NodeEntryMeta> => ({
  wrap: (record, data) => ({
    user: Buffer.from(JSON.stringify({ "geospool.cache": record })),
    sha256: data.sha256,
    size: data.size,
    enqueuedAt: clock(),
  }),
  unwrap(meta) {
    if (meta.user[0] !== 0x7b) return undefined;
    try {
      const record = (JSON.parse(meta.user.toString("utf8")) as Record<string, unknown>)[
        "geospool.cache"
      ];
      if (typeof record !== "object" || record === null) return undefined;
      const r = record as Partial<CacheRecord>;
      return r.v === 1 &&
        typeof r.hashPart === "string" &&
        typeof r.narinfo === "string" &&
        typeof r.url === "string"
        ? (r as CacheRecord)
        : undefined;
    } catch {
      return undefined;
    }
  },
});

export interface NodeCacheOptions {
  spool: NodeSpool;
  /** The node's PostgreSQL (migrated), where the cache's lookup index lives. */
  pool: pg.Pool;
  /** The spool queue holding the cache's entries. */
  queue: string;
  nodeId: string;
  info: NixCacheInfo;
  rules: UploadRules;
  authorizer: Authorizer;
  /** The cache's own upload tokens (they work without gRPC authentication). */
  uploadTokens?: readonly { name: string; token: string }[];
  /** Node-local directory for nars waiting for their narinfo. */
  stagingDir: string;
  maxNarBytes: number;
  /** Where rejected uploads are kept with their reason; only logged without one. */
  rejections?: RejectionLog;
  /** A staged nar whose narinfo has not come within this is dropped (ms). */
  stagingTtlMs: number;
  /** A narinfo uploaded before its nar waits this long for it, then is rejected (ms). */
  narWaitMs?: number;
  hitTtlSeconds: number;
  missTtlSeconds: number;
  /**
   * How often the index is checked against the whole queue: a safety net for writers outside
   * this process (the node's own uploads and transitions and the replicator's placements
   * reach it at once through `store.changed`). Skipped while the queue's directory is
   * unchanged (DirChangeGate).
   */
  refreshEveryMs: number;
  /** An upload silent this long is cut off (ms). */
  uploadIdleTimeoutMs?: number;
  /**
   * Request analytics (per-path counts written to the node's database in batches); without
   * it only the running totals (the Prometheus counters) are kept.
   */
  analytics?: {
    bucketMs: number;
    flushEveryMs: number;
    maxKeys: number;
    /** Most distinct paths one bucket (per kind) keeps in the table; unbounded without. */
    maxKeysPerBucket?: number;
    keepForMs: number;
  };
  logger: Logger;
  clock?: () => number;
  /** The stamp of an upload accepted now: the cluster's hybrid logical clock (upload-stamp.ts). */
  stamp?: () => bigint;
  gc?: NodeCacheGcOptions;
  /** Where the GC's metrics go (the node's registry). */
  registry?: Registry;
}

export interface NodeCache {
  readonly store: SpoolCacheStore<NodeEntryMeta, string>;
  /** The requests counted (totals since start; per path between flushes). */
  readonly stats: RequestStats;
  /** Write the per-path counts now (they are also written every flush interval and at stop). */
  flushStats(): Promise<void>;
  /** The cache's GC (undefined without a roots queue). */
  readonly gc: CacheGc<NodeEntryMeta, string> | undefined;
  /**
   * An entry of the spool may have come, gone or moved (the service's transitions, the
   * replicator's placements): the index follows at once. Failures are logged; the periodic
   * refresh catches up.
   */
  entryChanged(name: string): void;
  /** Listings (`.ls`) uploaded and waiting for their narinfo (dropped past `stagingTtlMs`). */
  stagedListings(): number;
  /** For the node's HTTP server (`fallback`). */
  handle(req: IncomingMessage, res: ServerResponse): void | Promise<void>;
  /** For the node's HTTP server (`checkContinue`): refuses an upload before its body. */
  checkContinue(req: IncomingMessage, res: ServerResponse): boolean;
  stop(): Promise<void>;
}

/**
 * Writes always need a token, even where the node runs without authentication. A token
 * may write when it is one of the cache's own upload tokens, or an `auth.tokens` grant
 * that may enqueue on the cache's queue. Tokens are compared by digest in constant time.
 */
export function cacheWriteAccess(
  authorizer: Authorizer,
  queue: string,
  token: string | undefined,
  uploadTokens: readonly { name: string; token: string }[] = [],
): WriteAccess {
  if (token === undefined) return { kind: "unauthenticated" };
  const digest = createHash("sha256").update(token).digest();
  let own: string | undefined;
  for (const t of uploadTokens) {
    if (timingSafeEqual(digest, createHash("sha256").update(t.token).digest())) own = t.name;
  }
  if (own !== undefined) return { kind: "allowed", who: own };
  if (!authorizer.enabled) return { kind: "unauthenticated" };
  let who: ReturnType<Authorizer["authenticate"]>;
  try {
    who = authorizer.authenticate(`Bearer ${token}`);
  } catch {
    return { kind: "unauthenticated" };
  }
  return allows(who, "enqueue", queue)
    ? { kind: "allowed", who: who.name }
    : { kind: "forbidden", who: who.name };
}

/** The binary cache of one node: store over its spool, staging, routes, index refresh. */
export async function startNodeCache(options: NodeCacheOptions): Promise<NodeCache> {
  const log = options.logger.child({ component: "cache" });
  const clock = options.clock ?? Date.now;
  let handshake: GcHandshake<NodeEntryMeta, string> | undefined;
  // The node's spool names each queue's directory after the queue (no queueDirname). The
  // open lists the queue: the gate then knows it, so the first timer tick costs a stat
  // (a second listing of 100,000 names there was a burst of garbage 30 s after each start).
  const queueStill = new DirChangeGate(join(options.spool.dir, options.queue));
  let opened: SpoolCacheStore<NodeEntryMeta, string> | undefined;
  await queueStill.runIfChanged(async () => {
    opened = await openStore();
  });
  const store = opened as SpoolCacheStore<NodeEntryMeta, string>;
  function openStore() {
    return SpoolCacheStore.open({
      spool: options.spool,
      pool: options.pool,
      queue: options.queue,
      codec: nodeCacheCodec(clock),
      info: options.info,
      origin: options.nodeId,
      ...(options.stamp === undefined ? {} : { stamp: options.stamp }),
      // Uploads that need a path a GC is removing are refused (gc-handshake.ts).
      admit: (hashParts) => handshake?.admit(hashParts) ?? { kind: "ok", release: () => undefined },
      async onReject(r) {
        log.warn({ hashPart: r.hashPart, reason: r.reason, by: r.by }, "upload rejected");
        // The uploader is told either way; a rejection not kept must not turn into a 5xx.
        await options.rejections
          ?.keep(r)
          .catch((err: unknown) => log.error({ err, hashPart: r.hashPart }, "rejection not kept"));
      },
    });
  }
  const staging = await NarStaging.open(options.stagingDir, {
    maxBytes: options.maxNarBytes,
    clock,
  });
  if (!options.authorizer.enabled && (options.uploadTokens ?? []).length === 0) {
    log.warn("no tokens configured: cache uploads are refused");
  }
  // What an operator cannot see otherwise: nars in a compression not read here are checked
  // against their FileHash and sizes only (a Guix lzip nar, which has no FileHash: size only).
  const missing = Object.keys(EXTERNAL_DECODERS).filter((c) => !canDecompress(c));
  if (missing.length > 0) {
    log.warn(
      { readable: readableCompressions(), missing },
      `no ${missing.join(" or ")} tool on the PATH: such nars are not checked against their NarHash`,
    );
  }
  const upload = cacheUploadHandler({
    reader: store,
    writer: store,
    staging,
    rules: options.rules,
    authorize: (token) =>
      cacheWriteAccess(options.authorizer, options.queue, token, options.uploadTokens),
    logger: options.logger,
    clock,
    idleTimeoutMs: options.uploadIdleTimeoutMs,
    narWaitMs: options.narWaitMs,
  });
  const analytics = options.analytics;
  const stats = new RequestStats({
    perKey: analytics !== undefined,
    maxKeys: analytics?.maxKeys,
    bucketMs: analytics?.bucketMs,
    clock,
  });
  const statsFlush: RequestStatsFlush | undefined =
    analytics &&
    startRequestStatsFlush({
      stats,
      pool: options.pool,
      everyMs: analytics.flushEveryMs,
      keepForMs: analytics.keepForMs,
      maxKeysPerBucket: analytics.maxKeysPerBucket,
      logger: options.logger,
      clock,
    });
  const cacheHandle = cacheHttpHandler({
    reader: store,
    upload,
    stats,
    hitTtlSeconds: options.hitTtlSeconds,
    missTtlSeconds: options.missTtlSeconds,
    logger: options.logger,
  });
  const started = startGc(options, store, log);
  const { gc, roots, gcTimer } = started;
  handshake = started.handshake;
  const adminRoutes = gcRoutes({
    authorizer: options.authorizer,
    queue: options.queue,
    roots,
    gc,
    unavailable: `cache.gc.rootsQueue ${JSON.stringify(options.gc?.rootsQueue ?? "")} is not one of spool.queues`,
    ...(options.gc?.tokens === undefined ? {} : { gcTokens: options.gc.tokens }),
    logger: options.logger,
  });
  const handle = (req: IncomingMessage, res: ServerResponse) =>
    adminRoutes.matches(req) ? adminRoutes.handle(req, res) : cacheHandle(req, res);
  let running: Promise<void> = Promise.resolve();
  let stopped = false;
  const timer = setInterval(() => {
    running = (async () => {
      await queueStill.runIfChanged(() => store.refresh());
      for (const nar of await staging.sweep(options.stagingTtlMs)) {
        log.info({ nar: nar.path }, "staged nar dropped: its narinfo never came");
      }
      for (const hashPart of upload.sweepListings(options.stagingTtlMs)) {
        log.info({ hashPart }, "staged listing dropped: its narinfo never came");
      }
    })().catch((err: unknown) => log.error({ err }, "cache index refresh failed"));
  }, options.refreshEveryMs);
  timer.unref();
  return {
    store,
    stats,
    flushStats: async () => statsFlush?.flush(),
    gc,
    handle,
    checkContinue: (req, res) => upload.precheck(req, res, options.maxNarBytes),
    entryChanged(name) {
      if (stopped) return;
      store
        .changed(name)
        .catch((err: unknown) => log.error({ err, entry: name }, "cache index update failed"));
    },
    stagedListings: () => upload.stagedListings(),
    async stop() {
      stopped = true;
      clearInterval(timer);
      await gcTimer?.stop();
      await running;
      // After the listeners closed (the node stops them first): every request is counted.
      await statsFlush?.stop();
      await upload.stop();
      await store.close();
    },
  };
}
