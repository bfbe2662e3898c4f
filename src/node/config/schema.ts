import { z } from "zod";
import { parseNixPublicKey } from "../../cache/nix-key.js";
import { checkStoreDir } from "../../cache/store-path.js";
import { parseDuration, parseSize } from "../../common/units.js";
import { nameProblem } from "../../spool/index.js";
import { ACTIONS, type Config, LOG_LEVELS } from "./config.js";
import { show } from "./errors.js";
import { formatHostPort, parseHostPort } from "./host-port.js";

/**
 * The one schema of a node's configuration. Every leaf accepts the typed value (from YAML)
 * and its text form (from env vars and flags), so the same rules apply whatever the source.
 * Cross-field rules run last, once every field is valid on its own.
 */

/** Marks the issue of a required key that is absent; load.ts words it. */
export const MISSING = "__missing__";

class Invalid {
  constructor(readonly detail: string) {}
}

function leaf<T>(parse: (value: unknown) => T | Invalid) {
  return z.unknown().transform((value, ctx): T => {
    if (value === undefined || value === null) {
      ctx.addIssue({ code: "custom", message: MISSING });
      return z.NEVER;
    }
    const result = parse(value);
    if (result instanceof Invalid) {
      ctx.addIssue({ code: "custom", message: result.detail, input: value });
      return z.NEVER;
    }
    return result;
  });
}

const NAME_RULE = "[A-Za-z0-9_][A-Za-z0-9._:@+=-]*";

function name() {
  return leaf((value) => {
    const problem = nameProblem(value);
    return problem === undefined
      ? (value as string)
      : new Invalid(`expected a name (${NAME_RULE}), got ${show(value)}, which ${problem}`);
  });
}

function queueOrStar() {
  return leaf((value) => {
    if (value === "*") return value;
    const problem = nameProblem(value);
    return problem === undefined
      ? (value as string)
      : new Invalid(`expected "*" or a queue name, got ${show(value)}, which ${problem}`);
  });
}

function text(what = "a non-empty string") {
  return leaf((value) =>
    typeof value === "string" && value.length > 0
      ? value
      : new Invalid(`expected ${what}, got ${show(value)}`),
  );
}

/** A bearer token: sent as `authorization: Bearer <token>`, so RFC 6750's token68 characters. */
function bearerToken() {
  return leaf((value) =>
    typeof value === "string" && /^[A-Za-z0-9._~+/-]+=*$/.test(value)
      ? value
      : new Invalid(
          `expected a bearer token (letters, digits and ._~+/- then optional =), got ${show(value)}`,
        ),
  );
}

function path() {
  return text("a file or directory path");
}

const TRUE = new Set(["true", "1", "yes", "on"]);
const FALSE = new Set(["false", "0", "no", "off"]);

function bool() {
  return leaf((value) => {
    if (typeof value === "boolean") return value;
    if (typeof value === "string") {
      const lower = value.trim().toLowerCase();
      if (TRUE.has(lower)) return true;
      if (FALSE.has(lower)) return false;
    }
    return new Invalid(`expected true or false, got ${show(value)}`);
  });
}

function int(min: number, max = Number.MAX_SAFE_INTEGER) {
  return leaf((value) => {
    const n =
      typeof value === "number"
        ? value
        : typeof value === "string" && /^\s*-?[0-9]+\s*$/.test(value)
          ? Number(value)
          : Number.NaN;
    if (!Number.isSafeInteger(n)) return new Invalid(`expected an integer, got ${show(value)}`);
    if (n < min) return new Invalid(`must be at least ${min}, got ${n}`);
    if (n > max) return new Invalid(`must be at most ${max}, got ${n}`);
    return n;
  });
}

const DURATION = 'a duration like "500ms", "30s", "10m", "1h" or a number of milliseconds';

function duration(opts: { positive?: boolean } = {}) {
  return leaf((value) => {
    const ms =
      typeof value === "string" || typeof value === "number" ? parseDuration(value) : undefined;
    if (ms === undefined) return new Invalid(`expected ${DURATION}, got ${show(value)}`);
    if (opts.positive && ms === 0) return new Invalid(`must be more than 0, got ${show(value)}`);
    return ms;
  });
}

