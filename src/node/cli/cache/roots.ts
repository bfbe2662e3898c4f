import type { CacheRoot, StoredRoot } from "../../../cache/cache-roots.js";
import { parseCommand } from "../args.js";
import { type Command, commandGroup } from "../command.js";
import { parseDuration } from "../duration.js";
import { Output } from "../output.js";
import { iso } from "../spool/views.js";
import { table } from "./node-files.js";
import { NODE_HTTP_HELP, NODE_HTTP_OPTIONS, nodeHttp } from "./node-http.js";

/**
 * `geospool cache roots add|ls|rm`: the GC roots of the cluster, through a running node
 * (its HTTP routes, src/node/cache-http/cache-gc-routes.ts). Roots are spool entries of the
 * roots queue, so a root added on one node keeps its closure on every node.
 */

const ROOTS_HELP = `A root keeps a store path and its closure (everything it references, recursively)
from the cache's garbage collection on every node: roots are entries of the queue
cache.gc.rootsQueue, replicated like any entry. PATH is a full store path
(/nix/store/<hash>-<name>) or its 32-character hash part.`;

function describe(r: StoredRoot): string[] {
  const root: CacheRoot = r.root;
  return [
    root.storePath ?? root.hashPart,
    root.expiresAt === undefined ? "never" : iso(root.expiresAt),
    root.by,
    iso(root.at),
    root.note ?? "",
  ];
}

const add: Command = {
  name: "add",
  summary: "root a store path (and its closure), optionally until it expires",
  async run(args, io) {
    const path = "geospool cache roots add";
    const parsed = await parseCommand(
      args,
      {
        path,
        help: `Usage: ${path} PATH [--expires-in DUR] [--note TEXT] [--url URL] [--token-file FILE] [--json]

${ROOTS_HELP}
Needs a token that may enqueue on the roots queue.

Options:
  --expires-in DUR   the root stops keeping PATH after this (e.g. 30d; at most a year);
                     default: never
  --note TEXT        kept with the root (why it is there)
${NODE_HTTP_HELP}`,
        options: {
          ...NODE_HTTP_OPTIONS,
          "expires-in": { type: "string" },
          note: { type: "string" },
        },
        positionals: ["PATH"],
      },
      io,
    );
    if (!parsed) return 0;
    const v = parsed.values;
    const expiresIn =
      v["expires-in"] === undefined ? undefined : parseDuration("--expires-in", v["expires-in"]);
    const http = nodeHttp(v);
    const added = await http.call<StoredRoot>("POST", "roots", {
      path: parsed.positionals[0],
      ...(expiresIn === undefined ? {} : { expiresAt: Date.now() + expiresIn }),
      ...(v.note === undefined ? {} : { note: v.note }),
    });
    const out = new Output(io, v.json === true);
    await out.result(
      `rooted ${added.root.storePath ?? added.root.hashPart}${added.root.expiresAt === undefined ? "" : ` until ${iso(added.root.expiresAt)}`} (entry ${added.entry})`,
      added,
    );
    return 0;
  },
};

const ls: Command = {
  name: "ls",
  summary: "the roots, with their expiry, who added them and when",
  async run(args, io) {
    const path = "geospool cache roots ls";
    const parsed = await parseCommand(
      args,
      {
        path,
        help: `Usage: ${path} [--url URL] [--token-file FILE] [--json]

List the GC roots the node holds (expired ones too, marked; the next GC removes them).
Needs a token that may dequeue on the roots queue, when the node has auth.tokens.

Options:
${NODE_HTTP_HELP}`,
        options: NODE_HTTP_OPTIONS,
        positionals: [],
      },
      io,
    );
    if (!parsed) return 0;
    const { roots } = await nodeHttp(parsed.values).call<{ roots: StoredRoot[] }>("GET", "roots");
    const out = new Output(io, parsed.values.json === true);
    if (out.json) {
      await out.value(roots);
      return 0;
    }
    if (roots.length === 0) {
      await out.line("no roots");
      return 0;
    }
    const now = Date.now();
    const rows = roots.map((r) => {
      const row = describe(r);
      if (r.root.expiresAt !== undefined && r.root.expiresAt <= now) row[1] = `${row[1]} (expired)`;
      return row;
    });
    await out.line(table(["PATH", "EXPIRES", "BY", "ADDED", "NOTE"], rows));
    return 0;
  },
};

const rm: Command = {
  name: "rm",
  summary: "remove every root of a store path",
  async run(args, io) {
    const path = "geospool cache roots rm";
    const parsed = await parseCommand(
      args,
      {
        path,
        help: `Usage: ${path} PATH [--url URL] [--token-file FILE] [--json]

Remove every root of PATH (its hash part) that the node holds; the removals replicate.
What only that root kept becomes garbage once it is older than cache.gc.grace.
Needs a token that may dequeue on the roots queue.

Options:
${NODE_HTTP_HELP}`,
        options: NODE_HTTP_OPTIONS,
        positionals: ["PATH"],
      },
      io,
    );
    if (!parsed) return 0;
    const target = parsed.positionals[0] as string;
    const { removed } = await nodeHttp(parsed.values).call<{ removed: StoredRoot[] }>(
      "DELETE",
      `roots?path=${encodeURIComponent(target)}`,
    );
    const out = new Output(io, parsed.values.json === true);
    await out.result(
      removed.length === 0
        ? `no root of ${target}`
        : `removed ${removed.length} root(s) of ${target}`,
      removed,
    );
    return 0;
  },
};

export const cacheRoots = commandGroup({
  name: "roots",
  path: "geospool cache roots",
  summary: "the GC roots: store paths kept, with their closures, on every node",
  commands: [add, ls, rm],
  epilogue: ROOTS_HELP,
});
