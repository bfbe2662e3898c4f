import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import pg from "pg";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { CacheReader } from "../../src/cache/cache-reader.js";
import type { CacheWriter } from "../../src/cache/cache-writer.js";
import { canDecompress } from "../../src/cache/decompress.js";
import { openCacheDirectory } from "../../src/cache/dir-cache-reader.js";
import { cacheDirectoryWriter } from "../../src/cache/dir-cache-writer.js";
import { parseGuixPublicKeys } from "../../src/cache/guix-signature.js";
import { NarStaging } from "../../src/cache/nar-staging.js";
import { parseNarinfo } from "../../src/cache/narinfo.js";
import { formatNixPublicKey, generateNixKey, parseNixPublicKey } from "../../src/cache/nix-key.js";
import { checkNarinfoSignatures } from "../../src/cache/nix-signature.js";
import { type CacheRecord, SpoolCacheStore } from "../../src/cache/spool-cache-store.js";
import type { SignaturePolicy } from "../../src/cache/upload-check.js";
import { migrate } from "../../src/db/migrate.js";
import { cacheUploadHandler, type WriteAccess } from "../../src/node/cache-http/cache-upload.js";
import { type HttpServer, silentLogger } from "../../src/node/observability/index.js";
import { jsonCodec, Spool } from "../../src/spool/index.js";
import {
  APP_PATH,
  GUIX,
  GUIX_KEY_TEXT,
  NIX_XZ,
  narinfoFixtures,
  readFixture,
  TEST_KEY,
} from "../helpers/cache-fixtures.js";
import { startCacheServer } from "../helpers/cache-server.js";
import {
  HAVE_NIX,
  NO_NIX_MESSAGE,
  nixCopyFrom,
  nixCopyTo,
  runNix,
  seedStore,
  writeNetrc,
} from "../helpers/nix-cli.js";
import { useSharedPostgres } from "../helpers/postgres.js";
import { get, rawHttp, put as rawPut } from "../helpers/raw-http.js";
import { useTempDir } from "../helpers/tmp.js";

/**
 * Uploads into a node's cache routes (here stored in a binary-cache directory), as the real
 * `nix copy --to http://` sends them and as curl sends Guix's: checked, then served, or
 * rejected with a reason and never served.
 */
const TOKEN = "upload-token-0123456789abcdef";
const NODE_KEY = generateNixKey("node-1");
const GUIX_KEY = parseGuixPublicKeys(GUIX_KEY_TEXT);

const dir = useTempDir("geospool-cache-upload-");
const shared = useSharedPostgres("cacheupload");
let server: HttpServer | undefined;
let pool: pg.Pool | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  await pool?.end();
  pool = undefined;
});

function authorize(token: string | undefined): WriteAccess {
  if (token === undefined) return { kind: "unauthenticated" };
  if (token === TOKEN) return { kind: "allowed", who: "uploader" };
  if (token === "reader-token-0123456789") return { kind: "forbidden", who: "reader" };
  return { kind: "unauthenticated" };
}

let staging = "";

async function startCache(
  policy: SignaturePolicy,
  kind: "dir" | "spool" = "dir",
  opts: { commitDelayMs?: number; narWaitMs?: number } = {},
): Promise<{ port: number; cache: string }> {
  const cache = join(dir.path, "cache");
  await mkdir(cache, { recursive: true });
  await writeFile(
    join(cache, "nix-cache-info"),
    "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n",
  );
  let reader: CacheReader;
  let writer: CacheWriter;
  if (kind === "dir") {
    reader = await openCacheDirectory(cache);
    writer = cacheDirectoryWriter(cache);
  } else {
    type Meta = { record?: CacheRecord; sha256: string; size: number };
    const spool = await Spool.create(join(dir.path, "spool"), {
      metadata: jsonCodec<Meta>(),
      queues: ["cache"],
    });
    pool = new pg.Pool({ connectionString: await shared.freshDatabase(), max: 4 });
    await migrate(pool);
    const store = await SpoolCacheStore.open({
      spool,
      pool,
      queue: "cache",
      codec: { wrap: (record, data) => ({ record, ...data }), unwrap: (m: Meta) => m.record },
      info: { storeDir: "/nix/store", wantMassQuery: true, priority: 30 },
      origin: "eu-1",
    });
    reader = store;
    writer = store;
  }
  if (opts.commitDelayMs !== undefined) {
    // A disk slower than the upload idle timeout (seen under load).
    const slow = writer;
    const ms = opts.commitDelayMs;
    writer = {
      storedNarFacts: (path) => slow.storedNarFacts(path),
      commit: async (upload) => {
        await new Promise((r) => setTimeout(r, ms));
        return slow.commit(upload);
      },
      reject: (rejection) => slow.reject(rejection),
    };
  }
  staging = join(dir.path, "staging");
  const upload = cacheUploadHandler({
    reader,
    writer,
    staging: await NarStaging.open(staging, { maxBytes: 1024 * 1024 }),
    rules: {
      policy,
      storeDirs: ["/nix/store", "/gnu/store"],
      trustedNixKeys: [parseNixPublicKey(TEST_KEY)],
      trustedGuixKeys: GUIX_KEY,
      nodeKey: NODE_KEY,
    },
    authorize,
    logger: silentLogger(),
    idleTimeoutMs: 500,
    narWaitMs: opts.narWaitMs,
  });
  server = await startCacheServer({ reader, upload });
  return { port: server.port, cache };
}

