import { connect } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningNode } from "../../src/node/node.js";
import { APP_PATH, TEST_KEY } from "../helpers/cache-fixtures.js";
import {
  HAVE_NIX,
  NO_NIX_MESSAGE,
  nixCopyFrom,
  nixCopyTo,
  runNix,
  seedStore,
  writeNetrc,
} from "../helpers/nix-cli.js";
import { startTestNode } from "../helpers/node.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { get, put, rawHttp } from "../helpers/raw-http.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * `cache.listen`: a real node serves its binary cache (reads and uploads, with the
 * `Expect: 100-continue` refusal) on a listener of its own, and its HTTP listener keeps
 * /metrics and /healthz only; `nix copy` goes through the cache's port.
 */
if (!HAVE_NIX) console.warn(`cache-listen: ${NO_NIX_MESSAGE}`);

const TOKEN = "upload-token-0123456789abcdef";
const dir = useSuiteTempDir("geospool-cache-listen-");
let pg: TestPostgres[] = [];
let node: RunningNode | undefined;

beforeAll(async () => {
  pg = await startPostgresServers(1, { dir: join(dir.path, "pg") });
  node = await startTestNode({
    id: "n1",
    dir: dir.path,
    postgresUrl: pg[0]!.url,
    config: {
      spool: { queues: ["inbox", "dead", "cache"] },
      cache: {
        enabled: true,
        listen: "127.0.0.1:0",
        trustedPublicKeys: [TEST_KEY],
        uploadTokens: [{ name: "ci", token: TOKEN }],
      },
    },
  });
}, 120_000);
afterAll(async () => {
  await node?.stop();
  await stopPostgresServers(pg);
}, 60_000);

/** Send a request head only and read what comes back before any body is sent. */
function headOnly(port: number, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let text = "";
    socket.on("data", (d: Buffer) => {
      text += d.toString("latin1");
      if (text.includes("\r\n\r\n")) {
        socket.destroy();
        resolve(text);
      }
    });
    socket.on("error", reject);
    socket.write(head);
  });
}

describe("the cache on its own listener (cache.listen)", () => {
  it("serves the cache on cache.listen and only /metrics and /healthz on http.listen", async () => {
    const n = node!;
    expect(n.cachePort).toBeDefined();
    expect(n.cachePort).not.toBe(n.httpPort);
    const cachePort = n.cachePort!;

    const onCache = await rawHttp(cachePort, [
      get("/nix-cache-info", {}, "GET", false),
      get("/metrics", {}, "GET", false),
      get("/healthz", {}, "GET", false),
      put("/nix-cache-info", "StoreDir: /nix/store\n", TOKEN, true),
    ]);
    expect(onCache.map((r) => r.status)).toEqual([200, 404, 404, 200]);
    expect(onCache[0]!.body.toString()).toContain("StoreDir: /nix/store\n");

    const onHttp = await rawHttp(n.httpPort, [
      get("/healthz", {}, "GET", false),
      get("/metrics", {}, "GET", false),
      get("/nix-cache-info", {}, "GET", false),
      put("/nix-cache-info", "StoreDir: /nix/store\n", TOKEN, true),
    ]);
    expect(onHttp.map((r) => r.status)).toEqual([200, 200, 404, 404]);
    expect(onHttp[1]!.body.toString()).toContain("geospool_");

    // Refused from its headers on the cache's port: no 100 Continue, no body asked for.
    const refused = await headOnly(
      cachePort,
      "PUT /nar/x.nar.xz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
    );
    expect(refused).toMatch(/^HTTP\/1\.1 401 /);
    const allowed = await headOnly(
      cachePort,
      `PUT /nar/x.nar.xz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n`,
    );
    expect(allowed).toMatch(/^HTTP\/1\.1 100 Continue\r\n/);
  });

  it.skipIf(!HAVE_NIX)(
    "takes nix copy --to the cache's port and serves it back to nix copy --from",
    async () => {
      const cache = `http://127.0.0.1:${node!.cachePort}`;
      const local = join(dir.path, "local");
      await seedStore(dir.path, local);
      const netrc = await writeNetrc(join(dir.path, "netrc"), TOKEN, "ci");
      const up = await nixCopyTo(dir.path, local, cache, netrc);
      expect(up.code, up.stderr).toBe(0);

      const fresh = join(dir.path, "fresh");
      const down = await nixCopyFrom(join(dir.path, "client"), cache, fresh, TEST_KEY);
      expect(down.code, down.stderr).toBe(0);
      const info = await runNix(
        ["path-info", "--store", fresh, APP_PATH],
        join(dir.path, "client"),
      );
      expect(info.stdout.trim()).toBe(APP_PATH);
      // Nothing of the cache on the node's HTTP listener.
      const [miss] = await rawHttp(node!.httpPort, [
        get(`/${APP_PATH.slice("/nix/store/".length, "/nix/store/".length + 32)}.narinfo`),
      ]);
      expect(miss!.status).toBe(404);
    },
    120_000,
  );

  it("closes the cache's listener when the node stops", async () => {
    const port = node!.cachePort!;
    await node!.stop();
    node = undefined;
    const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.on("connect", () => {
        s.destroy();
        resolve(undefined);
      });
      s.on("error", resolve);
    });
    expect(err?.code).toBe("ECONNREFUSED");
  });
});