function size(min: number, max: number) {
  return leaf((value) => {
    const bytes =
      typeof value === "string" || typeof value === "number" ? parseSize(value) : undefined;
    if (bytes === undefined) {
      return new Invalid(
        `expected a size like "4MiB", "512KiB", "10MB" or a number of bytes, got ${show(value)}`,
      );
    }
    if (bytes < min || bytes > max) {
      return new Invalid(`must be between ${min} and ${max} bytes, got ${show(value)}`);
    }
    return bytes;
  });
}

function hostPort(opts: { allowPortZero: boolean }) {
  return leaf((value) => {
    const parsed = typeof value === "string" ? parseHostPort(value.trim()) : undefined;
    if (parsed === undefined) {
      return new Invalid(`expected host:port (IPv6 as [::1]:port), got ${show(value)}`);
    }
    if (!opts.allowPortZero && parsed.port === 0) {
      return new Invalid(`expected a port other than 0, got ${show(value)}`);
    }
    return formatHostPort(parsed);
  });
}

function oneOf<const T extends readonly string[]>(values: T) {
  return leaf((value): T[number] | Invalid =>
    typeof value === "string" && (values as readonly string[]).includes(value)
      ? (value as T[number])
      : new Invalid(`expected one of ${values.join(", ")}, got ${show(value)}`),
  );
}

function postgresUrl() {
  return leaf((value) => {
    if (typeof value === "string") {
      try {
        const url = new URL(value);
        if (url.protocol === "postgres:" || url.protocol === "postgresql:") return value;
      } catch {
        // reported below
      }
    }
    return new Invalid(
      `expected a postgres://user:password@host:port/database URL, got ${show(redactUrl(value))}`,
    );
  });
}

/** Hides the password of a URL-looking string (for messages and logs). */
export function redactUrl(value: unknown): unknown {
  if (typeof value !== "string") return value;
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@]*@/i, "$1***@");
}

/**
 * A list. From env vars and flags a list is written as JSON (`["a","b"]`, `[{...}]`), or,
 * for lists of plain names, comma-separated (`inbox,outbox,dead`).
 */
function list<T extends z.ZodType>(item: T, opts: { commaSeparated: boolean }) {
  return z.preprocess((value, ctx) => {
    if (typeof value !== "string") return value;
    const trimmed = value.trim();
    if (trimmed.startsWith("[")) {
      try {
        return JSON.parse(trimmed);
      } catch (err) {
        ctx.addIssue({
          code: "custom",
          message: `expected a JSON list, got ${show(value)} (${(err as Error).message})`,
          input: value,
        });
        return z.NEVER;
      }
    }
    if (opts.commaSeparated) {
      return trimmed === "" ? [] : trimmed.split(",").map((part) => part.trim());
    }
    ctx.addIssue({
      code: "custom",
      message: `expected a JSON list like [{...}], got ${show(value)}`,
      input: value,
    });
    return z.NEVER;
  }, z.array(item));
}

function nixPublicKey() {
  return leaf((value) => {
    if (typeof value !== "string")
      return new Invalid(`expected a key like name:base64, got ${show(value)}`);
    try {
      parseNixPublicKey(value);
      return value.trim();
    } catch (err) {
      return new Invalid((err as Error).message);
    }
  });
}

function storeDir() {
  return leaf((value) => {
    try {
      return checkStoreDir(String(value));
    } catch (err) {
      return new Invalid((err as Error).message);
    }
  });
}

const permissionSchema = z.strictObject({
  queues: list(queueOrStar(), { commaSeparated: true }),
  actions: list(oneOf(ACTIONS), { commaSeparated: true }),
});

const tokenSchema = z.strictObject({
  name: name(),
  token: text("a non-empty token").optional(),
  tokenFile: path().optional(),
  permissions: list(permissionSchema, { commaSeparated: false }),
});

