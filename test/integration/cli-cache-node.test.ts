import { open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseNarinfo } from "../../src/cache/narinfo.js";
import type { RunningNode } from "../../src/node/node.js";
import { nodeEntryCodec } from "../../src/node/service/entry-meta.js";
import { Spool } from "../../src/spool/index.js";
import { APP_PATH, NIX_XZ, readFixture, TEST_KEY } from "../helpers/cache-fixtures.js";
import { buildCli, type CliResult, jsonError, runBuiltCli } from "../helpers/cli-build.js";
import { HAVE_NIX, NO_NIX_MESSAGE, nixCopyTo, seedStore, writeNetrc } from "../helpers/nix-cli.js";
import { startTestNode } from "../helpers/node.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { get, put, rawHttp } from "../helpers/raw-http.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * `geospool cache ls|show|rejected|verify` as real processes against a real node's files,
 * after real uploads: the nix client's (gzip, so NarHash can be re-checked) and curl-style
 * PUTs of the xz fixture (a second upload of one path, and rejected ones).
 */
if (!HAVE_NIX) console.warn(`cli-cache-node: ${NO_NIX_MESSAGE}`);

const TOKEN = "upload-token-0123456789abcdef";
const APP = "l493h11hsb577v1lhgwxzcmxh4q2m02w";
const LIB = "3wwj8mpk0lbnanhsfxw3m2birs5gl6xx";
const THIRD = "3krxljsj1sqc3iv7snmxba6pmc7mkl3f";
const QUEUES = ["inbox", "outbox", "dead", "cache"];

const dir = useSuiteTempDir("geospool-cli-cache-node-");
let built: Awaited<ReturnType<typeof buildCli>> | undefined;
let pg: TestPostgres[] = [];
let node: RunningNode | undefined;
let spoolDir = "";
let configFile = "";

beforeAll(async () => {
  if (!HAVE_NIX) return;
  built = await buildCli();
  pg = await startPostgresServers(1, { dir: join(dir.path, "pg") });
  spoolDir = join(dir.path, "spool-n1");
  node = await startTestNode({
    id: "n1",
    dir: dir.path,
    postgresUrl: pg[0]!.url,
    config: {
      spool: { queues: QUEUES },
      cache: {
        enabled: true,
        trustedPublicKeys: [TEST_KEY],
        uploadTokens: [{ name: "ci", token: TOKEN }],
      },
    },
  });
  // What an operator's file would say (the CLI needs only where the spool is).
  configFile = join(dir.path, "n1.yaml");
  await writeFile(
    configFile,
    `node:\n  id: n1\nspool:\n  dir: ${spoolDir}\n  queues: [${QUEUES.join(", ")}]\n`,
  );
}, 180_000);
afterAll(async () => {
  await node?.stop();
  await stopPostgresServers(pg);
  await built?.cleanup();
}, 60_000);

function cli(...args: string[]): Promise<CliResult> {
  return runBuiltCli(built!.main, ["cache", ...args, "--config", configFile], { cwd: dir.path });
}

function json<T>(r: CliResult): T {
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as T;
}

