import { once } from "node:events";
import { connect } from "node:net";
import { join } from "node:path";
import pg from "pg";
import { afterEach, describe, expect, it, vi } from "vitest";
import { parseNarinfo } from "../../src/cache/narinfo.js";
import { parseNixPublicKey } from "../../src/cache/nix-key.js";
import { fileHashOfDigest } from "../../src/cache/spool-cache-store.js";
import { migrate } from "../../src/db/migrate.js";
import { Authorizer } from "../../src/node/auth/authorizer.js";
import {
  cacheWriteAccess,
  type NodeCache,
  startNodeCache,
} from "../../src/node/cache-http/node-cache.js";
import {
  type HttpServer,
  Metrics,
  silentLogger,
  startHttpServer,
} from "../../src/node/observability/index.js";
import { nodeEntryCodec } from "../../src/node/service/entry-meta.js";
import type { NodeSpool } from "../../src/node/service/spool-service.js";
import { Spool, timeSortableNames } from "../../src/spool/index.js";
import { NIX_XZ, readFixture, TEST_KEY } from "../helpers/cache-fixtures.js";
import {
  HAVE_NIX,
  NO_NIX_MESSAGE,
  nixCopyFrom,
  nixCopyTo,
  seedStore,
  writeNetrc,
} from "../helpers/nix-cli.js";
import { useSharedPostgres } from "../helpers/postgres.js";
import { get, put, rawHttp } from "../helpers/raw-http.js";
import { useTempDir } from "../helpers/tmp.js";

/**
 * A node's binary cache over its own spool (node entry headers, time-sortable names),
 * behind the node's HTTP server, with the node's token grants: what `geospool node` will
 * mount. Two caches over one spool directory stand for a node and the entries its
 * replicator brings in.
 */
const UPLOAD_TOKEN = "upload-token-0123456789abcdef";
const WORKER_TOKEN = "worker-token-0123456789abcdef";
const authorizer = new Authorizer([
  {
    name: "uploader",
    token: UPLOAD_TOKEN,
    permissions: [{ queues: ["cache"], actions: ["enqueue"] }],
  },
  {
    name: "worker",
    token: WORKER_TOKEN,
    permissions: [{ queues: ["inbox"], actions: ["enqueue", "dequeue"] }],
  },
]);

const dir = useTempDir("geospool-node-cache-");
const shared = useSharedPostgres("nodecache");
const running: Array<{ cache: NodeCache; http: HttpServer; pool: pg.Pool }> = [];
afterEach(async () => {
  for (const r of running.splice(0)) {
    await r.http.close();
    await r.cache.stop();
    await r.pool.end();
  }
});

async function nodeSpool(nodeId: string): Promise<NodeSpool> {
  return Spool.load(
    join(dir.path, "spool"),
    {
      metadata: nodeEntryCodec,
      queues: ["inbox", "cache"],
      nameGenerator: timeSortableNames(nodeId),
    },
    { createIfMissing: true },
  );
}

async function startCache(
  nodeId: string,
  auth = authorizer,
  clock?: () => number,
): Promise<{ port: number; spool: NodeSpool; cache: NodeCache }> {
  const spool = await nodeSpool(nodeId);
  // Each view of the spool is a node with its own database.
  const pool = new pg.Pool({ connectionString: await shared.freshDatabase(), max: 4 });
  await migrate(pool);
  const cache = await startNodeCache({
    spool,
    pool,
    queue: "cache",
    nodeId,
    info: { storeDir: "/nix/store", wantMassQuery: true, priority: 40 },
    rules: {
      policy: "require",
      storeDirs: ["/nix/store"],
      trustedNixKeys: [parseNixPublicKey(TEST_KEY)],
      trustedGuixKeys: [],
    },
    authorizer: auth,
    stagingDir: join(dir.path, `staging-${nodeId}`),
    maxNarBytes: 1 << 20,
    stagingTtlMs: 60_000,
    hitTtlSeconds: 60,
    missTtlSeconds: 5,
    refreshEveryMs: 50,
    logger: silentLogger(),
    clock,
  });
  const http = await startHttpServer({
    listen: "127.0.0.1:0",
    metrics: new Metrics(),
    ready: () => true,
    logger: silentLogger(),
    fallback: cache.handle,
    checkContinue: cache.checkContinue,
  });
  running.push({ cache, http, pool });
  return { port: http.port, spool, cache };
}

