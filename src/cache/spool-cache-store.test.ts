import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { describe, expect, it } from "vitest";
import {
  NIX_XZ,
  NIX_ZSTD,
  narinfoFixtures,
  readFixture,
} from "../../test/helpers/cache-fixtures.js";
import { useTempDir } from "../../test/helpers/tmp.js";
import { jsonCodec, Spool } from "../spool/index.js";
import { NarStaging } from "./nar-staging.js";
import { parseNarinfo } from "./narinfo.js";
import {
  type CacheEntryCodec,
  type CacheRecord,
  fileHashOfDigest,
  SpoolCacheStore,
} from "./spool-cache-store.js";

interface Meta {
  record?: CacheRecord;
  sha256: string;
  size: number;
}
const codec: CacheEntryCodec<Meta> = {
  wrap: (record, data) => ({ record, ...data }),
  unwrap: (m) => m.record,
};
const INFO = { storeDir: "/nix/store", wantMassQuery: true, priority: 30 };
const dir = useTempDir("geospool-spool-cache-");

async function node(origin: string, clock: () => number) {
  const spool = await Spool.load(
    join(dir.path, "spool"),
    { metadata: jsonCodec<Meta>(), queues: ["cache", "other"] },
    { createIfMissing: true },
  );
  const store = new SpoolCacheStore({ spool, queue: "cache", codec, info: INFO, origin, clock });
  const staging = await NarStaging.open(join(dir.path, `staging-${origin}`), { maxBytes: 1 << 20 });
  return { spool, store, staging };
}

async function upload(n: Awaited<ReturnType<typeof node>>, cache: string, index: number) {
  const [, bytes] = narinfoFixtures(cache)[index]!;
  const info = parseNarinfo(bytes);
  const staged = await n.staging.put(info.url, Readable.from([readFixture(cache, info.url)]));
  if (staged.kind !== "staged") throw new Error(staged.kind);
  const nar = n.staging.take(info.url);
  return n.store.commit({
    narinfo: info,
    served: bytes,
    nar,
    listing: undefined,
    trust: "trusted",
    by: "t",
  });
}

describe("the cache over a spool queue", () => {
  it("stores an upload as one entry whose data digest is the FileHash, and serves it", async () => {
    const a = await node("eu-1", () => 100);
    expect(await upload(a, NIX_XZ, 2)).toBe("stored");
    const [entry] = await a.spool.list("cache");
    const meta = await entry!.direct.contents();
    const [, bytes] = narinfoFixtures(NIX_XZ)[2]!;
    const info = parseNarinfo(bytes);
    expect(fileHashOfDigest(meta.sha256)).toBe(`sha256:${info.url.slice(4, 56)}`);
    expect(meta.size).toBe(info.fileSize);
    expect((await a.store.narinfo(info.storePath.hashPart))!.equals(bytes)).toBe(true);
    const nar = await a.store.openNar(info.url);
    expect(await buffer(nar!.read())).toEqual(readFixture(NIX_XZ, info.url));
    expect(await upload(a, NIX_XZ, 2)).toBe("already_served");
    expect(await a.spool.list("cache")).toHaveLength(1);
  });

  it("serves the same upload on every node whatever order entries arrived in; a nar stays while an entry holds it", async () => {
    const a = await node("eu-1", () => 100);
    const b = await node("us-1", () => 200);
    await upload(b, NIX_ZSTD, 2); // later stamp, reached b first
    await upload(a, NIX_XZ, 2);
    const hash = parseNarinfo(narinfoFixtures(NIX_XZ)[2]![1]).storePath.hashPart;
    await a.store.refresh();
    await b.store.refresh();
    const xz = narinfoFixtures(NIX_XZ)[2]![1];
    expect((await a.store.narinfo(hash))!.equals(xz)).toBe(true);
    expect((await b.store.narinfo(hash))!.equals(xz)).toBe(true);
    const zstUrl = parseNarinfo(narinfoFixtures(NIX_ZSTD)[2]![1]).url;
    expect(await b.store.openNar(zstUrl)).toBeDefined();

    // Removing the served upload's entry (GC, replicated) lets the other one be served.
    const served = a.store.served(hash)!;
    await a.spool.entry("cache", served.entry).direct.remove();
    await a.store.refresh();
    await b.store.refresh();
    expect((await b.store.narinfo(hash))!.equals(narinfoFixtures(NIX_ZSTD)[2]![1])).toBe(true);
    expect(await b.store.openNar(parseNarinfo(xz).url)).toBeUndefined();
  });

  it("ignores entries that are not cache records and rebuilds its index from the queue", async () => {
    const a = await node("eu-1", () => 1);
    await a.spool.enqueue("cache", { sha256: "00", size: 0 }, "");
    await upload(a, NIX_XZ, 0);
    const fresh = await node("eu-1", () => 1);
    expect(await fresh.store.narinfo("3krxljsj1sqc3iv7snmxba6pmc7mkl3f")).toBeUndefined();
    await fresh.store.refresh();
    expect(await fresh.store.narinfo("3krxljsj1sqc3iv7snmxba6pmc7mkl3f")).toBeDefined();
  });
});
