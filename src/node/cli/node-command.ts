import { configKeys, configWarnings, loadConfig } from "../config/index.js";
import { applyHeapGrowth } from "../heap-growth.js";
import { startNode } from "../node.js";
import { createLogger, flushLogger } from "../observability/index.js";
import { usageError } from "./cli-error.js";
import type { Command } from "./command.js";
import { Output } from "./output.js";

const PATH = "geospool node";

const HELP = `Usage: ${PATH} [--config FILE] [--<key> VALUE ...]

Run one geospool node: its spool, gRPC and HTTP servers, lease reaper and fsck monitor,
with its own PostgreSQL database (migrated at start). Settings come from flags, then
GEOSPOOL_* environment variables, then the YAML file (--config or GEOSPOOL_CONFIG), then
defaults. Every key is a flag with dots (docs/configuration.md lists them), e.g.
  --node.id eu-1 --spool.dir /var/spool/geospool --postgres.url postgres://...
  --grpc.listen 0.0.0.0:7401 --http.listen 0.0.0.0:8401
postgres.url is required. Runs until SIGINT or SIGTERM, then drains within
shutdown.deadline.
`;

/** `--key value`, `--key=value` and bare `--flag` (true); only --config and dotted keys. */
export function parseConfigFlags(args: readonly string[]): Record<string, string | boolean> {
  const flags: Record<string, string | boolean> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (!a.startsWith("--"))
      throw usageError(`node: unexpected argument ${JSON.stringify(a)} (see --help)`);
    const eq = a.indexOf("=");
    const key = eq > 0 ? a.slice(2, eq) : a.slice(2);
    // Dotted keys, and the keys that are a whole section (a list such as --peers).
    if (key !== "config" && !key.includes(".") && !configKeys().some((k) => k.key === key)) {
      throw usageError(
        `node: unknown option --${key} (config keys have dots, e.g. --grpc.listen; see --help)`,
      );
    }
    const next = args[i + 1];
    if (eq > 0) flags[key] = a.slice(eq + 1);
    else if (next !== undefined && !next.startsWith("--")) {
      flags[key] = next;
      i++;
    } else flags[key] = true;
  }
  return flags;
}

export const nodeCommand: Command = {
  name: "node",
  summary: "run one node against a PostgreSQL database (config file, env, flags)",
  async run(args, io) {
    if (args.includes("--help") || args.includes("-h")) {
      await new Output(io, false).write(HELP);
      return 0;
    }
    const flags = parseConfigFlags(args);
    const file = typeof flags.config === "string" ? flags.config : process.env.GEOSPOOL_CONFIG;
    const cfg = loadConfig({ file, env: process.env, flags, require: ["postgres.url"] });
    const logger = createLogger({ level: cfg.log.level, destination: 2 });
    for (const w of configWarnings(cfg)) logger.warn(w);
    applyHeapGrowth(cfg.node.heapGrowthPercent);
    const shutdown = io.shutdownSignal();
    const node = await startNode(cfg, logger);
    if (!shutdown.aborted)
      await new Promise((r) => shutdown.addEventListener("abort", r, { once: true }));
    await node.stop();
    await flushLogger(logger);
    return 0;
  },
};
