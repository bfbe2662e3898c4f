import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseNarinfo } from "../../src/cache/narinfo.js";
import type { ClusterRequestReport } from "../../src/cache/request-report-cluster.js";
import { type RequestReport, writeCounts } from "../../src/cache/request-stats-store.js";
import { migrate } from "../../src/db/migrate.js";
import type { RunningNode } from "../../src/node/node.js";
import { NIX_XZ, readFixture, TEST_KEY } from "../helpers/cache-fixtures.js";
import { buildCli, type CliResult, jsonError, runBuiltCli } from "../helpers/cli-build.js";
import { metricSample } from "../helpers/metrics-text.js";
import { startTestNode } from "../helpers/node.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { get, put, rawHttp } from "../helpers/raw-http.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * Request analytics on a real node with its real PostgreSQL: real HTTP GETs (narinfo hits
 * and misses, whole nars, ranges, HEAD), then `geospool cache stats` (a real process) shows
 * the counts once flushed, those counted up to a stop after a restart, and counts of the
 * restarted node added to them.
 */
const TOKEN = "upload-token-0123456789abcdef";
const APP = "l493h11hsb577v1lhgwxzcmxh4q2m02w";
const ABSENT = "0".repeat(32);
const ALSO_ABSENT = "1".repeat(32);
const QUEUES = ["inbox", "outbox", "dead", "cache"];

const dir = useSuiteTempDir("geospool-cache-stats-");
let built: Awaited<ReturnType<typeof buildCli>> | undefined;
let servers: TestPostgres[] = [];
let node: RunningNode | undefined;
let configFile = "";

function start(): Promise<RunningNode> {
  return startTestNode({
    id: "n1",
    dir: dir.path,
    postgresUrl: servers[0]!.url,
    config: {
      spool: { queues: QUEUES },
      cache: {
        enabled: true,
        trustedPublicKeys: [TEST_KEY],
        uploadTokens: [{ name: "ci", token: TOKEN }],
        // Written only when asked and at stop, so the test sees each flush it makes.
        analytics: { flushEvery: "1h" },
      },
    },
  });
}

beforeAll(async () => {
  built = await buildCli();
  servers = await startPostgresServers(1, { dir: join(dir.path, "pg") });
  node = await start();
  configFile = join(dir.path, "n1.yaml");
  await writeFile(
    configFile,
    `node:\n  id: n1\nspool:\n  dir: ${join(dir.path, "spool-n1")}\n  queues: [${QUEUES.join(", ")}]\npostgres:\n  url: ${servers[0]!.url}\n`,
  );
}, 180_000);
afterAll(async () => {
  await node?.stop();
  await stopPostgresServers(servers);
  await built?.cleanup();
}, 60_000);

function cli(...args: string[]): Promise<CliResult> {
  return runBuiltCli(built!.main, ["cache", "stats", ...args, "--config", configFile], {
    cwd: dir.path,
  });
}

async function report(...args: string[]): Promise<RequestReport & { since: string | null }> {
  const r = await cli("--json", ...args);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as RequestReport & { since: string | null };
}

function withoutConfigEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.GEOSPOOL_CONFIG;
  delete env.GEOSPOOL_POSTGRES__URL;
  return env;
}

