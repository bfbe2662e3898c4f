/**
 * The data of bench/http.ts: N generated narinfos (each valid, with its own hash part and
 * its own small nar) and one large nar, written twice: as cache entries in a node's spool
 * (the spool's bulk path, `enqueueBatch`: no HTTP upload) and as static
 * files for nginx (`<hash>.narinfo`, `nar/<file>`; the large nar is a hard link to the
 * entry's data file, so the two servers read the very same bytes).
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { link, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { formatHash, type Hash } from "../../src/cache/hash.js";
import { buildNarinfo } from "../../src/cache/narinfo-build.js";
import { nix32Encode } from "../../src/cache/nix32.js";
import type { CacheRecord } from "../../src/cache/spool-cache-store.js";
import { mapLimit } from "../../src/common/map-limit.js";
import { nodeCacheCodec } from "../../src/node/cache-http/node-cache.js";
import type { NodeSpool } from "../../src/node/service/spool-service.js";

export interface HttpFixture {
  /** Hash parts present on both servers (in the order written). */
  hashParts: string[];
  /** The large nar's URL path (`/nar/<file>.nar`) and size. */
  bigNar: { path: string; size: number };
}

const sha256 = (data: Uint8Array | string): Hash => ({
  algorithm: "sha256",
  digest: Uint8Array.from(createHash("sha256").update(data).digest()),
});

/** A hash part made from `seed` (20 bytes of its sha256, as Nix truncates). */
function hashPartOf(seed: string): string {
  return nix32Encode(createHash("sha256").update(seed).digest().subarray(0, 20));
}

function narinfoFor(i: number, nar: Buffer, hashPart: string, refs: string[]) {
  const fileHash = sha256(nar);
  const url = `nar/${formatHash(fileHash).slice("sha256:".length)}.nar`;
  const text = buildNarinfo({
    storePath: { hashPart, name: `bench-path-${i}` },
    url,
    compression: "none",
    fileHash,
    fileSize: nar.length,
    narHash: fileHash,
    narSize: nar.length,
    references: refs.map((h, k) => ({ hashPart: h, name: `bench-path-${i - k - 1}` })),
    system: "x86_64-linux",
    sigs: [`bench-1:${createHash("sha512").update(hashPart).digest("base64")}`],
  });
  return { url, text };
}

function record(hashPart: string, narinfo: Buffer, url: string, i: number): CacheRecord {
  return {
    v: 1,
    hashPart,
    narinfo: narinfo.toString("utf8"),
    url,
    trust: "trusted",
    origin: "bench",
    hlc: 1_700_000_000_000 + i,
    by: "bench",
  };
}

/** The hash parts `writeHttpFixture` writes for `count` narinfos, in order. */
export function fixtureHashParts(count: number): string[] {
  return Array.from({ length: count }, (_, i) => hashPartOf(`bench-${i}`));
}

/**
 * Write `count` narinfos (each with a small nar of its own, referencing up to two earlier
 * paths) and one nar of `bigBytes` bytes. The entries go through the spool's bulk path
 * (`enqueueBatch`, `batch` entries per call, `parallel` calls at a time), the static files
 * beside them.
 */
