import { rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Logger } from "pino";
import { type Config, parseConfig } from "./config/index.js";
import { type DevCache, prepareDevCache } from "./dev-cache.js";
import { applyHeapGrowth } from "./heap-growth.js";
import { type RunningNode, startNode } from "./node.js";
import {
  type EmbeddedPostgres,
  startEmbeddedPostgres,
  stopStalePostgres,
} from "./postgres/embedded.js";

export interface DevClusterOptions {
  /** State directory; each node keeps `<dir>/<node>/{postgres,spool}`. */
  dir: string;
  nodes: number;
  baseGrpcPort: number;
  baseHttpPort: number;
  /** Delete the state directory first. */
  fresh: boolean;
  logger: Logger;
  logLevel?: string;
}

export interface DevNode {
  id: string;
  region: string;
  grpc: string;
  http: string;
  postgresUrl: string;
  spoolDir: string;
}

export interface DevCluster {
  readonly nodes: readonly DevNode[];
  /** The binary cache every node serves: its key, upload token and netrc. */
  readonly cache: DevCache;
  /** Drain every node, then stop every PostgreSQL server. */
  stop(): Promise<void>;
}

const REGIONS = ["eu-west", "us-east", "ap-south", "sa-east", "af-south"];

/**
 * A local cluster for development: N nodes on 127.0.0.1, each with its own embedded
 * PostgreSQL (wal_level=logical) and spool. State survives restarts unless `fresh`.
 */
export async function startDevCluster(opts: DevClusterOptions): Promise<DevCluster> {
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > 9) {
    throw new Error(`--nodes must be between 1 and 9, got ${opts.nodes}`);
  }
  const dir = resolve(opts.dir);
  const ids = Array.from({ length: opts.nodes }, (_, i) => `node-${i + 1}`);
  // A dev process that was killed leaves its PostgreSQL servers behind: stop them first.
  await Promise.all(ids.map((id) => stopStalePostgres(join(dir, id, "postgres"))));
  if (opts.fresh) await rm(dir, { recursive: true, force: true });

  const servers: EmbeddedPostgres[] = [];
  const running: RunningNode[] = [];
  const stopAll = async () => {
    await Promise.allSettled(running.map((n) => n.stop()));
    await Promise.allSettled(servers.map((s) => s.stop()));
  };
  try {
    const started = await Promise.allSettled(
      ids.map((id) =>
        startEmbeddedPostgres({ dataDir: join(dir, id, "postgres"), logger: opts.logger }),
      ),
    );
    for (const r of started) if (r.status === "fulfilled") servers.push(r.value);
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;

    const cache = await prepareDevCache(dir);
    const endpoints = ids.map((id, i) => ({
      id,
      region: REGIONS[i % REGIONS.length] as string,
      grpc: `127.0.0.1:${opts.baseGrpcPort + i}`,
      http: `127.0.0.1:${opts.baseHttpPort + i}`,
    }));
    const configs: Config[] = endpoints.map((e, i) =>
      parseConfig(
        {
          node: { id: e.id, region: e.region },
          spool: {
            dir: join(dir, e.id, "spool"),
            queues: ["inbox", "outbox", "dead", "cache", "cache-roots"],
            leases: { deadLetterQueue: "dead" },
          },
          cache: {
            enabled: true,
            policy: "sign",
            secretKeyFile: cache.secretKeyFile,
            trustedPublicKeys: [cache.publicKey],
            uploadTokens: [{ name: "dev", token: cache.token }],
            // Roots in cache-roots; GC on request with the printed token. Short waits for
            // a cluster on one machine: uploads older than 10 min may go, a GC may run
            // 5 s after the nodes have joined.
            gc: {
              rootsQueue: "cache-roots",
              tokens: [{ name: "dev-gc", token: cache.gcToken }],
              grace: "10m",
              maxPeerSilence: "5m",
              peerSettle: "5s",
              ackTimeout: "30s",
            },
          },
          grpc: { listen: e.grpc },
          http: { listen: e.http },
          postgres: { url: (servers[i] as EmbeddedPostgres).url },
          peers: endpoints
            .map((p, j) => ({
              id: p.id,
              grpc: p.grpc,
              region: p.region,
              postgres: (servers[j] as EmbeddedPostgres).url,
            }))
            .filter((p) => p.id !== e.id),
          log: { level: opts.logLevel ?? "warn" },
        },
        { label: `dev cluster ${e.id}`, require: ["postgres.url"] },
      ),
    );
    // One process holds the three nodes: V8's heap growth is set once, as `node` does.
    const growth = configs[0]?.node.heapGrowthPercent;
    if (growth !== undefined) applyHeapGrowth(growth);
    // startNode binds `node` to its logger itself (a second binding repeats the key).
    for (const config of configs) running.push(await startNode(config, opts.logger));
    const nodes: DevNode[] = endpoints.map((e, i) => ({
      ...e,
      postgresUrl: (servers[i] as EmbeddedPostgres).url,
      spoolDir: join(dir, e.id, "spool"),
    }));
    let stopping: Promise<void> | undefined;
    return {
      nodes,
      cache,
      stop() {
        stopping ??= stopAll();
        return stopping;
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
