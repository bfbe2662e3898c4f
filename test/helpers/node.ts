import { join } from "node:path";
import { type Config, parseConfig } from "../../src/node/config/index.js";
import { type RunningNode, startNode } from "../../src/node/node.js";
import { createLogger } from "../../src/node/observability/index.js";

/** Start a node on 127.0.0.1 port 0 for gRPC and HTTP, with its spool under `dir`. */
export async function startTestNode(opts: {
  id: string;
  dir: string;
  postgresUrl: string;
  config?: Record<string, unknown>;
  /** The node's wall clock (NodeHooks.clock), e.g. skewed. */
  clock?: () => number;
}): Promise<RunningNode> {
  const base = {
    node: { id: opts.id },
    spool: {
      dir: join(opts.dir, `spool-${opts.id}`),
      leases: { grace: "0ms", deadLetterQueue: "dead" },
    },
    grpc: { listen: "127.0.0.1:0" },
    http: { listen: "127.0.0.1:0" },
    postgres: { url: opts.postgresUrl },
    log: { level: process.env.GEOSPOOL_TEST_LOG ?? "silent" },
    shutdown: { deadline: "2s" },
  };
  const config: Config = parseConfig(merge(base, opts.config ?? {}), { require: ["postgres.url"] });
  return startNode(
    config,
    createLogger({ level: config.log.level }),
    opts.clock === undefined ? {} : { clock: opts.clock },
  );
}

function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] =
      v &&
      typeof v === "object" &&
      !Array.isArray(v) &&
      prev &&
      typeof prev === "object" &&
      !Array.isArray(prev)
        ? merge(prev as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}
