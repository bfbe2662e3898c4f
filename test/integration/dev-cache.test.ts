import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { StoredRoot } from "../../src/cache/cache-roots.js";
import type { GcReport } from "../../src/cache/gc.js";
import { type DevCluster, startDevCluster } from "../../src/node/dev-cluster.js";
import { silentLogger } from "../../src/node/observability/index.js";
import { APP_PATH } from "../helpers/cache-fixtures.js";
import { buildCli, type CliResult, runBuiltCli } from "../helpers/cli-build.js";
import { HAVE_NIX, NO_NIX_MESSAGE, nixCopyFrom, nixCopyTo, seedStore } from "../helpers/nix-cli.js";
import { get, rawHttp } from "../helpers/raw-http.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * `geospool dev` (npm start) serves the binary cache on every node with a dev key and an
 * upload token in a netrc: what it prints is enough for the real nix to upload to one node
 * and download from another. Its GC token lets `geospool cache roots add|ls|rm` and
 * `geospool cache gc` work against it.
 */
if (!HAVE_NIX) console.warn(`dev-cache: ${NO_NIX_MESSAGE}`);

const dir = useSuiteTempDir("geospool-dev-cache-");
let cluster: DevCluster | undefined;
let cli: Awaited<ReturnType<typeof buildCli>> | undefined;
beforeAll(async () => {
  if (HAVE_NIX) cli = await buildCli();
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
  await cli?.cleanup();
}, 120_000);

function geospool(...args: string[]): Promise<CliResult> {
  return runBuiltCli(cli!.main, ["cache", ...args], {
    env: { ...process.env, GEOSPOOL_TOKEN: "" },
  });
}

function json<T>(r: CliResult): T {
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as T;
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

async function freeBase(n: number, offset: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 20_000);
    const ports = Array.from({ length: n }, (_, i) => [base + i, base + offset + i]).flat();
    if ((await Promise.all(ports.map(canBind))).every(Boolean)) return base;
  }
  throw new Error("no free port range found");
}

describe.skipIf(!HAVE_NIX)("the dev cluster's binary cache", () => {
  it("takes nix copy --to node-1 with the printed netrc and serves node-2's nix copy --from under the printed key", async () => {
    const base = await freeBase(2, 100);
    cluster = await startDevCluster({
      dir: join(dir.path, "dev"),
      nodes: 2,
      baseGrpcPort: base,
      baseHttpPort: base + 100,
      fresh: true,
      logger: silentLogger(),
      logLevel: "silent",
    });
    const { cache, nodes } = cluster;
    expect(cache.publicKey).toMatch(/^geospool-dev-1:/);
    const local = join(dir.path, "local");
    await seedStore(dir.path, local);
    const up = await nixCopyTo(dir.path, local, `http://${nodes[0]!.http}`, cache.netrcFile);
    expect(up.code, up.stderr).toBe(0);
    const port = Number(nodes[1]!.http.split(":")[1]);
    await vi.waitFor(
      async () => {
        const [r] = await rawHttp(port, [get("/l493h11hsb577v1lhgwxzcmxh4q2m02w.narinfo")]);
        expect(r!.status).toBe(200);
        // Signed by the uploader's key (not trusted by the node), so the node added its own.
        expect(r!.body.toString()).toMatch(/^Sig: geospool-dev-1:/m);
        const [lib] = await rawHttp(port, [get("/3wwj8mpk0lbnanhsfxw3m2birs5gl6xx.narinfo")]);
        expect(lib!.status).toBe(200);
      },
      { timeout: 60_000, interval: 200 },
    );
    const down = await nixCopyFrom(
      dir.path,
      `http://${nodes[1]!.http}`,
      join(dir.path, "fresh"),
      cache.publicKey,
    );
    expect(down.code, down.stderr).toBe(0);
  }, 240_000);

  it("takes GC roots and runs a GC with the printed token, and refuses them without it", async () => {
    const { cache, nodes } = cluster!;
    const url = `http://${nodes[0]!.http}`;
    const auth = ["--url", url, "--token-file", cache.gcTokenFile, "--json"];
    const added = json<StoredRoot>(await geospool("roots", "add", APP_PATH, ...auth));
    expect(added.root).toMatchObject({ storePath: APP_PATH, by: "dev-gc" });
    // Replicated: the other node lists it too.
    await vi.waitFor(
      async () => {
        const roots = json<StoredRoot[]>(
          await geospool("roots", "ls", "--url", `http://${nodes[1]!.http}`, "--json"),
        );
        expect(roots.map((r) => r.root.storePath)).toEqual([APP_PATH]);
      },
      { timeout: 30_000, interval: 200 },
    );
    // A GC runs (the uploads are young: nothing goes) once the nodes have settled.
    await vi.waitFor(
      async () => {
        const report = json<GcReport>(await geospool("gc", ...auth));
        expect(report.blocked).toBeUndefined();
        expect(report.removed).toEqual([]);
        expect(report.roots.live).toBe(1);
      },
      { timeout: 60_000, interval: 500 },
    );
    const removed = json<StoredRoot[]>(await geospool("roots", "rm", APP_PATH, ...auth));
    expect(removed.map((r) => r.root.storePath)).toEqual([APP_PATH]);
    // Without the token: refused, nothing done.
    const anonymous = await geospool("gc", "--url", url, "--json");
    expect(anonymous.code).toBe(6);
    expect(anonymous.stderr).toMatch(/cache\.gc\.tokens/);
    const wrong = await runBuiltCli(
      cli!.main,
      ["cache", "roots", "add", APP_PATH, "--url", url, "--token", "not-the-gc-token-0123"],
      { env: process.env },
    );
    expect(wrong.code).toBe(6);
    expect(json<StoredRoot[]>(await geospool("roots", "ls", "--url", url, "--json"))).toEqual([]);
  }, 180_000);
});
