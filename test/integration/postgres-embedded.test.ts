import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, readlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { startEmbeddedPostgres, stopStalePostgres } from "../../src/node/postgres/embedded.js";
import { PostgresServerErrorCode } from "../../src/node/postgres/errors.js";
import {
  postgresProcessesIn,
  readPostmasterPid,
  waitForExit,
} from "../../src/node/postgres/processes.js";
import {
  startPostgresServers,
  stopPostgresServers,
  type TestPostgres,
} from "../helpers/postgres.js";
import { useTempDir } from "../helpers/tmp.js";

const dir = useTempDir("geospool-pg-");
let servers: TestPostgres[] = [];
afterEach(async () => {
  try {
    await stopPostgresServers(servers);
    await Promise.all(
      (await readdir(dir.path)).map((name) => stopStalePostgres(join(dir.path, name))),
    );
  } finally {
    servers = [];
  }
});

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client(url);
  client.on("error", () => {});
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** Every process whose working directory or command line mentions `path` (Linux /proc). */
async function processesUnder(path: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cwd = await readlink(`/proc/${name}/cwd`).catch(() => "");
      const cmdline = (await readFile(`/proc/${name}/cmdline`, "utf8")).replaceAll("\0", " ");
      if (cwd === path || cwd.startsWith(`${path}/`) || cmdline.includes(path)) {
        found.push(`${name}: ${cmdline}`);
      }
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

const embeddedModule = fileURLToPath(
  new URL("../../src/node/postgres/embedded.ts", import.meta.url),
);
const itLinux = process.platform === "linux" ? it : it.skip;

describe("embedded PostgreSQL", () => {
  itLinux("starts three servers in parallel from the template and stops them all", async () => {
    servers = await startPostgresServers(3, { dir: dir.path });
    const ports = new Set(servers.map((s) => new URL(s.url).port));
    expect(ports.size).toBe(3);
    for (const server of servers) {
      const [row] = await query<{ one: number; wal: string; db: string; listen: string }>(
        server.url,
        "select 1 as one, current_setting('wal_level') as wal, current_database() as db, " +
          "current_setting('listen_addresses') as listen",
      );
      expect(row).toEqual({ one: 1, wal: "logical", db: "geospool", listen: "127.0.0.1" });
    }
    expect(await processesUnder(dir.path)).not.toEqual([]);
    await stopPostgresServers(servers);
    expect(await processesUnder(dir.path)).toEqual([]);
    for (const server of servers) {
      expect(existsSync(join(server.dataDir ?? "", "postmaster.pid"))).toBe(false);
    }
  });

  it("reuses an existing data directory, keeping its rows", async () => {
    const dataDir = join(dir.path, "node-1");
    const first = await startEmbeddedPostgres({ dataDir, fsync: false });
    servers.push(first);
    await query(first.url, "create table kept (n int); insert into kept values (1), (2), (3)");
    await first.stop();
    const second = await startEmbeddedPostgres({ dataDir, fsync: false });
    servers.push(second);
    const rows = await query<{ n: number }>(second.url, "select n from kept order by n");
    expect(rows.map((r) => r.n)).toEqual([1, 2, 3]);
  });

  it("refuses a non-empty directory that is not a data directory", async () => {
    const home = join(dir.path, "home");
    await mkdir(home);
    await writeFile(join(home, "precious.txt"), "keep me");
    const err = await startEmbeddedPostgres({ dataDir: home }).catch((e) => e);
    expect(err.code).toBe(PostgresServerErrorCode.NotADataDir);
    expect(await readdir(home)).toEqual(["precious.txt"]);
  });

  itLinux("starts over a stale postmaster.pid left by a SIGKILLed server", async () => {
    const dataDir = join(dir.path, "node-1");
    const server = await startEmbeddedPostgres({ dataDir, fsync: false });
    servers.push(server);
    const lock = await readPostmasterPid(server.dataDir);
    expect(lock).toBeDefined();
    process.kill(lock?.pid ?? 0, "SIGKILL");
    expect(await waitForExit(lock?.pid ?? 0, 10_000)).toBe(true);
    expect(existsSync(join(server.dataDir, "postmaster.pid"))).toBe(true);
    const again = await startEmbeddedPostgres({ dataDir, fsync: false });
    servers.push(again);
    expect(await query(again.url, "select 1 as one")).toEqual([{ one: 1 }]);
  });

  itLinux("starts once the children of a SIGKILLed postmaster have exited", async () => {
    const dataDir = join(dir.path, "node-2");
    const server = await startEmbeddedPostgres({ dataDir, fsync: false });
    servers.push(server);
    const lock = await readPostmasterPid(server.dataDir);
    const children = (await postgresProcessesIn(server.dataDir)).filter((p) => p !== lock?.pid);
    expect(children.length).toBeGreaterThan(0);
    // A child that cannot run yet cannot notice its parent's death (a loaded machine).
    const held = children[0] as number;
    process.kill(held, "SIGSTOP");
    try {
      process.kill(lock?.pid ?? 0, "SIGKILL");
      expect(await waitForExit(lock?.pid ?? 0, 10_000)).toBe(true);
      const starting = startEmbeddedPostgres({ dataDir, fsync: false });
      // The start waits for the orphan rather than refusing the directory.
      const early = await Promise.race([
        starting.then(
          () => "started",
          (err: Error) => err.message,
        ),
        new Promise((r) => setTimeout(() => r("waiting"), 500)),
      ]);
      expect(early).toBe("waiting");
      process.kill(held, "SIGCONT");
      const again = await starting;
      servers.push(again);
      expect(await query(again.url, "select 1 as one")).toEqual([{ one: 1 }]);
    } finally {
      try {
        process.kill(held, "SIGCONT");
      } catch {}
    }
  });

  it("builds the template once when two processes race for it", async () => {
    const templateDir = join(dir.path, "template");
    const script = (n: number) => `
      const { startEmbeddedPostgres } = await import(${JSON.stringify(embeddedModule)});
      const s = await startEmbeddedPostgres({
        dataDir: ${JSON.stringify(join(dir.path, `node-${n}`))},
        templateDir: ${JSON.stringify(templateDir)},
        fsync: false,
      });
      await s.stop();
    `;
    const codes = await Promise.all(
      [1, 2].map(
        (n) =>
          new Promise((resolve) =>
            spawn(
              process.execPath,
              ["--import", "tsx", "--input-type=module", "--eval", script(n)],
              {
                stdio: ["ignore", "inherit", "inherit"],
              },
            ).once("exit", resolve),
          ),
      ),
    );
    expect(codes).toEqual([0, 0]);
    expect((await readdir(dir.path)).sort()).toEqual(["node-1", "node-2", "template"]);
    expect(existsSync(join(templateDir, "PG_VERSION"))).toBe(true);
  });

  itLinux("stops the orphaned server of a SIGKILLed starter", async () => {
    const dataDir = join(dir.path, "node-1");
    const script = `
      const { startEmbeddedPostgres } = await import(${JSON.stringify(embeddedModule)});
      const s = await startEmbeddedPostgres({ dataDir: ${JSON.stringify(dataDir)}, fsync: false });
      console.log(JSON.stringify({ url: s.url }));
      setInterval(() => {}, 1000);
    `;
    const starter = spawn(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "--eval", script],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const exited = new Promise((resolve) => starter.once("exit", resolve));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: starter.stdout }).once("line", resolve);
        starter.once("exit", (code) => reject(new Error(`starter exited (${code})`)));
      });
      const { url } = JSON.parse(line) as { url: string };
      starter.kill("SIGKILL");
      await exited;
      expect(await query(url, "select 1 as one")).toEqual([{ one: 1 }]);

      const busy = await startEmbeddedPostgres({ dataDir, fsync: false }).catch((e) => e);
      expect(busy.code).toBe(PostgresServerErrorCode.AlreadyRunning);

      const outcome = await stopStalePostgres(dataDir);
      expect(outcome.kind).toBe("stopped");
      expect(await processesUnder(dir.path)).toEqual([]);
      expect(await stopStalePostgres(dataDir)).toEqual({ kind: "not_running" });
      const err = await query(url, "select 1").catch((e) => e);
      expect(err.code).toBe("ECONNREFUSED");
    } finally {
      starter.kill("SIGKILL");
    }
  });
});