/** A raw PUT with the upload token (null: no Authorization header). */
function put(path: string, body: Buffer | string, token: string | null = TOKEN, close = false) {
  return rawPut(path, body, token, close);
}

async function narinfos(cache: string): Promise<string[]> {
  return (await readdir(cache)).filter((f) => f.endsWith(".narinfo")).sort();
}

describe("uploads over HTTP", () => {
  it("stores curl-style uploads of guix publish's narinfos and nars, served byte for byte", async () => {
    const { port, cache } = await startCache("require");
    for (const [file, bytes] of narinfoFixtures(GUIX)) {
      const info = parseNarinfo(bytes);
      const nar = info.files[0]!.url;
      const [n, i] = await rawHttp(port, [
        put(`/${nar}`, readFixture(GUIX, nar)),
        put(`/${file}`, bytes),
        get("/nix-cache-info"),
      ]);
      expect(n!.status, n!.body.toString()).toBe(200);
      expect(i!.status, i!.body.toString()).toBe(200);
      const [served] = await rawHttp(port, [get(`/${file}`)]);
      expect(served!.body.equals(bytes)).toBe(true);
    }
    expect(await narinfos(cache)).toHaveLength(3);
  });

  it.skipIf(!canDecompress("lzip"))(
    "checks a Guix lzip nar (no FileHash) against its NarHash: serves the real one, rejects another",
    async () => {
      const { port, cache } = await startCache("require", "dir", { narWaitMs: 300 });
      const [file, bytes] = narinfoFixtures(GUIX).find(([f]) => f.startsWith("97yia4hp"))!;
      const info = parseNarinfo(bytes);
      const gz = info.files.find((f) => f.compression === "gzip")!;
      const nar = gunzipSync(readFixture(GUIX, gz.url));
      const lzip = (data: Buffer) => execFileSync("lzip", ["-9", "-c"], { input: data });
      // The lines after Signature (URL, Compression, FileSize) are not signed: the narinfo
      // of the same item offered as lzip keeps its signature.
      const head = bytes.toString().slice(0, bytes.toString().indexOf("URL: "));
      const narinfo = (url: string, size: number) =>
        `${head}URL: ${url}\nCompression: lzip\nFileSize: ${size}\n`;
      const good = lzip(nar);
      const url = "nar/lzip/97yia4hp8gd4g5cjz55l06xx69h7nfwy-e2e-a.txt";
      const [n, i] = await rawHttp(port, [
        put(`/${url}`, good),
        put(`/${file}`, narinfo(url, good.length)),
        get("/nix-cache-info"), // asks to close the connection
      ]);
      expect(n!.status, n!.body.toString()).toBe(200);
      expect(i!.status, i!.body.toString()).toBe(200);
      const [served] = await rawHttp(port, [get(`/${file}`)]);
      expect(served!.body.toString()).toBe(narinfo(url, good.length));

      // Another nar of the same size, well-formed lzip: only its NarHash can tell.
      const other = Buffer.from(nar);
      other[other.length - 20]! ^= 1;
      const bad = lzip(other);
      const badUrl = "nar/lzip/97yia4hp8gd4g5cjz55l06xx69h7nfwy-e2e-a.txt.2";
      await rm(join(cache, `${file}`), { force: true });
      const [, b] = await rawHttp(port, [
        put(`/${badUrl}`, bad),
        put(`/${file}`, narinfo(badUrl, bad.length)),
        get("/nix-cache-info"),
      ]);
      expect(b!.status).toBe(400);
      expect(b!.body.toString()).toMatch(/rejected \(nar_hash\)/);
    },
  );

  it("rejects a narinfo whose FileSize or FileHash does not match, keeps why, and never serves it", async () => {
    const { port, cache } = await startCache("allow-unsigned", "dir", { narWaitMs: 300 });
    const [file, bytes] = narinfoFixtures(NIX_XZ)[2]!;
    const info = parseNarinfo(bytes);
    const nar = readFixture(NIX_XZ, info.url);
    const tampered = bytes.toString().replace("FileSize: 240", "FileSize: 241");
    const [a, b, c] = await rawHttp(port, [
      put(`/${info.url}`, nar),
      put(`/${file}`, tampered),
      get(`/${file}`),
    ]);
    expect(a!.status).toBe(200);
    expect(b!.status).toBe(400);
    expect(b!.body.toString()).toMatch(
      /rejected \(file_size\): .*FileSize 241, the upload has 240 bytes/,
    );
    expect(c!.status).toBe(404);
    const flipped = Buffer.from(nar);
    flipped[50]! ^= 1;
    const [, e] = await rawHttp(port, [
      put(`/${info.url}`, flipped),
      put(`/${file}`, bytes),
      get("/nix-cache-info"),
    ]);
    expect(e!.body.toString()).toMatch(/rejected \(file_hash\)/);
    expect(await narinfos(cache)).toEqual([]);
    const rejected = (await readFile(join(cache, "rejected.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rejected.map((r) => [r.hashPart, r.reason, r.by])).toEqual([
      [info.storePath.hashPart, "file_size", "uploader"],
      [info.storePath.hashPart, "file_hash", "uploader"],
    ]);
    const [doc, docBytes] = narinfoFixtures(NIX_XZ)[0]!;
    // A narinfo whose nar never comes: held (202), then rejected after the bound.
    const [held, notYet] = await rawHttp(port, [put(`/${doc}`, docBytes), get(`/${doc}`)]);
    expect(held!.status).toBe(202);
    expect(notYet!.status).toBe(404);
    await vi.waitFor(
      async () => {
        const lines = (await readFile(join(cache, "rejected.jsonl"), "utf8")).trim().split("\n");
        expect(JSON.parse(lines.at(-1)!)).toMatchObject({
          hashPart: doc.slice(0, 32),
          reason: "nar_missing",
        });
      },
      { timeout: 10_000, interval: 50 },
    );
    expect(await narinfos(cache)).toEqual([]);
  });

  it("refuses writes without a token or with a token that may not write, storing nothing", async () => {
    const { port, cache } = await startCache("allow-unsigned");
    const [file, bytes] = narinfoFixtures(NIX_XZ)[0]!;
    const [none] = await rawHttp(port, [put(`/${file}`, bytes, null, true)]);
    expect(none!.status).toBe(401);
    expect(none!.headers["www-authenticate"]).toMatch(/^Basic /);
    const [wrong] = await rawHttp(port, [put(`/${file}`, bytes, "wrong-token-0123456789", true)]);
    expect(wrong!.status).toBe(401);
    const [reader] = await rawHttp(port, [put(`/${file}`, bytes, "reader-token-0123456789", true)]);
    expect(reader!.status).toBe(403);
    expect(await readdir(cache)).toEqual(["nix-cache-info"]);
    const [big] = await rawHttp(port, [
      put(`/${file}`, Buffer.alloc(1024 * 1024 + 1, 65), TOKEN, true),
    ]);
    expect(big!.status).toBe(413);
    const [logs] = await rawHttp(port, [put("/log/abc-foo.drv", "build log", TOKEN, true)]);
    expect(logs!.status).toBe(200);
    expect(await readdir(cache)).toEqual(["nix-cache-info"]);
  });

  it("answers an upload whose commit takes longer than the idle timeout, and the requests after it", async () => {
    const { port } = await startCache("require", "dir", { commitDelayMs: 1_000 });
    const [file, bytes] = narinfoFixtures(GUIX)[0]!;
    const nar = parseNarinfo(bytes).files[0]!.url;
    const answers = await rawHttp(port, [
      put(`/${nar}`, readFixture(GUIX, nar)),
      put(`/${file}`, bytes),
      get("/nix-cache-info"),
    ]);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    const [served] = await rawHttp(port, [get(`/${file}`)]);
    expect(served!.body.equals(bytes)).toBe(true);
  });

  it("cuts off a stalled upload and leaves nothing behind", async () => {
    const { port, cache } = await startCache("allow-unsigned");
    const socket = connect(port, "127.0.0.1");
    await once(socket, "connect");
    socket.write(
      `PUT /nar/0l8gkfq1153q73v79qb2p2ddh7ywk95mp38hr7k6019ybfjvkbqp.nar.xz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 1000\r\n\r\n${"x".repeat(10)}`,
    );
    socket.resume();
    const started = Date.now();
    await once(socket, "close");
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    // The server side learns of the close on its own schedule: wait for its cleanup.
    await vi.waitFor(async () => expect(await readdir(staging)).toEqual([]), {
      timeout: 5_000,
      interval: 20,
    });
    expect(await readdir(cache)).toEqual(["nix-cache-info"]);
  });

  describe.skipIf(!HAVE_NIX)("with the real nix (2.8)", () => {
    const netrc = (token: string) => writeNetrc(join(dir.path, "netrc"), token);

    async function localStoreWithApp(): Promise<string> {
      const store = join(dir.path, "local");
      await seedStore(dir.path, store);
      return store;
    }

    it("nix copy --to the node uploads a signed closure that nix copy --from brings back", async () => {
      const { port, cache } = await startCache("require");
      const local = await localStoreWithApp();
      const up = await nixCopyTo(dir.path, local, `http://127.0.0.1:${port}`, await netrc(TOKEN));
      expect(up.code, up.stderr).toBe(0);
      expect(await narinfos(cache)).toEqual([
        "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx.narinfo",
        "l493h11hsb577v1lhgwxzcmxh4q2m02w.narinfo",
      ]);
      const served = parseNarinfo(
        await readFile(join(cache, "l493h11hsb577v1lhgwxzcmxh4q2m02w.narinfo")),
      );
      expect(checkNarinfoSignatures(served, [parseNixPublicKey(TEST_KEY)])).toEqual([
        { kind: "valid", keyName: "geospool-testdata-1" },
      ]);
      const down = await nixCopyFrom(
        dir.path,
        `http://127.0.0.1:${port}`,
        join(dir.path, "fresh"),
        TEST_KEY,
      );
      expect(down.code, down.stderr).toBe(0);
    });

    it("nix copy --to and --from through a spool-backed store: one entry per nar", async () => {
      const { port } = await startCache("require", "spool");
      const local = await localStoreWithApp();
      const up = await nixCopyTo(dir.path, local, `http://127.0.0.1:${port}`, await netrc(TOKEN));
      expect(up.code, up.stderr).toBe(0);
      const spool = await Spool.load(join(dir.path, "spool"), {
        metadata: jsonCodec<unknown>(),
        queues: ["cache"],
      });
      expect(await spool.list("cache")).toHaveLength(2);
      const down = await nixCopyFrom(
        dir.path,
        `http://127.0.0.1:${port}`,
        join(dir.path, "fresh"),
        TEST_KEY,
      );
      expect(down.code, down.stderr).toBe(0);
      const info = await runNix(
        ["path-info", "--store", `http://127.0.0.1:${port}`, "--json", APP_PATH],
        dir.path,
      );
      expect(JSON.parse(info.stdout)[0]).toMatchObject({ path: APP_PATH, narSize: 528 });
    });

    it("without credentials nix copy --to fails and nothing is stored", async () => {
      const { port, cache } = await startCache("require");
      const local = await localStoreWithApp();
      const up = await runNix(
        ["copy", "--from", local, "--to", `http://127.0.0.1:${port}`, APP_PATH],
        dir.path,
      );
      expect(up.code).not.toBe(0);
      expect(up.stderr).toMatch(/401/);
      expect(await narinfos(cache)).toEqual([]);
    });

    it("an unsigned path is rejected under require and signed by the node under sign", async () => {
      const local = join(dir.path, "local");
      await writeFile(join(dir.path, "hello.txt"), "hello from geospool\n");
      const added = await runNix(
        ["store", "add-file", "--store", local, join(dir.path, "hello.txt")],
        dir.path,
      );
      expect(added.code, added.stderr).toBe(0);
      const path = added.stdout.trim();
      const strict = await startCache("require");
      const refused = await nixCopyTo(
        dir.path,
        local,
        `http://127.0.0.1:${strict.port}`,
        await netrc(TOKEN),
        [path],
      );
      expect(refused.code).not.toBe(0);
      expect(await narinfos(strict.cache)).toEqual([]);
      expect(await readFile(join(strict.cache, "rejected.jsonl"), "utf8")).toMatch(
        /"reason":"unsigned"/,
      );
      await server!.close();
      server = undefined;
      await rm(strict.cache, { recursive: true });

      const signing = await startCache("sign");
      const ok = await nixCopyTo(
        dir.path,
        local,
        `http://127.0.0.1:${signing.port}`,
        await netrc(TOKEN),
        [path],
      );
      expect(ok.code, ok.stderr).toBe(0);
      const [file] = await narinfos(signing.cache);
      const served = parseNarinfo(await readFile(join(signing.cache, file!)));
      expect(checkNarinfoSignatures(served, [NODE_KEY.publicKey])).toEqual([
        { kind: "valid", keyName: "node-1" },
      ]);
      const verify = await runNix(
        [
          "store",
          "verify",
          "--store",
          `http://127.0.0.1:${signing.port}`,
          "--trusted-public-keys",
          formatNixPublicKey(NODE_KEY.publicKey),
          "--sigs-needed",
          "1",
          path,
        ],
        dir.path,
      );
      expect(verify.code, verify.stderr).toBe(0);
    });
  });
  if (!HAVE_NIX) console.warn(`cache-upload: ${NO_NIX_MESSAGE}`);
});
