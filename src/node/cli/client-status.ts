import type { ClientSubcommand } from "./client-subcommand.js";
import { runClusterStatus } from "./cluster-status.js";

/** `geospool client status`: the same as `geospool cluster status`. */
export const clientStatus: ClientSubcommand = {
  run: (args, io, ctx) => runClusterStatus("geospool client status", args, io, ctx),
};