describe("a node's binary cache", () => {
  it("lets a token write when it is an upload token or may enqueue on the cache queue, nobody without one", () => {
    expect(cacheWriteAccess(authorizer, "cache", UPLOAD_TOKEN)).toEqual({
      kind: "allowed",
      who: "uploader",
    });
    expect(cacheWriteAccess(authorizer, "cache", WORKER_TOKEN)).toEqual({
      kind: "forbidden",
      who: "worker",
    });
    expect(cacheWriteAccess(authorizer, "cache", "nope-nope-nope-nope-nope")).toEqual({
      kind: "unauthenticated",
    });
    expect(cacheWriteAccess(authorizer, "cache", undefined)).toEqual({ kind: "unauthenticated" });
    expect(cacheWriteAccess(new Authorizer([]), "cache", UPLOAD_TOKEN)).toEqual({
      kind: "unauthenticated",
    });
    const own = [{ name: "ci", token: "ci-upload-token-0123456789" }];
    expect(
      cacheWriteAccess(new Authorizer([]), "cache", "ci-upload-token-0123456789", own),
    ).toEqual({ kind: "allowed", who: "ci" });
    expect(cacheWriteAccess(new Authorizer([]), "cache", UPLOAD_TOKEN, own)).toEqual({
      kind: "unauthenticated",
    });
    expect(cacheWriteAccess(authorizer, "cache", WORKER_TOKEN, own)).toEqual({
      kind: "forbidden",
      who: "worker",
    });
  });

  it("stores an upload as a node entry whose data digest is the FileHash; another view of the spool serves it", async () => {
    const a = await startCache("eu-1");
    const [file, bytes] = [
      `l493h11hsb577v1lhgwxzcmxh4q2m02w.narinfo`,
      readFixture(NIX_XZ, "l493h11hsb577v1lhgwxzcmxh4q2m02w.narinfo"),
    ];
    const info = parseNarinfo(bytes);
    const [nar, narinfo] = await rawHttp(a.port, [
      put(`/${info.url}`, readFixture(NIX_XZ, info.url), UPLOAD_TOKEN),
      put(`/${file}`, bytes, UPLOAD_TOKEN),
      get("/nix-cache-info"),
    ]);
    expect(nar!.status).toBe(200);
    expect(narinfo!.status, narinfo!.body.toString()).toBe(200);
    const [entry] = await a.spool.list("cache");
    const meta = await entry!.direct.contents();
    expect(entry!.name).toMatch(/eu-1/);
    expect(fileHashOfDigest(meta.sha256)).toBe(`sha256:${info.url.slice(4, 56)}`);
    expect(meta.size).toBe(240);

    const b = await startCache("us-1");
    const [served] = await rawHttp(b.port, [get(`/${file}`)]);
    expect(served!.body.equals(bytes)).toBe(true);
    const bytes2 = readFixture(NIX_XZ, "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx.narinfo");
    const lib = parseNarinfo(bytes2);
    await rawHttp(a.port, [
      put(`/${lib.url}`, readFixture(NIX_XZ, lib.url), UPLOAD_TOKEN),
      put("/3wwj8mpk0lbnanhsfxw3m2birs5gl6xx.narinfo", bytes2, UPLOAD_TOKEN),
      get("/nix-cache-info"),
    ]);
    await vi.waitFor(
      async () => {
        const [r] = await rawHttp(b.port, [get("/3wwj8mpk0lbnanhsfxw3m2birs5gl6xx.narinfo")]);
        expect(r!.status).toBe(200);
      },
      { timeout: 10_000, interval: 50 },
    );
  });

  it("drops a staged listing whose narinfo has not come within cache.stagingTtl, as it does a nar", async () => {
    let now = Date.now();
    const a = await startCache("eu-1", authorizer, () => now);
    const upload = async (hash: string) => {
      const bytes = readFixture(NIX_XZ, `${hash}.narinfo`);
      const info = parseNarinfo(bytes);
      const replies = await rawHttp(a.port, [
        put(`/${info.url}`, readFixture(NIX_XZ, info.url), UPLOAD_TOKEN),
        put(`/${hash}.narinfo`, bytes, UPLOAD_TOKEN, true),
      ]);
      for (const r of replies) expect(r!.status, r!.body.toString()).toBe(200);
      // Asked once the narinfo is stored (node:http runs pipelined handlers concurrently).
      return (await rawHttp(a.port, [get(`/${hash}.ls`)]))[0]!;
    };
    const [stale, fresh] = ["l493h11hsb577v1lhgwxzcmxh4q2m02w", "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx"];
    const listing = (hash: string) =>
      Buffer.from(`{"version":1,"root":{"type":"regular","size":${hash.length}}}`);
    const [ls] = await rawHttp(a.port, [put(`/${stale}.ls`, listing(stale), UPLOAD_TOKEN, true)]);
    expect(ls!.status).toBe(200);
    expect(a.cache.stagedListings()).toBe(1);
    now += 60_001; // past stagingTtlMs: the next refresh tick drops it
    await vi.waitFor(() => expect(a.cache.stagedListings()).toBe(0), {
      timeout: 10_000,
      interval: 20,
    });
    expect((await upload(stale)).status).toBe(404);

    // A listing within the bound is kept and served with its narinfo.
    await rawHttp(a.port, [put(`/${fresh}.ls`, listing(fresh), UPLOAD_TOKEN, true)]);
    now += 59_000;
    const served = await upload(fresh);
    expect(served.status).toBe(200);
    expect(served.body.equals(listing(fresh))).toBe(true);
    expect(a.cache.stagedListings()).toBe(0);
  });

  it("refuses a token that may not write with 403 and stores nothing", async () => {
    const a = await startCache("eu-1");
    const bytes = readFixture(NIX_XZ, "l493h11hsb577v1lhgwxzcmxh4q2m02w.narinfo");
    const head = `PUT /l493h11hsb577v1lhgwxzcmxh4q2m02w.narinfo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${WORKER_TOKEN}\r\nConnection: close\r\nContent-Length: ${bytes.length}\r\n\r\n`;
    const [r] = await rawHttp(a.port, [Buffer.concat([Buffer.from(head), bytes])]);
    expect(r!.status).toBe(403);
    expect(await a.spool.list("cache")).toEqual([]);
  });

  it("answers Expect: 100-continue with a refusal before the body when the caller may not write", async () => {
    const a = await startCache("eu-1");
    const head = (auth: string, length: number) =>
      `PUT /nar/0l8gkfq1153q73v79qb2p2ddh7ywk95mp38hr7k6019ybfjvkbqp.nar.xz HTTP/1.1\r\nHost: x\r\n${auth}Expect: 100-continue\r\nContent-Length: ${length}\r\n\r\n`;
    const firstLine = async (text: string): Promise<string> => {
      const socket = connect(a.port, "127.0.0.1");
      socket.write(text);
      const [chunk] = (await once(socket, "data")) as [Buffer];
      socket.destroy();
      return chunk.toString().split("\r\n")[0]!;
    };
    expect(await firstLine(head("", 240))).toBe("HTTP/1.1 401 Unauthorized");
    expect(await firstLine(head(`Authorization: Bearer ${WORKER_TOKEN}\r\n`, 240))).toBe(
      "HTTP/1.1 403 Forbidden",
    );
    expect(await firstLine(head(`Authorization: Bearer ${UPLOAD_TOKEN}\r\n`, 2 << 20))).toBe(
      "HTTP/1.1 413 Payload Too Large",
    );
    expect(await firstLine(head(`Authorization: Bearer ${UPLOAD_TOKEN}\r\n`, 240))).toBe(
      "HTTP/1.1 100 Continue",
    );
  });

  it.skipIf(!HAVE_NIX)(
    "takes nix copy --to with netrc credentials and gives the closure back to nix copy --from",
    async () => {
      const a = await startCache("eu-1");
      const local = join(dir.path, "local");
      await seedStore(dir.path, local);
      const netrc = await writeNetrc(join(dir.path, "etc", "netrc"), UPLOAD_TOKEN);
      const up = await nixCopyTo(dir.path, local, `http://127.0.0.1:${a.port}`, netrc);
      expect(up.code, up.stderr).toBe(0);
      expect(await a.spool.list("cache")).toHaveLength(2);
      const down = await nixCopyFrom(
        dir.path,
        `http://127.0.0.1:${a.port}`,
        join(dir.path, "fresh"),
        TEST_KEY,
      );
      expect(down.code, down.stderr).toBe(0);
    },
  );
  if (!HAVE_NIX) console.warn(`node-cache: ${NO_NIX_MESSAGE}`);
});