describe.skipIf(!HAVE_NIX)("geospool cache ls|show|rejected|verify on a node's files", () => {
  it("lists, shows and verifies what the nix client and curl uploaded, and keeps rejections", async () => {
    const port = node!.httpPort;
    const local = join(dir.path, "local");
    await seedStore(dir.path, local);
    const netrc = await writeNetrc(join(dir.path, "netrc"), TOKEN, "ci");
    const up = await nixCopyTo(dir.path, local, `http://127.0.0.1:${port}?compression=gzip`, netrc);
    expect(up.code, up.stderr).toBe(0);
    // The app again, as the xz fixture has it: a second entry of the same path (not served).
    const xz = readFixture(NIX_XZ, `${APP}.narinfo`);
    const xzNar = parseNarinfo(xz).url;
    const third = readFixture(NIX_XZ, `${THIRD}.narinfo`);
    const tampered = third.toString().replace(/^FileSize: \d+$/m, "FileSize: 1");
    const [a, b, c, d] = await rawHttp(port, [
      put(`/${xzNar}`, readFixture(NIX_XZ, xzNar), TOKEN),
      put(`/${APP}.narinfo`, xz, TOKEN),
      put(`/${parseNarinfo(third).url}`, readFixture(NIX_XZ, parseNarinfo(third).url), TOKEN),
      put(`/${THIRD}.narinfo`, tampered, TOKEN, true),
    ]);
    const [e] = await rawHttp(port, [put(`/${LIB}.narinfo`, "StorePath: nonsense\n", TOKEN, true)]);
    expect([a, b, c].map((r) => r!.status)).toEqual([200, 200, 200]);
    expect(d!.body.toString()).toMatch(/^rejected \(file_size\)/);
    expect(e!.body.toString()).toMatch(/^rejected \(unparsable\)/);

    type Row = Record<string, unknown>;
    const rows = json<Row[]>(await cli("ls", "--json"));
    expect(rows.map((r) => r.storePath)).toEqual([
      `/nix/store/${LIB}-geo-lib`,
      `/nix/store/${APP}-geo-app`,
    ]);
    const app = rows[1]!;
    expect(app).toMatchObject({
      hashPart: APP,
      compression: "gzip",
      signatures: [TEST_KEY.split(":")[0]],
      origin: "n1",
      trust: "trusted",
      entries: 2,
    });
    // Nix 2.8 names a gzip nar `.nar` (Compression: gzip says what it is).
    expect(app.url).toMatch(/^nar\/[a-z0-9]{52}\.nar(\.gz)?$/);
    const human = await cli("ls");
    expect(human.stdout).toMatch(
      /^STORE PATH +NAR SIZE +FILE SIZE +COMPRESSION +SIGNED BY +ORIGIN\n/,
    );
    expect(human.stdout).toContain(`/nix/store/${APP}-geo-app`);

    const [served] = await rawHttp(port, [get(`/${APP}.narinfo`)]);
    const shown = json<Row & { entries: Row[] }>(await cli("show", APP_PATH, "--json"));
    expect(shown.narinfo).toBe(served!.body.toString());
    expect(shown.entries.map((x) => [x.served, x.url, x.by])).toEqual([
      [true, app.url, "ci"],
      [false, xzNar, "ci"],
    ]);
    const showHuman = await cli("show", APP);
    expect(showHuman.stdout.startsWith(served!.body.toString())).toBe(true);
    expect(showHuman.stdout).toMatch(/\nserved +\S+ +nar\/\S+ +n1 +trusted +ci /);
    const absent = await cli("show", THIRD, "--json");
    expect(absent.code).toBe(4);
    expect(jsonError(absent)).toEqual({
      code: "not_found",
      message: `nothing is served for ${THIRD}`,
    });
    const bad = await cli("show", "not-a-hash");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/"not-a-hash" is not a hash part or store path/);

    // Rejections: kept on disk with their reason and the narinfo as sent, never served.
    const [never] = await rawHttp(port, [get(`/${THIRD}.narinfo`)]);
    expect(never!.status).toBe(404);
    type Rejection = {
      reason: string;
      hashPart: string;
      storePath: string | null;
      by: string;
      message: string;
      narinfo?: string;
    };
    const kept = json<Rejection[]>(await cli("rejected", "--json", "--narinfo"));
    expect(kept.map((r) => [r.reason, r.hashPart, r.by])).toEqual([
      ["file_size", THIRD, "ci"],
      ["unparsable", LIB, "ci"],
    ]);
    expect(kept[0]!.storePath).toBe(`/nix/store/${THIRD}-geo-doc`);
    expect(kept[0]!.message).toMatch(/FileSize 1, the upload has \d+ bytes/);
    expect(kept[0]!.narinfo).toBe(tampered);
    expect(kept[1]!.narinfo).toBe("StorePath: nonsense\n");
    expect((await cli("rejected")).stdout).toMatch(
      new RegExp(`^\\S+Z  file_size  /nix/store/${THIRD}-geo-doc  by ci: `),
    );

    const verified = json<{ entries: Row[]; ok: number; corrupt: number }>(
      await cli("verify", "--json"),
    );
    expect([verified.ok, verified.corrupt]).toEqual([3, 0]);
    const gz = verified.entries.find((x) => x.url === app.url)!;
    expect(gz).toMatchObject({ status: "ok", checked: "file_hash_and_nar_hash" });
    const xzVerdict = verified.entries.find((x) => x.url === xzNar)!;
    // xz is decompressed too now (src/cache/decompress.ts): NarHash and NarSize are checked.
    expect(xzVerdict).toMatchObject({ status: "ok", checked: "file_hash_and_nar_hash" });
    expect(xzVerdict.narHashNotChecked).toBeUndefined();

    // A byte of the served gzip nar flipped on disk (size unchanged): verify finds it.
    const spool = Spool.loadUnsafe(spoolDir, { metadata: nodeEntryCodec, queues: QUEUES });
    const data = spool.entry("cache", gz.entry as string).dataFile().path;
    const file = await open(data, "r+");
    const byte = Buffer.alloc(1);
    await file.read(byte, 0, 1, 20);
    byte[0]! ^= 0xff;
    await file.write(byte, 0, 1, 20);
    await file.close();
    const after = await cli("verify", "--json");
    expect(after.code, after.stderr).toBe(1);
    const report = JSON.parse(after.stdout) as { entries: Row[]; ok: number; corrupt: number };
    expect([report.ok, report.corrupt]).toEqual([2, 1]);
    const broken = report.entries.find((x) => x.entry === gz.entry)!;
    expect(broken.status).toBe("corrupt");
    expect((broken.problems as Row[]).map((p) => p.reason)).toEqual(["entry_digest", "file_hash"]);
    const plain = await cli("verify");
    expect(plain.code).toBe(1);
    expect(plain.stdout).toContain(`${gz.entry}  ${app.url}  CORRUPT: entry_digest: `);
    expect(plain.stdout).toMatch(/\n3 nars checked: 2 ok, 1 corrupt\n$/);
  }, 180_000);

  it("documents each command, and reads the node's settings from flags as well", async () => {
    for (const sub of ["ls", "show", "rejected", "verify"]) {
      const help = await runBuiltCli(built!.main, ["cache", sub, "--help"]);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(new RegExp(`^Usage: geospool cache ${sub} `));
      expect(help.stdout).toContain("--json");
    }
    const group = await runBuiltCli(built!.main, ["cache", "--help"]);
    expect(group.stdout).toMatch(/\n {2}ls +list the narinfos/);
    const byFlags = await runBuiltCli(built!.main, [
      "cache",
      "ls",
      "--json",
      "--spool.dir",
      spoolDir,
      `--spool.queues=${QUEUES.join(",")}`,
    ]);
    expect(json<unknown[]>(byFlags)).toHaveLength(2);
    const noSpool = await runBuiltCli(built!.main, [
      "cache",
      "verify",
      "--spool.dir",
      join(dir.path, "nope"),
      "--spool.queues",
      "cache",
    ]);
    expect(noSpool.code).toBe(10);
    expect(noSpool.stderr).toMatch(/spool\.dir .*nope does not exist/);
  });
});
