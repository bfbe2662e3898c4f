import type { GcReport } from "../../../cache/gc.js";
import { parseCommand } from "../args.js";
import type { Command } from "../command.js";
import { Output } from "../output.js";
import { NODE_HTTP_HELP, NODE_HTTP_OPTIONS, nodeHttp } from "./node-http.js";

const PATH = "geospool cache gc";

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** `geospool cache gc [--dry-run]`: one garbage collection on a running node. */
export const cacheGc: Command = {
  name: "gc",
  summary: "remove what no root and no recent upload needs (through the spool, so it replicates)",
  async run(args, io) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} [--dry-run] [--url URL] [--token-file FILE] [--json]

Run one garbage collection on the node. Live are the roots (geospool cache roots), every
upload younger than cache.gc.grace, and everything they reference, recursively; every
other cache entry is removed through the spool (its narinfo and nar together), and the
removals replicate to every node. Expired roots are removed too. Nothing is removed while
the node's view of its peers is not recent (a peer silent, a subscription just restarted,
a young upload still arriving): the report says why ("blocked").

Needs a token with admin on cache.queue (with --dry-run: dequeue on it).

Options:
  --dry-run          only report what would be removed
${NODE_HTTP_HELP}
Exit codes: 0 ok (also when blocked), 2 usage, 6 access denied, 7 node unreachable,
10 other errors.`,
        options: { ...NODE_HTTP_OPTIONS, "dry-run": { type: "boolean" } },
        positionals: [],
      },
      io,
    );
    if (!parsed) return 0;
    const dryRun = parsed.values["dry-run"] === true;
    const report = await nodeHttp(parsed.values).call<GcReport>(
      "POST",
      dryRun ? "gc?dryRun=1" : "gc",
    );
    const out = new Output(io, parsed.values.json === true);
    if (out.json) {
      await out.value(report);
      return 0;
    }
    const verb = report.dryRun ? "would remove" : "removed";
    const lines = [
      ...(report.blocked === undefined ? [] : [`blocked: ${report.blocked}`]),
      `kept ${report.kept} entries (${report.liveHashParts} live paths, ${report.roots.live} roots)`,
      `${verb} ${report.removed.length} entries, ${bytes(report.bytesFreed)}; ${report.rootsRemoved} expired roots`,
      ...report.removed.map((r) => `  ${r.hashPart}  ${r.url}  ${bytes(r.bytes)}`),
      ...(report.missing.length === 0
        ? []
        : [`live paths referenced but not held here: ${report.missing.join(", ")}`]),
    ];
    await out.line(lines.join("\n"));
    return 0;
  },
};
