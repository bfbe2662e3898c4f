/**
 * The parsed configuration of one node, as `loadConfig` returns it: every default filled
 * in, durations in milliseconds, sizes in bytes, paths absolute, token files read.
 * docs/configuration.md describes each key, its default, env var and flag.
 */
export interface Config {
  node: {
    /** This node's id: a name (`[A-Za-z0-9_][A-Za-z0-9._:@+=-]*`). Required. */
    id: string;
    /** Region label (a name). Default "local". */
    region: string;
    /**
     * How far the JS heap may grow past what the last full garbage collection kept before
     * the next one, in percent (V8's --heap-growing-percent, set by the `node` command).
     * 0: V8's own choice (up to 300%). Default 20.
     */
    heapGrowthPercent: number;
  };
  spool: {
    /** The spool directory (absolute). Required. */
    dir: string;
    /** Queue names, unique. Default ["inbox", "outbox", "dead"]. */
    queues: string[];
    /** The batch writer makes its files ahead (src/spool/index.ts, "The file pool"). Default true. */
    filePool: boolean;
    leases: {
      /** Lease given to a checkout when the client asks for none (ms). Default 10m. */
      defaultLease: number;
      /** Extra time after a lease deadline before the entry is taken back (ms). Default 5s. */
      grace: number;
      /** Failed deliveries before an entry goes to the dead-letter queue. Default 5. */
      maxAttempts: number;
      /** One of `spool.queues`; unset = expired entries always go back to their queue. */
      deadLetterQueue?: string | undefined;
    };
  };
  grpc: {
    /** `host:port` to listen on (port 0 = any free port). Default "127.0.0.1:7401". */
    listen: string;
    /** `host:port` peers and clients should use to reach this node; unset = `listen`. */
    advertise?: string | undefined;
    tls: GrpcTls;
    /** Largest gRPC message received or sent (bytes). Default 4MiB. */
    maxMessageBytes: number;
    keepalive: {
      /** Ping an idle connection after this long (ms). Default 30s. */
      time: number;
      /** Close the connection if a ping is not answered within this (ms). Default 10s. */
      timeout: number;
    };
    /** Longest wait a Dequeue may ask for (ms); longer requests are capped. Default 60s. */
    maxDequeueWait: number;
  };
  http: {
    /** `host:port` for /metrics, /healthz, /readyz and the binary cache. Default "127.0.0.1:8401". */
    listen: string;
  };
  postgres: {
    /** `postgres://` URL of this node's own database. Required by `geospool node`. */
    url?: string | undefined;
  };
  auth: {
    /** Bearer tokens. Empty = authentication disabled (configWarnings says so). */
    tokens: AuthToken[];
    /** Let grpc.health.v1 answer without a token (HTTP /healthz, /readyz never need one). Default true. */
    allowUnauthenticatedHealth: boolean;
  };
  /** Other nodes of the cluster (replication). Default []. */
  peers: Peer[];
  replication: {
    /** Bearer token presented to peers when fetching data (needs dequeue on the queues). */
    token?: string;
    /** ms between full reconciles of the spool against the replica record. Default 30 s. */
    fullReconcileEvery: number;
    /** ms: batches of replication syncs start at most this often (0: at once). Default 10 ms. */
    batchInterval: number;
    /** Data transfers from peers at once. Default 4. */
    fetchConcurrency: number;
    /** ms between attempts to join a peer that is unreachable or not ready. Default 2 s. */
    joinRetry: number;
    /** ms between the end of one heartbeat to a peer and the next. Default 1 s. */
    heartbeatInterval: number;
    /**
     * ms a node waits, per place in the order of the other nodes, past a replicated lease's
     * deadline before it takes the entry back (the holder's node goes first). Default 10 s.
     */
    leaseReapGrace: number;
  };
  log: {
    /** pino level. Default "info". */
    level: LogLevel;
  };
  monitor: {
    /** Interval between fsck runs (ms). Default 15s. */
    checkEvery: number;
    /** A problem is alerted once it persisted this many consecutive checks. Default 2. */
    alertAfterCycles: number;
    /** Repair what is safe to repair. Default true. */
    repair: boolean;
  };
  limits: {
    /** Largest entry data Enqueue accepts (bytes); more is RESOURCE_EXHAUSTED. Default 8GiB. */
    entryDataSize: number;
    /** Largest client metadata of an entry (bytes; Enqueue, Complete). Default 256KiB. */
    metadataSize: number;
    /** An Enqueue stream silent this long is ended, DEADLINE_EXCEEDED (ms). Default 60s. */
    uploadIdleTimeout: number;
    /** Enqueue calls under way at once; more are RESOURCE_EXHAUSTED. Default 64. */
    maxConcurrentUploads: number;
    /** Most bytes of entries in one List page (a page has at least one). Default 512KiB. */
    listPageBytes: number;
    /** Most entries in one EnqueueBatch call; more is RESOURCE_EXHAUSTED. Default 1000. */
    maxBatchEntries: number;
    /**
     * Most bytes of data and metadata in one EnqueueBatch call of two entries or more (one
     * entry is held to entryDataSize and metadataSize only). Default 2MiB.
     */
    maxBatchBytes: number;
  };
  idempotency: {
    /** How long an idempotency key keeps returning the first entry (ms). Default 24h. */
    window: number;
  };
  /** The Nix/Guix binary cache served on the HTTP listener (docs/architecture.md). */
  cache: {
    /** Serve the cache and take uploads. Default false. */
    enabled: boolean;
    /** The spool queue holding its entries (one of `spool.queues`). Default "cache". */
    queue: string;
    /**
     * `host:port` of a listener of the cache's own; unset, the cache is on `http.listen`
     * beside /metrics and /healthz.
     */
    listen?: string | undefined;
    /** StoreDir announced in /nix-cache-info. Default "/nix/store". */
    storeDir: string;
    /** Store directories whose narinfos are accepted. Default ["/nix/store", "/gnu/store"]. */
    storeDirs: string[];
    /** Priority in /nix-cache-info (lower is preferred). Default 40. */
    priority: number;
    /** WantMassQuery in /nix-cache-info. Default true. */
    wantMassQuery: boolean;
    /** Signatures demanded of uploads: require, sign or allow-unsigned. Default "require". */
    policy: "require" | "sign" | "allow-unsigned";
    /** The node's Nix secret key (`geospool cache keygen`); needed by "sign". */
    secretKeyFile?: string | undefined;
    /** Nix public keys (`name:base64`) whose signatures are trusted. Default []. */
    trustedPublicKeys: string[];
    /** Guix public keys (a signing-key.pub or an ACL) whose signatures are trusted. */
    trustedGuixKeysFile?: string | undefined;
    /** Cache-Control max-age of hits (ms). Default 1h. */
    hitTtl: number;
    /** Cache-Control max-age of misses (ms). Default 60s. */
    missTtl: number;
    /** Largest nar accepted (bytes); more is 413. Default 8GiB. */
    maxNarSize: number;
    /** Where nars wait for their narinfo (node-local). Default `<spool.dir>.cache-staging`. */
    stagingDir?: string | undefined;
    /** A staged nar whose narinfo has not come within this is dropped (ms). Default 10m. */
    stagingTtl: number;
    /**
     * A narinfo uploaded before its nar is held (not served) this long for it, then
     * rejected (ms). Default 10m.
     */
    narWait: number;
    /** Where rejected uploads are kept (node-local). Default `<spool.dir>.cache-rejected`. */
    rejectedDir?: string | undefined;
    /** The most rejections kept; the oldest go first. Default 10000. */
    keepRejected: number;
    /** Rejections older than this are dropped (ms). Default 30 days. */
    rejectedTtl: number;
    /** How often the index catches up with replicated entries (ms). Default 1s. */
    refreshEvery: number;
    /**
     * Tokens that may upload to the cache, besides `auth.tokens` allowed to enqueue on
     * `cache.queue`; they work even when gRPC runs without authentication. Default [].
     */
    uploadTokens: Array<{ name: string; token: string }>;
    /** Request analytics (docs/configuration.md): counts per path, flushed in batches. */
    analytics: {
      /** Count requests per narinfo and nar and keep them in the database. Default true. */
      enabled: boolean;
      /** Width of a counting bucket. Default "hour". */
      bucket: "hour" | "day";
      /** How often the counts are written (ms): what a crash can lose. Default 1m. */
      flushEvery: number;
      /** Most distinct paths held between two flushes; more are counted unkeyed. Default 50000. */
      maxKeys: number;
      /** Most distinct paths one bucket (per kind) keeps in the table. Default 200000. */
      maxKeysPerBucket: number;
      /** Buckets older than this are deleted (ms). Default 30 days. */
      keepFor: number;
    };
    /** Garbage collection of the cache (docs/architecture.md, "Garbage collection"). */
    gc: CacheGcConfig;
  };
  shutdown: {
    /** Graceful drain time before connections are forced closed (ms). Default 10s. */
    deadline: number;
  };
}

