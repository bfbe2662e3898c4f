import type { StoredCacheEntry } from "../../../cache/cache-inventory.js";
import { Spool, SpoolError, SpoolErrorCode } from "../../../spool/index.js";
import { nodeCacheCodec } from "../../cache-http/node-cache.js";
import { type Config, loadConfig } from "../../config/index.js";
import { nodeEntryCodec } from "../../service/entry-meta.js";
import { CliError, usageError } from "../cli-error.js";
import { ExitCode } from "../exit-codes.js";

/**
 * What `geospool cache ls|show|rejected|verify` read: a node's own files (its spool's cache
 * queue, its kept rejections), found from the node's settings read as `geospool node` reads
 * them. They only read, so they run beside the running node.
 */

export const NODE_SETTINGS_HELP = `The node's settings are read as 'geospool node' reads them: --config FILE (or
GEOSPOOL_CONFIG), GEOSPOOL_* variables, and --<key> VALUE for any dotted key (e.g.
--spool.dir DIR, --cache.queue cache, --cache.rejectedDir DIR; node.id is not needed).`;

/** Take `--config FILE` and dotted `--key VALUE` (or `--key=VALUE`) out of `args`. */
export function splitNodeSettings(args: readonly string[]): {
  settings: Record<string, string>;
  rest: string[];
} {
  const settings: Record<string, string> = {};
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === "--") {
      rest.push(...args.slice(i));
      break;
    }
    const eq = a.indexOf("=");
    const key = a.startsWith("--") ? a.slice(2, eq > 0 ? eq : undefined) : "";
    if (key !== "config" && !key.includes(".")) {
      rest.push(a);
      continue;
    }
    const value = eq > 0 ? a.slice(eq + 1) : args[++i];
    if (value === undefined) throw usageError(`--${key} needs a value`);
    settings[key] = value;
  }
  return { settings, rest };
}

/** The node's configuration (node.id may be absent: these commands do not need it). */
export function loadNodeSettings(settings: Record<string, string>): Config {
  const { config, ...flags } = settings;
  const file = config ?? process.env.GEOSPOOL_CONFIG;
  // node.id is required of a node; where the configuration has none, any value does here
  // (only `cache stats --cluster` names this node by it).
  return loadConfig({ file, env: process.env, flags, fallbacks: { "node.id": "cli" } });
}

/** Every entry of the node's cache queue that holds a cache record, in name order. */
export async function readCacheEntries(config: Config): Promise<StoredCacheEntry[]> {
  const queue = config.cache.queue;
  if (!config.spool.queues.includes(queue)) {
    throw usageError(
      `cache.queue ${JSON.stringify(queue)} is not one of spool.queues (${config.spool.queues.join(", ")})`,
    );
  }
  const spool = await Spool.load(config.spool.dir, {
    metadata: nodeEntryCodec,
    queues: config.spool.queues,
  }).catch((err: unknown) => {
    if (err instanceof SpoolError && err.code === SpoolErrorCode.MissingDirectory) {
      throw new CliError(
        "no_spool",
        `spool.dir ${config.spool.dir} does not exist (is this the node's configuration?)`,
        ExitCode.Failure,
        { cause: err },
      );
    }
    throw err;
  });
  const codec = nodeCacheCodec(Date.now);
  const out: StoredCacheEntry[] = [];
  for (const entry of await spool.list(queue)) {
    let meta: Awaited<ReturnType<typeof entry.direct.contents>>;
    try {
      meta = await entry.direct.contents();
    } catch (err) {
      if (err instanceof SpoolError && err.code === SpoolErrorCode.EntryNotFound) continue;
      throw err;
    }
    const record = codec.unwrap(meta);
    if (record === undefined) continue;
    out.push({
      entry: entry.name,
      record,
      sha256: meta.sha256,
      size: meta.size,
      dataPath: entry.dataFile().path,
    });
  }
  return out;
}

/** Rows as columns padded to their widest cell, the last column left ragged. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all
    .map((r) =>
      r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("  "),
    )
    .join("\n");
}
