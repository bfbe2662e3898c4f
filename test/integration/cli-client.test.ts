import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeDevCerts } from "../../src/node/certs/index.js";
import type { RunningNode } from "../../src/node/node.js";
import { buildCli } from "../helpers/cli-build.js";
import { startTestNode } from "../helpers/node.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { useSuiteTempDir } from "../helpers/tmp.js";

/**
 * `geospool client` commands, run as child processes against one real node (with bearer
 * tokens on) backed by an embedded PostgreSQL. The CLI is compiled once without type
 * checking, as in cli-spool.test.ts.
 */
const OPS = "ops-token-00000000000";
const PRODUCER = "producer-token-000000";
/** Nothing listens on port 1: connections are refused at once (UNAVAILABLE). */
const DEAD = "127.0.0.1:1";
const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

let MAIN: string;
const dir = useSuiteTempDir("geospool-cli-client-");
let pg: TestPostgres[] = [];
let node: RunningNode;
let live: string;
const children: ChildProcessWithoutNullStreams[] = [];

let built: Awaited<ReturnType<typeof buildCli>> | undefined;

async function compileCli(): Promise<void> {
  built = await buildCli();
  MAIN = built.main;
}

beforeAll(async () => {
  const [servers] = await Promise.all([startPostgresServers(1, { dir: dir.path }), compileCli()]);
  pg = servers;
  node = await startTestNode({
    id: "c1",
    dir: dir.path,
    postgresUrl: pg[0]!.url,
    config: {
      auth: {
        tokens: [
          { name: "ops", token: OPS, permissions: [{ queues: ["*"], actions: ["admin"] }] },
          {
            name: "producer",
            token: PRODUCER,
            permissions: [{ queues: ["inbox"], actions: ["enqueue"] }],
          },
        ],
      },
    },
  });
  live = `127.0.0.1:${node.grpcPort}`;
});

afterAll(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
  await node?.stop();
  await stopPostgresServers(pg);
  await built?.cleanup();
});

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  raw: Buffer;
}

function finish(child: ChildProcessWithoutNullStreams): Promise<Result> {
  const out: Buffer[] = [];
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => out.push(d));
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      const raw = Buffer.concat(out);
      resolve({ code, stdout: raw.toString(), stderr, raw });
    });
  });
}

/** The environment of a child: GEOSPOOL_ENDPOINTS = the live node, GEOSPOOL_TOKEN = ops. */
function childEnv(env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { ...process.env };
  delete base.GEOSPOOL_ENDPOINTS;
  delete base.GEOSPOOL_TOKEN;
  const all = { GEOSPOOL_ENDPOINTS: live, GEOSPOOL_TOKEN: OPS, ...env };
  for (const [k, v] of Object.entries(all)) if (v !== undefined) base[k] = v;
  return base;
}

function start(args: string[], env: Record<string, string | undefined> = {}) {
  const child = spawn(process.execPath, [MAIN, "client", ...args], {
    cwd: dir.path,
    env: childEnv(env),
  });
  children.push(child);
  return child;
}

/** Run `geospool client ARGS`; stdin gets `input` then EOF. */
function cli(
  args: string[],
  opts: { input?: string | Buffer; env?: Record<string, string | undefined> } = {},
): Promise<Result> {
  const child = start(args, opts.env);
  const done = finish(child);
  child.stdin.end(opts.input ?? "");
  return done;
}

async function ok(args: string[], opts?: Parameters<typeof cli>[1]): Promise<Result> {
  const r = await cli(args, opts);
  expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0);
  return r;
}

async function okJson(args: string[], opts?: Parameters<typeof cli>[1]) {
  return JSON.parse((await ok([...args, "--json"], opts)).stdout);
}

/** The `{"error":{code,message}}` line --json adds on stderr. */
function jsonError(r: Result): { code: string; message: string } {
  const lines = r.stderr.trim().split("\n");
  expect(lines[0]).toMatch(/^geospool: /);
  return JSON.parse(lines[lines.length - 1]!).error;
}

