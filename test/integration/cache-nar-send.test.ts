import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdir, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { CacheReader } from "../../src/cache/cache-reader.js";
import { openCacheDirectory } from "../../src/cache/dir-cache-reader.js";
import { NAR_CHUNK_BYTES } from "../../src/node/cache-http/nar-send.js";
import type { HttpServer } from "../../src/node/observability/index.js";
import { startCacheServer } from "../helpers/cache-server.js";
import { get, rawHttp } from "../helpers/raw-http.js";
import { useTempDir } from "../helpers/tmp.js";

/**
 * Nars larger than the chunk the server reads and sends at a time: whole, by ranges that
 * cross chunk boundaries, pipelined, and abandoned by the client mid-body.
 */
const dir = useTempDir("geospool-nar-send-");
const servers: HttpServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const NAR = "nar/1111gkfq1153q73v79qb2p2ddh7ywk95mp38hr7k6019ybfjvkbqp.nar";

/** A cache directory holding one nar of `size` random bytes, served; `closes(n)`: n closes seen. */
async function serveNar(size: number) {
  const nar = randomBytes(size);
  await mkdir(join(dir.path, "nar"), { recursive: true });
  await writeFile(join(dir.path, NAR), nar);
  await writeFile(join(dir.path, "nix-cache-info"), "StoreDir: /nix/store\n");
  const inner = await openCacheDirectory(dir.path);
  const waiting: Array<{ n: number; resolve: () => void }> = [];
  let closed = 0;
  const reader: CacheReader = {
    ...inner,
    info: inner.info,
    async openNar(path) {
      const open = await inner.openNar(path);
      if (open === undefined) return undefined;
      return {
        ...open,
        async close() {
          await open.close();
          closed++;
          for (const w of waiting.filter((x) => x.n <= closed)) w.resolve();
        },
      };
    },
  };
  const server = await startCacheServer({ reader });
  servers.push(server);
  /** Resolves once the nar has been closed `n` times (the close follows the body's end). */
  const closes = (n: number) =>
    new Promise<number>((resolve) => {
      if (closed >= n) resolve(closed);
      else waiting.push({ n, resolve: () => resolve(closed) });
    });
  return { nar, port: server.port, closes };
}

describe("nar bodies larger than a chunk", () => {
  it("are sent whole, by ranges across chunk boundaries, and pipelined, byte for byte", async () => {
    const { nar, port, closes } = await serveNar(5 * NAR_CHUNK_BYTES + 123);
    const from = NAR_CHUNK_BYTES - 10;
    const to = 3 * NAR_CHUNK_BYTES + 5;
    const [whole, part, tail, again] = await rawHttp(port, [
      get(`/${NAR}`, {}, "GET", false),
      get(`/${NAR}`, { Range: `bytes=${from}-${to}` }, "GET", false),
      get(`/${NAR}`, { Range: `bytes=-${NAR_CHUNK_BYTES + 1}` }, "GET", false),
      get(`/${NAR}`),
    ]);
    expect(whole!.status).toBe(200);
    expect(whole!.body.equals(nar)).toBe(true);
    expect(part!.status).toBe(206);
    expect(part!.headers["content-range"]).toBe(`bytes ${from}-${to}/${nar.length}`);
    expect(part!.body.equals(nar.subarray(from, to + 1))).toBe(true);
    expect(tail!.body.equals(nar.subarray(nar.length - NAR_CHUNK_BYTES - 1))).toBe(true);
    expect(again!.body.equals(nar)).toBe(true);
    expect(await closes(4)).toBe(4);
  });

  it("close their file when the client goes away mid-body, and the server answers the next", async () => {
    const { nar, port, closes } = await serveNar(64 * NAR_CHUNK_BYTES);
    const socket = connect(port, "127.0.0.1");
    socket.write(get(`/${NAR}`, {}, "GET", false));
    await once(socket, "data");
    socket.destroy();
    expect(await closes(1)).toBe(1);
    const [whole] = await rawHttp(port, [get(`/${NAR}`)]);
    expect(whole!.body.equals(nar)).toBe(true);
    expect(await closes(2)).toBe(2);
  });
});
