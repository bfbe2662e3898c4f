import { createHash, randomBytes } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { useTempDir } from "../../test/helpers/tmp.js";
import type { geospool } from "../proto/generated/spool.js";
import { type SpoolServiceHandlers, spoolServiceDefinition } from "../proto/service-definition.js";
import {
  DataFetchError,
  DataFetchErrorCode,
  DataFetcher,
  type DataFetcherOptions,
  LOCAL_SOURCE,
  type SourceFailure,
  SourceFailureKind,
} from "./data-fetcher.js";

type ReadDataCall = grpc.ServerWritableStream<
  geospool.v1.ReadDataRequest,
  geospool.v1.ReadDataResponse.$Properties
>;

/** What a hand-written source does with one ReadData call. */
type Behaviour = (call: ReadDataCall, source: FakeSource) => Promise<void>;

interface FakeSource {
  endpoint: string;
  /** The `offset` of every ReadData call received, in order. */
  offsets: number[];
  /** Calls being served now, and the most ever at once. */
  active: number;
  peak: number;
  /** Calls the client cancelled. */
  cancelled: number;
  server: grpc.Server;
}

const CHUNK = 16 * 1024;
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

const dir = useTempDir("geospool-fetch-");
const servers: grpc.Server[] = [];
const fetchers: DataFetcher[] = [];

afterEach(async () => {
  await Promise.all(fetchers.splice(0).map((f) => f.close()));
  for (const s of servers.splice(0)) s.forceShutdown();
});

async function startSource(behaviour: Behaviour): Promise<FakeSource> {
  const server = new grpc.Server();
  servers.push(server);
  const source: FakeSource = {
    endpoint: "",
    offsets: [],
    active: 0,
    peak: 0,
    cancelled: 0,
    server,
  };
  const readData: SpoolServiceHandlers["readData"] = (call) => {
    source.offsets.push(Number(call.request.offset));
    source.active++;
    source.peak = Math.max(source.peak, source.active);
    call.once("cancelled", () => source.cancelled++);
    behaviour(call, source)
      .then(
        () => call.end(),
        (err: { code: grpc.status; details: string }) => call.emit("error", err),
      )
      .finally(() => source.active--);
  };
  server.addService(spoolServiceDefinition, { readData } as unknown as SpoolServiceHandlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  source.endpoint = `127.0.0.1:${port}`;
  return source;
}

/** An endpoint nobody listens on (a server bound, then shut down). */
async function deadEndpoint(): Promise<string> {
  const s = await startSource(async () => {});
  s.server.forceShutdown();
  return s.endpoint;
}

/**
 * Send `data` from the requested offset in CHUNK pieces, honouring flow control, with
 * faults: `cutAfter` bytes then a status; `stallAfter` bytes then nothing until cancelled;
 * `corruptAt` flips one byte; `endAt` ends early with OK; `extra` appends bytes.
 */
async function serve(
  call: ReadDataCall,
  data: Buffer,
  faults: {
    cutAfter?: number;
    cutStatus?: grpc.status;
    /** Awaited before the cut: without it, chunks still in flight may be lost with it. */
    beforeCut?: (sent: number) => Promise<void>;
    stallAfter?: number;
    corruptAt?: number;
    endAt?: number;
    extra?: number;
    onSent?: (bytes: number) => void;
  } = {},
): Promise<void> {
  const from = Number(call.request.offset);
  if (from > data.length) throw { code: grpc.status.OUT_OF_RANGE, details: "past the end" };
  let all = data.subarray(0, faults.endAt ?? data.length);
  if (faults.extra) all = Buffer.concat([all, Buffer.alloc(faults.extra, 1)]);
  let sent = 0;
  for (let pos = from; pos < all.length; ) {
    if (call.cancelled) return;
    if (faults.cutAfter !== undefined && sent >= faults.cutAfter) {
      await faults.beforeCut?.(from + sent);
      throw { code: faults.cutStatus ?? grpc.status.UNAVAILABLE, details: "cut" };
    }
    if (faults.stallAfter !== undefined && sent >= faults.stallAfter) {
      await new Promise((r) => call.once("cancelled", r));
      return;
    }
    let chunk = Buffer.from(all.subarray(pos, pos + CHUNK));
    if (
      faults.corruptAt !== undefined &&
      faults.corruptAt >= pos &&
      faults.corruptAt < pos + CHUNK
    ) {
      chunk = Buffer.from(chunk);
      chunk[faults.corruptAt - pos] = (chunk[faults.corruptAt - pos] ?? 0) ^ 0xff;
    }
    const last = pos + chunk.length >= all.length;
    const ok = call.write({
      offset: pos,
      chunk,
      sha256: last && from === 0 ? sha(all) : "",
    });
    pos += chunk.length;
    sent += chunk.length;
    faults.onSent?.(sent);
    if (!ok) await new Promise((r) => call.once("drain", r));
  }
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

function fetcher(opts: Partial<DataFetcherOptions> & Pick<DataFetcherOptions, "sources">) {
  const f = new DataFetcher({ tmpDir: dir.path, chunkTimeoutMs: 10_000, ...opts });
  fetchers.push(f);
  return f;
}

function entryOf(data: Buffer, entry = "e1") {
  return { entry, sha256: sha(data), size: data.length };
}

async function caught(p: Promise<unknown>): Promise<DataFetchError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DataFetchError);
  return err as DataFetchError;
}