describe("geospool cache stats on a real node", () => {
  it("counts real requests, shows them after a flush, after a stop and across a restart", async () => {
    const narinfo = readFixture(NIX_XZ, `${APP}.narinfo`);
    const { url } = parseNarinfo(narinfo);
    const narBytes = readFixture(NIX_XZ, url);
    const fileSize = narBytes.length;
    let port = node!.cachePort!;
    const up = await rawHttp(port, [
      put(`/${url}`, narBytes, TOKEN),
      put(`/${APP}.narinfo`, narinfo, TOKEN, true),
    ]);
    expect(up.map((r) => r.status)).toEqual([200, 200]);
    // Nothing counted yet.
    expect((await report()).from).toBeNull();
    expect((await cli()).stdout).toBe("no requests counted\n");

    const answers = await rawHttp(
      port,
      [
        get(`/${APP}.narinfo`, {}, "GET", false),
        get(`/${APP}.narinfo`, {}, "HEAD", false),
        get(`/${ABSENT}.narinfo`, {}, "GET", false),
        get(`/${ABSENT}.narinfo`, {}, "GET", false),
        get(`/${ALSO_ABSENT}.narinfo`, {}, "GET", false),
        get(`/${url}`, {}, "GET", false),
        get(`/${url}`, { Range: "bytes=0-9" }, "GET", false),
        get(`/${url}`, {}, "HEAD", false),
        get(`/nar/${"2".repeat(52)}.nar.xz`, {}, "GET", true),
      ],
      [false, true, false, false, false, false, false, true, false],
    );
    expect(answers.map((r) => r.status)).toEqual([200, 200, 404, 404, 404, 200, 206, 200, 404]);

    // The Prometheus counters count at once (analytics or not).
    const metrics = await (await fetch(`http://127.0.0.1:${node!.httpPort}/metrics`)).text();
    const req = (kind: string, outcome: string) =>
      metricSample(metrics, "geospool_cache_requests_total", { kind, outcome });
    expect([
      req("narinfo", "hit"),
      req("narinfo", "miss"),
      req("nar", "hit"),
      req("nar", "miss"),
    ]).toEqual([2, 3, 3, 1]);
    expect(metricSample(metrics, "geospool_cache_nar_bytes_total", {})).toBe(fileSize + 10);

    // Not in the database before a flush; there after one.
    expect((await report()).from).toBeNull();
    await node!.cache!.flushStats();
    const first = await report();
    expect(first.narinfo).toEqual({ hits: 2, misses: 3, bytes: 0, unkeyed: 0 });
    expect(first.nar).toEqual({ hits: 3, misses: 1, bytes: fileSize + 10, unkeyed: 0 });
    expect(first.topNarinfos).toEqual([
      // Two requests each: by hash part.
      { hashPart: ABSENT, storePath: null, hits: 0, misses: 2 },
      { hashPart: APP, storePath: `/nix/store/${APP}-geo-app`, hits: 2, misses: 0 },
      { hashPart: ALSO_ABSENT, storePath: null, hits: 0, misses: 1 },
    ]);
    expect(first.topNars).toEqual([
      { path: url, hits: 3, misses: 0, bytes: fileSize + 10 },
      { path: `nar/${"2".repeat(52)}.nar.xz`, hits: 0, misses: 1, bytes: 0 },
    ]);
    expect(first.missedNeverServed).toEqual([
      { hashPart: ABSENT, misses: 2 },
      { hashPart: ALSO_ABSENT, misses: 1 },
    ]);
    const top1 = await report("--top", "1");
    expect(top1.topNarinfos.map((n) => n.hashPart)).toEqual([ABSENT]);
    const human = await cli();
    expect(human.stdout).toContain("narinfo  5 requests: 2 hits, 3 misses (40.0% hits)");
    expect(human.stdout).toMatch(new RegExp(`\\n${APP} +2 +0 +/nix/store/${APP}-geo-app\\n`));
    expect(human.stdout).toMatch(new RegExp(`MISSED, NEVER SERVED +MISSES\\n${ABSENT} +2\\n`));

    // Counted before a stop: written at the stop, shown after the restart.
    await rawHttp(port, [get(`/${APP}.narinfo`)]);
    await node!.stop();
    node = await start();
    port = node.cachePort!;
    const afterRestart = await report();
    expect(afterRestart.narinfo).toMatchObject({ hits: 3, misses: 3 });
    // The restarted node's counts add to the same rows.
    await rawHttp(port, [get(`/${ABSENT}.narinfo`)]);
    await node.cache!.flushStats();
    const added = await report();
    expect(added.narinfo).toMatchObject({ hits: 3, misses: 4 });
    expect(added.missedNeverServed).toEqual([
      { hashPart: ABSENT, misses: 3 },
      { hashPart: ALSO_ABSENT, misses: 1 },
    ]);
    // --since past every bucket: nothing.
    const future = await report("--since", "2999-01-01");
    expect(future.from).toBeNull();
    expect(future.since).toBe("2999-01-01T00:00:00.000Z");
  }, 240_000);

  it("--cluster adds up the counts of the peers' databases, and names a peer it cannot read", async () => {
    // A second node's database: migrated, with counts of its own.
    const admin = new pg.Client(servers[0]!.url);
    await admin.connect();
    await admin.query("create database peer2");
    await admin.end();
    const peerUrl = new URL(servers[0]!.url);
    peerUrl.pathname = "/peer2";
    const peer = new pg.Pool({ connectionString: peerUrl.toString(), max: 1 });
    await migrate(peer);
    const now = Date.now();
    await writeCounts(peer, [
      { bucket: now, kind: "narinfo", key: APP, hits: 4, misses: 0, bytes: 0 },
      { bucket: now, kind: "narinfo", key: ABSENT, hits: 0, misses: 5, bytes: 0 },
    ]);
    await peer.end();
    const alone = await report();
    const clusterConfig = async (peers: string) => {
      const file = join(dir.path, `cluster-${peers.length}.yaml`);
      await writeFile(
        file,
        `node:\n  id: n1\nspool:\n  dir: ${join(dir.path, "spool-n1")}\n  queues: [${QUEUES.join(", ")}]\npostgres:\n  url: ${servers[0]!.url}\npeers:\n${peers}`,
      );
      return file;
    };
    const withN2 = `  - id: n2\n    grpc: 127.0.0.1:1\n    postgres: ${peerUrl}\n`;
    const ok = await runBuiltCli(
      built!.main,
      ["cache", "stats", "--cluster", "--json", "--config", await clusterConfig(withN2)],
      { cwd: dir.path },
    );
    expect(ok.code, ok.stderr).toBe(0);
    const summed = JSON.parse(ok.stdout) as ClusterRequestReport;
    expect(summed.narinfo.hits).toBe(alone.narinfo.hits + 4);
    expect(summed.narinfo.misses).toBe(alone.narinfo.misses + 5);
    const absentHere = alone.missedNeverServed.find((m) => m.hashPart === ABSENT)!.misses;
    expect(summed.missedNeverServed[0]).toEqual({ hashPart: ABSENT, misses: absentHere + 5 });
    expect(summed.topNarinfos.find((n) => n.hashPart === APP)).toMatchObject({
      storePath: `/nix/store/${APP}-geo-app`,
    });
    expect(summed.nodes.map((n) => [n.node, n.error])).toEqual([
      ["n1", undefined],
      ["n2", undefined],
    ]);
    // A peer listed without its database: named, left out of the sums, exit 1.
    const partial = await runBuiltCli(
      built!.main,
      [
        "cache",
        "stats",
        "--cluster",
        "--config",
        await clusterConfig(`${withN2}  - id: n3\n    grpc: 127.0.0.1:2\n`),
      ],
      { cwd: dir.path },
    );
    expect(partial.code).toBe(1);
    expect(partial.stdout).toMatch(/node n3: NOT COUNTED: .*peers\[\]\.postgres/);
    expect(partial.stdout).toContain(
      `narinfo  ${summed.narinfo.hits + summed.narinfo.misses} requests`,
    );
  }, 120_000);

  it("refuses a bad --since or --top, and says when the database is not set", async () => {
    const since = await cli("--since", "yesterday-ish", "--json");
    expect(since.code).toBe(2);
    expect(jsonError(since).message).toMatch(/--since: expected a duration .* got "yesterday-ish"/);
    const top = await cli("--top", "0");
    expect(top.code).toBe(2);
    expect(top.stderr).toMatch(/--top: must be at least 1/);
    const noDb = await runBuiltCli(
      built!.main,
      ["cache", "stats", "--spool.dir", join(dir.path, "spool-n1")],
      { cwd: dir.path, env: withoutConfigEnv() },
    );
    expect(noDb.code, noDb.stderr).toBe(2);
    expect(noDb.stderr).toMatch(/postgres\.url is not set/);
    // A database no node migrated: says so, exit 10.
    const admin = new pg.Client(servers[0]!.url);
    await admin.connect();
    await admin.query("create database bare");
    await admin.end();
    const bareUrl = new URL(servers[0]!.url);
    bareUrl.pathname = "/bare";
    const bare = await cli("--postgres.url", bareUrl.toString());
    expect(bare.code).toBe(10);
    expect(bare.stderr).toMatch(/has no request counts/);
  }, 120_000);
});
