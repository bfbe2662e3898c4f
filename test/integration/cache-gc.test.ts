import { createHash } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { StoredRoot } from "../../src/cache/cache-roots.js";
import type { GcReport } from "../../src/cache/gc.js";
import { APP_PATH, TEST_KEY } from "../helpers/cache-fixtures.js";
import { buildCli, type CliResult, runBuiltCli } from "../helpers/cli-build.js";
import { startTestCluster, type TestCluster } from "../helpers/cluster.js";
import { metricSample } from "../helpers/metrics-text.js";
import {
  HAVE_NIX,
  NO_NIX_MESSAGE,
  nixCopyFrom,
  nixCopyTo,
  seedStore,
  writeNetrc,
} from "../helpers/nix-cli.js";
import { get, rawHttp } from "../helpers/raw-http.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * The cache's GC on two replicating nodes, each with its own PostgreSQL: a closure uploaded
 * with the real `nix copy --to`, a root added on one node and honoured by the other's GC,
 * removals that replicate, and `nix copy --from` of the rooted closure afterwards.
 */
if (!HAVE_NIX) console.warn(`cache-gc: ${NO_NIX_MESSAGE}`);

const UPLOAD_TOKEN = "upload-token-0123456789abcdef";
const PEER_TOKEN = "peer-token-0123456789abcdef0";
const ADMIN_TOKEN = "admin-token-0123456789abcdef";

const APP = "l493h11hsb577v1lhgwxzcmxh4q2m02w";
const LIB = "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx";
const DOC = "3krxljsj1sqc3iv7snmxba6pmc7mkl3f";
const DOC_PATH = `/nix/store/${DOC}-geo-doc`;
const GRACE_MS = 12_000;

const dir = useSuiteTempDir("geospool-cache-gc-");
let cluster: TestCluster | undefined;
let cli: Awaited<ReturnType<typeof buildCli>> | undefined;

beforeAll(async () => {
  if (!HAVE_NIX) return;
  cli = await buildCli();
  cluster = await startTestCluster({
    n: 2,
    dir: dir.path,
    config: {
      spool: {
        queues: ["inbox", "outbox", "dead", "cache", "cache-roots"],
        leases: { grace: "0ms", deadLetterQueue: "dead" },
      },
      auth: {
        tokens: [
          {
            name: "uploader",
            token: UPLOAD_TOKEN,
            permissions: [{ queues: ["cache"], actions: ["enqueue"] }],
          },
          {
            name: "peers",
            token: PEER_TOKEN,
            permissions: [{ queues: ["*"], actions: ["dequeue"] }],
          },
          {
            name: "operator",
            token: ADMIN_TOKEN,
            permissions: [{ queues: ["cache", "cache-roots"], actions: ["admin"] }],
          },
        ],
      },
      cache: {
        enabled: true,
        trustedPublicKeys: [TEST_KEY],
        refreshEvery: "1h",
        // Short enough for a test; peers are made to speak before each GC (freshen).
        gc: { grace: `${GRACE_MS}ms`, maxPeerSilence: "10s", peerSettle: "0ms" },
      },
    },
  });
}, 180_000);
afterAll(async () => {
  await cluster?.stop();
  await cli?.cleanup();
}, 120_000);

const url = (i: number) => `http://127.0.0.1:${cluster!.node(i).httpPort}`;

function geospool(...args: string[]): Promise<CliResult> {
  return runBuiltCli(cli!.main, ["cache", ...args], {
    env: { ...process.env, GEOSPOOL_TOKEN: ADMIN_TOKEN },
  });
}

function json<T>(r: CliResult): T {
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as T;
}

async function status(i: number, path: string): Promise<number> {
  const [r] = await rawHttp(cluster!.node(i).httpPort, [get(path)]);
  return r!.status;
}

/**
 * Each node writes a journal row, so each peer's subscription has just delivered a message:
 * the GC's fence (peers heard from within cache.gc.maxPeerSilence) is then clear.
 */
async function freshen(): Promise<void> {
  for (const i of [0, 1]) await cluster!.node(i).spool.enqueue("inbox", poke(), "x");
}

function poke() {
  return {
    user: Buffer.from("poke"),
    sha256: createHash("sha256").update("x").digest("hex"),
    size: 1,
    enqueuedAt: Date.now(),
  };
}

/** A GC on node `i` once its fence is clear (retried, with the peers made to speak). */
async function gcOn(i: number, dryRun = false): Promise<GcReport> {
  let report: GcReport | undefined;
  // The peers speak all along: the CLI alone may take seconds to start on a loaded machine.
  const speaking = setInterval(() => void freshen().catch(() => undefined), 500);
  try {
    await vi.waitFor(
      async () => {
        report = json<GcReport>(
          await geospool("gc", "--url", url(i), "--json", ...(dryRun ? ["--dry-run"] : [])),
        );
        expect(report.blocked).toBeUndefined();
      },
      { timeout: 60_000, interval: 300 },
    );
  } finally {
    clearInterval(speaking);
  }
  return report!;
}