/** Empty a queue through the CLI (entries left by earlier tests). */
async function drain(queue: string): Promise<void> {
  for (;;) {
    const r = await cli(["dequeue", queue, "--json"]);
    if (r.code === 3) return;
    expect(r.code, r.stderr).toBe(0);
    await ok(["complete", "--lease-json", r.stdout.trim(), "--remove"]);
  }
}

describe("geospool client", () => {
  it("documents global options and exit codes; usage errors exit 2 without a call", async () => {
    const [help, sub, bad, unknown, noEndpoints] = await Promise.all([
      cli(["--help"]),
      cli(["complete", "--help"]),
      cli(["dequeue", "inbox", "--wait", "soon"]),
      cli(["frobnicate"]),
      cli(["status"], { env: { GEOSPOOL_ENDPOINTS: "" } }),
    ]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--endpoints LIST");
    expect(help.stdout).toContain("GEOSPOOL_TOKEN");
    for (const code of ["2", "3", "4", "5", "6", "7", "10"]) {
      expect(help.stdout).toMatch(new RegExp(`\\n {2}${code} +\\S`));
    }
    expect(sub.code).toBe(0);
    expect(sub.stdout).toContain("--lease-json");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--wait: invalid duration/);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command "frobnicate"/);
    expect(noEndpoints.code).toBe(2);
    expect(noEndpoints.stderr).toMatch(/no endpoints/);
  });

  it("enqueue → list → stat → read → dequeue → complete, every command with --json", async () => {
    const bigPath = join(dir.path, "big.bin");
    // Over the 4 MiB read window, so `read` takes several calls.
    const big = Buffer.alloc(5 * 1024 * 1024 + 123);
    for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
    await writeFile(bigPath, big);

    // Global flags before and after the command.
    const a = await okJson(["--endpoints", live, "enqueue", "inbox", "--metadata", '{"job":1}'], {
      input: "from stdin",
    });
    const b = await okJson(["enqueue", "inbox", "--data-file", bigPath, "--endpoints", live]);
    const c = await okJson(["enqueue", "inbox", "--data", "plain", "--idempotency-key", "k-1"]);
    const c2 = await okJson(["enqueue", "inbox", "--data", "plain", "--idempotency-key", "k-1"]);
    expect(a).toMatchObject({
      queue: "inbox",
      metadata: '{"job":1}',
      dataSize: 10,
      dataSha256: sha("from stdin"),
      deduplicated: false,
      endpoint: live,
    });
    expect(b).toMatchObject({ dataSize: big.length, dataSha256: sha(big) });
    expect(c2).toMatchObject({ name: c.name, deduplicated: true });
    const plainName = (await ok(["enqueue", "inbox", "--data", "human"])).stdout.trim();
    expect(plainName).toMatch(/^\S+$/);

    const [list, page] = await Promise.all([
      okJson(["list", "inbox", "--page-size", "2", "--all"]),
      okJson(["list", "inbox", "--page-size", "2"]),
    ]);
    expect(list.entries.map((e: { name: string }) => e.name)).toEqual([
      a.name,
      b.name,
      c.name,
      plainName,
    ]);
    expect(list.nextPageToken).toBe("");
    expect(page.entries).toHaveLength(2);
    expect(page.nextPageToken).not.toBe("");
    const names = await ok(["list", "inbox", "--page-token", page.nextPageToken]);
    expect(names.stdout.trim().split("\n")).toEqual([c.name, plainName]);

    const [stat, read, part] = await Promise.all([
      okJson(["stat", a.name, "--queue", "inbox"]),
      ok(["read", b.name]),
      okJson(["read", b.name, "--offset", "4096", "--limit", "3"]),
    ]);
    expect(stat).toMatchObject({
      name: a.name,
      queue: "inbox",
      state: "queued",
      metadata: '{"job":1}',
    });
    expect(read.raw.length).toBe(big.length);
    expect(sha(read.raw)).toBe(sha(big));
    expect(Buffer.from(part.dataBase64, "base64")).toEqual(big.subarray(4096, 4099));
    expect(part).toMatchObject({ bytes: 3, verified: false, dataSize: big.length });

    // dequeue --json is all complete needs: piped through stdin with --lease-json -.
    const lease = await okJson(["dequeue", "inbox", "--lease", "60s"]);
    expect(lease).toMatchObject({ name: a.name, queue: "inbox", endpoint: live, attempts: 0 });
    expect(lease.leaseToken).toMatch(/\S/);
    const [leased, checkedOut] = await Promise.all([
      okJson(["stat", a.name]),
      okJson(["list", "inbox", "--checked-out"]),
    ]);
    expect(leased.state).toBe("checked_out");
    expect(checkedOut.entries.map((e: { name: string }) => e.name)).toEqual([a.name]);
    const saved = await okJson(
      ["complete", "--lease-json", "-", "--save-to", "outbox", "--metadata", "done"],
      { input: `${JSON.stringify(lease)}\n` },
    );
    expect(saved).toMatchObject({ name: a.name, action: "saved", to: "outbox" });
    expect(saved.entry).toMatchObject({ queue: "outbox", metadata: "done" });

    // The same lease named by flags; extend, release, then remove.
    const human = await ok(["dequeue", "outbox"]);
    const fields = Object.fromEntries(
      human.stdout
        .trim()
        .split("\n")
        .slice(1)
        .map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 2)]),
    );
    expect(human.stdout.split("\n")[0]).toBe(a.name);
    expect(fields).toMatchObject({ queue: "outbox", metadata: "done", endpoint: live });
    const by = ["outbox", a.name, "--lease-token", fields.lease_token!, "--endpoint", live];
    const extended = await okJson(["extend", ...by, "--lease", "5m"]);
    expect(Date.parse(extended.leaseUntil)).toBeGreaterThan(Date.now() + 240_000);
    expect(await okJson(["release", ...by])).toMatchObject({ to: "outbox", attempts: 1 });
    const again = await okJson(["dequeue", "outbox"]);
    expect(again).toMatchObject({ name: a.name, attempts: 1 });
    expect(
      await okJson(["complete", "outbox", a.name, "--lease-token", again.leaseToken, "--remove"]),
    ).toMatchObject({ action: "removed", endpoint: live });
    expect((await cli(["stat", a.name])).code).toBe(4);

    const status = await okJson(["status"]);
    expect(status).toMatchObject({ nodeId: "c1", endpoint: live, peers: [] });
    expect(status.queues).toContainEqual({ queue: "inbox", queued: 3, checkedOut: 0 });
    expect(status.queues).toContainEqual({ queue: "outbox", queued: 0, checkedOut: 0 });
    expect((await ok(["status"])).stdout).toMatch(/^node c1 .*\n[\s\S]*inbox +3 +0/);
    await drain("inbox");
  });

  it("dequeue --inline-data prints small data with the lease, and leaves larger data out", async () => {
    await drain("inbox");
    const small = (await ok(["enqueue", "inbox", "--data", "small job"])).stdout.trim();
    const leased = await okJson(["dequeue", "inbox", "--inline-data", "9"]);
    expect(leased).toMatchObject({ name: small, dataSize: 9 });
    expect(Buffer.from(leased.dataBase64, "base64").toString()).toBe("small job");
    // The whole line still works as --lease-json.
    const released = await okJson(["release", "--lease-json", "-"], {
      input: `${JSON.stringify(leased)}\n`,
    });
    expect(released).toMatchObject({ to: "inbox" });
    const over = await okJson(["dequeue", "inbox", "--inline-data", "8"]);
    expect(over).toMatchObject({ name: small });
    expect(over.dataBase64).toBeUndefined();
    await okJson(["release", "--lease-json", "-"], { input: `${JSON.stringify(over)}\n` });
    const human = (await ok(["dequeue", "inbox", "--inline-data", "100"])).stdout;
    expect(human).toContain(`data_base64: ${Buffer.from("small job").toString("base64")}`);
    const field = (key: string) => (human.match(new RegExp(`^${key}: (.*)$`, "m")) ?? [])[1];
    expect(
      await okJson([
        "complete",
        "inbox",
        small,
        "--lease-token",
        field("lease_token") ?? "",
        "--endpoint",
        field("endpoint") ?? "",
        "--remove",
      ]),
    ).toMatchObject({ action: "removed" });
    for (const value of ["-1", "0", "1k"]) {
      const bad = await cli(["dequeue", "inbox", "--inline-data", value, "--json"]);
      expect(bad.code, value).toBe(2);
      expect(jsonError(bad).message).toContain("--inline-data");
    }
    await drain("inbox");
  });

  it("exit codes: 3 nothing, 4 not found, 5 lease lost, 6 refused, 2 bad name, 7 unavailable", async () => {
    await drain("inbox");
    const nothing = await cli(["dequeue", "inbox", "--wait", "200ms", "--json"]);
    expect(nothing.code).toBe(3);
    expect(jsonError(nothing).code).toBe("nothing_available");

    const [missing, noQueue, badName] = await Promise.all([
      cli(["stat", "no-such-entry", "--json"]),
      cli(["enqueue", "nope", "--data", "x", "--json"]),
      cli(["list", "../etc", "--json"]),
    ]);
    expect(missing.code).toBe(4);
    expect(jsonError(missing).code).toBe("not_found");
    expect(noQueue.code).toBe(4);
    expect(badName.code).toBe(2);
    expect(jsonError(badName).code).toBe("invalid_argument");

    const name = (await ok(["enqueue", "inbox", "--data", "x"])).stdout.trim();
    const lease = await okJson(["dequeue", "inbox"]);
    await ok(["release", "--lease-json", JSON.stringify(lease)]);
    const lost = await cli([
      "complete",
      "--lease-json",
      JSON.stringify(lease),
      "--remove",
      "--json",
    ]);
    expect(lost.code).toBe(5);
    expect(jsonError(lost).code).toBe("lease_lost");
    // Nothing changed: the entry is back in its queue.
    expect(await okJson(["stat", name])).toMatchObject({ state: "queued", attempts: 1 });

    const [noToken, denied] = await Promise.all([
      cli(["list", "inbox", "--json"], { env: { GEOSPOOL_TOKEN: undefined } }),
      cli(["dequeue", "inbox", "--json"], { env: { GEOSPOOL_TOKEN: PRODUCER } }),
    ]);
    expect(noToken.code).toBe(6);
    expect(jsonError(noToken).code).toBe("unauthenticated");
    expect(denied.code).toBe(6);
    expect(jsonError(denied).code).toBe("permission_denied");
    expect(await okJson(["stat", name])).toMatchObject({ state: "queued" });

    const down = await cli(["status", "--endpoints", DEAD, "--retry-for", "300ms", "--json"]);
    expect(down.code).toBe(7);
    expect(jsonError(down).code).toBe("unavailable");
    await drain("inbox");
  });

  it("takes the token from --token, --token-file or GEOSPOOL_TOKEN, flags first", async () => {
    const tokenFile = join(dir.path, "token");
    await writeFile(tokenFile, `${OPS}\n`, { mode: 0o600 });
    const noEnv = { env: { GEOSPOOL_TOKEN: undefined } };
    const [flag, file, wrongEnvFlagWins, wrong, both] = await Promise.all([
      cli(["status", "--token", OPS, "--json"], noEnv),
      cli(["--token-file", tokenFile, "status", "--json"], noEnv),
      cli(["status", "--token", OPS, "--json"], { env: { GEOSPOOL_TOKEN: "wrong-token-0000000" } }),
      cli(["status", "--token", "wrong-token-0000000", "--json"]),
      cli(["status", "--token", OPS, "--token-file", tokenFile]),
    ]);
    for (const r of [flag, file, wrongEnvFlagWins]) {
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).nodeId).toBe("c1");
    }
    expect(wrong.code).toBe(6);
    expect(both.code).toBe(2);
    // The producer may enqueue into inbox only.
    const produced = await cli(["enqueue", "inbox", "--data", "p", "--token", PRODUCER], noEnv);
    expect(produced.code, produced.stderr).toBe(0);
    const outbox = await cli(["enqueue", "outbox", "--data", "p", "--token", PRODUCER], noEnv);
    expect(outbox.code).toBe(6);
    await drain("inbox");
  });

  it("fails over past a dead endpoint for every kind of call", async () => {
    const endpoints = `${DEAD},${live}`;
    const env = { env: { GEOSPOOL_ENDPOINTS: endpoints } };
    const file = join(dir.path, "payload");
    await writeFile(file, "from a file");
    const [bytes, fromFile, fromStdin] = await Promise.all([
      okJson(["enqueue", "inbox", "--data", "bytes"], env),
      okJson(["enqueue", "inbox", "--data-file", file], env),
      okJson(["enqueue", "inbox"], { ...env, input: "piped" }),
    ]);
    for (const r of [bytes, fromFile, fromStdin]) expect(r.endpoint).toBe(live);
    expect(fromFile.dataSha256).toBe(sha("from a file"));
    const listed = await okJson(["list", "inbox"], env);
    expect(listed.entries).toHaveLength(3);
    expect((await ok(["read", fromStdin.name], env)).stdout).toBe("piped");
    expect((await okJson(["status"], env)).nodeId).toBe("c1");
    const lease = await okJson(["dequeue", "inbox"], env);
    expect(lease.endpoint).toBe(live);
    expect([bytes.name, fromFile.name, fromStdin.name]).toContain(lease.name);
    // With several endpoints the lease's endpoint is required, and used.
    const noEndpoint = await cli(
      ["complete", "inbox", lease.name, "--lease-token", lease.leaseToken, "--remove"],
      env,
    );
    expect(noEndpoint.code).toBe(2);
    expect(noEndpoint.stderr).toMatch(/--endpoint: required/);
    await ok(["complete", "--lease-json", JSON.stringify(lease), "--remove"], env);
    await drain("inbox");
  });

  it("speaks TLS and mutual TLS with --ca, --cert and --key", async () => {
    const certs = await makeDevCerts({ dir: join(dir.path, "certs"), nodes: ["tls"] });
    const secure = await startTestNode({
      id: "tls",
      dir: dir.path,
      // A node's database is its own: this one uses the server's other database.
      postgresUrl: pg[0]!.url.replace(/\/geospool$/, "/postgres"),
      config: {
        grpc: {
          tls: {
            cert: certs.servers.tls!.cert,
            key: certs.servers.tls!.key,
            clientCa: certs.caCert,
            requireClientCert: true,
          },
        },
      },
    });
    try {
      const env = { env: { GEOSPOOL_ENDPOINTS: `127.0.0.1:${secure.grpcPort}` } };
      const fast = ["--retry-for", "0", "--timeout", "3s"];
      const [mtls, noCert, plain, halfPair] = await Promise.all([
        cli(
          [
            "status",
            "--json",
            "--ca",
            certs.caCert,
            "--cert",
            certs.client.cert,
            "--key",
            certs.client.key,
          ],
          env,
        ),
        cli(["status", "--json", "--ca", certs.caCert, ...fast], env),
        cli(["status", "--json", ...fast], env),
        cli(["status", "--ca", certs.caCert, "--cert", certs.client.cert], env),
      ]);
      expect(mtls.code, mtls.stderr).toBe(0);
      expect(JSON.parse(mtls.stdout).nodeId).toBe("tls");
      // Refused handshakes never reach the service: the node is unavailable to them.
      expect(noCert.code).toBe(7);
      expect(plain.code).toBe(7);
      expect(halfPair.code).toBe(2);
      expect(halfPair.stderr).toMatch(/--cert and --key go together/);
    } finally {
      await secure.stop();
    }
  });

  it("watch prints JSON lines, fails over past a dead endpoint, and exits 0 on SIGTERM", async () => {
    const child = start(["watch", "inbox", "--json"], {
      GEOSPOOL_ENDPOINTS: `${DEAD},${live}`,
    });
    const done = finish(child);
    const lines: Array<Record<string, string>> = [];
    let buffered = "";
    child.stdout.on("data", (d: Buffer) => {
      buffered += d.toString();
      const parts = buffered.split("\n");
      buffered = parts.pop() ?? "";
      for (const p of parts) lines.push(JSON.parse(p));
    });
    // The watch has no "established" signal: enqueue until it reports one.
    const names: string[] = [];
    for (let i = 0; i < 50 && lines.length === 0; i++) {
      names.push((await ok(["enqueue", "inbox", "--data", `w${i}`])).stdout.trim());
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(lines.length).toBeGreaterThan(0);
    const seen = lines[0]!;
    expect(names).toContain(seen.name);
    expect(seen).toMatchObject({ event: "enqueued", queue: "inbox", endpoint: live });
    const lease = await okJson(["dequeue", "inbox"]);
    for (let i = 0; i < 50 && !lines.some((l) => l.event === "checked_out"); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(lines).toContainEqual(
      expect.objectContaining({ event: "checked_out", name: lease.name }),
    );
    child.kill("SIGTERM");
    const r = await done;
    expect(r.code, r.stderr).toBe(0);
    await drain("inbox");
  });
  it("enqueue-many: JSON lines from stdin and files and a directory, each entry on its own", async () => {
    await drain("outbox");
    const lines = join(dir.path, "many.ndjson");
    await writeFile(
      lines,
      [
        JSON.stringify({ data: "f1", metadata: "m1", idempotencyKey: "many-1" }),
        "",
        JSON.stringify({ dataBase64: Buffer.from([0, 255]).toString("base64"), queue: "outbox" }),
        "{not json",
        JSON.stringify({ data: "bad", queue: "no-such-queue" }),
      ].join("\n"),
    );
    const files = join(dir.path, "many-dir");
    await mkdir(files);
    await writeFile(join(files, "b.narinfo"), "StorePath: /nix/store/b");
    await writeFile(join(files, "a.narinfo"), "StorePath: /nix/store/a");
    const stdin = `${JSON.stringify({ data: "s1" })}\n${JSON.stringify({ data: "s2" })}\n`;
    const r = await cli(
      [
        "enqueue-many",
        "outbox",
        "--from",
        "-",
        "--from",
        lines,
        "--from",
        files,
        "--json",
        "--batch-entries",
        "2",
      ],
      { input: stdin },
    );
    // The bad line is a usage failure of its own: the first failure decides the exit code.
    expect(r.code, r.stderr).toBe(2);
    const out = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const made = out.filter((o) => o.error === undefined);
    expect(made.map((o) => o.source)).toEqual([
      "stdin:1",
      "stdin:2",
      `${lines}:1`,
      `${lines}:3`,
      join(files, "a.narinfo"),
      join(files, "b.narinfo"),
    ]);
    expect(made.every((o) => o.queue === "outbox" && o.deduplicated === false)).toBe(true);
    expect(made[2]).toMatchObject({ metadata: "m1", dataSha256: sha("f1") });
    expect(made[3].dataSha256).toBe(sha(Buffer.from([0, 255])));
    const errors = out.filter((o) => o.error !== undefined);
    expect(errors.map((o) => o.source)).toEqual([`${lines}:4`, `${lines}:5`]);
    expect(errors[0].error.message).toMatch(/not valid JSON/);
    expect(errors[1].error.message).toMatch(/no-such-queue/);
    expect(r.stderr).toMatch(/enqueued 6 entries \(0 deduplicated\), 2 failed/);
    expect((await ok(["read", made[4].name])).stdout).toBe("StorePath: /nix/store/a");
    // The directory again: its keys come from the files, so nothing is made twice.
    const again = await ok(["enqueue-many", "outbox", "--from", files]);
    expect(again.stdout.trim().split("\n")).toEqual([made[4].name, made[5].name]);
    expect(again.stderr).toMatch(/enqueued 2 entries \(2 deduplicated\)/);
    expect((await cli(["enqueue-many", "outbox", "--from", join(dir.path, "nope")])).code).toBe(2);
    const help = await ok(["enqueue-many", "--help"]);
    expect(help.stdout).toContain("--batch-entries N");
    await drain("outbox");
  });
});