export interface CacheGcConfig {
  /** Run a GC every `every` on this node. Default false (GC only on demand). */
  enabled: boolean;
  /** ms between periodic GC runs. Default 1h. */
  every: number;
  /** The spool queue holding the GC roots (one of `spool.queues`, on every node). Default "cache-roots". */
  rootsQueue: string;
  /** Uploads younger than this (ms, by their upload stamp) are kept with their closures. Default 24h. */
  grace: number;
  /** GC removes nothing while any peer has been silent longer than this (ms). Default 2m. */
  maxPeerSilence: number;
  /** ...or while a peer's subscription has been streaming for less than this (ms). Default 2m. */
  peerSettle: number;
  /**
   * How long a GC waits for every node to acknowledge a batch it condemned before it
   * withdraws the batch and removes nothing (ms). Default 1m.
   */
  ackTimeout: number;
  /**
   * Tokens that may manage roots and run GCs through the cache's GC routes (`[{name, token}]`),
   * besides `auth.tokens` grants; they work even when gRPC runs without authentication.
   */
  tokens: Array<{ name: string; token: string }>;
}

export interface GrpcTls {
  /** Server certificate (PEM path). With `key`, enables TLS. */
  cert?: string | undefined;
  /** Server private key (PEM path). */
  key?: string | undefined;
  /** CA bundle (PEM path) that client certificates must chain to. Requires cert and key. */
  clientCa?: string | undefined;
  /** Refuse clients without a certificate signed by `clientCa` (mTLS). Default false. */
  requireClientCert: boolean;
}

export const ACTIONS = ["enqueue", "dequeue", "admin"] as const;
export type Action = (typeof ACTIONS)[number];

export interface Permission {
  /** `["*"]` for every queue, or queue names from `spool.queues`. */
  queues: string[];
  /** Non-empty subset of enqueue, dequeue, admin. */
  actions: Action[];
}

export interface AuthToken {
  /** Who holds the token (a name; appears in logs, never the token). */
  name: string;
  /** The secret (from the file, or read from `tokenFile` and trimmed). */
  token: string;
  /** Where the token was read from, if it came from a file. */
  tokenFile?: string | undefined;
  permissions: Permission[];
}

export interface Peer {
  /** The peer's node.id. */
  id: string;
  /** The peer's gRPC endpoint, `host:port`. */
  grpc: string;
  /** The peer's PostgreSQL URL, for subscriptions. */
  postgres?: string | undefined;
  region?: string | undefined;
}

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Whether gRPC serves TLS (cert and key both set). */
export function grpcTlsEnabled(config: Config): boolean {
  return config.grpc.tls.cert !== undefined && config.grpc.tls.key !== undefined;
}
