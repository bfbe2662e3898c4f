import type { ClientSubcommand } from "../client/subcommand.js";
import { type Command, commandGroup } from "../command.js";

/**
 * `geospool cluster status|join|leave`. `status` asks a node over gRPC (the client's global
 * options apply); `join` and `leave` act on a node's own database, where its subscriptions
 * to its peers live. Each module loads only when it runs.
 */
const clusterStatusCommand: ClientSubcommand = {
  run: async (args, io, ctx) =>
    (await import("./status.js")).runClusterStatus("geospool cluster status", args, io, ctx),
};

const status: Command = {
  name: "status",
  summary: "a node's view of the cluster over gRPC: peers, lag, slots, queue depths",
  async run(args, io) {
    const [{ splitGlobalFlags }, { runClientSubcommand }] = await Promise.all([
      import("../client/settings.js"),
      import("../client/run.js"),
    ]);
    const { flags, rest } = splitGlobalFlags(args);
    return runClientSubcommand(clusterStatusCommand, flags, rest, io);
  },
};

function lazy(name: string, summary: string, load: () => Promise<Command>): Command {
  return { name, summary, run: async (args, io) => (await load()).run(args, io) };
}

export const clusterCommand = commandGroup({
  name: "cluster",
  path: "geospool cluster",
  summary: "replication membership: status (over gRPC), join and leave (on a node's database)",
  commands: [
    status,
    lazy(
      "join",
      "subscribe this node's database to a peer's journal (bootstraps from its rows)",
      async () => (await import("./join.js")).clusterJoin,
    ),
    lazy(
      "leave",
      "drop this node's subscription to a peer (and its slot on the peer when reachable)",
      async () => (await import("./leave.js")).clusterLeave,
    ),
  ],
  epilogue:
    "status takes the client's options (--endpoints, --token, TLS, --timeout, --json): see\n'geospool client --help'. docs/operations.md shows how to add, remove and recover nodes.",
});
