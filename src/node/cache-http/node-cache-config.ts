import { readFile } from "node:fs/promises";
import type pg from "pg";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { type GuixPublicKey, parseGuixPublicKeys } from "../../cache/guix-signature.js";
import { type NixSecretKey, parseNixPublicKey, parseNixSecretKey } from "../../cache/nix-key.js";
import { RejectionLog } from "../../cache/rejection-log.js";
import type { Authorizer } from "../auth/authorizer.js";
import type { Config } from "../config/index.js";
import type { NodeSpool } from "../service/spool-service.js";
import { type NodeCache, startNodeCache } from "./node-cache.js";

/** A cache setting that cannot be used (a key file missing or malformed); names the key. */
export class CacheConfigError extends Error {
  readonly code = "cache_config";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CacheConfigError";
  }
}

async function readKeyFile<T>(key: string, file: string, parse: (text: string) => T): Promise<T> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new CacheConfigError(
      `${key}: cannot read ${file}: ${(err as { code?: string }).code ?? err}`,
      { cause: err },
    );
  }
  try {
    return parse(text);
  } catch (err) {
    throw new CacheConfigError(`${key}: ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Where the node keeps rejected uploads (cache.rejectedDir). */
export function rejectedDirOf(config: Config): string {
  return config.cache.rejectedDir ?? `${config.spool.dir}.cache-rejected`;
}

/** The node's cache as its configuration describes it (config.cache.enabled). */
export async function startCacheFromConfig(
  config: Config,
  spool: NodeSpool,
  pool: pg.Pool,
  authorizer: Authorizer,
  logger: Logger,
  registry?: Registry,
  time: { clock?: () => number; stamp?: () => bigint } = {},
): Promise<NodeCache> {
  const c = config.cache;
  const nodeKey: NixSecretKey | undefined =
    c.secretKeyFile === undefined
      ? undefined
      : await readKeyFile("cache.secretKeyFile", c.secretKeyFile, parseNixSecretKey);
  const guixKeys: GuixPublicKey[] =
    c.trustedGuixKeysFile === undefined
      ? []
      : await readKeyFile("cache.trustedGuixKeysFile", c.trustedGuixKeysFile, parseGuixPublicKeys);
  return startNodeCache({
    spool,
    pool,
    queue: c.queue,
    nodeId: config.node.id,
    info: { storeDir: c.storeDir, wantMassQuery: c.wantMassQuery, priority: c.priority },
    rules: {
      policy: c.policy,
      storeDirs: c.storeDirs,
      trustedNixKeys: c.trustedPublicKeys.map((k) => parseNixPublicKey(k)),
      trustedGuixKeys: guixKeys,
      nodeKey,
    },
    authorizer,
    uploadTokens: c.uploadTokens,
    stagingDir: c.stagingDir ?? `${config.spool.dir}.cache-staging`,
    maxNarBytes: c.maxNarSize,
    stagingTtlMs: c.stagingTtl,
    narWaitMs: c.narWait,
    rejections: await RejectionLog.open(rejectedDirOf(config), {
      maxEntries: c.keepRejected,
      maxAgeMs: c.rejectedTtl,
    }),
    hitTtlSeconds: Math.round(c.hitTtl / 1000),
    missTtlSeconds: Math.round(c.missTtl / 1000),
    refreshEveryMs: c.refreshEvery,
    uploadIdleTimeoutMs: config.limits.uploadIdleTimeout,
    analytics: c.analytics.enabled
      ? {
          bucketMs: c.analytics.bucket === "day" ? 86_400_000 : 3_600_000,
          flushEveryMs: c.analytics.flushEvery,
          maxKeys: c.analytics.maxKeys,
          maxKeysPerBucket: c.analytics.maxKeysPerBucket,
          keepForMs: c.analytics.keepFor,
        }
      : undefined,
    gc: {
      rootsQueue: c.gc.rootsQueue,
      graceMs: c.gc.grace,
      everyMs: c.gc.enabled ? c.gc.every : undefined,
      peers: config.peers.map((p) => p.id),
      maxPeerSilenceMs: c.gc.maxPeerSilence,
      peerSettleMs: c.gc.peerSettle,
      ackTimeoutMs: c.gc.ackTimeout,
      tokens: c.gc.tokens,
    },
    ...(registry === undefined ? {} : { registry }),
    ...(time.clock === undefined ? {} : { clock: time.clock }),
    ...(time.stamp === undefined ? {} : { stamp: time.stamp }),
    logger,
  });
}