describe("DataFetcher", () => {
  it("streams the data to <tmpDir>/<entry>~fetch and verifies it", async () => {
    const data = randomBytes(300_000);
    const good = await startSource((call) => serve(call, data));
    let received = 0;
    const outcomes: string[] = [];
    const f = fetcher({
      sources: () => [good.endpoint],
      metrics: {
        received: (_s, n) => {
          received += n;
        },
        finished: (o) => outcomes.push(o),
      },
    });
    const r = await f.fetch(entryOf(data));
    expect(r).toEqual({
      path: join(dir.path, "e1~fetch"),
      bytes: data.length,
      source: good.endpoint,
      reusedBytes: 0,
      attempts: 1,
    });
    expect((await readFile(r.path)).equals(data)).toBe(true);
    expect(received).toBe(data.length);
    expect(outcomes).toEqual(["ok"]);
    expect(f.pending()).toBe(0);
  });

  it("fetches empty data", async () => {
    const data = Buffer.alloc(0);
    const good = await startSource((call) => serve(call, data));
    const r = await fetcher({ sources: () => [good.endpoint] }).fetch(entryOf(data));
    expect(r.bytes).toBe(0);
    expect((await readFile(r.path)).length).toBe(0);
  });

  it("skips a dead endpoint and a source answering NOT_FOUND", async () => {
    const data = randomBytes(100_000);
    const dead = await deadEndpoint();
    const missing = await startSource(async () => {
      throw { code: grpc.status.NOT_FOUND, details: "no entry e1" };
    });
    const good = await startSource((call) => serve(call, data));
    const failures: SourceFailure[] = [];
    const f = fetcher({
      sources: () => [dead, missing.endpoint, good.endpoint],
      metrics: { sourceFailed: (x) => failures.push(x) },
    });
    const r = await f.fetch(entryOf(data));
    expect(r.source).toBe(good.endpoint);
    expect(r.attempts).toBe(3);
    expect(failures.map((x) => [x.source, x.kind])).toEqual([
      [dead, SourceFailureKind.Unavailable],
      [missing.endpoint, SourceFailureKind.NotFound],
    ]);
    expect((await readFile(r.path)).equals(data)).toBe(true);
  });

  it("resumes a stream cut after N bytes from the offset reached, on the same source", async () => {
    const data = randomBytes(10 * CHUNK + 123);
    let received = 0;
    const cutter = await startSource((call) =>
      serve(call, data, { cutAfter: 4 * CHUNK, beforeCut: (n) => until(() => received >= n) }),
    );
    const r = await fetcher({
      sources: () => [cutter.endpoint],
      metrics: {
        received: (_s, n) => {
          received += n;
        },
      },
    }).fetch(entryOf(data));
    expect(cutter.offsets).toEqual([0, 4 * CHUNK, 8 * CHUNK]);
    expect(r.attempts).toBe(3);
    expect((await readFile(r.path)).equals(data)).toBe(true);
  });

  it("continues on another source from the bytes written when a node dies mid-stream", async () => {
    const data = randomBytes(20 * CHUNK);
    let received = 0;
    // A sends 5 chunks, and once they are on the fetcher's disk, its server dies.
    const a = await startSource((call, self) =>
      serve(call, data, {
        cutAfter: 5 * CHUNK,
        beforeCut: async (n) => {
          await until(() => received >= n);
          self.server.forceShutdown();
        },
      }),
    );
    const b = await startSource((call) => serve(call, data));
    const failures: SourceFailure[] = [];
    const r = await fetcher({
      sources: () => [a.endpoint, b.endpoint],
      metrics: {
        sourceFailed: (x) => failures.push(x),
        received: (_s, n) => {
          received += n;
        },
      },
    }).fetch(entryOf(data));
    // The cut stream is resumed on A (refused: A is gone), then B sends only the rest.
    expect(a.offsets).toEqual([0]);
    expect(b.offsets).toEqual([5 * CHUNK]);
    expect(r.source).toBe(b.endpoint);
    expect(failures.map((x) => [x.source, x.kind, x.bytes])).toEqual([
      [a.endpoint, SourceFailureKind.Broken, 5 * CHUNK],
      [a.endpoint, SourceFailureKind.Unavailable, 0],
    ]);
    expect((await readFile(r.path)).equals(data)).toBe(true);
  });

  it("rejects corrupted bytes, deletes them and fetches again from another source", async () => {
    const data = randomBytes(8 * CHUNK);
    const corrupt = await startSource((call) => serve(call, data, { corruptAt: 3 * CHUNK + 7 }));
    const good = await startSource((call) => serve(call, data));
    const failures: SourceFailure[] = [];
    const r = await fetcher({
      sources: () => [corrupt.endpoint, good.endpoint],
      metrics: { sourceFailed: (x) => failures.push(x) },
    }).fetch(entryOf(data));
    expect(failures.map((x) => x.kind)).toEqual([SourceFailureKind.DigestMismatch]);
    expect(good.offsets).toEqual([0]);
    expect((await readFile(r.path)).equals(data)).toBe(true);
  });

  it("rejects a stream that ends short and one that runs long", async () => {
    const data = randomBytes(6 * CHUNK);
    const short = await startSource((call) => serve(call, data, { endAt: 4 * CHUNK }));
    const long = await startSource((call) => serve(call, data, { extra: 10 }));
    const good = await startSource((call) => serve(call, data));
    const failures: SourceFailure[] = [];
    const r = await fetcher({
      sources: () => [short.endpoint, long.endpoint, good.endpoint],
      metrics: { sourceFailed: (x) => failures.push(x) },
    }).fetch(entryOf(data));
    expect(failures.map((x) => x.kind)).toEqual([
      SourceFailureKind.Truncated,
      SourceFailureKind.TooLong,
    ]);
    // Each rejection deleted what was written: every source started from byte 0.
    expect([short.offsets, long.offsets, good.offsets]).toEqual([[0], [0], [0]]);
    expect((await readFile(r.path)).equals(data)).toBe(true);
  });

  it("gives up on a stalled source after chunkTimeoutMs and continues elsewhere", async () => {
    const data = randomBytes(6 * CHUNK);
    const slow = await startSource((call) => serve(call, data, { stallAfter: 2 * CHUNK }));
    const good = await startSource((call) => serve(call, data));
    const failures: SourceFailure[] = [];
    const r = await fetcher({
      sources: () => [slow.endpoint, good.endpoint],
      chunkTimeoutMs: 300,
      metrics: { sourceFailed: (x) => failures.push(x) },
    }).fetch(entryOf(data));
    expect(failures).toMatchObject([{ source: slow.endpoint, kind: SourceFailureKind.Timeout }]);
    expect(good.offsets).toEqual([failures[0]!.bytes]);
    expect(slow.cancelled).toBe(1);
    expect((await readFile(r.path)).equals(data)).toBe(true);
  });

  it("fails with every source's reason when none delivers, leaving no file", async () => {
    const data = randomBytes(4 * CHUNK);
    const dead = await deadEndpoint();
    const missing = await startSource(async () => {
      throw { code: grpc.status.NOT_FOUND, details: "no entry" };
    });
    const corrupt = await startSource((call) => serve(call, data, { corruptAt: 0 }));
    const f = fetcher({ sources: () => [dead, missing.endpoint, corrupt.endpoint, dead] });
    const err = await caught(f.fetch(entryOf(data)));
    expect(err.code).toBe(DataFetchErrorCode.AllSourcesFailed);
    expect(err.failures.map((x) => [x.source, x.kind])).toEqual([
      [dead, SourceFailureKind.Unavailable],
      [missing.endpoint, SourceFailureKind.NotFound],
      [corrupt.endpoint, SourceFailureKind.DigestMismatch],
    ]);
    expect(err.failures[1]?.grpcCode).toBe(grpc.status.NOT_FOUND);
    expect(err.partialBytes).toBe(0);
    expect(await readdir(dir.path)).toEqual([]);
  });

  it("keeps the bytes of a transfer that every source broke off, and resumes from them", async () => {
    const data = randomBytes(6 * CHUNK);
    let up = false;
    let received = 0;
    const flaky = await startSource(async (call) => {
      if (!up && Number(call.request.offset) > 0) {
        throw { code: grpc.status.UNAVAILABLE, details: "down" };
      }
      const cut = { cutAfter: 2 * CHUNK, beforeCut: (n: number) => until(() => received >= n) };
      await serve(call, data, up ? {} : cut);
    });
    const f = fetcher({
      sources: () => [flaky.endpoint],
      metrics: {
        received: (_s, n) => {
          received += n;
        },
      },
    });
    const err = await caught(f.fetch(entryOf(data)));
    expect(err.code).toBe(DataFetchErrorCode.AllSourcesFailed);
    expect(err.failures.map((x) => x.kind)).toEqual([
      SourceFailureKind.Broken,
      SourceFailureKind.Unavailable,
    ]);
    expect(err.partialBytes).toBe(2 * CHUNK);
    up = true;
    const r = await f.fetch(entryOf(data));
    expect(r.reusedBytes).toBe(2 * CHUNK);
    expect(flaky.offsets).toEqual([0, 2 * CHUNK, 2 * CHUNK]);
    expect((await readFile(r.path)).equals(data)).toBe(true);
  });

  it("reuses a leftover file: a good prefix, a torn prefix, a complete file", async () => {
    const data = randomBytes(5 * CHUNK);
    const good = await startSource((call) => serve(call, data));
    const f = fetcher({ sources: () => [good.endpoint] });
    const path = join(dir.path, "e1~fetch");

    await writeFile(path, data.subarray(0, 3 * CHUNK + 5));
    const r1 = await f.fetch(entryOf(data));
    expect(r1.reusedBytes).toBe(3 * CHUNK + 5);
    expect(good.offsets).toEqual([3 * CHUNK + 5]);

    // A complete file left from before: verified and returned without a call.
    const r2 = await f.fetch(entryOf(data));
    expect(r2).toMatchObject({ source: LOCAL_SOURCE, reusedBytes: data.length, attempts: 0 });
    expect(good.offsets).toHaveLength(1);

    // A torn prefix (zeros, as after a crash before fsync): the digest fails, and the fetch
    // starts again from byte 0 without dropping the source.
    await writeFile(path, Buffer.alloc(2 * CHUNK));
    const r3 = await f.fetch(entryOf(data));
    expect(good.offsets.slice(1)).toEqual([2 * CHUNK, 0]);
    expect(r3.source).toBe(good.endpoint);
    expect((await readFile(path)).equals(data)).toBe(true);
  });

  it("runs at most maxConcurrent transfers; the others wait in FIFO order", async () => {
    const data = randomBytes(2 * CHUNK);
    const gates: Array<() => void> = [];
    const order: string[] = [];
    const src = await startSource(async (call) => {
      order.push(call.request.name);
      await new Promise<void>((r) => gates.push(r));
      await serve(call, data);
    });
    const f = fetcher({ sources: () => [src.endpoint], maxConcurrent: 2 });
    const names = ["e1", "e2", "e3", "e4", "e5"];
    const all = Promise.all(names.map((n) => f.fetch(entryOf(data, n))));
    expect(f.pending()).toBe(5);
    expect(f.pending((e) => e === "e2" || e === "e4")).toBe(2);
    while (src.active < 2) await new Promise((r) => setTimeout(r, 10));
    // The first two start together, so they may reach the source in either order.
    expect(order.slice(0, 2).sort()).toEqual(["e1", "e2"]);
    // Then one at a time: each finished transfer lets exactly the next waiter start.
    for (let started = 2; started < names.length; started++) {
      gates.shift()!();
      while (order.length <= started) await new Promise((r) => setTimeout(r, 10));
    }
    while (order.length < names.length || gates.length > 0) {
      if (gates.length > 0) gates.shift()!();
      else await new Promise((r) => setTimeout(r, 10));
    }
    const results = await all;
    expect(src.peak).toBe(2);
    expect(order.slice(2)).toEqual(["e3", "e4", "e5"]);
    expect(results.map((r) => r.path)).toEqual(names.map((n) => join(dir.path, `${n}~fetch`)));
    expect(f.pending()).toBe(0);
  });

  it("shares one transfer between concurrent requests for the same entry", async () => {
    const data = randomBytes(8 * CHUNK);
    const src = await startSource((call) => serve(call, data));
    const f = fetcher({ sources: () => [src.endpoint] });
    const [a, b] = await Promise.all([f.fetch(entryOf(data)), f.fetch(entryOf(data))]);
    expect(src.offsets).toEqual([0]);
    expect(a).toEqual(b);
  });

  it("refuses a concurrent request for the same entry with another digest", async () => {
    const data = randomBytes(2 * CHUNK);
    const src = await startSource((call) => serve(call, data, { stallAfter: CHUNK }));
    const f = fetcher({ sources: () => [src.endpoint] });
    const ac = new AbortController();
    const first = f.fetch({ ...entryOf(data), signal: ac.signal });
    const other = { ...entryOf(data), sha256: "0".repeat(64) };
    expect((await caught(f.fetch(other))).code).toBe(DataFetchErrorCode.ConflictingRequest);
    ac.abort();
    expect((await caught(first)).code).toBe(DataFetchErrorCode.Aborted);
  });

  it("abort cancels the call and deletes the file; a waiter aborted in line never starts", async () => {
    const data = randomBytes(8 * CHUNK);
    const src = await startSource((call) => serve(call, data, { stallAfter: 3 * CHUNK }));
    let received = 0;
    const f = fetcher({
      sources: () => [src.endpoint],
      maxConcurrent: 1,
      metrics: {
        received: (_s, n) => {
          received += n;
        },
      },
    });
    const ac1 = new AbortController();
    const ac2 = new AbortController();
    const running = f.fetch({ ...entryOf(data, "e1"), signal: ac1.signal });
    const waiting = f.fetch({ ...entryOf(data, "e2"), signal: ac2.signal });
    while (received < 3 * CHUNK) await new Promise((r) => setTimeout(r, 10));
    expect(await readdir(dir.path)).toEqual(["e1~fetch"]);
    ac2.abort();
    expect((await caught(waiting)).code).toBe(DataFetchErrorCode.Aborted);
    ac1.abort();
    expect((await caught(running)).code).toBe(DataFetchErrorCode.Aborted);
    while (f.pending() > 0 || src.active > 0) await new Promise((r) => setTimeout(r, 10));
    expect(src.offsets).toEqual([0]);
    expect(src.cancelled).toBe(1);
    expect(await readdir(dir.path)).toEqual([]);
  });

  it("a shared transfer goes on while one of its callers remains", async () => {
    const data = randomBytes(8 * CHUNK);
    let release: () => void = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    const src = await startSource(async (call) => {
      await held;
      await serve(call, data);
    });
    const f = fetcher({ sources: () => [src.endpoint] });
    const ac = new AbortController();
    const quitter = f.fetch({ ...entryOf(data), signal: ac.signal });
    const stayer = f.fetch(entryOf(data));
    while (src.active === 0) await new Promise((r) => setTimeout(r, 10));
    ac.abort();
    expect((await caught(quitter)).code).toBe(DataFetchErrorCode.Aborted);
    release();
    const r = await stayer;
    expect((await readFile(r.path)).equals(data)).toBe(true);
    expect(src.offsets).toEqual([0]);
  });

  it("sends the bearer token; a source that refuses it is reported as denied", async () => {
    const data = randomBytes(CHUNK);
    const guarded = await startSource(async (call) => {
      if (call.metadata.get("authorization")[0] !== "Bearer s3cret") {
        throw { code: grpc.status.UNAUTHENTICATED, details: "bad token" };
      }
      await serve(call, data);
    });
    const denied = await caught(
      fetcher({ sources: () => [guarded.endpoint], token: "wrong" }).fetch(entryOf(data)),
    );
    expect(denied.failures.map((x) => x.kind)).toEqual([SourceFailureKind.Denied]);
    const r = await fetcher({ sources: () => [guarded.endpoint], token: "s3cret" }).fetch(
      entryOf(data),
    );
    expect((await readFile(r.path)).equals(data)).toBe(true);
  });

  it("refuses bad requests and a fetch with no sources", async () => {
    const f = fetcher({ sources: () => [] });
    const ok = { entry: "e1", sha256: "a".repeat(64), size: 1 };
    for (const bad of [
      { ...ok, entry: "../etc" },
      { ...ok, sha256: "A".repeat(64) },
      { ...ok, size: -1 },
      { ...ok, size: 1.5 },
    ]) {
      expect((await caught(f.fetch(bad))).code).toBe(DataFetchErrorCode.InvalidRequest);
    }
    expect((await caught(f.fetch(ok))).code).toBe(DataFetchErrorCode.NoSources);
    expect(await readdir(dir.path)).toEqual([]);
  });
});
