import { startDevCluster } from "../dev-cluster.js";
import { createLogger } from "../observability/index.js";
import { parseCommand } from "./args.js";
import { usageError } from "./cli-error.js";
import type { Command } from "./command.js";
import { Output } from "./output.js";

const PATH = "geospool dev";

function intFlag(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw usageError(`dev: --${name}: expected an integer, got ${JSON.stringify(value)}`);
  }
  return n;
}

export const devCommand: Command = {
  name: "dev",
  summary: "run a local cluster: N nodes, each with its own embedded PostgreSQL (npm start)",
  async run(args, io) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} [--nodes 3] [--base-grpc-port 7401] [--base-http-port 8401]
                    [--dir .geospool/dev] [--fresh] [--log-level warn] [--json]

Start a local cluster on 127.0.0.1: node-1..node-N, each with its own PostgreSQL
(wal_level=logical) and spool under DIR/<node>, gRPC on base-grpc-port+i and HTTP
(/metrics, /healthz, /readyz and the Nix/Guix binary cache) on base-http-port+i. Prints
a table of endpoints, the cache's public key and a netrc with an upload token (under
DIR/cache), and runs until Ctrl-C (SIGINT) or SIGTERM, then drains every node and stops
every PostgreSQL. State is kept between runs; --fresh deletes it first.

Options:
  --nodes N             number of nodes, 1-9 (default 3)
  --base-grpc-port P    gRPC port of node-1 (default 7401)
  --base-http-port P    HTTP port of node-1 (default 8401)
  --dir DIR             state directory (default .geospool/dev)
  --fresh               delete the state directory first
  --log-level LEVEL     node log level on stderr (default warn)
  --json                print the endpoints as one JSON line`,
        options: {
          nodes: { type: "string" },
          "base-grpc-port": { type: "string" },
          "base-http-port": { type: "string" },
          dir: { type: "string" },
          fresh: { type: "boolean" },
          "log-level": { type: "string" },
          json: { type: "boolean" },
        },
        positionals: [],
      },
      io,
    );
    if (!parsed) return 0;
    const v = parsed.values;
    const level = v["log-level"] ?? "warn";
    const logger = createLogger({ level: level as "warn", destination: 2 });
    const shutdown = io.shutdownSignal();
    const cluster = await startDevCluster({
      dir: v.dir ?? ".geospool/dev",
      nodes: intFlag("nodes", v.nodes, 3),
      baseGrpcPort: intFlag("base-grpc-port", v["base-grpc-port"], 7401),
      baseHttpPort: intFlag("base-http-port", v["base-http-port"], 8401),
      fresh: v.fresh === true,
      logger,
      logLevel: level,
    });
    const out = new Output(io, v.json === true);
    const rows = cluster.nodes.map((n) => [
      n.id,
      n.region,
      n.grpc,
      `http://${n.http}`,
      n.postgresUrl,
    ]);
    const head = ["node", "region", "grpc", "http", "postgres"];
    const widths = head.map((h, i) =>
      Math.max(h.length, ...rows.map((r) => (r[i] as string).length)),
    );
    const line = (cells: string[]) =>
      cells
        .map((c, i) => c.padEnd(widths[i] as number))
        .join("  ")
        .trimEnd();
    const endpoints = cluster.nodes.map((n) => n.grpc).join(",");
    const { cache } = cluster;
    const [first, last] = [cluster.nodes[0]!, cluster.nodes.at(-1)!];
    const nixConfig = "NIX_CONFIG='experimental-features = nix-command'";
    await out.result(
      [
        line(head),
        ...rows.map(line),
        "",
        `Try: ${io.program} client --endpoints ${endpoints} enqueue inbox --data hello`,
        "",
        `Binary cache on every node: ${cluster.nodes.map((n) => `http://${n.http}`).join(" ")}`,
        `  public key: ${cache.publicKey}`,
        `  netrc (upload token): ${cache.netrcFile}`,
        `  upload:   ${nixConfig} nix copy --to http://${first.http} --option netrc-file ${cache.netrcFile} <paths>`,
        `  download: ${nixConfig} nix copy --from http://${last.http} --option trusted-public-keys '${cache.publicKey}' <paths>`,
        `  GC roots: ${io.program} cache roots add <store path> --url http://${first.http} --token-file ${cache.gcTokenFile}   (also: roots ls, roots rm <store path>)`,
        `  GC run:   ${io.program} cache gc [--dry-run] --url http://${first.http} --token-file ${cache.gcTokenFile}`,
        "Ctrl-C stops the cluster.",
      ].join("\n"),
      {
        nodes: cluster.nodes,
        cache: {
          publicKey: cache.publicKey,
          netrcFile: cache.netrcFile,
          gcTokenFile: cache.gcTokenFile,
          secretKeyFile: cache.secretKeyFile,
        },
      },
    );
    if (!shutdown.aborted)
      await new Promise((r) => shutdown.addEventListener("abort", r, { once: true }));
    await cluster.stop();
    return 0;
  },
};
