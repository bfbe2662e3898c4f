import { usageError } from "../cli-error.js";
import type { Command } from "../command.js";
import { Output } from "../output.js";
import { GLOBAL_OPTIONS_HELP, splitGlobalFlags } from "./settings.js";
import type { ClientSubcommand } from "./subcommand.js";

const PATH = "geospool client";

/** The commands; each module (and gRPC with it) is loaded only when it runs. */
const SUBCOMMANDS: ReadonlyArray<{
  name: string;
  summary: string;
  load: () => Promise<ClientSubcommand>;
}> = [
  {
    name: "enqueue",
    summary: "create an entry in a queue; prints its name",
    load: async () => (await import("./enqueue.js")).clientEnqueue,
  },
  {
    name: "enqueue-many",
    summary: "create many small entries from JSON lines or a directory, in batches",
    load: async () => (await import("./enqueue-many.js")).clientEnqueueMany,
  },
  {
    name: "dequeue",
    summary: "check out the next entry of a queue under a lease",
    load: async () => (await import("./dequeue.js")).clientDequeue,
  },
  {
    name: "complete",
    summary: "finish a checkout: save it into a queue, or remove it",
    load: async () => (await import("./complete.js")).clientComplete,
  },
  {
    name: "release",
    summary: "hand a checkout back unfinished (a failed delivery)",
    load: async () => (await import("./release.js")).clientRelease,
  },
  {
    name: "extend",
    summary: "extend the lease of a checkout",
    load: async () => (await import("./extend.js")).clientExtend,
  },
  {
    name: "list",
    summary: "list the entries of a queue (or its checkouts), oldest first",
    load: async () => (await import("./list.js")).clientList,
  },
  {
    name: "stat",
    summary: "describe one entry",
    load: async () => (await import("./stat.js")).clientStat,
  },
  {
    name: "read",
    summary: "write an entry's data to standard output",
    load: async () => (await import("./read.js")).clientRead,
  },
  {
    name: "watch",
    summary: "print spool transitions as they happen, until SIGINT/SIGTERM",
    load: async () => (await import("./watch.js")).clientWatch,
  },
  {
    name: "status",
    summary: "the node's view of the cluster: queue depths, peers",
    load: async () => (await import("./status.js")).clientStatus,
  },
];

function help(exitCodes: string): string {
  const width = Math.max(...SUBCOMMANDS.map((c) => c.name.length));
  return `Usage: ${PATH} [global options] <command> [options]

Talk to geospool nodes over gRPC. A call goes to the first endpoint that answers; on
UNAVAILABLE or DEADLINE_EXCEEDED it moves to the next one (with backoff after each round)
until --retry-for runs out. Calls on a lease (complete, release, extend) go to the node
that holds it. Enqueue sends an idempotency key, so a retry never creates a second entry.

Commands:
${SUBCOMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join("\n")}

Run '${PATH} <command> --help' for a command's options.

${GLOBAL_OPTIONS_HELP}

A pipeline, with GEOSPOOL_ENDPOINTS=127.0.0.1:7401,127.0.0.1:7402 set:
  ${PATH} enqueue inbox --metadata '{"job":1}' --data-file job.bin
  lease=$(${PATH} dequeue inbox --wait 30s --json) || exit
  ${PATH} complete --lease-json "$lease" --save-to outbox --metadata '{"done":true}'
Durations: 500ms, 30s, 10m, 1h, or milliseconds.

${exitCodes}
`;
}

/** `geospool client <command>`: a thin shell over GeospoolClient. */
export const clientCommand: Command = {
  name: "client",
  summary: "talk to nodes over gRPC: enqueue, dequeue, complete, list, read, watch, status",
  async run(args, io) {
    const { flags, rest } = splitGlobalFlags(args);
    const [first, ...subArgs] = rest;
    if (first === "--help" || first === "-h" || first === "help") {
      const { CLIENT_EXIT_CODES_HELP } = await import("./errors.js");
      await new Output(io, false).write(help(CLIENT_EXIT_CODES_HELP));
      return 0;
    }
    const names = SUBCOMMANDS.map((c) => c.name).join(", ");
    if (first === undefined) throw usageError(`client: missing command (one of: ${names})`);
    const spec = SUBCOMMANDS.find((c) => c.name === first);
    if (spec === undefined) {
      throw usageError(`client: unknown command ${JSON.stringify(first)} (one of: ${names})`);
    }
    const [command, { runClientSubcommand }] = await Promise.all([spec.load(), import("./run.js")]);
    return runClientSubcommand(command, flags, subArgs, io);
  },
};
