/**
 * The `node-http` side of bench/http.ts: Node's own HTTP stack (node:http, one process,
 * the node binary the node runs on) answering narinfo GETs with no cache behind it: a Set
 * of the fixture's hash parts, one fixed narinfo body for a hit, 404 for a miss, with the
 * node's headers. What any Node server can do here: the node's narinfo figures against it
 * say how much of the distance to nginx is the cache's own work and how much Node's.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";

const SERVER = `
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
const [hashPartsFile, bodyFile] = process.argv.slice(2);
const present = new Set(readFileSync(hashPartsFile, "utf8").split("\\n").filter(Boolean));
const body = readFileSync(bodyFile);
const notFound = Buffer.from("404\\n");
const server = createServer((req, res) => {
  const url = req.url ?? "";
  const m = /^\\/([0-9a-z]{32})\\.narinfo$/.exec(url);
  const hit = m !== null && present.has(m[1]);
  const out = hit ? body : notFound;
  res.writeHead(hit ? 200 : 404, [
    "content-type", hit ? "text/x-nix-narinfo" : "text/plain; charset=utf-8",
    "content-length", String(out.length),
    "cache-control", hit ? "public, max-age=3600" : "public, max-age=60",
  ]);
  res.end(req.method === "HEAD" ? undefined : out);
});
server.listen(0, "127.0.0.1", () => console.log("PORT " + server.address().port));
`;

export interface NodeHttpFloor {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

/** Start the floor server over the hash parts in `hashPartsFile`, answering hits with `bodyFile`. */
export async function startNodeHttpFloor(
  dir: string,
  hashPartsFile: string,
  bodyFile: string,
): Promise<NodeHttpFloor> {
  const script = join(dir, "node-http-floor.mjs");
  await writeFile(script, SERVER);
  const child: ChildProcess = spawn(process.execPath, [script, hashPartsFile, bodyFile], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`node-http floor exited (${code})`)));
  });
  return {
    port,
    pid: child.pid as number,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      await exited;
    },
  };
}
