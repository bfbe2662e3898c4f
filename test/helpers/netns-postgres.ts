import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { stopStalePostgres } from "../../src/node/postgres/embedded.js";
import type { LabHost } from "./netns.js";

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const EMBEDDED = fileURLToPath(new URL("../../src/node/postgres/embedded.ts", import.meta.url));
export const LAB_PG_PORT = 5432;

/** An embedded PostgreSQL server started inside a lab host's namespace. */
export interface LabPostgres {
  readonly dataDir: string;
  /** For the node on the host itself. */
  readonly localUrl: string;
  /** For the peers, over the mesh link. */
  readonly meshUrl: string;
  /** For the test, over the client link. */
  readonly clientUrl: string;
  stop(): Promise<void>;
}

const START = `
const [modulePath, dataDir, port, hba] = process.argv.slice(1);
const { startEmbeddedPostgres } = await import(modulePath);
const pg = await startEmbeddedPostgres({
  dataDir, port: Number(port), fsync: false,
  settings: { listen_addresses: "*", hba_file: hba },
});
console.log(JSON.stringify({ port: pg.port }));
`;

/**
 * Start a server in `host`'s namespace, listening on every address there (port 5432), with
 * password logins from anywhere (the namespace's links lead only to the lab). The server
 * runs detached: it outlives the starter, and `stop()` ends it from here.
 */
export async function startLabPostgres(host: LabHost, dataDir: string): Promise<LabPostgres> {
  const hba = `${dataDir}.hba`;
  await writeFile(
    hba,
    "host all all 0.0.0.0/0 scram-sha-256\nhost replication all 0.0.0.0/0 scram-sha-256\n",
    { mode: 0o644 },
  );
  await exec(
    "ip",
    [
      "netns",
      "exec",
      host.ns,
      process.execPath,
      "--import",
      "tsx",
      "--input-type=module",
      "-e",
      START,
      EMBEDDED,
      dataDir,
      String(LAB_PG_PORT),
      hba,
    ],
    { cwd: ROOT, timeout: 60_000 },
  );
  const url = (addr: string) => `postgresql://postgres:postgres@${addr}:${LAB_PG_PORT}/geospool`;
  return {
    dataDir,
    localUrl: url("127.0.0.1"),
    meshUrl: url(host.meshIp),
    clientUrl: url(host.clientIp),
    async stop() {
      await stopStalePostgres(dataDir);
    },
  };
}

/** `<dir>/pg-<i>`: where lab host i keeps its server's data. */
export const labPgDir = (dir: string, i: number) => join(dir, `pg-${i}`);