const uploadTokenSchema = z.strictObject({ name: name(), token: bearerToken() });

const peerSchema = z.strictObject({
  id: name(),
  grpc: hostPort({ allowPortZero: false }),
  postgres: postgresUrl().optional(),
  region: name().optional(),
});

/** See docs/configuration.md, `node.heapGrowthPercent`, and docs/benchmarks.md. */
export const DEFAULT_HEAP_GROWTH_PERCENT = 20;

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

export const configSchema = z
  .strictObject({
    node: z
      .strictObject({
        id: name(),
        region: name().default("local"),
        /** V8's heap growth past what the last full collection kept (node-command.ts). */
        heapGrowthPercent: int(0, 300).default(DEFAULT_HEAP_GROWTH_PERCENT),
      })
      .prefault({ id: undefined }),
    spool: z
      .strictObject({
        dir: path(),
        queues: list(name(), { commaSeparated: true }).default(() => ["inbox", "outbox", "dead"]),
        /** The batch writer's files made ahead (src/spool/index.ts, "The file pool"). */
        filePool: bool().default(true),
        leases: z
          .strictObject({
            defaultLease: duration({ positive: true }).default(10 * 60_000),
            grace: duration().default(5000),
            maxAttempts: int(1).default(5),
            deadLetterQueue: name().optional(),
          })
          .prefault({}),
      })
      .prefault({ dir: undefined }),
    grpc: z
      .strictObject({
        listen: hostPort({ allowPortZero: true }).default("127.0.0.1:7401"),
        advertise: hostPort({ allowPortZero: false }).optional(),
        tls: z
          .strictObject({
            cert: path().optional(),
            key: path().optional(),
            clientCa: path().optional(),
            requireClientCert: bool().default(false),
          })
          .prefault({}),
        maxMessageBytes: size(1024, 2 ** 31 - 1).default(4 * MiB),
        keepalive: z
          .strictObject({
            time: duration({ positive: true }).default(30_000),
            timeout: duration({ positive: true }).default(10_000),
          })
          .prefault({}),
        maxDequeueWait: duration().default(60_000),
      })
      .prefault({}),
    http: z
      .strictObject({
        listen: hostPort({ allowPortZero: true }).default("127.0.0.1:8401"),
      })
      .prefault({}),
    postgres: z
      .strictObject({
        url: postgresUrl().optional(),
      })
      .prefault({}),
    auth: z
      .strictObject({
        tokens: list(tokenSchema, { commaSeparated: false }).default(() => []),
        allowUnauthenticatedHealth: bool().default(true),
      })
      .prefault({}),
    peers: list(peerSchema, { commaSeparated: false }).default(() => []),
    replication: z
      .strictObject({
        /** Bearer token this node presents to peers when it fetches data (ReadData). */
        token: bearerToken().optional(),
        /** Full reconcile of the spool against the replica record. */
        fullReconcileEvery: duration({ positive: true }).default(30_000),
        /** Batches of replication syncs start at most this often (0: at once). */
        batchInterval: duration().default(10),
        /** Data transfers from peers at once. */
        fetchConcurrency: int(1).default(4),
        /** Retry joining a peer that is not reachable or not ready. */
        joinRetry: duration({ positive: true }).default(2_000),
        /** Pause between two heartbeats to a peer (a gRPC health check); see PeerLiveness. */
        heartbeatInterval: duration({ positive: true }).default(1_000),
        /** Wait per place in the order before a node reaps a lease another node's client holds. */
        leaseReapGrace: duration({ positive: true }).default(10_000),
      })
      .prefault({}),
    log: z
      .strictObject({
        level: oneOf(LOG_LEVELS).default("info"),
      })
      .prefault({}),
    monitor: z
      .strictObject({
        checkEvery: duration({ positive: true }).default(15_000),
        alertAfterCycles: int(1).default(2),
        repair: bool().default(true),
      })
      .prefault({}),
    limits: z
      .strictObject({
        /** Largest entry data accepted by Enqueue. */
        entryDataSize: size(0, Number.MAX_SAFE_INTEGER).default(8 * GiB),
        /** Largest client metadata of an entry (Enqueue, Complete with save). */
        metadataSize: size(0, 2 ** 31 - 1).default(256 * KiB),
        /** An Enqueue stream with no message for this long is ended (DEADLINE_EXCEEDED). */
        uploadIdleTimeout: duration({ positive: true }).default(60_000),
        /** Enqueue calls under way at once on this node; more are RESOURCE_EXHAUSTED. */
        maxConcurrentUploads: int(1).default(64),
        /** Most bytes of entries (metadata, names) in one List page. */
        listPageBytes: size(1024, 2 ** 31 - 1).default(512 * KiB),
        /** Most entries in one EnqueueBatch call (RESOURCE_EXHAUSTED beyond). */
        maxBatchEntries: int(1, 100_000).default(1000),
        /** Most bytes of data and metadata in one EnqueueBatch call (of two entries or more). */
        maxBatchBytes: size(1024, 2 ** 31 - 1).default(2 * MiB),
      })
      .prefault({}),
    idempotency: z
      .strictObject({
        window: duration({ positive: true }).default(24 * 3_600_000),
      })
      .prefault({}),
    cache: z
      .strictObject({
        enabled: bool().default(false),
        /** A listener of the cache's own; without it the cache is on http.listen. */
        listen: hostPort({ allowPortZero: true }).optional(),
        queue: name().default("cache"),
        storeDir: storeDir().default("/nix/store"),
        storeDirs: list(storeDir(), { commaSeparated: true }).default(() => [
          "/nix/store",
          "/gnu/store",
        ]),
        priority: int(0, 1_000_000).default(40),
        wantMassQuery: bool().default(true),
        policy: oneOf(["require", "sign", "allow-unsigned"] as const).default("require"),
        secretKeyFile: path().optional(),
        trustedPublicKeys: list(nixPublicKey(), { commaSeparated: true }).default(() => []),
        trustedGuixKeysFile: path().optional(),
        hitTtl: duration().default(3_600_000),
        missTtl: duration().default(60_000),
        maxNarSize: size(1, Number.MAX_SAFE_INTEGER).default(8 * GiB),
        stagingDir: path().optional(),
        stagingTtl: duration({ positive: true }).default(10 * 60_000),
        narWait: duration({ positive: true }).default(10 * 60_000),
        rejectedDir: path().optional(),
        keepRejected: int(1).default(10_000),
        rejectedTtl: duration({ positive: true }).default(30 * 24 * 3_600_000),
        refreshEvery: duration({ positive: true }).default(30_000),
        uploadTokens: list(uploadTokenSchema, { commaSeparated: false }).default(() => []),
        /** Request analytics: per-path counts flushed in batches to the node's database. */
        analytics: z
          .strictObject({
            enabled: bool().default(true),
            bucket: oneOf(["hour", "day"] as const).default("hour"),
            flushEvery: duration({ positive: true }).default(60_000),
            maxKeys: int(1, 10_000_000).default(50_000),
            maxKeysPerBucket: int(1, 100_000_000).default(200_000),
            keepFor: duration({ positive: true }).default(30 * 24 * 3_600_000),
          })
          .prefault({}),
        gc: z
          .strictObject({
            enabled: bool().default(false),
            every: duration({ positive: true }).default(3_600_000),
            rootsQueue: name().default("cache-roots"),
            grace: duration({ positive: true }).default(24 * 3_600_000),
            maxPeerSilence: duration({ positive: true }).default(120_000),
            peerSettle: duration().default(120_000),
            ackTimeout: duration({ positive: true }).default(60_000),
            tokens: list(uploadTokenSchema, { commaSeparated: false }).default(() => []),
          })
          .prefault({}),
      })
      .prefault({}),
    shutdown: z
      .strictObject({
        deadline: duration().default(10_000),
      })
      .prefault({}),
  })
  .superRefine((config, ctx) => {
    const fail = (path: (string | number)[], message: string) =>
      ctx.addIssue({ code: "custom", path, message });

    const queues = config.spool.queues;
    if (queues.length === 0) fail(["spool", "queues"], "must list at least one queue");
    queues.forEach((queue, i) => {
      if (queues.indexOf(queue) !== i)
        fail(["spool", "queues", i], `duplicate queue ${show(queue)}`);
    });
    const dlq = config.spool.leases.deadLetterQueue;
    if (dlq !== undefined && !queues.includes(dlq)) {
      fail(
        ["spool", "leases", "deadLetterQueue"],
        `must be one of spool.queues (${queues.join(", ")}), got ${show(dlq)}`,
      );
    }

    if (config.cache.enabled && !queues.includes(config.cache.queue)) {
      fail(
        ["cache", "queue"],
        `must be one of spool.queues (${queues.join(", ")}), got ${show(config.cache.queue)}`,
      );
    }
    const gc = config.cache.gc;
    if (config.cache.enabled && gc.enabled && !queues.includes(gc.rootsQueue)) {
      fail(
        ["cache", "gc", "rootsQueue"],
        `must be one of spool.queues (${queues.join(", ")}) when cache.gc.enabled, got ${show(gc.rootsQueue)}`,
      );
    }
    if (gc.rootsQueue === config.cache.queue) {
      fail(
        ["cache", "gc", "rootsQueue"],
        "must not be cache.queue (roots have a queue of their own)",
      );
    }
    if (gc.grace <= gc.maxPeerSilence) {
      fail(
        ["cache", "gc", "grace"],
        `must be longer than cache.gc.maxPeerSilence (${gc.maxPeerSilence} ms), got ${gc.grace} ms`,
      );
    }
    config.cache.uploadTokens.forEach((t, i) => {
      if (t.token.length < 16)
        fail(["cache", "uploadTokens", i, "token"], "must be at least 16 characters");
    });
    config.cache.gc.tokens.forEach((t, i) => {
      if (t.token.length < 16)
        fail(["cache", "gc", "tokens", i, "token"], "must be at least 16 characters");
    });
    if (config.cache.policy === "sign" && config.cache.secretKeyFile === undefined) {
      fail(
        ["cache", "secretKeyFile"],
        'is needed by cache.policy "sign" (the key the node signs with)',
      );
    }

    const tls = config.grpc.tls;
    if (tls.cert !== undefined && tls.key === undefined) {
      fail(["grpc", "tls", "cert"], "needs grpc.tls.key as well (cert and key go together)");
    }
    if (tls.key !== undefined && tls.cert === undefined) {
      fail(["grpc", "tls", "key"], "needs grpc.tls.cert as well (cert and key go together)");
    }
    if (tls.clientCa !== undefined && (tls.cert === undefined || tls.key === undefined)) {
      fail(
        ["grpc", "tls", "clientCa"],
        "needs grpc.tls.cert and grpc.tls.key (client certificates need TLS)",
      );
    }
    if (tls.requireClientCert && tls.clientCa === undefined) {
      fail(
        ["grpc", "tls", "requireClientCert"],
        "needs grpc.tls.clientCa to check clients against",
      );
    }

    // A List page and an Enqueue header (with its metadata) must each fit in one message.
    const maxMessage = config.grpc.maxMessageBytes;
    if (config.limits.listPageBytes > maxMessage - LIST_PAGE_SLACK) {
      fail(
        ["limits", "listPageBytes"],
        `must leave ${LIST_PAGE_SLACK} bytes of grpc.maxMessageBytes (${maxMessage}) for the rest of a page, got ${config.limits.listPageBytes}`,
      );
    }
    const batchMessage =
      config.limits.maxBatchBytes + config.limits.maxBatchEntries * BATCH_ENTRY_FRAMING;
    if (batchMessage > maxMessage) {
      fail(
        ["limits", "maxBatchBytes"],
        `with ${BATCH_ENTRY_FRAMING} bytes per entry for its queue, key and framing (limits.maxBatchEntries = ${config.limits.maxBatchEntries}), must fit in grpc.maxMessageBytes (${maxMessage}), got ${config.limits.maxBatchBytes}`,
      );
    }
    if (config.limits.metadataSize > config.limits.listPageBytes) {
      fail(
        ["limits", "metadataSize"],
        `must be at most limits.listPageBytes (${config.limits.listPageBytes}): every entry must fit in a List page, got ${config.limits.metadataSize}`,
      );
    }

    const grpcListen = parseHostPort(config.grpc.listen);
    const httpListen = parseHostPort(config.http.listen);
    if (
      grpcListen !== undefined &&
      httpListen !== undefined &&
      grpcListen.port !== 0 &&
      grpcListen.port === httpListen.port &&
      grpcListen.host === httpListen.host
    ) {
      fail(["http", "listen"], `is the same address as grpc.listen (${config.grpc.listen})`);
    }
    const cacheListen =
      config.cache.listen === undefined ? undefined : parseHostPort(config.cache.listen);
    for (const [key, other] of [
      ["grpc.listen", grpcListen],
      ["http.listen", httpListen],
    ] as const) {
      if (
        cacheListen !== undefined &&
        other !== undefined &&
        cacheListen.port !== 0 &&
        cacheListen.port === other.port &&
        cacheListen.host === other.host
      ) {
        fail(["cache", "listen"], `is the same address as ${key} (${config.cache.listen})`);
      }
    }

    const tokens = config.auth.tokens;
    tokens.forEach((token, i) => {
      const at = ["auth", "tokens", i];
      if ((token.token === undefined) === (token.tokenFile === undefined)) {
        fail(at, "needs exactly one of token and tokenFile");
      }
      if (tokens.findIndex((t) => t.name === token.name) !== i) {
        fail([...at, "name"], `duplicate token name ${show(token.name)}`);
      }
      if (token.token !== undefined && tokens.findIndex((t) => t.token === token.token) !== i) {
        fail([...at, "token"], `the same token as another entry (names must identify holders)`);
      }
      if (token.permissions.length === 0) {
        fail([...at, "permissions"], "must grant at least one permission");
      }
      token.permissions.forEach((permission, j) => {
        const pat = [...at, "permissions", j];
        if (permission.queues.length === 0) fail([...pat, "queues"], 'must list queues or "*"');
        if (permission.queues.includes("*") && permission.queues.length > 1) {
          fail([...pat, "queues"], '"*" stands alone: it already means every queue');
        }
        permission.queues.forEach((queue, k) => {
          if (queue !== "*" && !queues.includes(queue)) {
            fail(
              [...pat, "queues", k],
              `must be "*" or one of spool.queues (${queues.join(", ")}), got ${show(queue)}`,
            );
          }
        });
        if (permission.actions.length === 0) {
          fail([...pat, "actions"], `must list actions from ${ACTIONS.join(", ")}`);
        }
        permission.actions.forEach((action, k) => {
          if (permission.actions.indexOf(action) !== k) {
            fail([...pat, "actions", k], `duplicate action ${show(action)}`);
          }
        });
      });
    });

    config.peers.forEach((peer, i) => {
      if (peer.id === config.node.id) {
        fail(["peers", i, "id"], `is this node's own id (node.id); list only other nodes`);
      }
      if (config.peers.findIndex((p) => p.id === peer.id) !== i) {
        fail(["peers", i, "id"], `duplicate peer id ${show(peer.id)}`);
      }
    });
  });

/** Room in a List response beyond its entries' metadata and names (the other fields). */
const LIST_PAGE_SLACK = 64 * 1024;
/** What an EnqueueBatch entry takes besides its data and metadata (queue, key, framing). */
const BATCH_ENTRY_FRAMING = 512;

export type ParsedConfig = z.output<typeof configSchema>;

// The schema's output and the documented Config type must agree (tokens are resolved later).
type Resolved = Omit<ParsedConfig, "auth"> & { auth: Config["auth"] };
const agree = (value: Resolved): Config => value;
const agreeBack = (value: Config): Omit<ParsedConfig, "auth"> => value;
void agree;
void agreeBack;