describe.skipIf(!HAVE_NIX)("cache GC across two nodes", () => {
  it("keeps rooted closures and young uploads, removes the rest on every node", async () => {
    const local = join(dir.path, "local");
    await seedStore(dir.path, local, [APP_PATH, DOC_PATH]);
    const netrc = await writeNetrc(join(dir.path, "netrc"), UPLOAD_TOKEN);
    const up = await nixCopyTo(dir.path, local, url(0), netrc, [APP_PATH, DOC_PATH]);
    expect(up.code, up.stderr).toBe(0);
    const uploadedAt = Date.now();
    for (const hash of [APP, LIB, DOC]) {
      await vi.waitFor(async () => expect(await status(1, `/${hash}.narinfo`)).toBe(200), {
        timeout: 60_000,
        interval: 200,
      });
    }

    // Young uploads are live: a GC right away removes nothing.
    const young = await gcOn(1, true);
    if (Date.now() - uploadedAt < GRACE_MS - 500) expect(young.removed).toEqual([]);

    // A root added on node 2 (by store path) reaches node 1.
    const added = json<StoredRoot>(
      await geospool("roots", "add", APP_PATH, "--url", url(1), "--note", "release", "--json"),
    );
    expect(added.root).toMatchObject({ hashPart: APP, storePath: APP_PATH, by: "operator" });
    await vi.waitFor(
      async () => {
        const roots = json<StoredRoot[]>(await geospool("roots", "ls", "--url", url(0), "--json"));
        expect(roots.map((r) => r.root.hashPart)).toEqual([APP]);
      },
      { timeout: 30_000, interval: 200 },
    );

    // Rights: no token, or an uploader's token, may not run a GC nor add roots.
    const anonymous = await runBuiltCli(cli!.main, ["cache", "gc", "--url", url(0), "--json"], {
      env: { ...process.env, GEOSPOOL_TOKEN: "" },
    });
    expect(anonymous.code).toBe(6);
    expect(anonymous.stderr).toMatch(/"code":"unauthenticated"/);
    const uploader = await runBuiltCli(
      cli!.main,
      ["cache", "roots", "add", DOC, "--url", url(0), "--token", UPLOAD_TOKEN],
      { env: process.env },
    );
    expect(uploader.code).toBe(6);
    expect(uploader.stderr).toMatch(/uploader may not enqueue on queue "cache-roots"/);

    // Once older than the grace period, the unrooted doc goes; the app and its lib stay.
    await vi.waitFor(() => expect(Date.now() - uploadedAt).toBeGreaterThan(GRACE_MS + 200), {
      timeout: GRACE_MS + 5_000,
      interval: 100,
    });
    const dry = await gcOn(0, true);
    expect(dry.removed.map((r) => r.hashPart)).toEqual([DOC]);
    expect(await status(0, `/${DOC}.narinfo`)).toBe(200); // a dry run changes nothing
    const gc = await gcOn(0);
    expect(gc.removed.map((r) => r.hashPart)).toEqual([DOC]);
    expect(gc.kept).toBe(2);
    expect(gc.bytesFreed).toBe(dry.bytesFreed);
    expect(gc.bytesFreed).toBeGreaterThan(0);
    const docNar = gc.removed[0]!.url;
    expect(await status(0, `/${DOC}.narinfo`)).toBe(404);
    expect(await status(0, `/${docNar}`)).toBe(404);

    // The removal replicates: node 2 stops serving the doc, narinfo and nar.
    await vi.waitFor(
      async () => {
        expect(await status(1, `/${DOC}.narinfo`)).toBe(404);
        expect(await status(1, `/${docNar}`)).toBe(404);
      },
      { timeout: 60_000, interval: 200 },
    );
    const metrics = await cluster!.node(0).metrics.registry.metrics();
    expect(metricSample(metrics, "geospool_cache_gc_removed_entries_total", {})).toBe(1);
    expect(metricSample(metrics, "geospool_cache_gc_freed_bytes_total", {})).toBe(gc.bytesFreed);
    expect(metricSample(metrics, "geospool_cache_gc_runs_total", { outcome: "done" })).toBe(1);

    // The rooted closure is whole on node 2: nix copy --from it, signatures required.
    const down = await nixCopyFrom(dir.path, url(1), join(dir.path, "fresh"), TEST_KEY);
    expect(down.code, down.stderr).toBe(0);

    // Unrooted on node 1, collected by node 2's GC, gone from both.
    const rm = json<StoredRoot[]>(await geospool("roots", "rm", APP, "--url", url(0), "--json"));
    expect(rm.map((r) => r.entry)).toEqual([added.entry]);
    await vi.waitFor(
      async () => {
        const roots = json<StoredRoot[]>(await geospool("roots", "ls", "--url", url(1), "--json"));
        expect(roots).toEqual([]);
      },
      { timeout: 30_000, interval: 200 },
    );
    const second = await gcOn(1);
    expect(second.removed.map((r) => r.hashPart).sort()).toEqual([APP, LIB].sort());
    for (const i of [0, 1]) {
      await vi.waitFor(
        async () => {
          for (const h of [APP, LIB]) expect(await status(i, `/${h}.narinfo`)).toBe(404);
        },
        { timeout: 60_000, interval: 200 },
      );
    }
  }, 300_000);
});
