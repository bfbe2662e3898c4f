import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { copyFile, mkdir, readdir, readFile, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildCli } from "../helpers/cli-build.js";
import { useTempDir } from "../helpers/tmp.js";

/**
 * The `geospool spool` commands, run as real child processes against spools in temporary
 * directories. The CLI is compiled once (type checking off; that is `npm run typecheck`'s
 * job) into a scratch directory: a compiled CLI starts several times faster than one run
 * through tsx, and these tests start about seventy processes.
 */
let MAIN: string;

let built: Awaited<ReturnType<typeof buildCli>> | undefined;
beforeAll(async () => {
  built = await buildCli();
  MAIN = built.main;
});
afterAll(async () => {
  await built?.cleanup();
});

const dir = useTempDir("geospool-cli-");
const children: ChildProcessWithoutNullStreams[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
});

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function start(args: string[]): ChildProcessWithoutNullStreams {
  const child = spawn(process.execPath, [MAIN, ...args], { cwd: dir.path });
  children.push(child);
  return child;
}

function finish(child: ChildProcessWithoutNullStreams): Promise<Result> {
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Run `geospool ARGS` to completion; stdin gets `input` (empty by default) then EOF. */
function cli(args: string[], input: string | Buffer = ""): Promise<Result> {
  const child = start(args);
  const done = finish(child);
  child.stdin.end(input);
  return done;
}

/** Resolve with the first stdout line of `child` that satisfies `match`. */
function lineMatching(
  child: ChildProcessWithoutNullStreams,
  match: (line: string) => boolean,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = "";
    const onData = (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      const hit = lines.find(match);
      if (hit !== undefined) {
        child.stdout.off("data", onData);
        resolve(hit);
      }
    };
    child.stdout.on("data", onData);
    child.on("close", (code) => reject(new Error(`exited with ${code} before the line came`)));
  });
}

function jsonError(r: Result): { code: string; message: string } {
  const lines = r.stderr.trim().split("\n");
  expect(lines[0]).toMatch(/^geospool: /);
  return JSON.parse(lines[lines.length - 1]!).error;
}

const sp = () => join(dir.path, "sp");

async function createSpool(...extra: string[]): Promise<void> {
  const r = await cli(["spool", "create", sp(), ...extra]);
  expect(r.code, r.stderr).toBe(0);
}