export async function writeHttpFixture(options: {
  spool: NodeSpool;
  queue: string;
  staticDir: string;
  count: number;
  bigBytes: number;
  batch?: number;
  parallel?: number;
  onProgress?: (done: number) => void;
}): Promise<HttpFixture> {
  const { spool, queue, staticDir, count } = options;
  const codec = nodeCacheCodec(() => 1_700_000_000_000);
  const batchSize = options.batch ?? 512;
  await mkdir(join(staticDir, "nar"), { recursive: true });
  const hashParts = fixtureHashParts(count);
  let next = 0;
  let done = 0;
  const worker = async () => {
    for (let from = next; from < count; from = next) {
      next = Math.min(count, from + batchSize);
      const items = [];
      const files: Array<[string, Buffer | string]> = [];
      for (let i = from; i < next; i++) {
        const hashPart = hashParts[i] as string;
        const nar = Buffer.from(`nar of bench path ${i} ${hashPart}\n`.repeat(4));
        const refs = hashParts.slice(Math.max(0, i - 2), i).reverse();
        const { url, text } = narinfoFor(i, nar, hashPart, refs);
        const digest = createHash("sha256").update(nar).digest("hex");
        items.push({
          queue,
          metadata: codec.wrap(record(hashPart, text, url, i), {
            sha256: digest,
            size: nar.length,
          }),
          data: nar,
        });
        files.push([join(staticDir, `${hashPart}.narinfo`), text], [join(staticDir, url), nar]);
      }
      const results = await spool.enqueueBatch(items);
      const failed = results.find((r) => !r.ok);
      if (failed !== undefined && !failed.ok) throw failed.error;
      await Promise.all(files.map(([path, bytes]) => writeFile(path, bytes)));
      const before = done;
      done += results.length;
      if (Math.floor(done / 5000) > Math.floor(before / 5000)) options.onProgress?.(done);
    }
  };
  await Promise.all(Array.from({ length: options.parallel ?? 4 }, worker));
  return { hashParts, bigNar: await writeBigNar(options) };
}

/** One nar of `bigBytes` pseudo-random bytes, as an entry and hard-linked for nginx. */
async function writeBigNar(options: {
  spool: NodeSpool;
  queue: string;
  staticDir: string;
  bigBytes: number;
}): Promise<{ path: string; size: number }> {
  const { spool, queue, bigBytes } = options;
  const chunk = createHash("sha512").update("bench big nar").digest();
  const block = Buffer.alloc(1 << 20);
  for (let o = 0; o < block.length; o += chunk.length) chunk.copy(block, o);
  async function* body(hash: ReturnType<typeof createHash>) {
    for (let left = bigBytes; left > 0; left -= block.length) {
      // Each MiB differs (its first 8 bytes count), so nothing compresses it away.
      block.writeBigUInt64BE(BigInt(left), 0);
      const piece = left >= block.length ? block : block.subarray(0, left);
      hash.update(piece);
      yield Buffer.from(piece);
    }
  }
  const hash = createHash("sha256");
  const hashPart = hashPartOf("bench-big");
  let url = "";
  const codec = nodeCacheCodec(() => 1_700_000_000_000);
  const entry = await spool.enqueueDeferred(queue, body(hash), ({ size }) => {
    const digest = hash.digest();
    const fileHash: Hash = { algorithm: "sha256", digest: Uint8Array.from(digest) };
    url = `nar/${formatHash(fileHash).slice("sha256:".length)}.nar`;
    const text = buildNarinfo({
      storePath: { hashPart, name: "bench-big" },
      url,
      compression: "none",
      fileHash,
      fileSize: size,
      narHash: fileHash,
      narSize: size,
      references: [],
    });
    return codec.wrap(record(hashPart, text, url, -1), { sha256: digest.toString("hex"), size });
  });
  await link(entry.dataFile().path, join(options.staticDir, url));
  return { path: `/${url}`, size: bigBytes };
}

/** Read a file through once, so both servers start from the page cache. */
export async function warmFile(path: string): Promise<void> {
  for await (const _ of createReadStream(path, { highWaterMark: 1 << 20 })) {
    // read and dropped
  }
}

/**
 * Read every narinfo file nginx serves, so its hits come from the page cache as the node's
 * come from memory. Without it nginx's hits read files the kernel had dropped (this
 * machine's proactive reclaim drops cold pages within the hour): 3,000 to 6,000 req/s
 * against 28,000 warm, which made the node look four times faster than the floor.
 */
export async function warmNarinfos(staticDir: string, hashParts: readonly string[]): Promise<void> {
  await mapLimit(hashParts, 32, async (h) => {
    await readFile(join(staticDir, `${h}.narinfo`));
  });
}
