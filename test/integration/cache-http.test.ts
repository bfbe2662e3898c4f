import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openCacheDirectory } from "../../src/cache/dir-cache-reader.js";
import type { HttpServer } from "../../src/node/observability/index.js";
import {
  APP_PATH,
  fixturePath,
  GUIX,
  NIX_XZ,
  readFixture,
  TEST_KEY,
} from "../helpers/cache-fixtures.js";
import { startCacheServer } from "../helpers/cache-server.js";
import { HAVE_NIX, NO_NIX_MESSAGE, nixCopyFrom, runNix } from "../helpers/nix-cli.js";
import { get, rawHttp } from "../helpers/raw-http.js";
import { useTempDir } from "../helpers/tmp.js";

/**
 * The binary-cache read routes on a node's HTTP server, serving the real clients' cache
 * directories: checked over raw sockets (pipelining, traversal) and with the real nix.
 */
const servers: HttpServer[] = [];
let nixPort = 0;
let guixPort = 0;

async function serve(dir: string): Promise<number> {
  const reader = await openCacheDirectory(dir);
  const server = await startCacheServer({ reader, hitTtlSeconds: 3600, missTtlSeconds: 60 });
  servers.push(server);
  return server.port;
}

beforeAll(async () => {
  nixPort = await serve(fixturePath(NIX_XZ));
  guixPort = await serve(fixturePath(GUIX));
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

const APP = "l493h11hsb577v1lhgwxzcmxh4q2m02w";
const NAR = "nar/0l8gkfq1153q73v79qb2p2ddh7ywk95mp38hr7k6019ybfjvkbqp.nar.xz";

describe("binary-cache routes", () => {
  it("serves nix-cache-info, narinfos byte for byte and listings; a miss is 404 with its own TTL", async () => {
    const [info, hit, head, miss, ls] = await rawHttp(
      nixPort,
      [
        get("/nix-cache-info", {}, "GET", false),
        get(`/${APP}.narinfo`, {}, "GET", false),
        get(`/${APP}.narinfo`, {}, "HEAD", false),
        get("/aaaah11hsb577v1lhgwxzcmxh4q2m02w.narinfo", {}, "GET", false),
        get(`/${APP}.ls`),
      ],
      [false, false, true],
    );
    expect(info!.body.toString()).toBe("StoreDir: /nix/store\nWantMassQuery: 0\n");
    expect(info!.headers["content-type"]).toBe("text/x-nix-cache-info");
    expect(hit!.status).toBe(200);
    expect(hit!.headers["content-type"]).toBe("text/x-nix-narinfo");
    expect(hit!.headers["cache-control"]).toBe("public, max-age=3600");
    expect(hit!.body.equals(readFixture(NIX_XZ, `${APP}.narinfo`))).toBe(true);
    expect(head!.status).toBe(200);
    expect(head!.headers["content-length"]).toBe(String(hit!.body.length));
    expect(miss!.status).toBe(404);
    expect(miss!.headers["cache-control"]).toBe("public, max-age=60");
    expect(ls!.headers["content-type"]).toBe("application/json");
    expect(ls!.body.equals(readFixture(NIX_XZ, `${APP}.ls`))).toBe(true);
  });

  it("serves nars whole, by one range, by ETag, and refuses a range past the end", async () => {
    const nar = readFixture(NIX_XZ, NAR);
    const [full] = await rawHttp(nixPort, [get(`/${NAR}`)]);
    expect(full!.status).toBe(200);
    expect(full!.headers["content-type"]).toBe("application/x-nix-nar");
    expect(full!.headers["accept-ranges"]).toBe("bytes");
    expect(full!.body.equals(nar)).toBe(true);
    const etag = full!.headers.etag!;
    expect(etag).toMatch(/^"[0-9a-z-]+"$/);
    const [part, tail, past, same, head] = await rawHttp(
      nixPort,
      [
        get(`/${NAR}`, { Range: "bytes=10-19" }, "GET", false),
        get(`/${NAR}`, { Range: "bytes=-5" }, "GET", false),
        get(`/${NAR}`, { Range: `bytes=${nar.length}-` }, "GET", false),
        get(`/${NAR}`, { "If-None-Match": etag }, "GET", false),
        get(`/${NAR}`, {}, "HEAD"),
      ],
      [false, false, false, false, true],
    );
    expect(part!.status).toBe(206);
    expect(part!.headers["content-range"]).toBe(`bytes 10-19/${nar.length}`);
    expect(part!.body.equals(nar.subarray(10, 20))).toBe(true);
    expect(tail!.body.equals(nar.subarray(nar.length - 5))).toBe(true);
    expect(past!.status).toBe(416);
    expect(past!.headers["content-range"]).toBe(`bytes */${nar.length}`);
    expect(same!.status).toBe(304);
    expect(head!.headers["content-length"]).toBe(String(nar.length));
    const [missing] = await rawHttp(nixPort, [
      get("/nar/1111gkfq1153q73v79qb2p2ddh7ywk95mp38hr7k6019ybfjvkbqp.nar.xz"),
    ]);
    expect(missing!.status).toBe(404);
  });

  it("refuses path traversal in every URL form, and other methods", async () => {
    for (const path of [
      "/nar/../../etc/passwd",
      "/nar/%2e%2e/%2e%2e/etc/passwd",
      "/nar/%252e%252e%252f%252e%252e%252fetc%252fpasswd",
      "/nar/..%2f..%2fetc%2fpasswd",
      "/nar/x%00.nar.xz",
      "/nar/..\\..\\etc\\passwd",
      "/../nix-cache-info",
      `/nar/../${APP}.narinfo`,
    ]) {
      const [r] = await rawHttp(nixPort, [get(path)]);
      expect([400, 404], path).toContain(r!.status);
      expect(r!.body.toString(), path).not.toMatch(/root:|StorePath/);
    }
    const [put] = await rawHttp(nixPort, [
      `PUT /${APP}.narinfo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`,
    ]);
    expect(put!.status).toBe(405);
    expect(put!.headers.allow).toBe("GET, HEAD");
  });

  it("answers a Guix client's pipelined narinfo GETs in order, byte for byte, and its nar paths", async () => {
    const files = (await readdir(fixturePath(GUIX))).filter((f) => f.endsWith(".narinfo")).sort();
    const order = [...files, ...files.slice().reverse()];
    const responses = await rawHttp(
      guixPort,
      order.map((f, i) => get(`/${f}`, {}, "GET", i === order.length - 1)),
    );
    expect(responses).toHaveLength(order.length);
    for (const [i, f] of order.entries()) {
      expect(responses[i]!.status).toBe(200);
      expect(responses[i]!.body.equals(await readFile(join(fixturePath(GUIX), f)))).toBe(true);
    }
    const nar = "nar/zstd/f2cx4x6nhzpnm2c10ag1a4a2bw8pijmh-e2e-dir";
    const [r] = await rawHttp(guixPort, [get(`/${nar}`)]);
    expect(r!.body.equals(readFixture(GUIX, nar))).toBe(true);
  });

  describe.skipIf(!HAVE_NIX)("with the real nix (2.8)", () => {
    const dir = useTempDir("geospool-cache-http-");

    it("nix copy --from the node, signatures required, brings the closure", async () => {
      const store = join(dir.path, "store");
      const copy = await nixCopyFrom(dir.path, `http://127.0.0.1:${nixPort}`, store, TEST_KEY);
      expect(copy.code, copy.stderr).toBe(0);
      expect(
        (await readdir(join(store, "nix/store"))).filter((f) => f !== ".links").sort(),
      ).toEqual([
        "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx-geo-lib",
        "l493h11hsb577v1lhgwxzcmxh4q2m02w-geo-app",
      ]);
      const verify = await runNix(
        ["store", "verify", "--store", store, "--trusted-public-keys", TEST_KEY, APP_PATH],
        dir.path,
      );
      expect(verify.code, verify.stderr).toBe(0);

      const refused = await runNix(
        [
          "copy",
          "--from",
          `http://127.0.0.1:${nixPort}`,
          "--to",
          join(dir.path, "store2"),
          "--trusted-public-keys",
          "other-1:qiVMENkPe0The2eRYqGi17KFL69Nks26hoN16nYymL8=",
          APP_PATH,
        ],
        dir.path,
      );
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/lacks a valid signature/);
    });

    it("nix path-info answers for present and absent paths", async () => {
      const present = await runNix(
        ["path-info", "--store", `http://127.0.0.1:${nixPort}`, APP_PATH],
        dir.path,
      );
      expect(present.code, present.stderr).toBe(0);
      expect(present.stdout.trim()).toBe(APP_PATH);
      const absent = await runNix(
        [
          "path-info",
          "--store",
          `http://127.0.0.1:${nixPort}`,
          `/nix/store/aaaah11hsb577v1lhgwxzcmxh4q2m02w-nope`,
        ],
        dir.path,
      );
      expect(absent.code).not.toBe(0);
      expect(absent.stderr).toMatch(/is not valid/);
    });
  });
  if (!HAVE_NIX) console.warn(`cache-http: ${NO_NIX_MESSAGE}`);
});