async function enqueue(queue: string, ...extra: string[]): Promise<string> {
  const r = await cli(["spool", "enqueue", sp(), queue, ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

describe("help and usage", () => {
  it("documents the commands and exit codes; --help exits 0", async () => {
    const r = await cli(["spool", "--help"]);
    expect(r.code).toBe(0);
    for (const c of [
      "create",
      "enqueue",
      "list",
      "show",
      "dequeue",
      "complete",
      "fsck",
      "monitor",
    ]) {
      expect(r.stdout).toContain(`  ${c} `);
    }
    expect(r.stdout).toMatch(/Exit codes:[\s\S]*\n {2}5 +lease lost/);
    const sub = await cli(["spool", "dequeue", "--help"]);
    expect(sub.code).toBe(0);
    expect(sub.stdout).toContain("--wait DUR");
  });

  it("rejects bad flags, values, names and arguments with exit 2 and one line naming them", async () => {
    await createSpool();
    const cases: Array<[string[], RegExp]> = [
      [["spool", "enqueue", sp(), "inbox", "--bogus"], /unknown option '--bogus'/],
      [
        ["spool", "dequeue", sp(), "inbox", "--lease", "soon"],
        /^geospool: --lease: invalid duration/,
      ],
      [["spool", "dequeue", sp(), "inbox", "--wait", "5parsecs"], /--wait: invalid duration/],
      [["spool", "enqueue", sp(), "../escape", "--data", "x"], /invalid queue name "..\/escape"/],
      [["spool", "enqueue", sp(), "nope", "--data", "x"], /unknown queue "nope"/],
      [["spool", "show", sp(), "inbox", "../../etc/passwd"], /invalid entry name/],
      [
        ["spool", "enqueue", sp(), "inbox", "--metadata", "[1]"],
        /--metadata: must be a JSON object/,
      ],
      [
        ["spool", "enqueue", sp(), "inbox", "--data", "a", "--data-file", "b"],
        /cannot be used together/,
      ],
      [["spool", "list", sp()], /missing QUEUE/],
      [["spool", "list", sp(), "inbox", "extra"], /unexpected argument "extra"/],
      [
        ["spool", "complete", sp(), "inbox", "x"],
        /give one of --save-to QUEUE, --remove, --release/,
      ],
      [["spool", "fsck", sp(), "--max-age", "zz=1s"], /--max-age: unknown queue "zz"/],
      [["spool", "frobnicate"], /unknown command "frobnicate"/],
      [[], /missing command/],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(args)));
    results.forEach((r, i) => {
      const [args, pattern] = cases[i]!;
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
      expect(r.stderr, args.join(" ")).toMatch(pattern);
    });
    // Nothing was made outside the spool, nor any entry in it.
    expect((await readdir(dir.path)).sort()).toEqual(["sp"]);
    expect(await readdir(join(sp(), ".registry"))).toEqual([]);
    // With --json the error is also a JSON object on stderr.
    const j = await cli(["spool", "dequeue", sp(), "inbox", "--lease", "x", "--json"]);
    expect(j.code).toBe(2);
    expect(jsonError(j)).toEqual({ code: "usage", message: expect.stringMatching(/^--lease:/) });
  });
});

describe("bin/geospool.cjs", () => {
  it("without a build, says to run npm run build", async () => {
    const bin = join(dir.path, "pkg", "bin");
    await mkdir(bin, { recursive: true });
    await copyFile(
      fileURLToPath(new URL("../../bin/geospool.cjs", import.meta.url)),
      join(bin, "geospool.js"),
    );
    const child = spawn(process.execPath, [join(bin, "geospool.js"), "spool", "--help"], {
      cwd: dir.path,
    });
    children.push(child);
    child.stdin.end();
    const r = await finish(child);
    expect(r.code).toBe(10);
    expect(r.stderr.trim()).toBe("geospool: dist/ is missing; run `npm run build` first");
  });
});

describe("create", () => {
  it("makes the default queues, adds queues on request, and prints JSON", async () => {
    await createSpool();
    expect((await readdir(sp())).sort()).toEqual([
      ".data",
      ".registry",
      ".spool-id",
      ".tmp",
      "dead",
      "inbox",
      "outbox",
    ]);
    const r = await cli(["spool", "create", sp(), "--queues", "extra", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      dir: sp(),
      queues: ["dead", "extra", "inbox", "outbox"],
    });
  });

  it("refuses a non-empty directory that is not a spool and leaves it alone", async () => {
    const home = join(dir.path, "home");
    await mkdir(home);
    await writeFile(join(home, "precious.txt"), "keep");
    const r = await cli(["spool", "create", home, "--json"]);
    expect(r.code).toBe(10);
    expect(jsonError(r).code).toBe("not_a_spool");
    expect(await readdir(home)).toEqual(["precious.txt"]);
  });
});

describe("enqueue, list, show", () => {
  it("takes data from --data, --data-file and stdin, and shows it back", async () => {
    await createSpool();
    const a = await enqueue("inbox", "--data", "hello", "--metadata", '{"kind":"greeting"}');
    await writeFile(join(dir.path, "payload.bin"), Buffer.alloc(70_000, 7));
    const b = await enqueue("inbox", "--data-file", join(dir.path, "payload.bin"));
    const piped = await cli(["spool", "enqueue", sp(), "inbox", "--json"], "from stdin\n");
    expect(piped.code, piped.stderr).toBe(0);
    const c = JSON.parse(piped.stdout) as { name: string; queue: string };
    expect(c.queue).toBe("inbox");

    const list = await cli(["spool", "list", sp(), "inbox"]);
    expect(list.stdout.trim().split("\n")).toEqual([a, b, c.name]);

    const lj = await cli(["spool", "list", sp(), "inbox", "--json"]);
    const rows = JSON.parse(lj.stdout) as Array<Record<string, unknown>>;
    expect(rows.map((x) => x.name)).toEqual([a, b, c.name]);
    expect(rows[0]).toEqual({ name: a, queue: "inbox", attempts: 0, mtime: expect.any(String) });

    const shown = await cli(["spool", "show", sp(), "inbox", a, "--json"]);
    expect(JSON.parse(shown.stdout)).toMatchObject({
      name: a,
      queue: "inbox",
      state: "queued",
      attempts: 0,
      dataSize: 5,
      metadata: { kind: "greeting" },
    });
    const human = await cli(["spool", "show", sp(), "inbox", b]);
    expect(human.stdout).toContain("data_size: 70000");
    expect((await cli(["spool", "show", sp(), "inbox", c.name, "--data"])).stdout).toBe(
      "from stdin\n",
    );
    const data = await cli(["spool", "show", sp(), "inbox", b, "--data"]);
    expect(data.stdout.length).toBe(70_000);

    const missing = await cli(["spool", "show", sp(), "inbox", "nosuch", "--json"]);
    expect(missing.code).toBe(4);
    expect(jsonError(missing).code).toBe("not_found");
  });

  it("lists an empty queue as an empty JSON array", async () => {
    await createSpool();
    const r = await cli(["spool", "list", sp(), "outbox", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([]);
  });
});

describe("dequeue and complete", () => {
  it("checks out, lists checkouts, saves with new metadata, releases and removes", async () => {
    await createSpool();
    const a = await enqueue("inbox", "--data", "A", "--metadata", '{"n":1}');
    const b = await enqueue("inbox", "--data", "B");

    const d1 = await cli(["spool", "dequeue", sp(), "inbox", "--lease", "1m", "--json"]);
    expect(d1.code, d1.stderr).toBe(0);
    const got = JSON.parse(d1.stdout);
    expect(got).toMatchObject({ name: a, queue: "inbox", attempts: 0, metadata: { n: 1 } });
    expect(Date.parse(got.leaseUntil)).toBeGreaterThan(Date.now());

    const d2 = await cli(["spool", "dequeue", sp(), "inbox"]);
    expect(d2.stdout.split("\n")[0]).toBe(b);
    expect(d2.stdout).toMatch(/^lease_until: /m);

    const checkedOut = await cli(["spool", "list", sp(), "inbox", "--checked-out", "--json"]);
    const rows = JSON.parse(checkedOut.stdout) as Array<{ name: string; leaseUntil: string }>;
    expect(rows.map((r) => r.name)).toEqual([a, b]);
    expect(rows[0]!.leaseUntil).toBe(got.leaseUntil);

    const saved = await cli([
      "spool",
      "complete",
      sp(),
      "inbox",
      a,
      "--save-to",
      "outbox",
      "--metadata",
      '{"n":2}',
      "--json",
    ]);
    expect(saved.code, saved.stderr).toBe(0);
    expect(JSON.parse(saved.stdout)).toEqual({
      name: a,
      queue: "inbox",
      action: "saved",
      to: "outbox",
    });
    const inOutbox = await cli(["spool", "show", sp(), "outbox", a, "--json"]);
    expect(JSON.parse(inOutbox.stdout).metadata).toEqual({ n: 2 });

    const released = await cli(["spool", "complete", sp(), "inbox", b, "--release"]);
    expect(released.stdout.trim()).toBe(`released ${b} to inbox`);
    const again = await cli(["spool", "show", sp(), "inbox", b, "--json"]);
    expect(JSON.parse(again.stdout)).toMatchObject({ state: "queued", attempts: 1 });

    const d3 = await cli(["spool", "dequeue", sp(), "outbox", "--json"]);
    const removed = await cli([
      "spool",
      "complete",
      sp(),
      "outbox",
      JSON.parse(d3.stdout).name,
      "--remove",
    ]);
    expect(removed.code).toBe(0);
    expect(await readdir(join(sp(), "outbox"))).toEqual([".checkout"]);
    expect(await readdir(join(sp(), ".registry"))).toEqual([b]);

    const gone = await cli(["spool", "complete", sp(), "outbox", a, "--remove", "--json"]);
    expect(gone.code).toBe(4);
    expect(jsonError(gone).code).toBe("not_found");
  });

  it("exits 3 when nothing is available, with or without --wait", async () => {
    await createSpool();
    const now = await cli(["spool", "dequeue", sp(), "inbox", "--json"]);
    expect(now.code).toBe(3);
    expect(jsonError(now).code).toBe("nothing_available");
    const waited = await cli(["spool", "dequeue", sp(), "inbox", "--wait", "300ms"]);
    expect(waited.code).toBe(3);
    expect(waited.stderr).toMatch(/nothing available in queue inbox after waiting 300ms/);
  });

  it("exits 5 and changes nothing when the lease has ended", async () => {
    await createSpool();
    const a = await enqueue("inbox", "--data", "x");
    const d = await cli(["spool", "dequeue", sp(), "inbox", "--lease", "1ms"]);
    expect(d.code).toBe(0);
    const r = await cli(["spool", "complete", sp(), "inbox", a, "--remove", "--json"]);
    expect(r.code).toBe(5);
    expect(jsonError(r).code).toBe("lease_lost");
    // Still checked out (the reaper's grace period has not passed), data intact.
    expect(await readdir(join(sp(), "inbox", ".checkout"))).toEqual([a]);
    expect(await readFile(join(sp(), ".data", a), "utf8")).toBe("x");
  });

  it("dequeue --wait is woken by an enqueue from another process", async () => {
    await createSpool();
    const waiter = start(["spool", "dequeue", sp(), "inbox", "--wait", "30s", "--json"]);
    waiter.stdin.end();
    const result = finish(waiter);
    // Give the waiter time to start listening; either way it must get the entry.
    await new Promise((r) => setTimeout(r, 1000));
    const name = await enqueue("inbox", "--data", "late");
    const r = await result;
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).name).toBe(name);
  });
});

describe("fsck", () => {
  it("exits 0 on a clean spool, 1 with problems, and repairs what is safe", async () => {
    await createSpool();
    await enqueue("inbox", "--data", "x");
    const clean = await cli(["spool", "fsck", sp()]);
    expect(clean.code).toBe(0);
    expect(clean.stdout.trim()).toBe("no problems");

    const stale = join(sp(), ".tmp", "abandoned");
    await writeFile(stale, "half-written");
    const old = new Date(Date.now() - 3_600_000);
    await utimes(stale, old, old);
    const found = await cli(["spool", "fsck", sp(), "--max-tmp-age", "10m", "--json"]);
    expect(found.code).toBe(1);
    const report = JSON.parse(found.stdout);
    expect(report.repaired).toEqual([]);
    expect(report.problems).toContainEqual(
      expect.objectContaining({ kind: "too_old", name: "abandoned", dir: ".tmp" }),
    );

    const repaired = await cli(["spool", "fsck", sp(), "--repair"]);
    expect(repaired.code, repaired.stdout).toBe(0);
    expect(repaired.stdout).toMatch(
      /^repaired: too_old abandoned in \.tmp .*: deleted stale tmp file$/m,
    );
    expect(await readdir(join(sp(), ".tmp"))).toEqual([]);
  });
});

describe("monitor", () => {
  it("creates the spool, reports a lasting problem, and stops on SIGTERM with exit 0", async () => {
    const child = start([
      "spool",
      "monitor",
      sp(),
      "--create",
      "--check-every",
      "100ms",
      "--alert-after-cycles",
      "1",
      "--no-repair",
      "--json",
    ]);
    child.stdin.end();
    const done = finish(child);
    const ready = JSON.parse(await lineMatching(child, (l) => l.includes('"ready"')));
    expect(ready.queues).toEqual(["dead", "inbox", "outbox"]);
    const stale = join(sp(), ".tmp", "stale");
    await writeFile(stale, "");
    const old = new Date(Date.now() - 3_600_000);
    await utimes(stale, old, old);
    const start1 = JSON.parse(await lineMatching(child, (l) => l.includes('"start"')));
    expect(start1.problem).toMatchObject({ name: "stale", dir: ".tmp" });
    child.kill("SIGTERM");
    const r = await done;
    expect(r.code).toBe(0);
    const last = r.stdout.trim().split("\n").at(-1)!;
    expect(JSON.parse(last)).toMatchObject({ event: "stopped" });
    expect(r.stderr).toContain(`spool enqueue ${sp()} inbox`);
  });

  it("repairs by default and stops on SIGINT with exit 0", async () => {
    await createSpool();
    const stale = join(sp(), ".tmp", "stale");
    await writeFile(stale, "");
    const old = new Date(Date.now() - 3_600_000);
    await utimes(stale, old, old);
    const child = start(["spool", "monitor", sp(), "--check-every", "100ms"]);
    child.stdin.end();
    const done = finish(child);
    await lineMatching(child, (l) => /repaired: .* stale in \.tmp/.test(l));
    expect(await readdir(join(sp(), ".tmp"))).toEqual([]);
    child.kill("SIGINT");
    const r = await done;
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/stopped monitoring/);
  });
});
